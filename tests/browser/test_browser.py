"""The browser harness itself: Chromium starts, renders a loopback page, and has what the pages use."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from .proxy import TamperProxy, flip_one_byte

PAGE = b"<!doctype html><title>t</title><main><h1 id=h>hello</h1><button id=b>go</button></main>"
ED25519_PROBE = """async () => {
  try { await crypto.subtle.importKey('raw', new Uint8Array(32), {name: 'Ed25519'}, false, ['verify']); return 'ok'; }
  catch (e) { return e.name; }
}"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGE if self.path == "/" else b"\x00\x01\x02\x03"
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if self.path == "/" else "application/cbor")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _serve() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_chromium_renders_a_loopback_page_and_clicks(page: Any) -> None:
    server = _serve()
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        page.evaluate(
            "document.getElementById('b').onclick = () => { document.getElementById('h').textContent = 'clicked' }"
        )
        page.get_by_role("button", name="go").click()
        assert page.locator("#h").text_content() == "clicked"
        assert page.errors == []
    finally:
        server.shutdown()


def test_webcrypto_has_ed25519_and_sha256(page: Any) -> None:
    """The asset page's "verify this record" uses WebCrypto Ed25519 where the browser has it."""
    server = _serve()
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")  # a secure context: loopback
        assert page.evaluate(ED25519_PROBE) == "ok"
        digest = page.evaluate(
            "async () => Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', new Uint8Array()))).slice(0, 4)"
        )
        assert digest == [0xE3, 0xB0, 0xC4, 0x42]
    finally:
        server.shutdown()


def test_tamper_proxy_flips_one_byte_of_chosen_responses() -> None:
    server = _serve()
    upstream = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        flip = lambda method, path, status, body: flip_one_byte(body) if path.startswith("/raw") else body  # noqa: E731
        with TamperProxy(upstream, flip) as proxy:
            assert httpx.get(proxy.url + "/").content == PAGE
            assert httpx.get(proxy.url + "/raw").content == b"\x00\x01\x02\x02"
            assert proxy.tampered == ["/raw"]
    finally:
        server.shutdown()
