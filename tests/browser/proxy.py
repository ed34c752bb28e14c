"""A small HTTP proxy for browser tests: forwards every request to an upstream, optionally tampering.

It stands between the browser and a real server (the indexer), so a test can
show what a page does when the bytes are changed on the way, with no hook in
the product. ``tamper`` is called with (method, path, status, body) of every
upstream response and returns the body to send on (the same bytes when it does
not care). Only what the pages need is forwarded: GET/POST/PUT/DELETE with
their bodies, and streamed responses (Server-Sent Events) passed through as
they arrive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

Tamper = Callable[[str, str, int, bytes], bytes]
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


def flip_one_byte(body: bytes, index: int = -1) -> bytes:
    """``body`` with one bit of one byte flipped (the last byte by default)."""
    if not body:
        return body
    b = bytearray(body)
    b[index] ^= 0x01
    return bytes(b)


class TamperProxy:
    """``with TamperProxy(upstream, tamper) as proxy:`` serves on ``proxy.url`` (127.0.0.1, a free port)."""

    def __init__(self, upstream: str, tamper: Tamper | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.tamper = tamper
        self.tampered: list[str] = []  # paths whose body was changed
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(n) if n else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP | {"host"}}
                with (
                    httpx.Client(timeout=None) as client,
                    client.stream(
                        self.command, proxy.upstream + self.path, headers=headers, content=data
                    ) as r,
                ):
                    stream = r.headers.get("content-type", "").startswith("text/event-stream")
                    self.send_response(r.status_code)
                    for k, v in r.headers.multi_items():
                        if k.lower() not in _HOP:
                            self.send_header(k, v)
                    if stream:
                        self.send_header("Connection", "close")
                        self.end_headers()
                        try:
                            for chunk in r.iter_raw():
                                self.wfile.write(chunk)
                                self.wfile.flush()
                        except (BrokenPipeError, ConnectionResetError):
                            pass
                        self.close_connection = True
                        return
                    body = r.read()
                    if proxy.tamper is not None:
                        changed = proxy.tamper(self.command, self.path, r.status_code, body)
                        if changed != body:
                            proxy.tampered.append(self.path)
                        body = changed
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> TamperProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
