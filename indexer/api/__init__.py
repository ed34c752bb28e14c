"""The indexer's public HTTP API (FastAPI on asyncio, served by uvicorn).

::

    app = create_app(settings, store=store, index=index)   # builds what it is not given, in the lifespan
    serve(settings)                                         # blocking: uvicorn on settings.host:port

Layout: ``routers/`` (one per domain: assets, creators, activity + events,
entries, admin, health; ``pages`` serves the marketplace from ``indexer/web/``), ``deps.py`` (``Annotated`` dependency aliases),
``schemas.py`` (response models), ``problem.py`` (RFC 9457 errors),
``middleware.py`` (request id, access log, metrics), ``ratelimit.py``,
``metrics.py``, ``events.py`` (the shared LISTEN behind ``/v1/events``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from protocol import parse_did

from ..settings import IndexerSettings
from ..store import Store
from ..store.pins import Pins
from .chains import ChainCollector
from .deps import ApiContext
from .events import Broadcaster
from .media import PinCollector
from .metrics import ApiMetrics
from .middleware import RequestContextMiddleware
from .problem import install_problem_handlers
from .ratelimit import RateLimits
from .routers import activity, admin, assets, creators, entries, health, pages

__all__ = ["create_app", "serve"]

log = logging.getLogger(__name__)

DESCRIPTION = """\
Search and read the Empressa registry: signed media-asset records mirrored from
the peer-to-peer network into PostgreSQL.

* Reads are public and rate-limited per client IP (`RateLimit-*` headers; 429 with `Retry-After`).
* Every error is `application/problem+json` (RFC 9457) with a stable `code` and the `request_id`;
  every response carries `X-Request-ID` (send your own to correlate).
* Identifiers: creators are `did:key`s, entries are CIDv1s, assets are `empressa://{did}/{key}`.
* Pages are keyset-paginated with opaque `next_cursor` values.
* `POST /v1/entries` needs no key (signatures authenticate); `/v1/admin/…` needs
  `Authorization: Bearer <API key>` with the right scope.
"""


def _database_url(settings: IndexerSettings, store: Store | None) -> str | None:
    if store is not None:
        return store.url
    return settings.database_url


def create_app(settings: IndexerSettings, *, store: Store | None = None, index: Any | None = None) -> FastAPI:
    """The API app. A ``store`` or ``index`` not given is built (and closed) by the app's lifespan."""
    metrics = ApiMetrics()
    ctx = ApiContext(
        settings=settings, metrics=metrics, limits=RateLimits(settings), store=store, index=index
    )
    ctx.started = time.time()
    metrics.watch_chains(ChainCollector(lambda: ctx.store.chain.statuses() if ctx.store is not None else []))
    metrics.watch_pins(
        PinCollector(lambda: Pins(ctx.store.engine).depth() if ctx.store is not None else None)
    )
    url = _database_url(settings, store)
    if url is not None:
        ctx.broadcaster = Broadcaster(url)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if ctx.store is None and settings.database_url is not None:
            ctx.store = Store.connect(
                settings.database_url,
                pool_size=settings.db_pool_size,
                quarantine_limits=settings.quarantine_limits,
                trusted_attesters=[parse_did(d) for d in settings.trusted_bridges],
            )
            ctx.owned.append(ctx.store)
            if ctx.broadcaster is None:
                ctx.broadcaster = Broadcaster(settings.database_url)
        if ctx.store is None:
            log.warning("no database_url: every data endpoint answers 503")
        if settings.verify_workers > 0 and ctx.verify_pool is None:
            from .routers.entries import VerifyPool

            ctx.verify_pool = VerifyPool(settings.verify_workers)
            ctx.owned.append(ctx.verify_pool)
            await run_in_threadpool(ctx.verify_pool.warm)
        if ctx.index is None:
            ctx.open_index = lambda: _open_index(settings)
            ctx.index = await run_in_threadpool(ctx.open_index)
            if ctx.index is not None:
                ctx.owned.append(ctx.index)
        try:
            yield
        finally:
            if ctx.broadcaster is not None:
                await ctx.broadcaster.aclose()
            for thing in reversed(ctx.owned):
                close = getattr(thing, "close", None)
                if close is not None:
                    with contextlib.suppress(Exception):
                        close()
            ctx.owned.clear()
            ctx.verify_pool = None

    app = FastAPI(
        title="Empressa indexer",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_problem_handlers(app)
    for router in (
        assets.router,
        creators.router,
        activity.router,
        entries.router,
        admin.router,
        health.router,
        pages.router,  # the marketplace pages at / (not in the OpenAPI document)
    ):
        app.include_router(router)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app


def _open_index(settings: IndexerSettings) -> Any | None:
    try:
        from ..search import open_index
    except ImportError:
        log.warning("search is not available in this build: GET /v1/assets answers 503")
        return None
    try:
        return open_index(settings.index_dir, writer=False)
    except Exception as exc:
        log.warning("cannot open the search index at %s: %s", settings.index_dir, exc)
        return None


def serve(settings: IndexerSettings) -> None:
    """Serve the API until interrupted (blocking). Logging is configured by the caller (:func:`indexer.commands.serve_api`)."""
    import uvicorn

    app = create_app(settings)
    # What is built by now (modules, the app: most of the process's objects) lives as long as the
    # process: out of the collector's sight, a full collection no longer stalls requests for tens of
    # milliseconds. Here, not in the app's lifespan: tests build many apps in one process.
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        # C parsers and loop: with the pure-Python h11 and asyncio loop, HTTP framing and
        # scheduling took ~25% of a search request's CPU (measured with py-spy).
        http="httptools",
        loop="uvloop",
        proxy_headers=False,
        forwarded_allow_ips=None,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
