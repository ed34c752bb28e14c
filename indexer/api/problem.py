"""RFC 9457 problem details: every error this API returns is ``application/problem+json``.

One handler maps every :class:`~indexer.errors.IndexerError` (its class
attributes give ``status``, ``code`` and ``title``); FastAPI's request
validation errors become 422 problems with a per-field ``errors`` list;
HTTP errors raised by Starlette (404 for an unknown path, 405) keep their
status. Unexpected exceptions are turned into a bare 500 by the request
middleware (:mod:`indexer.api.middleware`), so no internals leak.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import IndexerError

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:empressa:problem:"

_HTTP_CODES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-failed", "Validation failed"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem_body(
    *,
    status: int,
    code: str | None = None,
    title: str | None = None,
    detail: str = "",
    instance: str = "",
    request_id: str = "",
    **extra: Any,
) -> dict[str, Any]:
    default_code, default_title = _HTTP_CODES.get(status, ("error", "Error"))
    code = code or default_code
    return {
        "type": TYPE_PREFIX + code,
        "title": title or default_title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "request_id": request_id,
        "code": code,
        **extra,
    }


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def problem(
    request: Request,
    *,
    status: int,
    code: str | None = None,
    title: str | None = None,
    detail: str = "",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    body = problem_body(
        status=status,
        code=code,
        title=title,
        detail=detail,
        instance=request.url.path,
        request_id=request_id_of(request),
        **extra,
    )
    return ProblemResponse(body, status_code=status, headers=headers)


class ProblemError(Exception):
    """A problem to return as is (statuses outside :mod:`indexer.errors`: 413, 415, 429)."""

    def __init__(
        self, status: int, detail: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.headers = headers


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append(
            {
                "in": loc[0] if loc else "",
                "field": ".".join(loc[1:]),
                "message": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return out


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers that turn errors into problem+json."""

    async def indexer_error(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, IndexerError)
        detail = str(exc)
        if exc.status >= 500:  # the cause is logged, not shown: it may name hosts, users, files
            log.warning("request_id=%s %s: %s", request_id_of(request), exc.code, exc)
            detail = f"{exc.title.lower()}; retry later"
        return problem(request, status=exc.status, code=exc.code, title=exc.title, detail=detail)

    async def problem_error(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, ProblemError)
        return problem(request, status=exc.status, code=exc.code, detail=exc.detail, headers=exc.headers)

    async def validation_error(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _field_errors(exc)
        fields = ", ".join(e["field"] or e["in"] for e in errors)
        return problem(request, status=422, detail=f"invalid request parameters: {fields}", errors=errors)

    async def http_error(request: Request, exc: Exception) -> ProblemResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else ""
        return problem(request, status=exc.status_code, detail=detail, headers=dict(exc.headers or {}))

    app.add_exception_handler(IndexerError, indexer_error)
    app.add_exception_handler(ProblemError, problem_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
