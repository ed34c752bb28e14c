"""The node's local HTTP API on 127.0.0.1: a "my library" view, a write door and an event stream.

Reads are open to local processes; writes need the bearer token the daemon
writes to ``DATA_DIR/api.token`` (mode 0600), so only the node's owner can
publish through it. The CLI uses it to hand writes to a running daemon, so the
entry is announced at once and the daemon stays the only writer of its log.

``POST /v1/local/entries`` takes one write, ``{"kind", "key", "body"}``, and
answers 201 ``{"uri", "hash", "seq"}``; or a JSON **array** of up to
:data:`~node.store.MAX_BATCH_ITEMS` (1,000) writes (a bulk write), answered 201 ``{"items": [{"uri",
"hash", "seq"}, …]}`` in order. A bulk write is all or nothing: if any item is
invalid nothing of it is stored, and the 422 problem lists every bad item as
``errors: [{"index", "detail"}]``. A body over :data:`~node.store.MAX_BODY_BYTES` (4 MiB) is refused
with 413 before it is read (from ``Content-Length``) or as soon as it has
passed the limit (a chunked body); so is an array of more than
``MAX_BATCH_ITEMS``. Concurrent writes are group-committed by the node
(:meth:`node.daemon.Node.publish_many`).

``GET /v1/events`` is a Server-Sent Events stream of every entry the node
stores from then on, ours or replicated, fed by the node's append signal (no
store polling): one ``event: entry`` per entry whose data is ``{"did", "seq",
"hash", "key", "kind", "origin": "local"|"replicated", "received_ns"}``, where
``received_ns`` is the node's ``CLOCK_MONOTONIC`` (``time.monotonic_ns()``) when
the entry was stored — comparable with any process's monotonic clock on the
same machine. At most :data:`MAX_EVENT_CLIENTS` streams at once (then 503); a
client that falls :data:`EVENT_QUEUE` events behind is sent ``event:
overflow`` and dropped, so a slow reader costs bounded memory.

``GET /`` is My Library, the creator's page (:mod:`node.pages`: the static files of
``node/web/``, the one-time link ``POST /v1/local/open`` (bearer token) that opens a
page session, and the page's own writes under ``/v1/local/assets`` and
``/v1/local/media``, which take the session cookie and a CSRF token instead of the
bearer token). ``GET /v1/status`` says what the page shows of the node: ``peers``,
``entries``, our ``head`` seq, ``last_sync_ms`` and ``indexer_url``.

Errors are ``application/problem+json`` (RFC 9457) with the ``request_id`` that
every response also carries as ``X-Request-ID``. The reads and the event stream
are FastAPI routes (OpenAPI at ``/docs``); the write is served in front of
FastAPI by :class:`_WriteDoor`, which this docstring documents.
"""

from __future__ import annotations

import hmac
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import trio
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from protocol import Entry, ProtocolError, parse_did

from .daemon import Node
from .errors import ListenError, NodeError, NotFoundError, WritesRejected
from .http import serve_asgi
from .logctx import correlation_id, request_id
from .pages import PageProblem, Pages, problem_response
from .store import MAX_BATCH_ITEMS, MAX_BODY_BYTES, LocalWrite

log = logging.getLogger(__name__)

MAX_EVENT_CLIENTS = 16  # GET /v1/events streams open at once
EVENT_QUEUE = 50_000  # events one stream may fall behind before it is dropped
EVENT_KEEPALIVE = 15.0  # seconds between comment lines on an idle stream
_WRITE_FIELDS = frozenset({"kind", "key", "body"})


class _Problem(Exception):
    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra

    def document(self, scope: dict[str, Any]) -> dict[str, Any]:
        rid = scope.get("state", {}).get("request_id", "")
        doc = {"type": "about:blank", "title": self.title, "status": self.status, "detail": self.detail}
        return {**doc, "request_id": rid, **self.extra}


def _problem(status: int, title: str, detail: str, request: Request) -> Response:
    doc = _Problem(status, title, detail).document(request.scope)
    return Response(orjson.dumps(doc), status_code=status, media_type="application/problem+json")


