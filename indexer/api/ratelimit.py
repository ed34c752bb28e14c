"""Per-client rate limits (the ``limits`` library: moving window, in memory, per process).

Three buckets, each configurable in :class:`~indexer.settings.IndexerSettings`:
``read`` (public GETs, per client IP), ``submit`` (``POST /v1/entries`` without
a key, per client IP) and ``submit_key`` (with an ``ingest`` key, per key).
A refused request gets a 429 problem with ``Retry-After``; every limited
response carries ``RateLimit-Limit``, ``RateLimit-Remaining`` and
``RateLimit-Reset`` (seconds), added by the request middleware from
``request.state.ratelimit``.
"""

from __future__ import annotations

import math
import time

from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from ..settings import IndexerSettings
from .problem import ProblemError


class RateLimits:
    def __init__(self, settings: IndexerSettings) -> None:
        self.enabled = settings.rate_limit_enabled
        self.trusted_proxy = settings.trusted_proxy
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._items: dict[str, list[RateLimitItem]] = {
            "read": parse_many(settings.rate_limit_read),
            "submit": parse_many(settings.rate_limit_submit),
            "submit_key": parse_many(settings.rate_limit_submit_key),
        }

    def client_ip(self, request: Request) -> str:
        if self.trusted_proxy:
            forwarded = request.headers.get("x-forwarded-for", "")
            first = forwarded.split(",")[0].strip()
            if first:
                return first[:64]
        return request.client.host if request.client else "unknown"

    def check(self, request: Request, bucket: str, identity: str) -> None:
        """Consume one request from ``bucket`` for ``identity``; raise a 429 problem when exhausted."""
        if not self.enabled:
            return
        tightest: tuple[int, int, float] | None = None  # (limit, remaining, reset_at)
        for item in self._items[bucket]:
            allowed = self._limiter.hit(item, bucket, identity)
            stats = self._limiter.get_window_stats(item, bucket, identity)
            if not allowed:
                retry = max(1, math.ceil(stats.reset_time - time.time()))
                headers = {
                    "Retry-After": str(retry),
                    "RateLimit-Limit": str(item.amount),
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": str(retry),
                }
                raise ProblemError(
                    429,
                    f"rate limit of {item} exceeded; retry in {retry} s",
                    code="rate-limited",
                    headers=headers,
                )
            if tightest is None or stats.remaining < tightest[1]:
                tightest = (item.amount, stats.remaining, stats.reset_time)
        if tightest is not None:
            limit, remaining, reset_at = tightest
            request.state.ratelimit = {
                "RateLimit-Limit": str(limit),
                "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": str(max(0, math.ceil(reset_at - time.time()))),
            }
