"""The sync protocol ``/empressa/sync/1.x``: the part of replication that never loses.

The server answers ``heads`` with a page of (author, seq, hash) and ``range``
with the entries, many to a frame, then an end frame. On ``/empressa/sync/1.0.0``
that is one request per stream; on ``/empressa/sync/1.1.0`` it waits for the next
request until the client closes the stream or stays idle past ``idle_timeout``
(see :mod:`protocol.wire`). The client side validates
everything it gets before the caller sees it. Both sides bound every request:
by count (``wire.MAX_HEADS_PAGE``, ``wire.MAX_RANGE``), by frame size
(``wire.MAX_FRAME``) and by time (the caller's deadline, ``trio.fail_after``).

:class:`SyncClient` keeps a few idle streams per peer and reuses them; a
stream negotiated as 1.0.0 (an older peer) is used once; one that the server
closed before answering (it timed out the idle stream) is dropped and the
request sent again on a new stream, once.

This module speaks to streams through the small :class:`Stream` interface, so
it runs over libp2p (:class:`node.net.host.FrameStream`) or anything else.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import trio

from protocol import Entry, ProtocolError, now_ms, parse_and_verify, wire

from .errors import BadEntryError, PeerBusy, PeerClosed, PeerError
from .replica import Replica

log = logging.getLogger(__name__)


class Stream(Protocol):
    peer: str

    async def send(self, *frames: wire.Frame) -> None: ...

    async def recv(self) -> wire.Frame: ...


class ClientStream(Stream, Protocol):
    """A stream the client may reuse, and must close or reset."""

    @property
    def reusable(self) -> bool: ...

    async def close(self) -> None: ...

    async def reset(self) -> None: ...


UNAVAILABLE = "unavailable"


class SyncServer:
    """Answers sync requests from a :class:`~node.replica.Replica`.

    Args:
        store: the replica to serve.
        request_timeout: seconds a request may take, and the longest wait for the first request.
        idle_timeout: seconds a stream may stay idle after an answer before the server closes it
            (default: ``request_timeout``).
        unavailable_errors: store errors answered with an ``unavailable`` error
            frame (the client backs off without blaming us) instead of a reset.
    """

    def __init__(
        self,
        store: Replica,
        *,
        request_timeout: float = 10.0,
        idle_timeout: float | None = None,
        unavailable_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self._store = store
        self._timeout = request_timeout
        self._idle = request_timeout if idle_timeout is None else idle_timeout
        self._unavailable = unavailable_errors

    async def serve(self, stream: Stream, *, many: bool = True) -> None:
        """Answer ``stream``'s requests: one (``/empressa/sync/1.0.0``, then the caller closes the
        stream) or, with ``many``, until the client is done (``/empressa/sync/1.1.0``)."""
        try:
            await self._serve(stream, many=many)
        except self._unavailable as exc:
            log.info("sync request not served: store unavailable peer=%s err=%s", stream.peer, exc)
            await stream.send(wire.ErrorFrame(UNAVAILABLE, "store temporarily unavailable; try again later"))

    async def _serve(self, stream: Stream, *, many: bool) -> None:
        """Answer requests until the client closes the stream, idles, or sends a non-request
        (only the first one unless ``many``)."""
        served = 0
        while True:
            wait = self._idle if served else self._timeout
            with trio.move_on_after(wait) as scope:
                try:
                    req = await stream.recv()
                except PeerClosed:
                    if served:
                        return  # the client is done with the stream
                    raise
            if scope.cancelled_caught:
                if served:
                    return  # idle: close it; the client opens a new one when it needs one
                raise PeerError(f"peer {stream.peer} sent no request within {self._timeout:.0f} s")
            if not await self._answer(stream, req) or not many:
                return
            served += 1

    async def _answer(self, stream: Stream, req: wire.Frame) -> bool:
        """Answer one request within the deadline; False after a refusal (the stream then ends)."""
        with trio.fail_after(self._timeout):
            if isinstance(req, wire.HeadsRequest):
                limit = min(req.limit, wire.MAX_HEADS_PAGE)
                heads = await trio.to_thread.run_sync(lambda: self._store.heads(after=req.after, limit=limit))
                nxt = heads[-1][0] if len(heads) == limit else None
                await stream.send(wire.HeadsPage(heads, nxt))
                return True
            if isinstance(req, wire.RangeRequest):
                end = min(req.end, req.start + wire.MAX_RANGE - 1)
                raws = await trio.to_thread.run_sync(self._store.range_raw, req.author, req.start, end)
                await stream.send(*wire.pack_entries(raws), wire.EndFrame())
                return True
            await stream.send(wire.ErrorFrame("bad_request", f"unexpected {type(req).__name__} as a request"))
            return False


T = TypeVar("T")

MAX_IDLE_STREAMS = 4  # idle streams kept per peer (one per concurrent puller)


class SyncClient:
    """Sync requests to peers over streams kept open and reused, one request at a time each.

    Args:
        open_stream: ``await open_stream(peer)`` opens a new sync stream to ``peer``.
    """

    def __init__(self, open_stream: Callable[[str], Awaitable[ClientStream]]) -> None:
        self._open = open_stream
        self._idle: dict[str, list[ClientStream]] = {}
        self.opened = 0  # streams opened so far (for tests and benchmarks)
        self.requests = 0  # requests made so far

    async def request(self, peer: str, call: Callable[[ClientStream], Awaitable[T]]) -> T:
        """``await call(stream)`` on an idle stream to ``peer`` (or a new one), then keep the stream.

        A reused stream that ends before the answer (:class:`PeerClosed`) is
        dropped and the request made again on a new stream; any other error
        resets the stream and propagates (as does a closed new stream).
        """
        self.requests += 1
        while True:
            stream, reused = await self._take(peer), True
            if stream is None:
                stream, reused = await self._open(peer), False
                self.opened += 1
            try:
                result = await call(stream)
            except PeerClosed:
                await stream.close()
                if reused:
                    continue
                raise
            except BaseException:
                await stream.reset()
                raise
            await self._keep(peer, stream)
            return result

    async def _take(self, peer: str) -> ClientStream | None:
        idle = self._idle.get(peer)
        while idle:
            stream = idle.pop()
            if stream.reusable:
                return stream
            await stream.close()  # the server closed it (idle, or one request per stream)
        return None

    async def _keep(self, peer: str, stream: ClientStream) -> None:
        idle = self._idle.setdefault(peer, [])
        if stream.reusable and len(idle) < MAX_IDLE_STREAMS:
            idle.append(stream)
        else:
            # Over the cap, or the server has closed its side already (an old server).
            await stream.close()

    async def forget(self, peer: str) -> None:
        """Close every idle stream to ``peer`` (it disconnected, or was cut off)."""
        for stream in self._idle.pop(peer, []):
            await stream.close()


async def fetch_heads_page(
    stream: Stream, *, after: bytes | None, limit: int = wire.MAX_HEADS_PAGE
) -> wire.HeadsPage:
    await stream.send(wire.HeadsRequest(after, limit))
    resp = await stream.recv()
    if isinstance(resp, wire.ErrorFrame):
        if resp.code == UNAVAILABLE:
            raise PeerBusy(f"peer {stream.peer} cannot serve heads right now: {resp.message}")
        raise PeerError(f"peer {stream.peer} refused heads: {resp.code}: {resp.message}")
    if not isinstance(resp, wire.HeadsPage):
        raise PeerError(f"peer {stream.peer} answered heads with {type(resp).__name__}")
    if len(resp.heads) > limit:
        raise PeerError(f"peer {stream.peer} sent {len(resp.heads)} heads for a page of {limit}")
    return resp


async def fetch_range(stream: Stream, *, author: bytes, start: int, end: int) -> list[bytes]:
    """Raw entries ``start..end`` of ``author`` from the peer (possibly fewer: the peer's cap)."""
    await stream.send(wire.RangeRequest(author, start, end))
    want = min(end, start + wire.MAX_RANGE - 1) - start + 1
    out: list[bytes] = []
    while True:
        frame = await stream.recv()
        if isinstance(frame, wire.EntriesFrame):
            out.extend(frame.entries)
            if len(out) > want:
                raise PeerError(f"peer {stream.peer} sent {len(out)} entries for a range of {want}")
        elif isinstance(frame, wire.EndFrame):
            return out
        elif isinstance(frame, wire.ErrorFrame):
            if frame.code == UNAVAILABLE:
                raise PeerBusy(f"peer {stream.peer} cannot serve a range right now: {frame.message}")
            raise PeerError(f"peer {stream.peer} refused range: {frame.code}: {frame.message}")
        else:
            raise PeerError(f"peer {stream.peer} answered range with {type(frame).__name__}")


def verify_range(raws: list[bytes], *, author: bytes, start: int, max_skew_ms: int) -> list[Entry]:
    """Verify a range response: every entry valid, of ``author``, consecutive from ``start``.

    Raises:
        BadEntryError: the first entry that fails verification (with its bytes and error).
        PeerError: an entry out of place; either way the whole response is discarded.
    """
    clock = now_ms()
    out: list[Entry] = []
    for i, raw in enumerate(raws):
        try:
            e = parse_and_verify(raw, now_ms=clock, max_skew_ms=max_skew_ms)
        except ProtocolError as exc:
            raise BadEntryError(f"range entry {start + i} is invalid: {exc}", raw, exc) from None
        if e.author.raw != author or e.seq != start + i:
            raise PeerError(f"range entry {start + i} is out of place (author or seq differ)")
        out.append(e)
    return out
