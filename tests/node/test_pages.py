"""My Library's sessions, one-time links, CSRF and page writes (node/pages.py and node/sessions.py, page_writes.py, …), served for real.

Nodes come from ``node.testing.spawn_network``; the local API is ``serve_local_api`` on
a real socket, asked with ``httpx.AsyncClient`` (which sends ``Host: 127.0.0.1:PORT``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import trio

from node.api import bind_local_api, serve_local_api
from node.daemon import Node
from node.pages import Sessions, field_error
from node.testing import spawn_network
from protocol import SchemaError

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
FIELDS = {"key": "song", "title": "Night Drive", "tags": ["synth"], "cid": CID, "mime": "audio/mpeg",
          "size": 1234, "license": "commercial", "price": "12.50", "currency": "USD"}  # fmt: skip


@asynccontextmanager
async def local_api(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with trio.open_nursery() as nursery:
        sock = bind_local_api("127.0.0.1", 0)
        binds = await nursery.start(
            lambda task_status: serve_local_api(node, sock=sock, token=TOKEN, task_status=task_status)
        )
        async with httpx.AsyncClient(base_url=binds[0], timeout=30) as client:
            yield client
        nursery.cancel_scope.cancel()


async def sign_in(api: httpx.AsyncClient) -> str:
    """Open a session the way the browser does; returns its CSRF token (the cookie stays in ``api``)."""
    link = (await api.post("/v1/local/open", headers=AUTH)).json()["url"]
    r = await api.get(link)
    assert r.status_code == 303 and r.headers["location"] == "/"
    s = (await api.get("/v1/local/session")).json()
    assert s["signed_in"] is True
    return str(s["csrf"])


def head(node: Node) -> int:
    h = node.store.head(node.keys.author.public)
    return h.seq if h else 0


# -- the session store on its own ----------------------------------------------------------------


def test_a_code_opens_one_session_once() -> None:
    s = Sessions()
    code = s.new_code()
    sid = s.redeem(code)
    assert sid is not None and s.get(sid) is not None
    assert s.redeem(code) is None  # single use
    assert s.redeem("not-a-code") is None and s.redeem("") is None


def test_codes_and_sessions_expire_and_are_bounded() -> None:
    now = [1000.0]
    s = Sessions(clock=lambda: now[0], code_ttl=120, session_ttl=600, max_codes=2, max_sessions=2)
    late = s.new_code()
    now[0] += 121
    assert s.redeem(late) is None  # expired
    codes = [s.new_code() for _ in range(3)]
    assert s.redeem(codes[0]) is None  # the oldest was dropped at the bound
    sids = [s.redeem(codes[1]), s.redeem(codes[2]), s.redeem(s.new_code())]
    assert s.get(sids[0]) is None and s.get(sids[2]) is not None  # at most two sessions
    now[0] += 601
    assert s.get(sids[2]) is None


def test_csrf_is_the_sessions_own() -> None:
    s = Sessions()
    sid = s.redeem(s.new_code())
    other = s.redeem(s.new_code())
    token = s.get(sid).csrf  # type: ignore[union-attr]
    assert s.csrf_ok(sid, token)
    assert not s.csrf_ok(sid, None) and not s.csrf_ok(sid, token + "x")
    assert not s.csrf_ok(other, token) and not s.csrf_ok(None, token)


def test_errors_are_named_by_the_form_field() -> None:
    assert field_error(SchemaError("body.title: must not be blank")) == {
        "field": "title",
        "detail": "must not be blank",
    }
    assert (
        field_error(SchemaError("body.license.price.amount: must be a decimal string like '12.50'"))["field"]
        == "price"
    )
    assert field_error(SchemaError("body.tags[2]: must be 1..32 characters (is 40)"))["field"] == "tags"
    assert field_error(SchemaError("body.media.mime: must be a lowercase MIME type"))["field"] == "mime"
    assert field_error(ValueError("--price and --currency go together"))["field"] == "price"
    assert field_error(ValueError("give the media as --file PATH or --cid CID"))["field"] == "cid"
    assert field_error(ValueError("size is an integer"))["field"] == "size"


# -- over HTTP ------------------------------------------------------------------------------------


async def test_the_one_time_link_sets_a_strict_httponly_cookie_once() -> None:
    async with spawn_network(1) as net, local_api(net.nodes[0]) as api:
        assert (await api.post("/v1/local/open")).status_code == 401
        assert (await api.post("/v1/local/open", headers={"Authorization": "Bearer nope"})).status_code == 401
        r = await api.post("/v1/local/open", headers=AUTH)
        link = r.json()["url"]
        port = api.base_url.port
        assert link.startswith(f"http://127.0.0.1:{port}/open?code=") and r.json()["expires_in"] == 120
        assert (await api.get("/v1/local/session")).json() == {"signed_in": False}
        opened = await api.get(link)
        assert opened.status_code == 303 and opened.headers["location"] == "/"
        cookie = opened.headers["set-cookie"]
        name, value = cookie.split(";", 1)[0].split("=", 1)
        assert name == f"empressa_session_{port}" and len(value) >= 43  # 256 bits, base64url
        flags = {f.strip().lower() for f in cookie.split(";")[1:]}
        assert {"httponly", "path=/", "samesite=strict"} <= flags
        assert "no-referrer" in opened.headers["referrer-policy"]
        again = await httpx.AsyncClient().get(link)  # a second use, from anyone
        assert again.status_code == 403 and "used or has expired" in again.text
        assert (await api.get(link.replace("code=", "code=x"))).status_code == 403
        s = (await api.get("/v1/local/session")).json()
        assert s["signed_in"] is True and s["did"] == net.nodes[0].did and len(s["csrf"]) >= 43


async def test_writes_need_the_cookie_and_the_csrf_token() -> None:
    async with spawn_network(1) as net, local_api(net.nodes[0]) as api:
        node = net.nodes[0]
        # No session at all.
        assert (await api.post("/v1/local/assets", json=FIELDS)).status_code == 401
        csrf = await sign_in(api)
        assert (await api.post("/v1/local/assets", json=FIELDS)).status_code == 403  # no CSRF header
        wrong = csrf[:-1] + ("E" if csrf.endswith("A") else "A")  # never the token itself
        bad = await api.post("/v1/local/assets", json=FIELDS, headers={"X-CSRF-Token": wrong})
        assert bad.status_code == 403
        cross = await api.post(
            "/v1/local/assets", json=FIELDS, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
        )
        assert cross.status_code == 403
        # The bearer token is not a page session.
        assert (await api.post("/v1/local/assets", json=FIELDS, headers=AUTH)).status_code == 403
        assert head(node) == 0
        ok = await api.post("/v1/local/assets", json=FIELDS, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 201, ok.text
        assert ok.json()["seq"] == 1 and ok.json()["uri"].endswith("/song")
        [item] = (await api.get("/v1/library")).json()["items"]
        assert item["title"] == "Night Drive" and item["license"] == {
            "type": "commercial",
            "price": {"amount": "12.50", "currency": "USD"},
        }
        assert item["media"] == {"cid": CID, "mime": "audio/mpeg", "size": 1234}


async def test_a_wrong_host_is_refused_on_page_and_session_routes() -> None:
    async with spawn_network(1) as net, local_api(net.nodes[0]) as api:
        csrf = await sign_in(api)
        evil = {"Host": f"evil.example:{api.base_url.port}"}
        for method, path in (("GET", "/"), ("GET", "/web/app.js"), ("GET", "/v1/local/session"),
                             ("GET", "/open?code=x"), ("POST", "/v1/local/assets")):  # fmt: skip
            r = await api.request(method, path, headers={**evil, "X-CSRF-Token": csrf}, json=FIELDS)
            assert r.status_code == 421, (path, r.status_code)
        wrong_port = await api.get("/", headers={"Host": "127.0.0.1:1"})
        assert wrong_port.status_code == 421
        for host in ("localhost", "127.0.0.1"):
            assert (await api.get("/", headers={"Host": f"{host}:{api.base_url.port}"})).status_code == 200
        assert head(net.nodes[0]) == 0


async def test_the_page_is_served_with_a_strict_policy() -> None:
    async with spawn_network(1) as net, local_api(net.nodes[0]) as api:
        page = await api.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "<script" in page.text and "<script>" not in page.text  # no inline script
        weight = len(page.content)
        for name in ("app.js", "style.css"):
            r = await api.get(f"/web/{name}")
            assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
            weight += len(r.content)
        assert weight < 150 * 1024
        assert "innerHTML" not in (await api.get("/web/app.js")).text
        assert (await api.get("/web/..%2fapi.py")).status_code == 404
        assert (await api.get("/web/missing.js")).status_code == 404


async def test_a_bad_field_is_named_and_nothing_is_written() -> None:
    async with spawn_network(1) as net, local_api(net.nodes[0]) as api:
        node = net.nodes[0]
        csrf = {"X-CSRF-Token": await sign_in(api)}
        cases = [
            ({"title": " "}, "title", "must not be blank"),
            ({"price": "12,50"}, "price", "must be a decimal string like '12.50'"),
            ({"currency": None, "price": "3"}, "price", "--price and --currency go together"),
            ({"mime": "Audio"}, "mime", "must be a lowercase MIME type like audio/mpeg"),
            ({"key": "no spaces"}, "key", "must be an asset key [A-Za-z0-9._~-]{1,64}"),
            ({"size": "big"}, "size", "size is an integer"),
            ({"payout_evm": "0x12"}, "payout_evm", "--payout-evm '0x12' is not a 0x address of 20 bytes (or `me`)"),
        ]  # fmt: skip
        for change, field, detail in cases:
            doc = {k: v for k, v in {**FIELDS, **change}.items() if v is not None}
            r = await api.post("/v1/local/assets", json=doc, headers=csrf)
            assert r.status_code == 422, (change, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["errors"] == [{"field": field, "detail": detail}], change
        assert head(node) == 0


async def test_edit_and_delete_from_the_page() -> None:
    async with spawn_network(1) as net, local_api(net.nodes[0]) as api:
        csrf = {"X-CSRF-Token": await sign_in(api)}
        assert (await api.post("/v1/local/assets", json=FIELDS, headers=csrf)).status_code == 201
        r = await api.patch("/v1/local/assets/song", json={"title": "Night Drive (remaster)"}, headers=csrf)
        assert r.status_code == 200 and r.json()["seq"] == 2
        [item] = (await api.get("/v1/library")).json()["items"]
        assert item["title"] == "Night Drive (remaster)" and item["versions"] == 2
        assert item["tags"] == ["synth"] and item["license"]["price"]["amount"] == "12.50"  # kept
        cleared = await api.patch("/v1/local/assets/song", json={"tags": []}, headers=csrf)
        assert cleared.status_code == 200
        assert (await api.get("/v1/library")).json()["items"][0]["tags"] == []
        blank = await api.patch("/v1/local/assets/song", json={"title": ""}, headers=csrf)
        assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "title"
        assert (
            await api.patch("/v1/local/assets/nope", json={"title": "x"}, headers=csrf)
        ).status_code == 404
        assert (await api.delete("/v1/local/assets/song")).status_code == 403
        gone = await api.delete("/v1/local/assets/song", headers=csrf)
        assert gone.status_code == 200 and gone.json()["seq"] == 4
        assert (await api.get("/v1/library")).json()["items"] == []
        assert (await api.delete("/v1/local/assets/song", headers=csrf)).status_code == 404
        assert head(net.nodes[0]) == 4


@contextmanager
def fake_indexer(heads: dict[str, int]) -> Iterator[str]:
    """A stand-in for the indexer's ``GET /v1/creators/{did}``: ``heads`` maps a did to its head seq."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            did = self.path.rsplit("/", 1)[-1]
            if did not in heads:
                self.send_response(404)
                self.end_headers()
                return
            body = json.dumps({"did": did, "head": {"seq": heads[did], "hash": "b"}, "searchable": True})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_the_indexer_state_is_searchable_behind_or_unreachable() -> None:
    heads: dict[str, int] = {}
    with fake_indexer(heads) as url:
        async with spawn_network(1, indexer_url=url) as net, local_api(net.nodes[0]) as api:
            node = net.nodes[0]
            csrf = {"X-CSRF-Token": await sign_in(api)}
            for key in ("a", "b", "c"):
                doc = {**FIELDS, "key": key}
                assert (await api.post("/v1/local/assets", json=doc, headers=csrf)).status_code == 201
            state = (await api.get("/v1/local/indexer")).json()
            assert state["state"] == "behind" and state["behind"] == 3  # not known there at all
            heads[node.did] = 1
            await trio.sleep(2.1)  # past the cache
            assert (await api.get("/v1/local/indexer")).json()["behind"] == 2
            heads[node.did] = 3
            await trio.sleep(2.1)
            assert (await api.get("/v1/local/indexer")).json()["state"] == "searchable"
    async with spawn_network(1, indexer_url="http://127.0.0.1:1") as net, local_api(net.nodes[0]) as api:
        assert (await api.get("/v1/local/indexer")).json()["state"] == "unreachable"
        status = (await api.get("/v1/status")).json()
        assert status["indexer_url"] == "http://127.0.0.1:1" and status["head"] == 0
        assert "last_sync_ms" in status
    async with spawn_network(1) as net, local_api(net.nodes[0]) as api:
        assert (await api.get("/v1/local/indexer")).json()["state"] == "unconfigured"


