"""Routers per domain; :func:`errors` documents their problem responses in OpenAPI."""

from __future__ import annotations

from typing import Any

from ..problem import PROBLEM_MEDIA_TYPE
from ..schemas import Problem

_DESCRIPTIONS = {
    400: "Malformed identifier, cursor or filter.",
    401: "No API key, or an unknown or revoked one.",
    403: "The API key lacks the scope this call needs.",
    404: "No such resource.",
    409: "Idempotency-Key reused with a different request.",
    410: "The search cursor has expired; start again from the first page.",
    413: "The body is larger than the limit.",
    415: "Unsupported Content-Type.",
    422: "Invalid parameters (per-field `errors`), or invalid entries (per-item `results`).",
    429: "Rate limit exceeded; see `Retry-After`.",
    500: "Unexpected error.",
    503: "The database or the search index is unavailable.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these problem statuses (429, 500 and 503 are always added)."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in sorted({*codes, 429, 500, 503}):
        out[code] = {
            "model": Problem,
            "description": _DESCRIPTIONS.get(code, "Problem."),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    return out
