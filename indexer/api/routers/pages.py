"""The community marketplace: the pages a person uses, served from ``indexer/web/`` (package data).

::

    /                 the search page (index.html)
    /a/{did}/{key}    an asset's page (asset.html); the page asks the JSON API for the rest
    /web/{file}       the pages' CSS and ES modules; web/vendor/noble-ed25519.js too where
                      ./dev copied it there (gitignored: @noble/ed25519 from the npm lock, the
                      Ed25519 fallback verify.js imports only when WebCrypto lacks Ed25519)

No build step and nothing from outside: plain HTML, CSS and ES modules that
call the same ``/v1`` API as anyone else, read into memory once when the router
is built (a few tens of KB). Every response carries the same strict headers as
the node's My Library (:mod:`node.webpolicy`): a Content-Security-Policy that
allows only this origin (no inline script or style, no framing), ``nosniff`` and
no referrer. The routes are left out of the
OpenAPI document: they are pages, not API.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

from fastapi import APIRouter, Request, Response

from node.webpolicy import SECURITY_HEADERS

from ...errors import NotFound

__all__ = ["SECURITY_HEADERS", "WEB_DIR", "router"]

WEB_DIR = Path(__file__).resolve().parents[2] / "web"

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class _File:
    body: bytes
    media_type: str
    etag: str


def _load(root: Path) -> dict[str, _File]:
    files: dict[str, _File] = {}
    for path in sorted(root.rglob("*")):
        media_type = TYPES.get(path.suffix)
        if path.is_file() and media_type is not None:
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            files[path.relative_to(root).as_posix()] = _File(body, media_type, etag)
    return files


FILES = _load(WEB_DIR)

router = APIRouter(include_in_schema=False)

# The search page's parameters, in the order search.js puts them in its first API call.
SEARCH_PARAMS = ("q", "sort", "license", "creator", "media_type", "min_price", "max_price")
FIRST_PAGE = (("facets", "true"), ("limit", "20"))
PRELOAD = b"<!--preload-->"
_DID = re.compile(r"did:key:z[1-9A-HJ-NP-Za-km-z]{1,100}")
_KEY = re.compile(r"[A-Za-z0-9._~-]{1,64}")


def _send(request: Request, name: str, *, cache: str, preload: Iterable[str] = ()) -> Response:
    f = FILES.get(name)
    if f is None:
        raise NotFound(f"no page file {name}")
    body = f.body
    if PRELOAD in body:
        links = "".join(
            f'<link rel="preload" as="fetch" crossorigin href="{html.escape(u, quote=True)}">'
            for u in preload
        )
        body = body.replace(PRELOAD, links.encode())
    etag = f.etag if body == f.body else '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    headers = {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": cache}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=f.media_type, headers=headers)


def _form(value: str) -> str:
    """``value`` encoded as URLSearchParams.toString() encodes it (so the browser sees the same URL)."""
    return quote_plus(value, safe="*").replace("~", "%7E")


def first_search_url(params: Iterable[tuple[str, str]]) -> str:
    """The API call search.js makes first for a page URL with these query parameters.

    Named in a ``<link rel=preload>``, the browser asks for it while it loads
    the modules, instead of after (about a third of the first render on loopback).
    """
    given: dict[str, str] = {}
    tags: list[str] = []
    for k, v in params:
        if k == "tag" and v:
            tags.append(v)
        elif k in SEARCH_PARAMS and v and k not in given:
            given[k] = v
    pairs = [(k, given[k]) for k in SEARCH_PARAMS if k in given] + [("tag", t) for t in tags]
    return "/v1/assets?" + "&".join(f"{_form(k)}={_form(v)}" for k, v in [*pairs, *FIRST_PAGE])


@router.get("/")
def marketplace(request: Request) -> Response:
    return _send(
        request,
        "index.html",
        cache="no-cache",
        preload=[first_search_url(request.query_params.multi_items())],
    )


@router.get("/a/{did}/{key}")
def asset_page(request: Request, did: str, key: str) -> Response:
    # Whether the asset exists (or may be shown) is the page's question to the API: one answer, one place.
    preload = []
    if _DID.fullmatch(did) and _KEY.fullmatch(key):
        base = f"/v1/assets/{quote(did, safe='')}/{quote(key, safe='')}"
        preload = [base, base + "/history"]
    return _send(request, "asset.html", cache="no-cache", preload=preload)


@router.get("/web/{name:path}")
def web_file(request: Request, name: str) -> Response:
    # Revalidated on each load (ETag): a page's modules must never mix two releases.
    return _send(request, name, cache="no-cache")