@pytest.mark.parametrize("value", ["ftp://x", "not a url", "http://"])
def test_indexer_url_must_be_http(value: str, tmp_path: Any) -> None:
    from node.config import load_node_settings
    from node.errors import ConfigError

    with pytest.raises(ConfigError, match="indexer_url"):
        load_node_settings(tmp_path, {}, {"EMPRESSA_NODE_INDEXER_URL": value})
    assert load_node_settings(tmp_path, {}, {"EMPRESSA_NODE_INDEXER_URL": "http://h:8000/"}).indexer_url == (
        "http://h:8000"
    )


async def test_a_file_uploaded_from_the_page_is_hashed_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from node import page_upload
    from node.media import bytes_cid
    from node.media_ledger import MediaLedger

    data = b"\x01\x02 a short loop " * 1000
    async with spawn_network(1) as net, local_api(net.nodes[0]) as api:
        node = net.nodes[0]
        assert (await api.post("/v1/local/media", content=data)).status_code == 401
        csrf = {"X-CSRF-Token": await sign_in(api)}
        assert (
            await api.post("/v1/local/media", content=data, headers={"Content-Type": "audio/wav"})
        ).status_code == 403
        r = await api.post("/v1/local/media", content=data, headers={**csrf, "Content-Type": "audio/wav"})
        assert r.status_code == 201, r.text
        assert r.json() == {"cid": bytes_cid(data), "size": len(data), "mime": "audio/wav", "pinned": False}
        kept = node.settings.data_dir / "uploads" / bytes_cid(data)
        assert kept.read_bytes() == data
        with MediaLedger.open(node.settings.data_dir) as ledger:  # for `node media push`
            assert [row.cid for row in ledger.rows()] == [bytes_cid(data)]
        monkeypatch.setattr(page_upload, "MAX_UPLOAD_BYTES", 100)
        assert (await api.post("/v1/local/media", content=data, headers=csrf)).status_code == 413
        assert head(node) == 0  # an upload writes no entry


