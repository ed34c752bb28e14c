"""A small HTTP/1.1 server for the node's local API: ASGI over httptools (llhttp), on trio, one task per
connection.

The local API used to be served by hypercorn. For every request hypercorn
starts one task for the app and another for the keep-alive timer, wraps each
send in cancel scopes, and writes a response's head and body separately (two
writes, two wake-ups of the client). On the API's hot path, one write of
about 0.2 ms of node work, that was about 0.5 ms of CPU per request, more than
half of the whole. Here the app runs in the connection's own task, and the
head goes out in one write with the first body chunk.

Why httptools: the first version of this module parsed and framed with h11,
the pure-Python state machine hypercorn is built on. Profiled, h11 cost about
52 us of Python per request cycle on the server (parse the request, frame the
response), about a third of a whole local-API write round trip. httptools
wraps llhttp, Node.js's HTTP parser in C (also uvicorn's, and already a
locked dependency), which parses the same request in about 1 us. httptools
only parses requests; the rest is done here by hand: the response's framing
(status line, ``content-length`` / chunked / close-delimited body,
``connection: close``), ``100 Continue``, the head-size limit, keep-alive.
Measured with a no-op app and one blocking keep-alive client posting a small
write (same machine, same runs): about 4,800-7,200 requests a second with h11,
8,600-11,400 with httptools; the server's CPU time per request went from about
140-180 us to 70-90 us.

What it serves: HTTP/1.1 and 1.0 on a plain socket; keep-alive and pipelined
requests (one at a time, in order); ``Content-Length`` and chunked request
bodies; ``Expect: 100-continue``; streaming responses (the event stream), with
``http.disconnect`` delivered as soon as the client goes. No TLS, HTTP/2,
WebSockets or lifespan events (the node's app needs none; it listens on
127.0.0.1).

How a connection reads: the parser's callbacks queue what they parse (an
:class:`_Exchange` for each complete head, ``bytes`` of body, :data:`_END`,
a :class:`_Refusal`) in a deque, and the socket is read only when the deque
is empty. So what is parsed ahead of the app is at most one read
(:data:`RECV`), and a request body is read from the socket only as the app
asks for it (backpressure, as with h11).

Responses: the status line carries the reason phrase of :class:`http.HTTPStatus`;
the app's headers go out as given, plus the framing: a response without
``content-length`` is chunked to an HTTP/1.1 request and close-delimited (with
``connection: close``) to an HTTP/1.0 one; responses to HEAD (headers as for
GET) and 1xx/204/304 responses have no body. ``connection: close`` is added
when the request asked to close, the server will close (an HTTP/1.0 request
that asked to be kept alive gets ``connection: keep-alive``), or the request
body has not all arrived when the response starts (the server cannot know that
the app will read it, so it says it will close, and does). A body that does not
match the response's own ``content-length`` is an error of the app: a 500 if
nothing was sent yet, else the connection closes.

Limits, so that an unauthenticated client on 127.0.0.1 holds bounded
resources: at most :data:`MAX_CONNECTIONS` connections are served at once
(more wait in the listen backlog); a request head is at most
:data:`MAX_HEAD_BYTES` (else 431) and must be complete within
:data:`HEAD_TIMEOUT` of the previous response (else the connection is
closed); a response write that the client does not read for
:data:`SEND_TIMEOUT` closes the connection; bytes a client sends while its
response streams are buffered up to :data:`MAX_HEAD_BYTES` only (past that
the stream sees ``http.disconnect`` and the connection closes). The body
limit is the app's (the write door's 4 MiB). Both timeouts are the deadline of
one cancel scope per connection, set only while the server waits for a head or
a write (a ``fail_after`` per wait cost about 7 us, twice a request); when one
passes, the connection ends, and the app with it if it is running.

The head limit, with httptools: llhttp has none, and httptools keeps a header
line that has not ended in a Python buffer of its own, out of reach. So the
bytes fed to the parser while a head is open are counted, and checked after
each feed: the parser holds at most :data:`MAX_HEAD_BYTES` plus two reads
(the read in which a head begins after another request is not counted, as
where the head starts in it is not known; a complete head is also measured by
its URL and headers, so a whole head in one read is held to the limit too).

A malformed request gets 400 as ``application/problem+json``
(``{"type": "about:blank", "title", "status", "detail"}``) and the connection
closes; so do a header value with CR, LF or NUL, a folded header line, a
repeated ``Content-Length`` (llhttp refuses these even with equal values; h11
took equal ones, and unfolded lines), ``Content-Length`` with
``Transfer-Encoding``, and an HTTP version other than 1.0 or 1.1 (505). An ``Upgrade`` (with ``Connection: upgrade``) or
``CONNECT`` request is answered as a plain request, as RFC 9110 allows a
server to ignore ``Upgrade``, with ``connection: close``, and the connection
then closes, as llhttp parses nothing after it; one that declares a body is
refused with 400 (llhttp does not parse that body). Trailers of a chunked
body are dropped (ASGI has no place for them).
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
from collections import deque
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools
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

_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode("ascii")) for s in HTTPStatus}
_TITLES = {
    400: "Bad request",
    431: "Request header fields too large",
    500: "Internal error",
    505: "HTTP version not supported",
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_END: Any = object()  # queued when a request (its body) has ended
_LENGTH, _CHUNKED, _UNTIL_CLOSE, _NO_BODY = range(4)  # how a response body is framed


class _ClientGone(Exception):
    """The client closed the connection; the connection ends."""


class _Refusal:
    """Queued instead of a request the server will not serve: answered with a problem, then close."""

    __slots__ = ("detail", "status")

    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail


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
    conn = None
    try:
        conn = _Connection(app, stream, server)
        await conn.run()
    except Exception:
        log.exception("local api connection failed")
    finally:
        if conn is not None:
            conn.parser = None  # the parser holds the connection (its callbacks): break the cycle
        limit.release()
        with trio.CancelScope(shield=True):
            await stream.aclose()


class _Connection:
    """One client connection: the socket, the parser and its queue of parsed events, and the loop
    that answers the requests one at a time. Its ``on_*`` methods are the parser's callbacks."""

    def __init__(self, app: App, stream: trio.SocketStream, server: tuple[str, int]) -> None:
        self.app, self.stream, self.server = app, stream, server
        try:
            self.client: tuple[str, int] | None = stream.socket.getpeername()[:2]
        except OSError:
            self.client = None
        self.parser: Any = httptools.HttpRequestParser(self)
        self.events: deque[Any] = deque()  # _Exchange | bytes | _END | _Refusal, in the client's order
        self.pending = b""  # bytes received while a response streamed, fed to the parser later
        self.stopped = False  # the parser takes no more input: a refusal or an upgrade is queued
        self.ended = 0  # requests whose end the parser has seen
        # HEAD_TIMEOUT and SEND_TIMEOUT: one scope for the connection whose deadline is set while the
        # server waits for a head or a write, not a scope per wait (each costs about 7 us).
        self.timer = trio.CancelScope()
        # The head being parsed.
        self._in_head = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0  # bytes of the head the callbacks have seen (URL and finished headers)
        self._head_fed = 0  # bytes fed to the parser while this head was open
        self._skip_count = False  # the head began after another request in the same feed
        self._ended_in_feed = False

    async def run(self) -> None:
        with self.timer:  # its deadline passed: the connection ends (the app, if running, is cancelled)
            await self._serve()

    async def _serve(self) -> None:
        events, timer = self.events, self.timer
        while True:
            if events:  # a pipelined request, parsed already
                item = events.popleft()
            else:
                timer.deadline = trio.current_time() + HEAD_TIMEOUT
                try:
                    item = await self.next_event()
                except _ClientGone:
                    return
                timer.deadline = math.inf
            if type(item) is not _Exchange:
                if type(item) is _Refusal:
                    await self._refuse(item)
                return
            if not await item.run():
                return
            while not item.body_done:  # the app answered without reading its whole body
                if not events:
                    break  # still on the wire: linger and close (the response said so)
                rest = events.popleft()
                if rest is _END:
                    item.body_done = True
                elif type(rest) is not bytes:
                    break  # a refusal: the body was malformed
            if not item.keep_alive or not item.body_done:
                await self._linger()
                return

    async def next_event(self) -> Any:
        """The next parsed event, reading from the socket when none is queued."""
        events = self.events
        while not events:
            if self.stopped:
                raise _ClientGone
            if self.pending:
                data, self.pending = self.pending, b""
            else:
                data = await self._recv()
                if not data:
                    raise _ClientGone
            self._feed(data)
        return events.popleft()

    def _feed(self, data: bytes) -> None:
        self._ended_in_feed = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.stopped = True  # what follows is another protocol; its request says close
        except httptools.HttpParserCallbackError:
            raise  # a bug in a callback below, not the client's
        except httptools.HttpParserError as exc:
            self._refuse_later(400, str(exc) or "malformed request")
        if self._in_head and not self.stopped:
            if self._skip_count:
                self._skip_count = False
            else:
                self._head_fed += len(data)
            if self._head_fed > MAX_HEAD_BYTES or self._head_size > MAX_HEAD_BYTES:
                self._refuse_later(431, f"the request head is over {MAX_HEAD_BYTES} bytes")

    def _refuse_later(self, status: int, detail: str) -> None:
        self.events.append(_Refusal(status, detail))
        self.stopped = True

    # The parser's callbacks. They run inside feed_data, and must not raise.

    def on_message_begin(self) -> None:
        self._in_head = True
        self._url = b""
        self._headers = []
        self._head_size = self._head_fed = 0
        self._skip_count = self._ended_in_feed

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:  # else a trailer of a chunked body: dropped
            self._headers.append((name.lower(), value.rstrip(b" \t")))
            self._head_size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self.stopped:
            return
        parser = self.parser
        if self._head_size > MAX_HEAD_BYTES:
            self._refuse_later(431, f"the request head is over {MAX_HEAD_BYTES} bytes")
            return
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            self._refuse_later(505, f"HTTP/{version} is not served, only HTTP/1.1 and 1.0")
            return
        exchange = _Exchange(
            self, parser.get_method(), version, self._url, self._headers, parser.should_keep_alive()
        )
        if parser.should_upgrade():
            if _declares_body(self._headers):
                self._refuse_later(400, "an Upgrade or CONNECT request with a body is not served")
                return
            exchange.keep_alive = False
        self.events.append(exchange)

    def on_body(self, body: bytes) -> None:
        self.events.append(body)

    def on_message_complete(self) -> None:
        self.events.append(_END)
        self.ended += 1
        self._ended_in_feed = True

    # Socket I/O.

    async def _recv(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(RECV))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise _ClientGone from None

    async def send(self, data: bytes) -> None:
        if not data:
            return
        timer = self.timer
        timer.deadline = trio.current_time() + SEND_TIMEOUT
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise _ClientGone from None
        finally:
            timer.deadline = math.inf

    async def _refuse(self, refusal: _Refusal) -> None:
        """Answer a request that is not served with its problem, then close."""
        headers, body = _problem(refusal.status, refusal.detail)
        status_line = _STATUS_LINES.get(refusal.status) or b"HTTP/1.1 %d \r\n" % refusal.status
        head = b"".join(b"%s: %s\r\n" % header for header in headers)
        with contextlib.suppress(_ClientGone):
            await self.send(status_line + head + b"connection: close\r\n\r\n" + body)
        await self._linger()

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


