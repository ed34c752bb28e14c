"""The request middleware: request id, access log, metrics, rate-limit headers, last-resort 500.

A pure ASGI middleware (not ``BaseHTTPMiddleware``) so the SSE stream flows
through untouched. For every HTTP request it:

* takes a sane incoming ``X-Request-ID`` (1-128 of ``[A-Za-z0-9._:-]``) or makes
  one, stores it in ``scope["state"]["request_id"]`` and echoes it on the response;
* copies ``RateLimit-*`` headers that a rate-limit dependency left in
  ``request.state.ratelimit`` onto the response;
* counts the request and times it by route template (``/v1/assets/{did}/{key}``,
  never the raw path, so the label set stays small);
* logs one access line (``key=value``: request id, method, route, status,
  duration, client) — never headers, so ``Authorization`` and keys stay out of logs;
* refuses a URL whose path or query holds a NUL (raw or ``%00``) with a 400
  problem, before any route runs: no parameter that reaches PostgreSQL can
  carry a character its text type cannot store;
* turns an exception that escaped every handler into a bare 500 problem.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from node.logctx import request_id

from .metrics import ApiMetrics
from .problem import ProblemResponse, problem_body

log = logging.getLogger(__name__)
access_log = logging.getLogger("indexer.api.access")


def _has_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    return "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope.get("headers", ()))
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = rid
        start = time.perf_counter()
        seen: dict[str, Any] = {}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = rid
                for k, v in (state.get("ratelimit") or {}).items():
                    if k not in headers:
                        headers[k] = v
                seen["status"] = message["status"]
                seen["elapsed"] = time.perf_counter() - start
            await send(message)

        try:
            if _has_nul(scope):
                body = problem_body(
                    status=400,
                    detail="the URL holds a NUL character (%00), which no parameter accepts",
                    instance=scope.get("path", "").replace("\x00", "%00"),
                    request_id=rid,
                )
                await ProblemResponse(body, status_code=400)(scope, receive, send_wrapper)
                return
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error request_id=%s", rid)
            if "status" not in seen:
                body = problem_body(
                    status=500,
                    detail="an unexpected error occurred; quote the request_id when reporting it",
                    instance=scope.get("path", ""),
                    request_id=rid,
                )
                await ProblemResponse(body, status_code=500)(scope, receive, send_wrapper)
        finally:
            self._record(scope, rid, seen, start)

    def _record(self, scope: Scope, rid: str, seen: dict[str, Any], start: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        status = int(seen.get("status", 500))
        elapsed = seen.get("elapsed", time.perf_counter() - start)
        self.metrics.requests.labels(method, template, str(status)).inc()
        self.metrics.latency.labels(method, template).observe(elapsed)
        client = scope.get("client")
        access_log.info(
            "request_id=%s method=%s route=%s path=%s status=%d duration_ms=%.1f client=%s",
            rid,
            method,
            template,
            scope.get("path", "").replace("\x00", "%00"),
            status,
            (time.perf_counter() - start) * 1000,
            client[0] if client else "-",
        )
