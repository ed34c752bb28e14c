"""Dependencies of the routers, as ``Annotated`` aliases.

``Ctx`` is the per-app :class:`ApiContext` (settings, store, search index,
metrics, rate limits, the SSE broadcaster), kept on ``app.state.ctx`` so many
apps can live in one process. Store calls are synchronous; endpoints that use
them are plain ``def`` (FastAPI runs those in its threadpool). Dependencies
that do no blocking I/O are ``async def``: FastAPI would run a plain ``def``
dependency in the threadpool too, a thread hop (about 0.5 ms here) each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from protocol import AssetUri, AuthorKey, ProtocolError, parse_did

from ..errors import BadRequest, DatabaseError, SearchUnavailable, Unauthorized
from ..settings import IndexerSettings
from ..store import Store
from .events import Broadcaster, StreamSlots
from .metrics import ApiMetrics
from .ratelimit import RateLimits


@dataclass
class ApiContext:
    settings: IndexerSettings
    metrics: ApiMetrics
    limits: RateLimits
    store: Store | None = None
    index: Any | None = None  # indexer.search.SearchIndex
    broadcaster: Broadcaster | None = None
    verify_pool: Any | None = None  # routers.entries.VerifyPool (settings.verify_workers > 0)
    streams: StreamSlots = field(init=False)  # open SSE streams per client address
    owned: list[Any] = field(default_factory=list)  # what the lifespan built and must close
    open_index: Callable[[], Any] | None = None  # how to (re)open a missing index
    index_retry_at: float = 0.0
    started: float = 0.0  # wall-clock start of the app (how long chains have had to report)

    def __post_init__(self) -> None:
        self.streams = StreamSlots(self.settings.sse_max_per_client)


async def get_ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]


async def get_store(ctx: Ctx) -> Store:
    if ctx.store is None:
        raise DatabaseError("the database is not connected")
    return ctx.store


StoreDep = Annotated[Store, Depends(get_store)]


INDEX_RETRY_S = 5.0


def index_of(ctx: ApiContext) -> Any:
    """The search index; when it was missing at start (the feeder creates it), retry opening it every 5 s."""
    if ctx.index is None and ctx.open_index is not None and time.monotonic() >= ctx.index_retry_at:
        ctx.index_retry_at = time.monotonic() + INDEX_RETRY_S
        ctx.index = ctx.open_index()
        if ctx.index is not None:
            ctx.owned.append(ctx.index)
    if ctx.index is None:
        raise SearchUnavailable("the search index is not available")
    return ctx.index


async def get_index(ctx: Ctx) -> Any:
    return index_of(ctx)


IndexDep = Annotated[Any, Depends(get_index)]


async def get_broadcaster(ctx: Ctx) -> Broadcaster:
    if ctx.broadcaster is None:
        raise DatabaseError("the event stream is not available")
    return ctx.broadcaster


BroadcasterDep = Annotated[Broadcaster, Depends(get_broadcaster)]


async def client_ip(request: Request, ctx: Ctx) -> str:
    return ctx.limits.client_ip(request)


ClientIp = Annotated[str, Depends(client_ip)]


async def read_limit(request: Request, ctx: Ctx) -> None:
    """The public read rate limit, per client IP."""
    ctx.limits.check(request, "read", ctx.limits.client_ip(request))


ReadLimited = Depends(read_limit)


# -- identifiers -----------------------------------------------------------------------------


def parse_creator(did: str) -> AuthorKey:
    try:
        return parse_did(did)
    except ProtocolError as exc:
        raise BadRequest(f"malformed did: {exc}") from None


async def creator_path(did: str) -> AuthorKey:
    return parse_creator(did)


async def parse_asset(did: str, key: str) -> AssetUri:
    try:
        return AssetUri.of(parse_did(did), key)
    except ProtocolError as exc:
        raise BadRequest(f"malformed asset id: {exc}") from None


CreatorPath = Annotated[AuthorKey, Depends(creator_path)]
AssetPath = Annotated[AssetUri, Depends(parse_asset)]


# -- API keys --------------------------------------------------------------------------------

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer ek_…`.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def optional_key(creds: Credentials, store: StoreDep) -> dict[str, Any] | None:
    """The key row when an Authorization header is given (it must then be valid), else None."""
    if creds is None:
        return None
    return store.admin.authenticate(secret=creds.credentials)


OptionalKey = Annotated[dict[str, Any] | None, Depends(optional_key)]


def require_scope(scope: str) -> Any:
    """A dependency that authenticates the bearer key and checks ``scope`` (admin implies all)."""

    def dep(creds: Credentials, store: StoreDep) -> dict[str, Any]:
        if creds is None:
            raise Unauthorized("an API key is required: Authorization: Bearer <key>")
        return store.admin.authenticate(secret=creds.credentials, scope=scope)

    return Depends(dep)


AdminKey = Annotated[dict[str, Any], require_scope("admin")]
ModerateKey = Annotated[dict[str, Any], require_scope("moderate")]
