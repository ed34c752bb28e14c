"""My Library: the page the node's local API serves at ``/``, its sessions and its writes.

The page (``node/web/``: HTML, ES modules, CSS; no build step) reads the same
JSON the CLI reads (``/v1/library``, ``/v1/status``, ``/v1/events``). Writing
needs more than being on 127.0.0.1; the flow, end to end::

    empressa node open ──POST /v1/local/open (Bearer api.token)──▶ {"url": ".../open?code=C"}
    browser ──GET /open?code=C──▶ 303 to / with Set-Cookie empressa_session_PORT=S
                                  (HttpOnly; SameSite=Strict; Path=/)   C is spent
    page ──GET /v1/local/session (cookie)──▶ {"csrf": T, "did", …}
    page ──POST|PATCH|DELETE /v1/local/assets[/KEY] (cookie + X-CSRF-Token: T)──▶ a signed write

* A code is 256 random bits, single use, and expires after :data:`CODE_TTL`
  seconds; at most :data:`MAX_CODES` wait at once (the oldest is dropped).
* A session is 256 random bits (the cookie), with its own 256-bit CSRF token;
  at most :data:`MAX_SESSIONS` are kept, in memory (the oldest goes first), for
  :data:`SESSION_TTL` seconds. A restart of the daemon ends them all. Codes and
  sessions are looked up by their SHA-256, and the CSRF token is compared with
  :func:`hmac.compare_digest`, so no lookup times a secret.
* The cookie's name carries the API's port: cookies do not keep ports apart, and
  two nodes on one machine must not overwrite each other's session.
* Page, session and write routes answer only a ``Host`` of ``127.0.0.1``,
  ``localhost`` or ``[::1]`` with the bound port (else 421), which defeats DNS
  rebinding; writes also refuse a cross-origin ``Origin`` header.
* Every page response carries a strict CSP (``default-src 'self'``, no inline
  script, ``frame-ancestors 'none'``), ``nosniff`` and ``Referrer-Policy: no-referrer``.

The page's writes take the ``node publish`` fields as JSON (the shape of a
``publish --from`` line: ``title``, ``description``, ``tags``, ``cid``, ``mime``,
``size``, ``duration_ms``, ``license``, ``price``, ``currency``, ``terms``,
``payout_evm``, ``payout_stellar``), and the node builds the ``asset.put`` body
with the CLI's own :func:`node.client.asset_fields_of` and :func:`node.client.put_body`,
checked by :func:`protocol.check_write`. A bad field is a 422 problem whose
``errors`` is ``[{"field", "detail"}]``; nothing is written. ``POST /v1/local/media``
(the same session and CSRF token) takes a media file's bytes, at most
:data:`MAX_UPLOAD_BYTES`: the node computes its UnixFS CID, keeps it in
``DATA_DIR/uploads/<cid>`` and, with ``ipfs_api`` set, adds and pins it, as
``node publish --file`` does; the page then publishes that CID.

``GET /v1/local/indexer`` says whether the configured ``indexer_url`` has our latest
write (asked by the node, never the browser: the page loads nothing from outside).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import trio
from fastapi import APIRouter, Request
from fastapi.responses import Response

from protocol import AssetUri, ProtocolError, check_write

from .client import asset_fields_of, put_body, put_of
from .errors import NodeError, NotFoundError

if TYPE_CHECKING:
    from .daemon import Node

log = logging.getLogger(__name__)

CODE_TTL = 120.0  # seconds a one-time code may wait to be used
SESSION_TTL = 12 * 3600.0  # seconds a page session lasts
MAX_CODES = 16
MAX_SESSIONS = 32
INDEXER_TIMEOUT = 2.0  # seconds the indexer may take to say what it holds of us
INDEXER_CACHE = 2.0  # seconds its answer is reused
COOKIE = "empressa_session_{port}"
CSRF_HEADER = "x-csrf-token"
MAX_PAGE_BODY = 64 * 1024  # bytes of one page write
MAX_UPLOAD_BYTES = 256 * 1024 * 1024  # bytes of one media file uploaded from the page
UPLOADS = "uploads"  # DATA_DIR/uploads/<cid>: files uploaded from the page, kept for ``node media push``
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; object-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}  # fmt: skip
_STATIC = re.compile(r"[a-z0-9-]+\.(js|css|svg)")


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@dataclass
class Session:
    csrf: str
    expires: float


class Sessions:
    """One-time codes and the page sessions they open, in memory and bounded (see the module docstring).

    ``clock`` is injected (``time.monotonic`` by default), so tests can expire things.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        code_ttl: float = CODE_TTL,
        session_ttl: float = SESSION_TTL,
        max_codes: int = MAX_CODES,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self._clock, self._code_ttl, self._session_ttl = clock, code_ttl, session_ttl
        self._max_codes, self._max_sessions = max_codes, max_sessions
        self._codes: OrderedDict[bytes, float] = OrderedDict()  # sha256(code) -> expiry
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()  # sha256(cookie) -> session

    def new_code(self) -> str:
        """A fresh one-time code (for :func:`node.client.one_time_link`)."""
        self._expire()
        code = secrets.token_urlsafe(32)
        self._codes[_digest(code)] = self._clock() + self._code_ttl
        while len(self._codes) > self._max_codes:
            self._codes.popitem(last=False)
        return code

    def redeem(self, code: str) -> str | None:
        """The new session's cookie value for a valid code (spent now), else ``None``."""
        self._expire()
        if self._codes.pop(_digest(code), None) is None:
            return None
        sid = secrets.token_urlsafe(32)
        self._sessions[_digest(sid)] = Session(secrets.token_urlsafe(32), self._clock() + self._session_ttl)
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)
        return sid

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        self._expire()
        return self._sessions.get(_digest(sid))

    def end(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(_digest(sid), None)

    def csrf_ok(self, sid: str | None, given: str | None) -> bool:
        """Whether ``sid`` is a live session and ``given`` its CSRF token (compared in constant time)."""
        s = self.get(sid)
        return s is not None and given is not None and hmac.compare_digest(s.csrf.encode(), given.encode())

    def _expire(self) -> None:
        now = self._clock()
        for table in (self._codes, self._sessions):
            for k in [k for k, v in table.items() if (v if isinstance(v, float) else v.expires) <= now]:
                del table[k]


class PageProblem(Exception):
    """A refusal of a page route, answered as problem+json (``errors``: the fields named)."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


# A schema error's location, as the form's field that holds it (longest prefix first).
_LOCATIONS = (
    ("body.media.cid", "cid"), ("body.media.mime", "mime"), ("body.media.size", "size"),
    ("body.media.duration_ms", "duration_ms"), ("body.media", "cid"),
    ("body.license.price.amount", "price"), ("body.license.price.currency", "currency"),
    ("body.license.price", "price"), ("body.license.terms", "terms"), ("body.license", "license"),
    ("body.payout.evm", "payout_evm"), ("body.payout.stellar", "payout_stellar"),
    ("body.payout", "payout_evm"), ("body.title", "title"), ("body.description", "description"),
    ("body.tags", "tags"), ("key", "key"),
)  # fmt: skip
_FLAG = re.compile(r"--([a-z][a-z-]*)")
_FIELD_OF_FLAG = {
    "file": "cid",
    "license": "license",
    "payout-evm": "payout_evm",
    "duration-ms": "duration_ms",
}


def field_error(exc: Exception) -> dict[str, str]:
    """``{"field", "detail"}``: the form field a write's error is about, and its one-line reason.

    A schema error (``body.title: must not be blank``) names its location; the CLI's
    own errors name a flag (``--price and --currency go together``) or a field (``tags is …``).
    """
    message = str(exc)
    where, sep, why = message.partition(": ")
    if sep:
        for prefix, field in _LOCATIONS:
            if where == prefix or where.startswith(prefix + ".") or where.startswith(prefix + "["):
                return {"field": field, "detail": why}
    m = _FLAG.search(message)
    if m:
        flag = m.group(1)
        return {"field": _FIELD_OF_FLAG.get(flag, flag.replace("-", "_")), "detail": message}
    first = message.split(" ", 1)[0]
    if first in {"key", "title", "tags", "description", "cid", "mime", "size", "duration_ms",
                 "license", "price", "currency", "terms", "payout_evm", "payout_stellar"}:  # fmt: skip
        return {"field": first, "detail": message}
    return {"field": "", "detail": message}


def _invalid(exc: Exception) -> PageProblem:
    err = field_error(exc)
    return PageProblem(422, "Invalid field", str(exc), errors=[err])


def host_allowed(scope: Mapping[str, Any]) -> bool:
    """Whether the request's ``Host`` names this API on loopback with its bound port."""
    port = (scope.get("server") or ("", 0))[1]
    host = ""
    for k, v in scope["headers"]:
        if k == b"host":
            host = v.decode("latin-1").lower()
    return host in {f"{h}:{port}" for h in LOCAL_HOSTS}


def _cookie_name(scope: Mapping[str, Any]) -> str:
    return COOKIE.format(port=(scope.get("server") or ("", 0))[1])


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
        self._indexer: tuple[float, dict[str, Any]] | None = None

    # -- checks -------------------------------------------------------------------------

    def _check_host(self, request: Request) -> None:
        if not host_allowed(request.scope):
            raise PageProblem(421, "Misdirected request", "this page answers only on 127.0.0.1 or localhost")

    def _session(self, request: Request) -> str:
        self._check_host(request)
        sid = request.cookies.get(_cookie_name(request.scope))
        if self.sessions.get(sid) is None:
            raise PageProblem(401, "No session", "open My Library with the link `empressa node open` prints")
        return sid or ""

    async def _writer(self, request: Request) -> bytes:
        """The body of a page write, once its session, origin and CSRF token have passed."""
        raw = await self._drain(request)
        sid = self._session(request)
        origin = request.headers.get("origin")
        if origin is not None and not host_allowed(
            {
                "server": request.scope.get("server"),
                "headers": [(b"host", origin.split("//", 1)[-1].encode())],
            }
        ):
            raise PageProblem(403, "Forbidden", "a write from another origin")
        if not self.sessions.csrf_ok(sid, request.headers.get(CSRF_HEADER)):
            raise PageProblem(403, "Forbidden", "a page write needs the session's X-CSRF-Token")
        return raw

    def _page(self, name: str) -> Response:
        body = self._files.get(name)
        if body is None:
            raise PageProblem(404, "Not found", f"no page file {name!r}")
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
        return Response(body, media_type=_TYPES["." + name.rsplit(".", 1)[-1]], headers=headers)

    # -- writes ---------------------------------------------------------------------------

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

    @staticmethod
    def _fields(raw: bytes) -> dict[str, Any]:
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise PageProblem(400, "Bad request", "the body is not JSON") from None
        if type(doc) is not dict:
            raise PageProblem(400, "Bad request", "the body is one JSON object of fields")
        return doc

    async def _put(self, key: str, doc: dict[str, Any], *, edit: bool) -> dict[str, Any]:
        try:
            uri = AssetUri.of(self.node.keys.author.public, key) if edit else None
            key, fields = asset_fields_of(
                {**doc, "key": key}, base=None, payout_evm=self._payout_evm, require_title=not edit
            )
            base = await trio.to_thread.run_sync(put_of, self.node.store, uri) if uri is not None else None
            body = put_body(fields, base)
            if edit and doc.get("tags") == []:
                body["tags"] = []  # the form's tags, cleared (the CLI gives no way to say "none")
            check_write(kind="asset.put", key=key, body=body)
        except ProtocolError as exc:
            raise _invalid(exc) from None
        except NotFoundError:
            raise
        except NodeError as exc:
            raise _invalid(exc) from None
        return _written(await self.node.publish(kind="asset.put", key=key, body=body))

    def _payout_evm(self, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value == "me":
            if self.node.keys.evm_key is None:
                raise NodeError(
                    "--payout-evm me: this node has no EVM account yet (empressa node evm-account)"
                )
            from .evm import account_address

            return account_address(self.node.keys.evm_key)
        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
            raise NodeError(f"--payout-evm {value!r:.60} is not a 0x address of 20 bytes (or `me`)")
        return value

    async def _upload(self, request: Request) -> dict[str, Any]:
        """``POST /v1/local/media`` (session + CSRF): the body is the file's bytes (at most
        :data:`MAX_UPLOAD_BYTES`), ``Content-Type`` its type. The node computes its UnixFS CID
        (:func:`node.media.file_cid`), keeps it in ``DATA_DIR/uploads/<cid>`` and, with
        ``ipfs_api`` set, adds and pins it (:func:`node.media.put_files`, as ``publish --file``
        does); ``{"cid", "size", "mime", "pinned"}`` then fill the form's media fields."""
        length = request.headers.get("content-length", "")
        if not length.isdigit() or int(length) > MAX_UPLOAD_BYTES:
            raise PageProblem(
                413,
                "Body too large",
                f"a file upload gives its Content-Length and is at most {MAX_UPLOAD_BYTES} bytes",
            )
        sid = self._session(request)
        if not self.sessions.csrf_ok(sid, request.headers.get(CSRF_HEADER)):
            raise PageProblem(403, "Forbidden", "a page write needs the session's X-CSRF-Token")
        mime = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if not re.fullmatch(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}", mime):
            mime = "application/octet-stream"
        folder = self.node.settings.data_dir / UPLOADS
        await trio.to_thread.run_sync(lambda: folder.mkdir(mode=0o700, parents=True, exist_ok=True))
        tmp = folder / f".upload-{secrets.token_hex(8)}"
        size = 0
        try:
            async with await trio.open_file(tmp, "wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > MAX_UPLOAD_BYTES:
                        raise PageProblem(
                            413, "Body too large", f"a file upload is at most {MAX_UPLOAD_BYTES} bytes"
                        )
                    await f.write(chunk)
            if size == 0:
                raise PageProblem(
                    422,
                    "Invalid field",
                    "the file is empty",
                    errors=[{"field": "file", "detail": "the file is empty"}],
                )
            from .media import file_cid, put_files
            from .media_ledger import MediaFile

            cid, size = await trio.to_thread.run_sync(file_cid, tmp)
            path = folder / cid
            await trio.to_thread.run_sync(tmp.replace, path)
        finally:
            await trio.to_thread.run_sync(lambda: tmp.unlink(missing_ok=True))
        api = self.node.settings.ipfs_api
        try:
            await trio.to_thread.run_sync(
                lambda: put_files(
                    self.node.settings.data_dir, [MediaFile("media", path, cid, size)], ipfs_api=api
                )
            )
        except NodeError as exc:
            raise PageProblem(
                502, "IPFS refused", str(exc), errors=[{"field": "file", "detail": str(exc)}]
            ) from None
        return {"cid": cid, "size": size, "mime": mime, "pinned": api is not None}

    # -- the indexer ----------------------------------------------------------------------

    async def indexer_state(self) -> dict[str, Any]:
        """What the configured indexer holds of our log: ``state`` is ``searchable``, ``behind`` (by
        ``behind`` entries), ``indexing`` (stored there, not yet in its search), ``unreachable`` or
        ``unconfigured``."""
        url = self.node.settings.indexer_url
        head = await trio.to_thread.run_sync(self.node.store.head, self.node.keys.author.public)
        mine = head.seq if head is not None else 0
        if url is None:
            return {"state": "unconfigured", "head": mine}
        now = time.monotonic()
        if (
            self._indexer is not None
            and now - self._indexer[0] < INDEXER_CACHE
            and self._indexer[1]["head"] == mine
        ):
            return self._indexer[1]
        theirs, searchable = 0, None
        try:
            async with httpx.AsyncClient(timeout=INDEXER_TIMEOUT) as client:
                r = await client.get(f"{url.rstrip('/')}/v1/creators/{self.node.did}")
            if r.status_code == 200:
                doc = r.json()
                theirs = int((doc.get("head") or {}).get("seq") or 0)
                searchable = doc.get("searchable")
            elif r.status_code != 404:
                raise ValueError(f"status {r.status_code}")
        except (httpx.HTTPError, ValueError, TypeError, AttributeError) as exc:
            log.info("indexer unreachable url=%s err=%s", url, exc)
            state = {"state": "unreachable", "head": mine, "indexer_url": url}
        else:
            behind = max(0, mine - theirs)
            label = "behind" if behind else ("indexing" if searchable is False else "searchable")
            state = {
                "state": label,
                "behind": behind,
                "head": mine,
                "indexer_head": theirs,
                "indexer_url": url,
            }
        self._indexer = (now, state)
        return state

    # -- routes ---------------------------------------------------------------------------

    def router(self) -> APIRouter:
        r = APIRouter()
        pages = self

        @r.get("/", include_in_schema=False)
        async def index(request: Request) -> Response:
            pages._check_host(request)
            return pages._page("index.html")

        @r.get("/web/{name}", include_in_schema=False)
        async def static(name: str, request: Request) -> Response:
            pages._check_host(request)
            if not _STATIC.fullmatch(name):
                raise PageProblem(404, "Not found", f"no page file {name!r}")
            return pages._page(name)

        @r.get("/open", include_in_schema=False)
        async def open_link(request: Request, code: str = "") -> Response:
            pages._check_host(request)
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
                _cookie_name(request.scope),
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
            pages._check_host(request)
            s = pages.sessions.get(request.cookies.get(_cookie_name(request.scope)))
            doc = {"signed_in": True, "csrf": s.csrf, "did": pages.node.did} if s else {"signed_in": False}
            return Response(
                orjson.dumps(doc), media_type="application/json", headers={"Cache-Control": "no-store"}
            )

        @r.delete("/v1/local/session", status_code=204, summary="End the page session")
        async def logout(request: Request) -> Response:
            await pages._writer(request)
            pages.sessions.end(request.cookies.get(_cookie_name(request.scope)))
            resp = Response(status_code=204)
            resp.delete_cookie(_cookie_name(request.scope), path="/", httponly=True, samesite="strict")
            return resp

        @r.post("/v1/local/assets", status_code=201, summary="Publish from the page (session + CSRF)")
        async def publish(request: Request) -> dict[str, Any]:
            doc = pages._fields(await pages._writer(request))
            key = doc.pop("key", None)
            if type(key) is not str or not key:
                raise PageProblem(
                    422,
                    "Invalid field",
                    "key is required",
                    errors=[{"field": "key", "detail": "is required"}],
                )
            return await pages._put(key, doc, edit=False)

        @r.patch(
            "/v1/local/assets/{key}", summary="Edit from the page: the fields given change (session + CSRF)"
        )
        async def edit(key: str, request: Request) -> dict[str, Any]:
            doc = pages._fields(await pages._writer(request))
            doc.pop("key", None)
            return await pages._put(key, doc, edit=True)

        @r.delete("/v1/local/assets/{key}", summary="Delete from the page (session + CSRF)")
        async def delete(key: str, request: Request) -> dict[str, Any]:
            await pages._writer(request)
            try:
                uri = AssetUri.of(pages.node.keys.author.public, key)
            except ProtocolError as exc:
                raise _invalid(exc) from None
            await trio.to_thread.run_sync(put_of, pages.node.store, uri)
            return _written(await pages.node.publish(kind="asset.delete", key=key, body={}))

        @r.post(
            "/v1/local/media",
            status_code=201,
            summary="Upload a media file: hashed, kept, pinned if ipfs_api",
        )
        async def upload(request: Request) -> dict[str, Any]:
            return await pages._upload(request)

        @r.get("/v1/local/indexer", summary="Whether the configured indexer has our latest write")
        async def indexer() -> dict[str, Any]:
            return await pages.indexer_state()

        return r


def _written(e: Any) -> dict[str, Any]:
    return {"uri": e.uri.text, "hash": e.hash.cid, "seq": e.seq}


def problem_response(exc: PageProblem, request_id: str) -> Response:
    doc = {"type": "about:blank", "title": exc.title, "status": exc.status, "detail": exc.detail}
    return Response(
        orjson.dumps({**doc, "request_id": request_id, **exc.extra}),
        status_code=exc.status,
        media_type="application/problem+json",
    )