def _declares_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip(b"0")):
            return True
    return False


def _problem(status: int, detail: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and body of a problem+json answer."""
    title = _TITLES.get(status, "Error")
    body = orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    return [(b"content-type", b"application/problem+json"), (b"content-length", b"%d" % len(body))], body


class _Exchange:
    """One request and its response: the ASGI scope, ``receive`` and ``send`` for the app.

    Made by the parser's callback when a head is complete; the app runs when the connection's loop
    takes it from the queue (after the requests before it)."""

    __slots__ = (
        "body_done",
        "complete",
        "conn",
        "framing",
        "head_only",
        "keep_alive",
        "left",
        "may_continue",
        "refusal",
        "scope",
        "seq",
        "start",
        "started",
    )

    def __init__(
        self,
        conn: _Connection,
        method: bytes,
        version: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
    ) -> None:
        self.conn = conn
        path, _, query = target.partition(b"?")
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version,
            "method": method.decode("ascii"),
            "scheme": "http",
            "path": unquote(path.decode("latin-1")),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": conn.client,
            "server": conn.server,
            "state": {},
        }
        self.keep_alive = keep_alive  # llhttp's reading of the version and Connection header
        self.head_only = method == b"HEAD"
        self.seq = conn.ended  # this request has all arrived once conn.ended passes it
        self.may_continue = version == "1.1"  # may still owe a 100 Continue
        self.start: dict[str, Any] | None = None
        self.started = self.complete = self.body_done = False
        self.framing = _LENGTH
        self.left = 0  # body bytes the response still owes its content-length
        self.refusal: _Refusal | None = None  # the request's body was malformed

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
            await self._answer_instead(_Refusal(500, "the request failed; the node's log has the error"))
            return False
        if not self.complete:  # the app returned without finishing its response
            await self._answer_instead(self.refusal or _Refusal(500, "the app gave no response"))
            return False
        return True

    async def _answer_instead(self, problem: _Refusal) -> None:
        """A problem in place of the app's response, if none of that has been sent."""
        if self.started:
            return  # cannot finish a response the app left open: the connection closes
        self.start, self.keep_alive = None, False
        headers, body = _problem(problem.status, problem.detail)
        with contextlib.suppress(_ClientGone, RuntimeError):
            await self.send({"type": "http.response.start", "status": problem.status, "headers": headers})
            await self.send({"type": "http.response.body", "body": body})

    async def receive(self) -> dict[str, Any]:
        if self.body_done:
            await self._wait_disconnect()
            return {"type": "http.disconnect"}
        conn = self.conn
        events = conn.events
        try:
            if self.may_continue:
                self.may_continue = False
                if not events and not self.started and _expects_continue(self.scope["headers"]):
                    await conn.send(_CONTINUE)  # nothing of the body has come: the client waits for it
            item = events.popleft() if events else await conn.next_event()
        except _ClientGone:
            self.body_done = True
            return {"type": "http.disconnect"}
        if type(item) is bytes:
            if events and events[0] is _END:  # the end is here too: say so now, not in a second call
                events.popleft()
                self.body_done = True
                return {"type": "http.request", "body": item, "more_body": False}
            return {"type": "http.request", "body": item, "more_body": True}
        self.body_done = True
        if item is _END:
            return {"type": "http.request", "body": b"", "more_body": False}
        self.refusal, self.keep_alive = item, False  # a malformed body: the connection closes
        return {"type": "http.disconnect"}

    async def _wait_disconnect(self) -> None:
        """Return once the client has gone: after the response, or when its socket closes while the
        response streams. What it sends meanwhile (a pipelined request) is kept for later, up to a cap."""
        if self.complete:
            return
        conn = self.conn
        while True:
            try:
                data = await conn._recv()
            except _ClientGone:
                return
            if not data:
                return
            if len(conn.pending) + len(data) > MAX_HEAD_BYTES:
                self.keep_alive = False  # not kept: the connection closes after this response
                return
            conn.pending += data

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
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if not self.started:
            if self.start is None:
                raise RuntimeError("http.response.body before http.response.start")
            head = self._head()
            data = head + self._frame(body, more)
            self.started, self.start = True, None
        else:
            data = self._frame(body, more)
        if not more:
            self.complete = True
        await self.conn.send(data)

    def _head(self) -> bytes:
        """The response's status line and headers, and its framing decided (``self.framing``)."""
        start = self.start
        assert start is not None
        status = start["status"]
        lines = [_STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status]
        length = chunked = None
        close = not self.keep_alive or (not self.body_done and self.conn.ended <= self.seq)
        for name, value in start.get("headers", ()):
            lname = name.lower()
            if lname == b"content-length":
                length = value
                continue
            if lname == b"transfer-encoding":
                if value.strip().lower() != b"chunked":
                    raise RuntimeError(f"transfer-encoding {value!r} is not framed here")
                chunked = value
                continue
            if lname == b"connection":
                close = close or b"close" in value.lower()
                continue  # set below
            lines.append(b"%s: %s\r\n" % (name, value))
        http11 = self.scope["http_version"] == "1.1"
        if status < 200 or status == 204 or status == 304:
            self.framing = _NO_BODY
            if length is not None:
                lines.append(b"content-length: %s\r\n" % length)
        elif length is not None and chunked is None:
            self.framing = _NO_BODY if self.head_only else _LENGTH
            self.left = int(length)
            if self.left < 0:
                raise ValueError(f"negative content-length {length!r}")
            lines.append(b"content-length: %s\r\n" % length)
        elif http11:  # no length: chunked (and a HEAD answer says so, as the GET's would)
            self.framing = _NO_BODY if self.head_only else _CHUNKED
            lines.append(b"transfer-encoding: chunked\r\n")
        elif self.head_only:
            self.framing = _NO_BODY
        else:  # HTTP/1.0 cannot take chunks: the body ends when the connection does
            self.framing, close = _UNTIL_CLOSE, True
        if close:
            self.keep_alive = False
            lines.append(b"connection: close\r\n")
        elif not http11:
            lines.append(b"connection: keep-alive\r\n")  # HTTP/1.0 closes unless told otherwise
        lines.append(b"\r\n")
        head = b"".join(lines)
        n = len(lines)  # every line ends in CRLF: any other CR, LF (or a NUL) came from a header
        if head.count(b"\n") != n or head.count(b"\r") != n or b"\0" in head:
            raise ValueError("a response header has a CR, LF or NUL in it")
        return head

    def _frame(self, body: bytes, more: bool) -> bytes:
        """``body`` framed for the wire as ``self.framing`` says."""
        framing = self.framing
        if framing == _LENGTH:
            self.left -= len(body)
            if self.left < 0 or (self.left and not more):
                raise RuntimeError("the response body does not match its content-length")
            return body
        if framing == _CHUNKED:
            data = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            return data if more else data + b"0\r\n\r\n"
        if framing == _UNTIL_CLOSE:
            return body
        return b""  # HEAD, 1xx, 204, 304


def _expects_continue(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"expect" and value.lower() == b"100-continue" for name, value in headers)
