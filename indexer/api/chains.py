"""The chain sources' figures as the API shows them: ``/readyz`` (a failed source fails readiness) and the
``/metrics`` gauges, both read from ``chain_cursors.data``, where the reconciler records them.

A source is *failing* when its last recorded error is set (a ``ChainConfigError``
such as an unreachable RPC, a wrong chain id or a missing contract; a
``ReorgTooDeep`` that stopped it; an RPC that has been unavailable for longer
than :func:`stale_after`: a shorter outage is retried and not a failure), and *silent*
when chains are configured but it has not reported for :func:`stale_after`
seconds (a reconciler that died or never started).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

FIGURES = (
    "head",
    "processed",
    "lag_blocks",
    "lag_seconds",
    "reorgs",
    "events",
    "error",
    "state",
    "updated_at",
    "ok_at",
)


def stale_after(settings: Any) -> float:
    """Seconds without a report after which a configured chain fails readiness."""
    return max(60.0, 15.0 * float(settings.reconcile_interval))


def chain_figures(rows: list[Any]) -> dict[str, dict[str, Any]]:
    """The figures of every source that has reported, by source name."""
    return {
        r.source: {k: r.data.get(k) for k in FIGURES}
        for r in rows
        if isinstance(r.data, dict) and r.data.get("updated_at") is not None
    }


def chain_readiness(
    store: Any, settings: Any, *, started: float, now: float | None = None
) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """``(why not ready or None, figures)``; always ready when no chain is configured."""
    if not settings.chains_configured:
        return None, {}
    now = time.time() if now is None else now
    figures = chain_figures(store.chain.statuses())
    limit = stale_after(settings)
    for name, f in sorted(figures.items()):
        if not f.get("error"):
            continue
        if f.get("state") == "unavailable" and f.get("ok_at") and now - float(f["ok_at"]) <= limit:
            continue  # a transient RPC failure, retried with backoff: not (yet) a readiness failure
        return f"chain source {name} failed: {f['error']}", figures
    for name, f in sorted(figures.items()):
        age = now - float(f["updated_at"])
        if age > limit:
            return f"chain source {name} has not reported for {age:.0f} s (limit {limit:.0f} s)", figures
    if not figures and now - started > limit:
        return f"no chain source has reported in {now - started:.0f} s (is the reconciler running?)", figures
    return None, figures


class ChainCollector(Collector):
    """Per chain gauges (head, processed, lag blocks and seconds) and counters (reorgs, events),
    read from ``chain_cursors`` at most once per ``ttl`` seconds."""

    def __init__(self, fetch: Callable[[], list[Any]], *, ttl: float = 1.0) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._lock = threading.Lock()
        self._at = 0.0
        self._cached: dict[str, dict[str, Any]] = {}

    def _figures(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if time.monotonic() - self._at > self._ttl:
                # The database down: /readyz says so; the metrics keep the last figures.
                with contextlib.suppress(Exception):
                    self._cached = chain_figures(self._fetch())
                self._at = time.monotonic()
            return self._cached

    def describe(self) -> list[Any]:
        return []  # registering must not read the database (nor fill the cache with a stale reading)

    def collect(self) -> Iterator[Any]:
        figures = self._figures()
        gauges = {
            "head": GaugeMetricFamily(
                "empressa_chain_head", "Newest block the chain reports.", labels=["chain"]
            ),
            "processed": GaugeMetricFamily(
                "empressa_chain_processed", "Newest confirmed block fully processed.", labels=["chain"]
            ),
            "lag_blocks": GaugeMetricFamily(
                "empressa_chain_lag_blocks",
                "Blocks between the head and what is processed.",
                labels=["chain"],
            ),
            "lag_seconds": GaugeMetricFamily(
                "empressa_chain_lag_seconds", "Age of the newest processed block.", labels=["chain"]
            ),
        }
        up = GaugeMetricFamily(
            "empressa_chain_up", "1 when the source's last step succeeded.", labels=["chain"]
        )
        counters = {
            "reorgs": CounterMetricFamily("empressa_chain_reorgs", "Reorgs handled.", labels=["chain"]),
            "events": CounterMetricFamily("empressa_chain_events", "Chain events applied.", labels=["chain"]),
        }
        for name, f in sorted(figures.items()):
            for key, g in gauges.items():
                if f.get(key) is not None:
                    g.add_metric([name], float(f[key]))
            for key, c in counters.items():
                c.add_metric([name], float(f.get(key) or 0))
            up.add_metric([name], 0.0 if f.get("error") else 1.0)
        yield from gauges.values()
        yield up
        yield from counters.values()
