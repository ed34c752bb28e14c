"""The local API's HTTP/1.1 server (node/http.py), on a real socket, spoken to byte by byte.

A small ASGI app stands in for the node's (the node's own routes are tested
through this server in test_api_writes.py and the end-to-end tests); the
client is a raw socket, so framing, keep-alive, pipelining, limits and
closes are seen exactly as a client sees them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from node import http
from node.api import bind_local_api


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/echo`` answers the body it read; ``/refuse`` answers 401 unread; ``/boom`` raises;
    ``/stream`` streams until the client goes, then records that it saw the disconnect;
    ``/chunks`` streams three pieces with no length; ``/watch`` streams two pieces 0.3 s apart
    while it listens for a disconnect, as Starlette's streaming responses do; ``/nocontent``
    answers 204; ``/flood`` streams until stopped; ``/short`` and ``/split`` are apps that break framing (a body short of its
    content-length, a header value with CRLF)."""
    path = scope["path"]
    if path == "/boom":
        raise RuntimeError("the app failed")
    if path == "/chunks":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
        for piece in (b"hello", b"", b" world"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"!"})
        return
    if path == "/watch":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        async with trio.open_nursery() as nursery:

            async def listen() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                DISCONNECTS.append(scope["path"])

            nursery.start_soon(listen)
            await trio.sleep(0.3)
            await send({"type": "http.response.body", "body": b"two"})
            nursery.cancel_scope.cancel()
        return
    if path == "/flood":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"f" * 65536, "more_body": True})
        finally:
            DISCONNECTS.append(path)
    if path == "/nocontent":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if path in ("/short", "/split"):
        header = (b"content-length", b"10") if path == "/short" else (b"x-a", b"b\r\nx-injected: 1")
        await send({"type": "http.response.start", "status": 200, "headers": [header]})
        await send({"type": "http.response.body", "body": b"abc"})
        return
    if path == "/refuse":
        await send({"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"no"})
        return
    if path == "/stream":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        DISCONNECTS.append(scope["path"])
        return
    body = b""
    while True:
        m = await receive()
        if m["type"] == "http.disconnect":
            return  # as Starlette does (ClientDisconnect): no answer
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    out = json.dumps(
        {
            "method": scope["method"],
            "path": path,
            "query": scope["query_string"].decode(),
            "body": body.decode(),
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})


DISCONNECTS: list[str] = []


@asynccontextmanager
async def server(app: Any = echo_app) -> AsyncIterator[tuple[str, int]]:
    sock = bind_local_api("127.0.0.1", 0)
    addr = sock.getsockname()[:2]
    async with trio.open_nursery() as nursery:
        await nursery.start(http.serve_asgi, app, sock)
        yield addr
        nursery.cancel_scope.cancel()


async def connect(addr: tuple[str, int]) -> trio.SocketStream:
    return await trio.open_tcp_stream(*addr)


async def read_response(stream: trio.SocketStream, buf: bytearray) -> tuple[bytes, dict[str, str], bytes]:
    """One response (status line, headers, Content-Length body) from ``stream``; leftovers stay in ``buf``."""
    while b"\r\n\r\n" not in buf:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError(bytes(buf))
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {k.decode().lower(): v.decode().strip() for k, _, v in (line.partition(b":") for line in lines)}
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError(rest)
        rest += chunk
    buf[:] = rest[n:]
    return status, headers, rest[:n]


async def closed(stream: trio.SocketStream) -> bool:
    with trio.move_on_after(5):
        try:
            return await stream.receive_some(65536) == b""
        except trio.BrokenResourceError:
            return True
    return False


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        for i in range(3):
            await s.send_all(post(f"/echo?i={i}", f"body {i}".encode()))
            status, _headers, body = await read_response(s, buf)
            assert status == b"HTTP/1.1 200 OK"
            assert json.loads(body) == {
                "method": "POST",
                "path": "/echo",
                "query": f"i={i}",
                "body": f"body {i}",
            }
        await s.aclose()


async def test_a_get_the_app_never_reads_keeps_the_connection() -> None:
    """Routes that answer without calling ``receive`` (every FastAPI GET) leave the request's end
    unread; the connection must still serve the next request."""
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        for _ in range(3):
            await s.send_all(b"GET /refuse HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _headers, body = await read_response(s, buf)
            assert status == b"HTTP/1.1 401 Unauthorized" and body == b"no"
        await s.send_all(post("/echo", b"after"))
        assert json.loads((await read_response(s, buf))[2])["body"] == "after"
        await s.aclose()


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(
            post("/echo", b"one") + post("/echo", b"two") + b"GET /echo?x HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        bodies = [json.loads((await read_response(s, buf))[2]) for _ in range(3)]
        assert [b["body"] for b in bodies] == ["one", "two", ""]
        assert bodies[2]["method"] == "GET" and bodies[2]["query"] == "x"
        await s.aclose()


async def test_a_chunked_body_is_read_whole() -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        req = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        await s.send_all(req)
        _, _, body = await read_response(s, buf)
        assert json.loads(body)["body"] == "hello world"
        await s.aclose()


async def test_expect_100_continue_gets_its_interim_answer() -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        await s.send_all(head)
        status, _, _ = await read_response(s, buf)
        assert status.startswith(b"HTTP/1.1 100")
        await s.send_all(b"body")
        status, _, body = await read_response(s, buf)
        assert status == b"HTTP/1.1 200 OK" and json.loads(body)["body"] == "body"
        await s.aclose()


async def test_a_malformed_request_gets_a_problem_and_a_close() -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(b"NOT HTTP AT ALL\r\n\r\n")
        status, headers, body = await read_response(s, buf)
        assert status.startswith(b"HTTP/1.1 400")
        assert headers["content-type"] == "application/problem+json" and json.loads(body)["status"] == 400
        assert await closed(s)


async def test_an_oversize_head_is_refused_with_431(monkeypatch: pytest.MonkeyPatch) -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(
            b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (http.MAX_HEAD_BYTES + 10) + b"\r\n\r\n"
        )
        status, _, body = await read_response(s, buf)
        assert status.startswith(b"HTTP/1.1 431") and json.loads(body)["status"] == 431
        assert await closed(s)


async def test_an_answer_given_before_the_body_is_read_reaches_the_client() -> None:
    """401 before a byte of a 2 MiB body is read: the client still gets the 401 whole (no reset),
    then the connection closes, since the unread body cannot be skipped safely."""
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        body = b"x" * (2 * 1024 * 1024)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(s.send_all, post("/refuse", body))
            status, _, answer = await read_response(s, buf)
            assert status == b"HTTP/1.1 401 Unauthorized" and answer == b"no"
            assert await closed(s)
            nursery.cancel_scope.cancel()


async def test_a_streaming_response_sees_the_client_go() -> None:
    DISCONNECTS.clear()
    async with server() as addr:
        s = await connect(addr)
        await s.send_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while b"first" not in got:
            got += await s.receive_some(65536)
        assert b"transfer-encoding: chunked" in got.lower()
        await s.aclose()
        with trio.fail_after(10):
            while not DISCONNECTS:
                await trio.sleep(0.01)
        assert DISCONNECTS == ["/stream"]


async def test_an_app_error_is_a_500_and_the_server_goes_on() -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = await read_response(s, buf)
        assert status.startswith(b"HTTP/1.1 500") and headers["content-type"] == "application/problem+json"
        s2, buf2 = await connect(addr), bytearray()
        await s2.send_all(post("/echo", b"still here"))
        assert json.loads((await read_response(s2, buf2))[2])["body"] == "still here"
        await s.aclose()
        await s2.aclose()


async def test_head_requests_get_headers_only() -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(b"HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n" + post("/echo", b"after"))
        head = b""
        while b"\r\n\r\n" not in head:
            head += await s.receive_some(65536)
        first, _, rest = head.partition(b"\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 200") and b"content-length:" in first.lower()
        buf += rest  # the HEAD answer has no body: what follows is the next response
        assert json.loads((await read_response(s, buf))[2])["body"] == "after"
        await s.aclose()


async def test_connections_past_the_cap_wait_for_a_free_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "MAX_CONNECTIONS", 2)
    async with server() as addr:
        held = [await connect(addr) for _ in range(2)]
        for s in held:  # both are being served
            buf = bytearray()
            await s.send_all(post("/echo", b"held"))
            await read_response(s, buf)
        third, buf3 = await connect(addr), bytearray()  # accepted by the kernel, not yet served
        await third.send_all(post("/echo", b"third"))
        with trio.move_on_after(0.5):
            await read_response(third, buf3)
            pytest.fail("a third connection was served while two held every slot")
        await held[0].aclose()
        with trio.fail_after(10):
            assert json.loads((await read_response(third, buf3))[2])["body"] == "third"
        await held[1].aclose()
        await third.aclose()


async def test_an_idle_connection_is_closed_after_the_head_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "HEAD_TIMEOUT", 0.3)
    async with server() as addr:
        s = await connect(addr)
        await s.send_all(b"GET /echo HTTP/1.1\r\n")  # a head that never completes
        assert await closed(s)


def test_the_served_url_names_the_bound_address() -> None:
    sock = bind_local_api("127.0.0.1", 0)
    port = sock.getsockname()[1]

    async def main() -> list[str]:
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(http.serve_asgi, echo_app, sock)
            nursery.cancel_scope.cancel()
        return urls

    assert trio.run(main) == [f"http://127.0.0.1:{port}"]


async def read_until(stream: trio.SocketStream, buf: bytearray, marker: bytes) -> bytes:
    """Everything up to and including ``marker``; what follows stays in ``buf``."""
    while marker not in buf:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError(bytes(buf))
        buf += chunk
    got, _, rest = bytes(buf).partition(marker)
    buf[:] = rest
    return got + marker


async def read_to_eof(stream: trio.SocketStream, buf: bytearray) -> bytes:
    while chunk := await stream.receive_some(65536):
        buf += chunk
    got = bytes(buf)
    buf.clear()
    return got


async def test_a_head_over_the_limit_in_small_pieces_is_refused_before_it_ends() -> None:
    """A header line that never ends, sent a KiB at a time: httptools buffers it out of sight, so
    the server counts what it fed and refuses once that passes the limit."""
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(http.MAX_HEAD_BYTES // 1024 + 2):
            await s.send_all(b"a" * 1024)
            await trio.sleep(0.005)  # one read each
        with trio.fail_after(5):  # well before HEAD_TIMEOUT
            status, headers, body = await read_response(s, buf)
        assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body) == {
            "type": "about:blank",
            "title": "Request header fields too large",
            "status": 431,
            "detail": f"the request head is over {http.MAX_HEAD_BYTES} bytes",
        }
        assert headers["connection"] == "close"
        assert await closed(s)


async def test_a_head_after_a_large_body_in_the_same_read_is_served() -> None:
    """The read in which a head begins after another request's body does not count against the
    head: a large body followed by a normal head in the same read is no 431."""
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        big = b"x" * (http.MAX_HEAD_BYTES * 2)
        await s.send_all(post("/echo", big) + b"GET /echo?next HTTP/1.1\r\nHost: x\r\n")
        assert json.loads((await read_response(s, buf))[2])["body"] == big.decode()
        await trio.sleep(0.05)
        await s.send_all(b"X-Pad: " + b"p" * 1000 + b"\r\n\r\n")
        status, _, body = await read_response(s, buf)
        assert status == b"HTTP/1.1 200 OK" and json.loads(body)["query"] == "next"
        await s.aclose()


async def test_a_response_without_length_is_chunked_to_http_1_1() -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(b"GET /chunks HTTP/1.1\r\nHost: x\r\n\r\n")
        got = await read_until(s, buf, b"0\r\n\r\n")
        assert got == (
            b"HTTP/1.1 200 OK\r\nx-app: 1\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n1\r\n!\r\n0\r\n\r\n"
        )
        await s.send_all(post("/echo", b"again"))  # and the connection is kept
        assert json.loads((await read_response(s, buf))[2])["body"] == "again"
        await s.aclose()


async def test_a_response_without_length_is_close_delimited_to_http_1_0() -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(b"GET /chunks HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        with trio.fail_after(5):
            got = await read_to_eof(s, buf)
        assert got == b"HTTP/1.1 200 OK\r\nx-app: 1\r\nconnection: close\r\n\r\nhello world!"


async def test_http_1_0_closes_unless_asked_to_keep_alive() -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(b"GET /echo HTTP/1.0\r\n\r\n")
        status, headers, _ = await read_response(s, buf)
        assert status == b"HTTP/1.1 200 OK" and headers["connection"] == "close"
        assert await closed(s)

        s, buf = await connect(addr), bytearray()
        for _ in range(2):
            await s.send_all(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, _ = await read_response(s, buf)
            assert status == b"HTTP/1.1 200 OK" and headers["connection"] == "keep-alive"
        await s.aclose()


async def test_head_keeps_the_get_s_content_length_and_sends_no_body() -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(
            b"HEAD /refuse HTTP/1.1\r\nHost: x\r\n\r\nGET /echo?after HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        head = await read_until(s, buf, b"\r\n\r\n")
        assert head == b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n"  # the GET's: b"no"
        status, _, body = await read_response(s, buf)  # no body: the next response follows at once
        assert status == b"HTTP/1.1 200 OK" and json.loads(body)["query"] == "after"
        await s.aclose()


async def test_a_204_has_no_body_and_no_framing_headers() -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(b"DELETE /nocontent HTTP/1.1\r\nHost: x\r\n\r\n" + post("/echo", b"next"))
        assert await read_until(s, buf, b"\r\n\r\n") == b"HTTP/1.1 204 No Content\r\n\r\n"
        assert json.loads((await read_response(s, buf))[2])["body"] == "next"
        await s.aclose()


async def test_a_request_that_asks_to_close_is_answered_then_closed() -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(post("/echo", b"last", "Connection: close") + post("/echo", b"never"))
        status, headers, body = await read_response(s, buf)
        assert status == b"HTTP/1.1 200 OK" and headers["connection"] == "close"
        assert json.loads(body)["body"] == "last"
        assert await closed(s) and buf == b""  # the request after it is not answered


async def test_pipelined_requests_split_across_reads_are_answered_in_order() -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        wire = post("/echo?i=1", b"one") + post("/echo?i=2", b"two!") + post("/echo?i=3", b"three")
        cuts = [0, 60, 61, 150, 170, len(wire)]  # through a head, a body, and the next head
        for a, b in itertools.pairwise(cuts):
            await s.send_all(wire[a:b])
            await trio.sleep(0.02)
        bodies = [json.loads((await read_response(s, buf))[2]) for _ in range(3)]
        assert [(b["query"], b["body"]) for b in bodies] == [
            ("i=1", "one"),
            ("i=2", "two!"),
            ("i=3", "three"),
        ]
        await s.aclose()


async def test_a_request_sent_while_a_response_streams_is_kept_and_answered() -> None:
    """``/watch`` listens for a disconnect while it streams, so the server reads the socket then:
    the pipelined request it reads is kept, not taken for a disconnect, and answered next."""
    DISCONNECTS.clear()
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(b"GET /watch HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_until(s, buf, b"3\r\none\r\n")).startswith(b"HTTP/1.1 200 OK\r\n")
        await s.send_all(post("/echo", b"meanwhile"))
        assert await read_until(s, buf, b"0\r\n\r\n") == b"3\r\ntwo\r\n0\r\n\r\n"
        assert json.loads((await read_response(s, buf))[2])["body"] == "meanwhile"
        assert DISCONNECTS == []
        await s.aclose()


@pytest.mark.parametrize(
    "head",
    [
        b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\nb\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: x\r\nBad Name: a\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nab",
        b"BREW /echo HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["cr", "lf", "nul", "obs-fold", "bad-name", "two-lengths", "length-and-chunked", "method", "chunk"],
)
async def test_an_invalid_request_is_a_400_problem_and_a_close(head: bytes) -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(head)
        status, headers, body = await read_response(s, buf)
        assert status == b"HTTP/1.1 400 Bad Request" and headers["connection"] == "close"
        problem = json.loads(body)
        assert problem["type"] == "about:blank" and problem["status"] == 400 and problem["detail"]
        assert await closed(s)


async def test_a_request_is_answered_before_the_malformed_one_after_it() -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(post("/echo", b"fine") + b"GET /echo HTTP/1.1\r\nX: \x00\r\n\r\n")
        assert json.loads((await read_response(s, buf))[2])["body"] == "fine"
        assert (await read_response(s, buf))[0] == b"HTTP/1.1 400 Bad Request"
        assert await closed(s)


async def test_other_http_versions_get_505() -> None:
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(b"GET /echo HTTP/2.0\r\nHost: x\r\n\r\n")
        status, _, body = await read_response(s, buf)
        assert status == b"HTTP/1.1 505 HTTP Version Not Supported" and json.loads(body)["status"] == 505
        assert await closed(s)


async def test_an_upgrade_is_answered_as_a_plain_request_then_closed() -> None:
    """llhttp parses nothing after an Upgrade (or CONNECT): the request itself is answered, as if
    the header were not there, and the connection closes; one with a body is refused."""
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(
            b"GET /echo?up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            + post("/echo", b"never")
        )
        status, headers, body = await read_response(s, buf)
        assert status == b"HTTP/1.1 200 OK" and headers["connection"] == "close"
        assert json.loads(body)["query"] == "up"
        assert await closed(s) and buf == b""

        s, buf = await connect(addr), bytearray()
        await s.send_all(post("/echo", b"abc", "Connection: Upgrade", "Upgrade: h2c"))
        status, _, body = await read_response(s, buf)
        assert status == b"HTTP/1.1 400 Bad Request" and json.loads(body)["status"] == 400
        assert await closed(s)


@pytest.mark.parametrize("path", ["/short", "/split"])
async def test_a_response_that_breaks_framing_is_a_500(path: str) -> None:
    """A body short of its own content-length, or a header value with CRLF in it (h11 refused
    both; now the server's own framing does): nothing of it is sent, a 500 is, then a close."""
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        await s.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, headers, _ = await read_response(s, buf)
        assert status == b"HTTP/1.1 500 Internal Server Error"
        assert headers["content-type"] == "application/problem+json" and "x-injected" not in headers
        assert await closed(s)


async def test_a_client_that_does_not_read_is_dropped_after_the_send_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http, "SEND_TIMEOUT", 0.3)
    DISCONNECTS.clear()
    async with server() as addr:
        s = await connect(addr)
        await s.send_all(b"GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
        with trio.fail_after(10):
            while not DISCONNECTS:
                await trio.sleep(0.05)
        s2, buf2 = await connect(addr), bytearray()
        await s2.send_all(post("/echo", b"still here"))
        assert json.loads((await read_response(s2, buf2))[2])["body"] == "still here"
        await s.aclose()
        await s2.aclose()


async def test_the_head_timeout_runs_from_the_end_of_the_previous_response(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http, "HEAD_TIMEOUT", 0.5)
    async with server() as addr:
        s, buf = await connect(addr), bytearray()
        for _ in range(3):  # each within its own timeout, together past one
            await trio.sleep(0.3)
            await s.send_all(post("/echo", b"in time"))
            assert json.loads((await read_response(s, buf))[2])["body"] == "in time"
        await s.send_all(b"GET /echo HTTP/1.1\r\n")  # then a head that never ends
        with trio.fail_after(5):
            assert await closed(s)
