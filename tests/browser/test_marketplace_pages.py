"""The marketplace's page routes, without a browser or a database: what is served, with which headers."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from indexer.api import create_app
from indexer.api.routers.pages import FILES, WEB_DIR
from tests.indexer.apiclient import settings_for

PAGE_WEIGHT_LIMIT = 150_000


@pytest.fixture
async def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    app = create_app(settings_for(tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


def _strict(r: httpx.Response) -> None:
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"


async def test_pages_and_their_files_are_served_with_strict_headers(client: httpx.AsyncClient) -> None:
    for path, kind in [
        ("/", "text/html"),
        ("/a/did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK/night-drive", "text/html"),
        ("/web/market.css", "text/css"),
        ("/web/js/search.js", "text/javascript"),
        ("/web/js/verify.js", "text/javascript"),
    ]:
        r = await client.get(path)
        assert r.status_code == 200, (path, r.text)
        assert r.headers["content-type"].startswith(kind), path
        _strict(r)
        again = await client.get(path, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304


async def test_unknown_files_are_404_and_paths_cannot_escape(client: httpx.AsyncClient) -> None:
    for path in ("/web/nope.js", "/web/../routers/pages.py", "/web/%2e%2e/api/__init__.py", "/web/"):
        r = await client.get(path)
        assert r.status_code == 404, path


async def test_the_api_document_does_not_list_the_pages(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert all(p.startswith("/v1/") or p in ("/healthz", "/readyz", "/metrics") for p in paths), paths
    assert (await client.get("/docs")).status_code == 200


def test_no_inline_script_or_style_and_nothing_from_outside() -> None:
    for name, f in FILES.items():
        text = f.body.decode()
        if name.endswith(".html"):
            assert not re.search(r"<script(?![^>]*\bsrc=)", text), f"{name}: inline script"
            assert "<style" not in text and " style=" not in text, f"{name}: inline style"
            assert not re.search(r"\son[a-z]+=", text), f"{name}: inline event handler"
        assert not re.search(r"(src|href)=\"(https?:)?//", text), f"{name}: loads from outside"
        if name.endswith(".js"):
            assert not re.search(r"\.(innerHTML|outerHTML|insertAdjacentHTML)\b", text), name
            assert "eval(" not in text and "new Function" not in text, name


async def test_the_ed25519_fallback_is_served_whole_when_dev_put_it_there(client: httpx.AsyncClient) -> None:
    vendored = WEB_DIR / "vendor" / "noble-ed25519.js"
    if not vendored.is_file():
        pytest.skip(f"no {vendored}: ./dev copies it from the npm tools (npm missing here?)")
    r = await client.get("/web/vendor/noble-ed25519.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    _strict(r)
    assert r.content == vendored.read_bytes()
    assert r.text.startswith("/*! noble-ed25519 - MIT License"), "its licence header is kept"
    assert "verifyAsync" in r.text.rsplit("export {", 1)[1], "the ES module the page imports"
    # that it imports nothing (a bare specifier would not resolve: no import maps) the browser tests show


def test_page_weight_is_under_the_limit() -> None:
    weight = sum(len(f.body) for f in FILES.values())
    assert weight < PAGE_WEIGHT_LIMIT, f"{weight} bytes of HTML+JS+CSS under {WEB_DIR}"


async def test_the_first_search_is_preloaded_with_the_url_the_page_asks_for(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get(
        "/", params=[("tag", "b"), ("q", 'a "b" ~*'), ("tag", "a"), ("bogus", "1"), ("sort", "")]
    )
    want = "/v1/assets?q=a+%22b%22+%7E*&amp;tag=b&amp;tag=a&amp;facets=true&amp;limit=20"
    assert f'<link rel="preload" as="fetch" crossorigin href="{want}">' in r.text
    assert "<!--preload-->" not in r.text
    evil = await client.get("/", params={"q": '"><script>alert(1)</script>'})
    assert "<script>alert" not in evil.text and "%3Cscript%3E" in evil.text
    did = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
    page = await client.get(f"/a/{did}/night-drive")
    assert f'href="/v1/assets/{did.replace(":", "%3A")}/night-drive/history"' in page.text
    odd = await client.get("/a/not-a-did/x")
    assert odd.status_code == 200 and "preload" not in odd.text.replace("modulepreload", "")
