"""My Library: the page the node's local API serves at ``/``, and its routes.

The page (``node/web/``: HTML, ES modules, CSS; no build step) reads the same
JSON the CLI reads (``/v1/library``, ``/v1/status``, ``/v1/events``). :class:`Pages`
serves its static files and routes every page request; the jobs behind the routes
live beside it:

* :mod:`node.sessions`: one-time codes, sessions and CSRF tokens, the
  ``Host``/``Origin`` checks and the security headers (the sign-in flow is drawn there);
* :mod:`node.page_writes`: publish, edit and delete through the CLI's body builder;
* :mod:`node.page_upload`: ``POST /v1/local/media``, a media file hashed, kept and pinned;
* :mod:`node.indexer_probe`: ``GET /v1/local/indexer``, whether the configured
  ``indexer_url`` has our latest write.

A page write's body is at most :data:`MAX_PAGE_BODY` bytes, read before any answer.
"""

from __future__ import annotations

import hmac
import re
from importlib import resources
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from .indexer_probe import IndexerProbe
from .page_upload import receive_upload
from .page_writes import PageWrites, field_error, fields_of
from .sessions import (
    CODE_TTL,
    SESSION_TTL,
    PageProblem,
    Sessions,
    check_csrf,
    check_host,
    check_origin,
    cookie_name,
    problem_response,
    session_of,
)
from .webpolicy import SECURITY_HEADERS

if TYPE_CHECKING:
    from .daemon import Node

__all__ = ["MAX_PAGE_BODY", "PageProblem", "Pages", "Sessions", "field_error", "problem_response"]

MAX_PAGE_BODY = 64 * 1024  # bytes of one page write
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}  # fmt: skip
_STATIC = re.compile(r"[a-z0-9-]+\.(js|css|svg)")