class _RequestIds:
    """Pure ASGI middleware: a request id for every request (:func:`node.logctx.request_id`), set as
    the log correlation id, returned as ``X-Request-ID``, and one log line per response.

    Written out rather than with ``@app.middleware("http")``, whose extra task and
    streams cost about as much as the write itself."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope["headers"])
        scope.setdefault("state", {})["request_id"] = rid
        correlation_id.set(rid)
        header = (b"x-request-id", rid.encode("latin-1"))

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
                log.info(
                    "local api request_id=%s %s %s -> %d",
                    rid,
                    scope["method"],
                    scope["path"],
                    message["status"],
                )
            await send(message)

        await self.app(scope, receive, send_with_id)


class _EventHub:
    """Fans stored entries out to the open ``/v1/events`` streams, each through a bounded queue."""

    def __init__(self, node: Node) -> None:
        self._me = node.keys.author.public
        self._clients: dict[int, trio.MemorySendChannel[list[bytes]]] = {}
        self._queued: dict[int, int] = {}
        self._next = 0
        node.append_listeners.append(self._on_append)

    def _on_append(self, entries: list[Entry]) -> None:
        if not self._clients:
            return
        now = time.monotonic_ns()
        chunk = [self._event(e, now) for e in entries]
        for cid, send in list(self._clients.items()):
            if self._queued[cid] + len(chunk) > EVENT_QUEUE:
                self._drop(cid, send)
                continue
            try:
                send.send_nowait(chunk)
                self._queued[cid] += len(chunk)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self._drop(cid, send)

    def _drop(self, cid: int, send: trio.MemorySendChannel[list[bytes]]) -> None:
        del self._clients[cid]
        del self._queued[cid]
        send.close()  # the stream sends ``overflow`` and ends

    def _event(self, e: Entry, now: int) -> bytes:
        data = {
            "did": e.author.did,
            "seq": e.seq,
            "hash": e.hash.cid,
            "key": e.key,
            "kind": e.kind,
            "origin": "local" if e.author == self._me else "replicated",
            "received_ns": now,
        }
        return b"event: entry\ndata: " + orjson.dumps(data) + b"\n\n"

    def open(self) -> tuple[int, trio.MemoryReceiveChannel[list[bytes]]]:
        if len(self._clients) >= MAX_EVENT_CLIENTS:
            raise _Problem(503, "Too many streams", f"at most {MAX_EVENT_CLIENTS} event streams at once")
        send, receive = trio.open_memory_channel[list[bytes]](EVENT_QUEUE)
        cid, self._next = self._next, self._next + 1
        self._clients[cid] = send
        self._queued[cid] = 0
        return cid, receive

    def close(self, cid: int) -> None:
        send = self._clients.pop(cid, None)
        self._queued.pop(cid, None)
        if send is not None:
            send.close()

    async def stream(self, cid: int, receive: trio.MemoryReceiveChannel[list[bytes]]) -> AsyncIterator[bytes]:
        """The stream's body: whatever has queued since the last send goes out as one chunk."""
        try:
            yield b": stream open\n\n"
            while True:
                with trio.move_on_after(EVENT_KEEPALIVE) as idle:
                    try:
                        chunks = [await receive.receive()]
                    except trio.EndOfChannel:
                        yield b"event: overflow\ndata: {}\n\n"
                        return
                if idle.cancelled_caught:
                    yield b": keep-alive\n\n"
                    continue
                while True:
                    try:
                        chunks.append(receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                if cid in self._queued:
                    self._queued[cid] -= sum(len(c) for c in chunks)
                yield b"".join(b"".join(c) for c in chunks)
        finally:
            self.close(cid)


def _parse_writes(raw: bytes) -> tuple[list[LocalWrite], bool]:
    """The writes of a request body and whether it was a bulk (array) request; raises :class:`_Problem`."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Problem(400, "Bad request", f"the body is not JSON: {exc}") from None
    bulk = type(doc) is list
    items = doc if bulk else [doc]
    if bulk and not items:
        raise _Problem(422, "Invalid entries", "a bulk write needs at least one item")
    if len(items) > MAX_BATCH_ITEMS:
        raise _Problem(413, "Too many items", f"at most {MAX_BATCH_ITEMS} writes in one request")
    writes: list[LocalWrite] = []
    bad: list[tuple[int, str]] = []
    for i, item in enumerate(items):
        why = _shape_error(item)
        if why is None:
            writes.append(LocalWrite(item["kind"], item["key"], item["body"]))
        else:
            bad.append((i, why))
    if bad:
        if not bulk:
            raise _Problem(422, "Invalid entry", bad[0][1])
        raise _bulk_problem(WritesRejected(bad))
    return writes, bulk


def _shape_error(item: Any) -> str | None:
    if type(item) is not dict:
        return "a write is an object {kind, key, body}"
    if item.keys() != _WRITE_FIELDS:
        missing = sorted(_WRITE_FIELDS - item.keys())
        return (
            f"missing field {missing[0]!r}"
            if missing
            else f"unknown field {sorted(item.keys() - _WRITE_FIELDS)[0]!r}"
        )
    if type(item["kind"]) is not str or type(item["key"]) is not str:
        return "kind and key are text"
    if type(item["body"]) is not dict:
        return "body is an object"
    return None


def _bulk_problem(exc: WritesRejected) -> _Problem:
    return _Problem(
        422,
        "Invalid entries",
        f"{len(exc.errors)} of the writes are invalid; nothing was stored (first: {exc})",
        errors=[{"index": i, "detail": why} for i, why in exc.errors],
    )


async def _read_body(receive: Any, length: bytes, limit: int) -> bytes:
    """The request body, refused with 413 once it is known to be over ``limit`` bytes (before reading
    it when ``Content-Length`` says so)."""
    if length:
        if not length.isdigit():
            raise _Problem(400, "Bad request", "Content-Length is not a number")
        if int(length) > limit:
            raise _Problem(413, "Body too large", f"a write request is at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Problem(400, "Bad request", "the client went away before the body was read")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Problem(413, "Body too large", f"a write request is at most {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _written(e: Entry) -> dict[str, Any]:
    return {"uri": e.uri.text, "hash": e.hash.cid, "seq": e.seq}


class _WriteDoor:
    """``POST /v1/local/entries`` served straight off ASGI; every other request goes on to the FastAPI app.

    The write is the API's hot path: through FastAPI's router, its exception
    and exit-stack middleware (each a task group) and the response classes it
    cost about as much CPU as signing and storing the entry. Here it is the
    token check (before a byte of the body is read), the bounded body read, one
    parse and the node's group commit, with the same problem+json errors.
    """

    def __init__(self, app: Any, node: Node, token: str) -> None:
        self.app, self.node, self._token = app, node, token.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/local/entries":
            await self.app(scope, receive, send)
            return
        try:
            if scope["method"] != "POST":
                raise _Problem(405, "Method not allowed", "POST a write or an array of writes")
            status, doc = 201, await self._write(scope, receive)
            ctype = b"application/json"
        except _Problem as p:
            status, doc, ctype = p.status, p.document(scope), b"application/problem+json"
        except WritesRejected as exc:
            p = _bulk_problem(exc)
            status, doc, ctype = p.status, p.document(scope), b"application/problem+json"
        except ProtocolError as exc:
            status, doc, ctype = (
                422,
                _Problem(422, "Invalid entry", str(exc)).document(scope),
                b"application/problem+json",
            )
        except NodeError as exc:
            status, doc, ctype = (
                409,
                _Problem(409, "Refused", str(exc)).document(scope),
                b"application/problem+json",
            )
        body = orjson.dumps(doc)
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _write(self, scope: dict[str, Any], receive: Any) -> Any:
        auth = length = b""
        for k, v in scope["headers"]:
            if k == b"authorization":
                auth = v
            elif k == b"content-length":
                length = v
        scheme, _, given = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given, self._token):
            raise _Problem(401, "Unauthorized", "a valid bearer token from api.token is required")
        writes, bulk = _parse_writes(await _read_body(receive, length, MAX_BODY_BYTES))
        # The response is sent next, which yields: no extra checkpoint in publishing (caller_yields).
        if bulk:
            return {"items": [_written(e) for e in await self.node.publish_many(writes, caller_yields=True)]}
        w = writes[0]
        return _written(await self.node.publish(kind=w.kind, key=w.key, body=w.body, caller_yields=True))


def create_local_app(node: Node, token: str) -> Any:
    """The local API as an ASGI app: request ids around the write door around the FastAPI app."""
    app = FastAPI(title="Empressa node (local)", docs_url="/docs", openapi_url="/openapi.json")
    hub = _EventHub(node)
    pages = Pages(node, token)
    me = node.keys.author.public
    # Wall clock (unix ms) of the last entry stored from a peer.
    received: dict[str, int | None] = {"ms": None}

    def on_append(entries: list[Entry]) -> None:
        if any(e.author != me for e in entries):
            received["ms"] = time.time_ns() // 1_000_000

    node.append_listeners.append(on_append)

    @app.exception_handler(PageProblem)
    async def page_problem(request: Request, exc: PageProblem) -> Response:
        return problem_response(exc, request.scope.get("state", {}).get("request_id", ""))

    @app.exception_handler(_Problem)
    async def problem(request: Request, exc: _Problem) -> Response:
        doc = exc.document(request.scope)
        return Response(orjson.dumps(doc), status_code=exc.status, media_type="application/problem+json")

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> Response:
        return _problem(404, "Not found", str(exc), request)

    @app.exception_handler(NodeError)
    async def node_error(request: Request, exc: NodeError) -> Response:
        return _problem(409, "Refused", str(exc), request)

    @app.get("/v1/status")
    async def status() -> dict[str, Any]:
        entries = await trio.to_thread.run_sync(node.store.count_entries)
        head = await trio.to_thread.run_sync(node.store.head, me)
        stats = vars(node.stats)
        return {
            "did": node.did,
            "peer_id": node.peer_id,
            "multiaddrs": node.addrs(),
            "peers": node.p2p.peers(),
            "entries": entries,
            "head": head.seq if head is not None else 0,
            # The last completed heads comparison with a peer (a sync round), else the last entry a peer sent.
            "last_sync_ms": stats.get("last_sync_ms") or received["ms"],
            "last_received_ms": received["ms"],
            "indexer_url": node.settings.indexer_url,
            "stats": stats,
        }

    trusted = frozenset(parse_did(d) for d in node.settings.trusted_bridges)

    @app.get("/v1/library")
    async def library(all: bool = False, deleted: bool = False) -> dict[str, Any]:
        items = await trio.to_thread.run_sync(
            lambda: node.store.library(local_only=not all, include_deleted=deleted, trusted=trusted)
        )
        return {"items": items}

    @app.get("/v1/events", response_class=StreamingResponse)
    async def events() -> StreamingResponse:
        """Server-Sent Events: every entry stored from now on (see the module docstring)."""
        cid, receive = hub.open()
        return StreamingResponse(
            hub.stream(cid, receive),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    app.include_router(pages.router())
    return _RequestIds(_WriteDoor(app, node, token))


def bind_local_api(host: str, port: int) -> socket.socket:
    """A listening socket for the local API (port 0: any free one).

    Bound before the daemon starts anything, so a port in use (or a host that is
    not ours) is a one-line error at start instead of an exception deep in the
    server's nursery.

    Raises:
        ListenError: the address cannot be bound.
    """
    try:
        family, type_, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, type_, proto)
    except OSError as exc:
        raise ListenError(f"cannot serve the local API on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot serve the local API on {host}:{port}: {exc.strerror or exc}") from None
    return sock


async def serve_local_api(
    node: Node,
    *,
    sock: socket.socket,
    token: str,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the local API on ``sock`` (from :func:`bind_local_api`, which it takes over); reports the
    bound base URLs through ``task_status``."""
    await serve_asgi(create_local_app(node, token), sock, task_status=task_status)
