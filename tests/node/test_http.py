"""The local API's HTTP/1.1 server (node/http.py), on a real socket, spoken to byte by byte.

A small ASGI app stands in for the node's (the node's own routes are tested
through this server in test_api_writes.py and the end-to-end tests); the
client is a raw socket, so framing, keep-alive, pipelining, limits and
closes are seen exactly as a client sees them.
"""

from __future__ import annotations

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
    ``/stream`` streams until the client goes, then records that it saw the disconnect."""
    path = scope["path"]
    if path == "/boom":
        raise RuntimeError("the app failed")
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
            assert status == b"HTTP/1.1 200 "
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
            assert status == b"HTTP/1.1 401 " and body == b"no"
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
        assert status == b"HTTP/1.1 200 " and json.loads(body)["body"] == "body"
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
            assert status == b"HTTP/1.1 401 " and answer == b"no"
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
