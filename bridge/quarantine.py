"""Entries that failed verification, batched into the indexer's ``quarantine`` table.

The daemon calls :meth:`RejectQueue.reject` (its ``on_reject`` hook) in the
trio thread for every entry it refuses, from gossip or from a range pulled
over sync. Nothing is dropped silently: each reject waits in a bounded queue,
and :meth:`RejectQueue.run` writes them in batches with
:meth:`indexer.store.Store.quarantine` (which deduplicates by content digest,
counts repeats, keeps no raw bytes of an input over 16 KiB and holds the
quarantine's bounds per source and in total: see
:mod:`indexer.store.quarantine`), retrying database errors with backoff. If a
flood fills the queue, further rejects are counted, dropped, and the count is
logged (and exported as ``empressa_bridge_rejects_dropped_total``); rejects the
store drops at a bound are counted in :attr:`RejectQueue.over_bound` (the
store logs each such batch).
"""

from __future__ import annotations

import logging

import trio

from indexer.store import DatabaseError, Rejected, Store
from protocol import ProtocolError

from .metrics import BridgeMetrics

log = logging.getLogger(__name__)

BATCH = 500
RETRY_MAX_DELAY = 5.0


class RejectQueue:
    """A bounded queue of rejected entries and the task that writes them to quarantine."""

    def __init__(self, store: Store, *, metrics: BridgeMetrics, bound: int = 10_000) -> None:
        self._store = store
        self._m = metrics
        self._send, self._receive = trio.open_memory_channel[Rejected](bound)
        self.dropped = 0
        self.over_bound = 0  # rejects the store did not record: the quarantine was at a bound
        self.written = 0

    def reject(self, raw: bytes, exc: ProtocolError, source: str) -> None:
        """``on_reject``: queue one rejected entry (never blocks; counts a drop if the queue is full)."""
        item = Rejected(raw=bytes(raw), code=exc.code, reason=str(exc), source=source)
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            self.dropped += 1
            self._m.rejects_dropped.inc()

    def pending(self) -> int:
        return self._send.statistics().current_buffer_used

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        reported = 0
        while True:
            batch = [await self._receive.receive()]
            while len(batch) < BATCH:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            await self._write(batch)
            if self.dropped > reported:
                log.warning(
                    "quarantine queue overflowed; rejects dropped count=%d total=%d",
                    self.dropped - reported,
                    self.dropped,
                )
                reported = self.dropped

    async def _write(self, batch: list[Rejected]) -> None:
        delay = 0.1
        while True:
            try:
                over = await trio.to_thread.run_sync(self._store.quarantine, batch)
            except DatabaseError as exc:
                self._m.store_retries.inc()
                log.warning(
                    "quarantine write failed; retrying count=%d in=%.1fs err=%s", len(batch), delay, exc
                )
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)
                continue
            self.over_bound += over
            self.written += len(batch) - over
            self._m.quarantined.inc(len(batch) - over)
            for r in batch:
                log.info("entry quarantined source=%s code=%s reason=%s", r.source, r.code, r.reason)
            return
