"""``/v1/activity`` (keyset pages) and ``/v1/events`` (the same rows as a Server-Sent Events stream)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import sniffio
from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from ...errors import BadRequest, EventIdAhead
from ..deps import BroadcasterDep, Ctx, ReadLimited, StoreDep, parse_creator
from ..problem import ProblemError
from ..schemas import ActivityPage
from . import errors

log = logging.getLogger(__name__)

router = APIRouter(tags=["activity"], dependencies=[ReadLimited])

Kind = Annotated[
    str | None, Query(max_length=32, description="Only this kind: published, updated, deleted, attested, …")
]
Did = Annotated[str | None, Query(description="Only this creator (did:key).")]
Uri = Annotated[str | None, Query(description="Only this asset (empressa://{did}/{key}).")]

_BATCH = 500


def _check_filters(did: str | None, uri: str | None) -> None:
    from protocol import ProtocolError, parse_asset_uri

    if did is not None:
        parse_creator(did)
    if uri is not None:
        try:
            parse_asset_uri(uri)
        except ProtocolError as exc:
            raise BadRequest(f"malformed asset uri: {exc}") from None


@router.get(
    "/v1/activity",
    response_model=ActivityPage,
    responses=errors(400, 422),
    summary="The activity log",
)
def get_activity(
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=2000, description="`next_cursor` of the previous page.")
    ] = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=2**62, description="Forward mode: rows with a greater id, oldest first."),
    ] = None,
    kind: Kind = None,
    did: Did = None,
    uri: Uri = None,
) -> dict[str, Any]:
    """What happened, newest first (or oldest first from `after`), filterable by kind, creator and asset."""
    _check_filters(did, uri)
    if cursor is not None and after is not None:
        raise BadRequest("give either cursor or after, not both")
    return store.reads.activity_page(limit=limit, cursor=cursor, after=after, kind=kind, did=did, uri=uri)


@router.get(
    "/v1/events",
    responses={
        200: {
            "description": "A stream of `event: <kind>`, `id: <activity id>`, `data: <activity JSON>` "
            "messages, with comment heartbeats.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **errors(400, 422, 429),
    },
    response_class=EventSourceResponse,
    summary="Live activity (Server-Sent Events)",
)
async def get_events(
    request: Request,
    ctx: Ctx,
    store: StoreDep,
    broadcaster: BroadcasterDep,
    last_event_id: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            le=2**62,
            description="Resume: replay every row after this id first (browsers send it on reconnect). "
            "An id beyond the newest activity id is a 400 problem (`code: event-id-ahead`) naming the "
            "newest; the newest id itself is a valid resume point.",
        ),
    ] = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=2**62, description="Same as Last-Event-ID (which wins when both are given)."),
    ] = None,
    kind: Kind = None,
    did: Did = None,
    uri: Uri = None,
) -> EventSourceResponse:
    """Activity rows as they are committed, in order; resumable with `Last-Event-ID`.

    Without `Last-Event-ID` the stream starts at the present. Each event's
    `id` is the activity id, `event` its kind and `data` the same JSON object
    as an item of `GET /v1/activity`.

    * **400** (`code: event-id-ahead`) for a `Last-Event-ID` (or `after`)
      beyond the newest activity id: no such event was ever sent (the
      database was reset, or the id is made up). Reconnect without it.
    * **429** (`code: too-many-streams`) when this client address already
      holds `sse_max_per_client` (default 8) streams open; a stream's slot is
      given back as soon as its client goes away.
    """
    _check_filters(did, uri)
    if sniffio.current_async_library() != "asyncio":  # psycopg's async LISTEN needs asyncio
        raise ProblemError(503, "the event stream needs an asyncio server", code="unavailable")
    newest = await run_in_threadpool(store.reads.latest_activity_id)
    start = last_event_id if last_event_id is not None else after
    if start is None:
        start = newest
    elif start > newest:
        raise EventIdAhead(
            f"event id {start} is beyond the newest activity id {newest}; reconnect without Last-Event-ID "
            "(or resume from an id you received)"
        )
    release = ctx.streams.acquire(ctx.limits.client_ip(request))  # nothing below raises before the response
    ctx.metrics.sse_clients.inc()

    async def stream() -> AsyncIterator[dict[str, Any]]:
        last = start
        async with broadcaster.subscribe() as wake:
            while True:
                await wake.wait()
                wake.clear()
                while True:
                    rows = await run_in_threadpool(
                        store.reads.activity_after, after=last, limit=_BATCH, kind=kind, did=did, uri=uri
                    )
                    for row in rows:
                        last = row["id"]
                        yield {"id": str(row["id"]), "event": row["kind"], "data": json.dumps(row)}
                    if len(rows) < _BATCH:
                        break
                await asyncio.sleep(0)

    return _HoldingSlot(stream(), ping=ctx.settings.sse_heartbeat_s, release=release)


class _HoldingSlot(EventSourceResponse):
    """An event stream that gives its client's slot back when the response ends, however it ends
    (also when the client left before the stream's generator ever ran)."""

    def __init__(self, *args: Any, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