async def test_an_upload_with_an_unreachable_ipfs_says_so() -> None:
    async with spawn_network(1, ipfs_api="/ip4/127.0.0.1/tcp/1") as net, local_api(net.nodes[0]) as api:
        csrf = {"X-CSRF-Token": await sign_in(api)}
        r = await api.post("/v1/local/media", content=b"bytes", headers={**csrf, "Content-Type": "image/png"})
        assert r.status_code == 502 and r.json()["errors"][0]["field"] == "file"


async def test_an_upload_is_added_and_pinned_where_ipfs_api_is_set(jsipfs: Any) -> None:
    from node.ipfs import IpfsClient
    from node.media import bytes_cid

    data = bytes(range(256)) * 2048  # 512 KiB: two chunks, a dag-pb root
    async with spawn_network(1, ipfs_api=jsipfs.api) as net, local_api(net.nodes[0]) as api:
        csrf = {"X-CSRF-Token": await sign_in(api)}
        r = await api.post("/v1/local/media", content=data, headers={**csrf, "Content-Type": "audio/mpeg"})
        assert r.status_code == 201, r.text
        assert r.json() == {"cid": bytes_cid(data), "size": len(data), "mime": "audio/mpeg", "pinned": True}
    with IpfsClient(jsipfs.api) as ipfs:
        assert ipfs.pinned(bytes_cid(data))
