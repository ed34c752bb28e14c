"""The indexer's store as the bridge daemon's :class:`node.replica.Replica`, with metrics.

:class:`IndexerReplica` passes every call through to ``indexer.store.Store``
and adds what only the bridge needs: each entry's receipt time (stamped by the
daemon's ``on_receive`` hook, stored as ``entries.received_at``), where it came
from (the ``source`` of quarantine rows), the rows the verify workers already
built for it (:meth:`IndexerReplica.prepared`, handed to ``Store.ingest`` with
the entry), and the lag and outcome metrics.
Database errors are not handled here: the daemon retries them with backoff
(``retry_errors``), re-submitting the same batch, which is harmless because
ingest is idempotent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from indexer.store import IngestReport, Store
from indexer.store.rows import Prepared
from protocol import AuthorKey, Entry, EntryHash, Head, Signer

from .metrics import BridgeMetrics

log = logging.getLogger(__name__)

MAX_STAMPS = 500_000  # receipt stamps kept for entries not yet written (a bound, never reached in practice)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class IndexerReplica:
    """A :class:`~node.replica.Replica` over the indexer's PostgreSQL store."""

    def __init__(self, store: Store, *, metrics: BridgeMetrics) -> None:
        self.store = store
        self._m = metrics
        self._stamps: dict[bytes, tuple[int, str]] = {}  # entry hash -> (received ms, source)
        self._rows: Prepared = {}  # entry hash -> its rows, built by a verify worker
        self._lock = threading.Lock()
        self.appended_total = 0  # entries this bridge committed (for tests and benchmarks)
        self.writes_total = 0  # ingest transactions (batches) it made
        self.first_received_at: float | None = None  # time.perf_counter() of the first verified entry
        self.last_commit_at: float | None = None  # time.perf_counter() of the last commit that appended

    # -- hooks the daemon calls in the trio thread --------------------------------------

    def received(self, entries: Sequence[Entry], source: str) -> None:
        """``on_receive``: stamp verified entries and observe their receive lag."""
        now = _now_ms()
        if self.first_received_at is None:
            self.first_received_at = time.perf_counter()
        with self._lock:
            if len(self._stamps) > MAX_STAMPS:
                log.warning("receipt stamps over the bound; forgetting them count=%d", len(self._stamps))
                self._stamps.clear()
            for e in entries:
                self._stamps[e.hash.raw] = (now, source)
        for e in entries:
            self._m.receive_lag.observe(max(0, now - e.ts) / 1000)

    def prepared(self, rows: Prepared) -> None:
        """Rows the verify workers built (:class:`bridge.verify.PoolVerifier`), kept until ingested."""
        with self._lock:
            if len(self._rows) > MAX_STAMPS:
                log.warning("prepared rows over the bound; forgetting them count=%d", len(self._rows))
                self._rows.clear()  # only a cost: ingest builds what it is not given
            self._rows.update(rows)

    # -- the Replica interface -------------------------------------------------------------

    def ingest(self, entries: Sequence[Entry]) -> IngestReport:
        with self._lock:
            stamps = [self._stamps.get(e.hash.raw) for e in entries]
            rows = {h: r for e in entries if (r := self._rows.pop(h := e.hash.raw, None)) is not None}
        now = _now_ms()
        sources = {s[1] for s in stamps if s is not None}
        source = sources.pop() if len(sources) == 1 else "bridge"
        received = [s[0] if s is not None else now for s in stamps]
        report = self.store.ingest(entries, source=source, received_ms=received, prepared=rows)
        committed = _now_ms()
        if report.appended:
            self.last_commit_at = time.perf_counter()
        with self._lock:
            for e in entries:
                self._stamps.pop(e.hash.raw, None)
        at = {e.hash.raw: r for e, r in zip(entries, received, strict=True)}
        for e in report.appended:
            self._m.commit_lag.observe(max(0, committed - at.get(e.hash.raw, committed)) / 1000)
        self.appended_total += len(report.appended)
        self.writes_total += 1
        self._m.store_writes.inc()
        self._m.ingested.inc(len(report.appended))
        self._m.duplicates.inc(report.duplicates)
        self._m.forks.inc(len(report.forks))
        self._m.held.inc(report.held)
        self._m.quarantined.inc(len(report.forks) + len(report.refused))
        return report

    def append_local(self, signer: Signer, *, kind: str, key: str, body: dict[str, Any]) -> Entry:
        return self.store.append_local(signer, kind=kind, key=key, body=body)

    def head(self, author: AuthorKey) -> Head | None:
        return self.store.head(author)

    def heads(self, *, after: bytes | None = None, limit: int = 1000) -> list[tuple[bytes, int, bytes]]:
        return self.store.heads(after=after, limit=limit)

    def heads_between(self, lo: bytes, hi: bytes) -> dict[bytes, tuple[int, bytes]]:
        return self.store.heads_between(lo, hi)

    def range_raw(self, author: bytes, start: int, end: int) -> list[bytes]:
        return self.store.range_raw(author, start, end)

    def get_raw(self, h: EntryHash) -> bytes | None:
        return self.store.get_raw(h)

    # -- for the gauges ------------------------------------------------------------------------

    def count_authors(self) -> int:
        """Authors with a head, for the known-authors gauge."""
        return self.store.count_authors()
