"""Prometheus metrics of one API app.

Each app owns a :class:`prometheus_client.CollectorRegistry` (no module-level
metric globals, so tests can build many apps). When ``PROMETHEUS_MULTIPROC_DIR``
is set, the metric values live in that directory's files and ``/metrics``
aggregates every process that shares it (bridge, feeder, reconciler) with a
:class:`~prometheus_client.multiprocess.MultiProcessCollector`.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "empressa_http_requests_total",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "empressa_http_request_duration_seconds",
            "HTTP request latency by method and route template (time to the response headers).",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ingest = Counter(
            "empressa_api_ingest_entries_total",
            "Entries submitted through POST /v1/entries, by outcome.",
            ["status"],
            registry=self.registry,
        )
        self.quarantine_dropped = Counter(
            "empressa_quarantine_dropped_total",
            "Invalid inputs of POST /v1/entries not quarantined because a quarantine bound was reached.",
            registry=self.registry,
        )
        self.search_latency = Histogram(
            "empressa_search_duration_seconds",
            "Search (GET /v1/assets) time inside the index.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.sse_clients = Counter(
            "empressa_sse_connections_total", "SSE connections opened.", registry=self.registry
        )

        self.chains: Any = None  # the ChainCollector (indexer.api.chains), once the app has a store
        self.pins: Any = None  # the PinCollector (indexer.api.media)

    def watch_chains(self, collector: Any) -> None:
        """Expose the chain sources' figures (a :class:`~.chains.ChainCollector`) in this registry."""
        self.chains = collector
        self.registry.register(collector)

    def watch_pins(self, collector: Any) -> None:
        """Expose the pin queue's figures (a :class:`~.media.PinCollector`) in this registry."""
        self.pins = collector
        self.registry.register(collector)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            if self.chains is not None:
                registry.register(self.chains)
            if self.pins is not None:
                registry.register(self.pins)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