class Pages:
    """The page routes on the local app (:meth:`router`), bound to one node."""

    def __init__(self, node: Node, token: str, *, sessions: Sessions | None = None) -> None:
        self.node, self._token = node, token.encode()
        self.sessions = sessions or Sessions()
        self._files = {
            f.name: f.read_bytes()
            for f in resources.files("node").joinpath("web").iterdir()
            if f.is_file() and f.name.rsplit(".", 1)[-1] in ("html", "js", "css", "svg")
        }
        self.writes = PageWrites(node)
        self.indexer = IndexerProbe(node)

    # -- checks -------------------------------------------------------------------------

    async def _writer(self, request: Request) -> bytes:
        """The body of a page write, once its session, origin and CSRF token have passed."""
        raw = await self._drain(request)
        sid = session_of(self.sessions, request)
        check_origin(request)
        check_csrf(self.sessions, sid, request)
        return raw

    def _page(self, name: str) -> Response:
        body = self._files.get(name)
        if body is None:
            raise PageProblem(404, "Not found", f"no page file {name!r}")
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
        return Response(body, media_type=_TYPES["." + name.rsplit(".", 1)[-1]], headers=headers)

    async def _drain(self, request: Request) -> bytes:
        """The request's body, read before any answer: the server closes a connection whose
        request body the app left unread, and the page's next request on it would fail."""
        length = request.headers.get("content-length", "0")
        if not length.isdigit() or int(length) > MAX_PAGE_BODY:
            raise PageProblem(413, "Body too large", f"a page write is at most {MAX_PAGE_BODY} bytes")
        raw = await request.body()
        if len(raw) > MAX_PAGE_BODY:
            raise PageProblem(413, "Body too large", f"a page write is at most {MAX_PAGE_BODY} bytes")
        return raw

    # -- routes ---------------------------------------------------------------------------

    def router(self) -> APIRouter:
        r = APIRouter()
        pages = self

        @r.get("/", include_in_schema=False)
        async def index(request: Request) -> Response:
            check_host(request)
            return pages._page("index.html")

        @r.get("/web/{name}", include_in_schema=False)
        async def static(name: str, request: Request) -> Response:
            check_host(request)
            if not _STATIC.fullmatch(name):
                raise PageProblem(404, "Not found", f"no page file {name!r}")
            return pages._page(name)

        @r.get("/open", include_in_schema=False)
        async def open_link(request: Request, code: str = "") -> Response:
            check_host(request)
            sid = pages.sessions.redeem(code) if code else None
            headers = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
            if sid is None:
                text = (
                    "<!doctype html><meta charset=utf-8><title>Link expired</title>"
                    "<link rel=stylesheet href=/web/style.css><main class=notice><h1>This link has been used "
                    "or has expired</h1><p>Each link opens My Library once, within two minutes. Run "
                    "<code>empressa node open</code> again for a new one.</p><p><a href=/>Open My Library "
                    "(read only)</a></p></main>"
                )
                return Response(text, status_code=403, media_type="text/html; charset=utf-8", headers=headers)
            resp = Response(status_code=303, headers={**headers, "Location": "/"})
            resp.set_cookie(
                cookie_name(request.scope),
                sid,
                httponly=True,
                samesite="strict",
                path="/",
                max_age=int(SESSION_TTL),
            )
            return resp

        @r.post("/v1/local/open", summary="A one-time link that opens a page session (Bearer api.token)")
        async def new_link(request: Request) -> dict[str, Any]:
            await pages._drain(request)
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), pages._token):
                raise PageProblem(401, "Unauthorized", "a valid bearer token from api.token is required")
            host, port = (request.scope.get("server") or ("127.0.0.1", 0))[:2]
            if host in ("0.0.0.0", "::"):  # bound to every address: the browser still comes by loopback
                host = "127.0.0.1"
            host = f"[{host}]" if ":" in host else host
            code = pages.sessions.new_code()
            return {"url": f"http://{host}:{port}/open?code={code}", "expires_in": int(CODE_TTL)}

        @r.get("/v1/local/session", summary="The page session's CSRF token (session cookie)")
        async def session(request: Request) -> Response:
            """``{"signed_in": true, "csrf", "did"}`` with a live session cookie, else ``{"signed_in": false}``
            (200 either way: the page asks before it knows, and a browser logs every 4xx as an error)."""
            check_host(request)
            s = pages.sessions.get(request.cookies.get(cookie_name(request.scope)))
            doc = {"signed_in": True, "csrf": s.csrf, "did": pages.node.did} if s else {"signed_in": False}
            return Response(
                orjson.dumps(doc), media_type="application/json", headers={"Cache-Control": "no-store"}
            )

        @r.delete("/v1/local/session", status_code=204, summary="End the page session")
        async def logout(request: Request) -> Response:
            await pages._writer(request)
            pages.sessions.end(request.cookies.get(cookie_name(request.scope)))
            resp = Response(status_code=204)
            resp.delete_cookie(cookie_name(request.scope), path="/", httponly=True, samesite="strict")
            return resp

        @r.post("/v1/local/assets", status_code=201, summary="Publish from the page (session + CSRF)")
        async def publish(request: Request) -> dict[str, Any]:
            doc = fields_of(await pages._writer(request))
            key = doc.pop("key", None)
            if type(key) is not str or not key:
                raise PageProblem(
                    422,
                    "Invalid field",
                    "key is required",
                    errors=[{"field": "key", "detail": "is required"}],
                )
            return await pages.writes.put(key, doc, edit=False)

        @r.patch(
            "/v1/local/assets/{key}", summary="Edit from the page: the fields given change (session + CSRF)"
        )
        async def edit(key: str, request: Request) -> dict[str, Any]:
            doc = fields_of(await pages._writer(request))
            doc.pop("key", None)
            return await pages.writes.put(key, doc, edit=True)

        @r.delete("/v1/local/assets/{key}", summary="Delete from the page (session + CSRF)")
        async def delete(key: str, request: Request) -> dict[str, Any]:
            await pages._writer(request)
            return await pages.writes.delete(key)

        @r.post(
            "/v1/local/media",
            status_code=201,
            summary="Upload a media file: hashed, kept, pinned if ipfs_api",
        )
        async def upload(request: Request) -> dict[str, Any]:
            return await receive_upload(pages.node, pages.sessions, request)

        @r.get("/v1/local/indexer", summary="Whether the configured indexer has our latest write")
        async def indexer() -> dict[str, Any]:
            return await pages.indexer.state()

        return r
