"""A small HTTP/1.1 server for the node's local API: ASGI over h11, on trio, one task per connection.

The local API used to be served by hypercorn. For every request hypercorn
starts one task for the app and another for the keep-alive timer, wraps each
send in cancel scopes, and writes a response's head and body separately (two
writes, two wake-ups of the client). On the API's hot path, one write of
about 0.2 ms of node work, that was about 0.5 ms of CPU per request, more than
half of the whole. Here the app runs in the connection's own task, and the
head goes out in one write with the first body chunk. Parsing and framing are
h11's, the HTTP/1.1 state machine hypercorn itself is built on; this module is
only the loop around it.

What it serves: HTTP/1.1 and 1.0 on a plain socket; keep-alive and pipelined
requests (one at a time, in order); ``Content-Length`` and chunked request
bodies; ``Expect: 100-continue``; streaming responses (the event stream), with
``http.disconnect`` delivered as soon as the client goes. No TLS, HTTP/2,
WebSockets or lifespan events (the node's app needs none; it listens on
127.0.0.1).

Limits, so that an unauthenticated client on 127.0.0.1 holds bounded
resources: at most :data:`MAX_CONNECTIONS` connections are served at once
(more wait in the listen backlog); a request head is at most
:data:`MAX_HEAD_BYTES` (else 431) and must be complete within
:data:`HEAD_TIMEOUT` of the previous response (else the connection is
closed); a response write that the client does not read for
:data:`SEND_TIMEOUT` closes the connection; bytes a client sends while its
response streams are buffered up to :data:`MAX_HEAD_BYTES` only. The body
limit is the app's (the write door's 4 MiB). A malformed request gets 400 (or
the status h11 names) as ``application/problem+json`` and the connection is
closed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import Any
from urllib.parse import unquote

import h11
import orjson
import trio

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
MAX_HEAD_BYTES = 16 * 1024
HEAD_TIMEOUT = 30.0  # seconds from the end of one response (or the accept) to a complete next head
SEND_TIMEOUT = 30.0  # seconds a response write may wait for the client to read
LINGER = 1.0  # seconds an unread request body is drained before close, so the client sees the answer
LINGER_BYTES = 8 * 1024 * 1024
RECV = 64 * 1024

App = Any  # an ASGI 3 application


class _ClientGone(Exception):
    """The client closed the connection, or broke HTTP; the connection ends."""


async def serve_asgi(
    app: App,
    sock: socket.socket,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on the listening ``sock`` (taken over) until cancelled; reports
    ``["http://HOST:PORT"]`` through ``task_status`` once accepting."""
    host, port = sock.getsockname()[:2]
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    limit = trio.Semaphore(MAX_CONNECTIONS)  # released by the connection task, not the acceptor
    server = (host, port)
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    async with listener, trio.open_nursery() as nursery:
        task_status.started([url])
        while True:
            await limit.acquire()
            try:
                stream = await listener.accept()
            except OSError as exc:  # out of file descriptors, say: wait, do not spin
                limit.release()
                log.warning("local api accept failed err=%s", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(_serve_connection, app, stream, server, limit)


async def _serve_connection(
    app: App, stream: trio.SocketStream, server: tuple[str, int], limit: trio.Semaphore
) -> None:
    try:
        await _Connection(app, stream, server).run()
    except Exception:
        log.exception("local api connection failed")
    finally:
        limit.release()
        with trio.CancelScope(shield=True):
            await stream.aclose()


class _Connection:
    def __init__(self, app: App, stream: trio.SocketStream, server: tuple[str, int]) -> None:
        self.app, self.stream, self.server = app, stream, server
        try:
            self.client: tuple[str, int] | None = stream.socket.getpeername()[:2]
        except OSError:
            self.client = None
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)

    async def run(self) -> None:
        while True:
            try:
                with trio.fail_after(HEAD_TIMEOUT):
                    event = await self._next_event()
            except trio.TooSlowError:
                return
            except h11.RemoteProtocolError as exc:
                await self._refuse(exc.error_status_hint, str(exc))
                return
            except _ClientGone:
                return
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed, or a client that spoke out of turn
            if _head_size(event) > MAX_HEAD_BYTES:  # h11 caps only heads that arrive in pieces
                await self._refuse(431, f"the request head is over {MAX_HEAD_BYTES} bytes")
                return
            if not await _Exchange(self, event).run():
                return
            if self.h11.their_state is h11.SEND_BODY:
                # A request without a body that the app never read (most GETs): its end is in the
                # buffer already, and taking it keeps the connection alive; a body left unread
                # (Data, or NEED_DATA) still lingers and closes below.
                with contextlib.suppress(h11.RemoteProtocolError):
                    self.h11.next_event()
            if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                await self._linger()  # the app answered without reading the whole body
                return
            self.h11.start_next_cycle()

    async def _next_event(self) -> Any:
        """The next h11 event, reading from the socket as needed."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.h11.receive_data(await self._recv())

    async def _recv(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(RECV))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise _ClientGone from None

    async def send(self, data: bytes) -> None:
        if not data:
            return
        try:
            with trio.fail_after(SEND_TIMEOUT):
                await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            raise _ClientGone from None

    async def _refuse(self, status: int, detail: str) -> None:
        """A problem+json answer to a request h11 could not parse; the connection then closes."""
        title = "Request header fields too large" if status == 431 else "Bad request"
        body = orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
        headers = [("content-type", "application/problem+json"), ("content-length", str(len(body)))]
        headers.append(("connection", "close"))
        try:
            data = self.h11.send(h11.Response(status_code=status, headers=headers))
            data = (data or b"") + (self.h11.send(h11.Data(data=body)) or b"")
            await self.send(data + (self.h11.send(h11.EndOfMessage()) or b""))
        except (h11.LocalProtocolError, _ClientGone):
            pass

    async def _linger(self) -> None:
        """Close without losing the answer: stop sending, read and drop what the client still sends
        (a body the app did not read) for up to ``LINGER``; closing with unread bytes would reset
        the connection and could discard the answer before the client reads it."""
        try:
            await self.stream.send_eof()
            drained = 0
            with trio.move_on_after(LINGER):
                while drained < LINGER_BYTES:
                    chunk = await self.stream.receive_some(RECV)
                    if not chunk:
                        return
                    drained += len(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def _head_size(request: h11.Request) -> int:
    return len(request.method) + len(request.target) + sum(len(k) + len(v) + 4 for k, v in request.headers)


class _Exchange:
    """One request and its response: the ASGI scope, ``receive`` and ``send`` for the app."""

    def __init__(self, conn: _Connection, request: h11.Request) -> None:
        self.conn, self.h11 = conn, conn.h11
        target = request.target
        path, _, query = target.partition(b"?")
        self.head_only = request.method == b"HEAD"
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode("ascii"),
            "method": request.method.decode("ascii"),
            "scheme": "http",
            "path": unquote(path.decode("latin-1")),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": list(request.headers),
            "client": conn.client,
            "server": conn.server,
            "state": {},
        }
        self.start: dict[str, Any] | None = None
        self.started = self.complete = self.body_done = False

    async def run(self) -> bool:
        """Run the app on this request; False when the connection must close."""
        try:
            await self.conn.app(self.scope, self.receive, self.send)
        except _ClientGone:
            return False
        except Exception:
            log.exception(
                "local api request failed method=%s path=%s", self.scope["method"], self.scope["path"]
            )
            if self.started:
                return False
            self.start = None
            await self._internal_error()
            return False
        if not self.complete:
            if self.started:
                return False  # cannot finish a response the app left open
            await self._internal_error()
            return False
        return True

    async def _internal_error(self) -> None:
        body = orjson.dumps({"type": "about:blank", "title": "Internal error", "status": 500})
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await self.send({"type": "http.response.start", "status": 500, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    async def receive(self) -> dict[str, Any]:
        if self.body_done:
            await self._wait_disconnect()
            return {"type": "http.disconnect"}
        if self.h11.they_are_waiting_for_100_continue:
            await self.conn.send(self.h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        try:
            event = await self.conn._next_event()
        except (h11.RemoteProtocolError, _ClientGone):
            self.body_done = True
            return {"type": "http.disconnect"}
        if isinstance(event, h11.Data):
            return {"type": "http.request", "body": bytes(event.data), "more_body": True}
        self.body_done = True
        if isinstance(event, h11.EndOfMessage):
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def _wait_disconnect(self) -> None:
        """Return once the client has gone: after the response, or when its socket closes while the
        response streams. What it sends meanwhile (a pipelined request) is kept for later, up to a cap."""
        if self.complete:
            return
        while True:
            try:
                data = await self.conn._recv()
            except _ClientGone:
                return
            if not data:
                return
            self.h11.receive_data(data)
            if len(self.h11.trailing_data[0]) > MAX_HEAD_BYTES:
                return

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started or self.start is not None:
                raise RuntimeError("http.response.start sent twice")
            self.start = message
            return
        if kind != "http.response.body":
            return
        if self.complete:
            raise RuntimeError("http.response.body after the response ended")
        data = b""
        if not self.started:
            if self.start is None:
                raise RuntimeError("http.response.body before http.response.start")
            headers = [(k, v) for k, v in self.start.get("headers", ())]
            data = self.h11.send(h11.Response(status_code=self.start["status"], headers=headers)) or b""
            self.started, self.start = True, None
        body = message.get("body", b"")
        if body and not self.head_only:
            data += self.h11.send(h11.Data(data=body)) or b""
        if not message.get("more_body", False):
            data += self.h11.send(h11.EndOfMessage()) or b""
            self.complete = True
        await self.conn.send(data)
