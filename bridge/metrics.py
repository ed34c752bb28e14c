"""The bridge's Prometheus metrics (prometheus_client, default registry).

Lag is measured per hop: ``receive`` is the entry's ``ts`` (the creator's clock)
to the bridge verifying it; ``commit`` is that receipt to the transaction that
holds it committing in PostgreSQL. With ``PROMETHEUS_MULTIPROC_DIR`` set before
prometheus_client is imported (the stack supervisor does), the values land in
that directory and the API's ``/metrics`` aggregates every process.

Metrics are process-wide (a registry refuses a name twice), so
:func:`bridge_metrics` creates them once and every bridge in a process (tests)
shares them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

LAG_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0,
)  # fmt: skip


@dataclass(frozen=True)
class BridgeMetrics:
    receive_lag: Histogram
    commit_lag: Histogram
    ingested: Counter
    duplicates: Counter
    forks: Counter
    held: Counter
    quarantined: Counter
    rejects_dropped: Counter
    store_retries: Counter
    store_writes: Counter
    known_authors: Gauge
    writer_queue: Gauge
    attestations_published: Counter
    outbox_depth: Gauge


@functools.cache
def bridge_metrics() -> BridgeMetrics:
    """The process's bridge metrics, registered on first use."""
    return BridgeMetrics(
        receive_lag=Histogram(
            "empressa_bridge_receive_lag_seconds",
            "Entry ts (creator's clock) to the bridge receiving and verifying it.",
            buckets=LAG_BUCKETS,
        ),
        commit_lag=Histogram(
            "empressa_bridge_commit_lag_seconds",
            "Bridge receipt of an entry to its commit in PostgreSQL.",
            buckets=LAG_BUCKETS,
        ),
        ingested=Counter("empressa_bridge_entries_ingested", "Entries newly committed to PostgreSQL."),
        duplicates=Counter("empressa_bridge_entries_duplicate", "Entries received again (already held)."),
        forks=Counter("empressa_bridge_forks", "Fork entries detected and quarantined."),
        held=Counter("empressa_bridge_entries_held", "Entries parked past a gap until it fills."),
        quarantined=Counter(
            "empressa_bridge_entries_quarantined",
            "Entries written to quarantine (invalid, forks, after a fork).",
        ),
        rejects_dropped=Counter(
            "empressa_bridge_rejects_dropped",
            "Rejected entries dropped because the quarantine queue was full.",
        ),
        store_retries=Counter("empressa_bridge_store_retries", "Database calls retried after an error."),
        store_writes=Counter(
            "empressa_bridge_store_writes", "Transactions writing received entries (each a batch)."
        ),
        known_authors=Gauge(
            "empressa_bridge_known_authors", "Authors with a head in PostgreSQL.", multiprocess_mode="max"
        ),
        writer_queue=Gauge(
            "empressa_bridge_writer_queue_depth",
            "Writes (gossip entries, pulled ranges) waiting for the writers.",
            multiprocess_mode="max",
        ),
        attestations_published=Counter(
            "empressa_bridge_attestations_published",
            "Outbox rows published as attest entries of the bridge's log.",
        ),
        outbox_depth=Gauge(
            "empressa_bridge_outbox_depth",
            "Attestations queued in the outbox, not yet published.",
            multiprocess_mode="max",
        ),
    )
