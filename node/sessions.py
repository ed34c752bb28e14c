"""Who may use My Library: one-time codes, page sessions, and the checks every page request passes.

Writing needs more than being on 127.0.0.1; the flow, end to end::

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
* Every page response carries the strict headers of :mod:`node.webpolicy` (a CSP with
  ``default-src 'self'``, no inline script, ``frame-ancestors 'none'``; ``nosniff``; no referrer).

A check that fails raises :class:`PageProblem`, which the local API answers as
problem+json (:func:`problem_response`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

CODE_TTL = 120.0  # seconds a one-time code may wait to be used
SESSION_TTL = 12 * 3600.0  # seconds a page session lasts
MAX_CODES = 16
MAX_SESSIONS = 32
COOKIE = "empressa_session_{port}"
CSRF_HEADER = "x-csrf-token"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


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


def host_allowed(scope: Mapping[str, Any]) -> bool:
    """Whether the request's ``Host`` names this API on loopback with its bound port."""
    port = (scope.get("server") or ("", 0))[1]
    host = ""
    for k, v in scope["headers"]:
        if k == b"host":
            host = v.decode("latin-1").lower()
    return host in {f"{h}:{port}" for h in LOCAL_HOSTS}


def cookie_name(scope: Mapping[str, Any]) -> str:
    """The session cookie's name for the API that got the request (its port in the name)."""
    return COOKIE.format(port=(scope.get("server") or ("", 0))[1])


def check_host(request: Request) -> None:
    """Refuse (421) a request whose ``Host`` is not this API on loopback."""
    if not host_allowed(request.scope):
        raise PageProblem(421, "Misdirected request", "this page answers only on 127.0.0.1 or localhost")


def session_of(sessions: Sessions, request: Request) -> str:
    """The request's live session id (after :func:`check_host`); refuse (401) a request without one."""
    check_host(request)
    sid = request.cookies.get(cookie_name(request.scope))
    if sessions.get(sid) is None:
        raise PageProblem(401, "No session", "open My Library with the link `empressa node open` prints")
    return sid or ""


def check_origin(request: Request) -> None:
    """Refuse (403) a write whose ``Origin`` header names another origin than this API on loopback."""
    origin = request.headers.get("origin")
    if origin is not None and not host_allowed(
        {
            "server": request.scope.get("server"),
            "headers": [(b"host", origin.split("//", 1)[-1].encode())],
        }
    ):
        raise PageProblem(403, "Forbidden", "a write from another origin")


def check_csrf(sessions: Sessions, sid: str, request: Request) -> None:
    """Refuse (403) a write without session ``sid``'s CSRF token in ``X-CSRF-Token``."""
    if not sessions.csrf_ok(sid, request.headers.get(CSRF_HEADER)):
        raise PageProblem(403, "Forbidden", "a page write needs the session's X-CSRF-Token")


def problem_response(exc: PageProblem, request_id: str) -> Response:
    doc = {"type": "about:blank", "title": exc.title, "status": exc.status, "detail": exc.detail}
    return Response(
        orjson.dumps({**doc, "request_id": request_id, **exc.extra}),
        status_code=exc.status,
        media_type="application/problem+json",
    )
