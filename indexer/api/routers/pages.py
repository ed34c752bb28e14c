"""The community marketplace: the pages a person uses, served from ``indexer/web/`` (package data).

::

    /                 the search page (index.html)
    /a/{did}/{key}    an asset's page (asset.html); the page asks the JSON API for the rest
    /web/{file}       the pages' CSS and ES modules

No build step and nothing from outside: plain HTML, CSS and ES modules that
call the same ``/v1`` API as anyone else, read into memory once when the router
is built (a few tens of KB). Every response carries the same strict headers:
a Content-Security-Policy that allows only this origin (no inline script or
style, no framing), ``nosniff`` and no referrer. The routes are left out of the
OpenAPI document: they are pages, not API.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request, Response

from ...errors import NotFound

__all__ = ["SECURITY_HEADERS", "WEB_DIR", "router"]

WEB_DIR = Path(__file__).resolve().parents[2] / "web"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
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


def _send(request: Request, name: str, *, cache: str) -> Response:
    f = FILES.get(name)
    if f is None:
        raise NotFound(f"no page file {name}")
    headers = {**SECURITY_HEADERS, "ETag": f.etag, "Cache-Control": cache}
    if request.headers.get("if-none-match") == f.etag:
        return Response(status_code=304, headers=headers)
    return Response(f.body, media_type=f.media_type, headers=headers)


@router.get("/")
def marketplace(request: Request) -> Response:
    return _send(request, "index.html", cache="no-cache")


@router.get("/a/{did}/{key}")
def asset_page(request: Request, did: str, key: str) -> Response:
    # Whether the asset exists (or may be shown) is the page's question to the API: one answer, one place.
    return _send(request, "asset.html", cache="no-cache")


@router.get("/web/{name:path}")
def web_file(request: Request, name: str) -> Response:
    # Revalidated on each load (ETag): a page's modules must never mix two releases.
    return _send(request, name, cache="no-cache")
