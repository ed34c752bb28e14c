"""The bridge's attestation publisher: the outbox's rows as ``attest`` entries of the bridge's log.

::

    reconciler ─queue_attestation + NOTIFY empressa_outbox─▶ attest_outbox
                                                               │ (wakes; or every attest_poll_interval)
                                                               ▼
    AttestPublisher: Store.publish_attestations, one transaction per batch of attest_batch rows:
        lock rows (id order, SKIP LOCKED) → sign attest entries on the log's head → the one ingest
        path (entries, head, activity, verification) → rows marked published → COMMIT
                                                               │
                                                               ▼
    Node.announce: the newest own entry is gossiped; peers that see the gap pull the rest over sync

Exactly once: a row is published if and only if its entry is in the bridge's
log, because both are written by the same transaction; a bridge killed at any
point leaves each row either published with its entry or untouched, and the
next run picks up where the last commit left off. Database errors are retried
with backoff, like the rest of the bridge (the batch is simply taken again);
any other failure is logged and retried the same way, so it never stops the
bridge's mirroring.
"""

from __future__ import annotations

import logging

import trio

from indexer.store import DatabaseError, Store
from indexer.store.changes import ChangeListener
from indexer.store.outbox import OUTBOX_CHANNEL
from node.daemon import RETRY_MAX_DELAY, Node
from node.keystore import Keys
from protocol import AuthorKey, Signer, parse_did

from .config import BridgeSettings
from .metrics import BridgeMetrics

log = logging.getLogger(__name__)

LISTEN_SLICE = 1.0  # seconds: the longest one blocking wait for a NOTIFY (bounds a stop's delay)


def trusted_attesters(settings: BridgeSettings, keys: Keys) -> frozenset[AuthorKey]:
    """The bridge keys whose attestations the bridge's store applies: its own, and ``trusted_bridges``."""
    return frozenset({keys.author.public, *(parse_did(d) for d in settings.trusted_bridges)})


class AttestPublisher:
    """Publishes the outbox: ``await nursery.start(publisher.run)``.

    Args:
        store: the indexer's store (the bridge's own log lives there).
        signer: the bridge's author key.
        node: the bridge's node, woken to announce what was published.
        metrics: the bridge's metrics (published counter, outbox depth, retries).
        batch: most rows per transaction.
        poll_interval: seconds between looks at the outbox when no NOTIFY arrives.
    """

    def __init__(
        self,
        *,
        store: Store,
        signer: Signer,
        node: Node,
        metrics: BridgeMetrics,
        batch: int,
        poll_interval: float,
    ) -> None:
        self.store = store
        self.signer = signer
        self.node = node
        self.metrics = metrics
        self.batch = batch
        self.poll_interval = poll_interval
        self.published = 0  # rows this publisher published (tests, logs)
        self.wakeups = trio.Event()  # set (and replaced) after each pass over the outbox (tests)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listener: ChangeListener | None = None
        delay = 0.1
        task_status.started()
        log.info(
            "attestation publisher started did=%s batch=%d poll_interval=%.1f",
            self.signer.public.did,
            self.batch,
            self.poll_interval,
        )
        try:
            while True:
                try:
                    if listener is None:
                        listener = await trio.to_thread.run_sync(self.store.changes.listener, OUTBOX_CHANNEL)
                    await self.publish_pending()
                    delay = 0.1
                    await self._wait(listener)
                except Exception as exc:  # never stops the bridge: it goes on mirroring, and retries this
                    self.metrics.store_retries.inc()
                    if isinstance(exc, DatabaseError):
                        log.warning(
                            "attestation publisher: database error; retrying in=%.1fs err=%s", delay, exc
                        )
                    else:
                        log.error(
                            "attestation publisher failed; retrying in=%.1fs err=%s: %s",
                            delay,
                            exc.__class__.__name__,
                            str(exc).splitlines()[0] if str(exc) else "",
                        )
                    if listener is not None:
                        listener.close()
                        listener = None
                    await trio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_DELAY)
        finally:
            if listener is not None:
                listener.close()

    async def _wait(self, listener: ChangeListener) -> None:
        """Until a NOTIFY on the outbox channel, or ``poll_interval`` (the safety net)."""
        deadline = trio.current_time() + self.poll_interval
        while (left := deadline - trio.current_time()) > 0:
            woke = await trio.to_thread.run_sync(
                listener.wait, min(left, LISTEN_SLICE), abandon_on_cancel=True
            )
            if woke:
                return

    async def publish_pending(self) -> int:
        """Publish batches until the outbox is empty; returns how many rows were published.

        Each batch is one transaction (:meth:`indexer.store.Store.publish_attestations`);
        a cancellation waits for the batch in flight to commit or roll back.
        """
        total = 0
        try:
            while True:
                done = await trio.to_thread.run_sync(
                    lambda: self.store.publish_attestations(self.signer, limit=self.batch)
                )
                n = len(done.entries)
                if n:
                    total += n
                    self.published += n
                    self.metrics.attestations_published.inc(n)
                    self.node.announce(done.entries)
                    log.info(
                        "attestations published count=%d seq=%d..%d total=%d",
                        n,
                        done.entries[0].seq,
                        done.entries[-1].seq,
                        self.published,
                    )
                if n + len(done.set_aside) < self.batch:
                    break
            self.metrics.outbox_depth.set(await trio.to_thread.run_sync(self.store.outbox_depth))
            return total
        finally:
            self.wakeups.set()
            self.wakeups = trio.Event()
