"""The bridge super-node: node/'s daemon running on the indexer's PostgreSQL store.

There is no second daemon here. :class:`Bridge` builds a :class:`node.daemon.Node`
(gossip → verify → single writer; gap pulls; anti-entropy with every peer every
interval and on connect; the sync server) on an :class:`~bridge.replica.IndexerReplica`
and tunes it for following everyone::

    gossip / sync ─verify─▶ on_receive (receipt stamp, receive lag)
        │                         │
        │ invalid                 ▼
        ▼                   writer: batches of ``writer_batch`` or ``writer_linger``
    on_reject ─▶ RejectQueue ─▶ quarantine      │  Store.ingest: rows + heads in one transaction
                                                 ▼
                                    PostgreSQL (commit lag, outcome counters)

Pulled ranges are verified in one worker thread at a time (:mod:`bridge.verify`: more
threads only pass the GIL around). With ``verify_workers`` > 0 they are verified and their encoded rows
built in worker processes instead, off this process's GIL; the
rows wait in the replica until the writer hands them to ``Store.ingest`` with
their entries, which plans and writes them in the one ingest transaction. The
writers batch under load only: a batch started while no other is being
written goes at once, one started during a write lingers up to
``writer_linger`` for up to ``writer_batch`` entries.

The per-author head committed with the rows is the durable cursor: on restart
the daemon's anti-entropy compares PostgreSQL's heads with every peer and pulls
what is missing, so a bridge killed at any point loses nothing and doubles
nothing. Database errors (a PostgreSQL restart) are retried with backoff by
the daemon and the quarantine writer, keeping their batch.

Beside the daemon runs the attestation publisher (:mod:`bridge.attest`): the
outbox's rows become ``attest`` entries of the bridge's own log, each exactly
once, and the daemon announces and serves them like any entry.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import trio

from indexer.store import DatabaseError, Store
from node.daemon import Node, RangeVerifier
from node.keystore import Keys

from .attest import AttestPublisher
from .config import BridgeSettings
from .metrics import BridgeMetrics, bridge_metrics
from .quarantine import RejectQueue
from .replica import IndexerReplica
from .verify import ThreadVerifier

log = logging.getLogger(__name__)

GAUGE_INTERVAL = 1.0  # seconds between refreshes of the gauges


class Bridge:
    """A running bridge: ``await nursery.start(bridge.run)``.

    Args:
        settings: the bridge's settings.
        keys: the bridge's author key (its attest log) and peer key.
        store: the indexer's store (connected; the caller closes it).
    """

    def __init__(self, *, settings: BridgeSettings, keys: Keys, store: Store) -> None:
        self.settings = settings
        self.keys = keys
        self.store = store
        self.metrics: BridgeMetrics = bridge_metrics()
        self.replica = IndexerReplica(store, metrics=self.metrics)
        self.rejects = RejectQueue(store, metrics=self.metrics, bound=settings.reject_queue)
        self._pool: Any = None
        verifier: RangeVerifier = ThreadVerifier()  # one range at a time (see bridge.verify)
        if settings.verify_workers > 0:
            from .verify import PoolVerifier

            self._pool = PoolVerifier(settings.verify_workers, on_rows=self.replica.prepared)
            verifier = self._pool
        self.node = Node(
            settings=settings.node,
            keys=keys,
            store=self.replica,
            on_receive=self.replica.received,
            on_reject=self.rejects.reject,
            writer_batch=settings.writer_batch,
            writer_linger=settings.writer_linger,
            writers=2,  # PostgreSQL: one batch prepared while the other is written
            verify_range=verifier,
            retry_errors=(DatabaseError,),
        )
        self.publisher = AttestPublisher(
            store=store,
            signer=keys.author,
            node=self.node,
            metrics=self.metrics,
            batch=settings.attest_batch,
            poll_interval=settings.attest_poll_interval,
        )
        self.did = self.node.did
        self.metrics_url: str | None = None  # set once /metrics is served (metrics_port)
        self.peer_id = self.node.peer_id

    def addrs(self) -> list[str]:
        return self.node.addrs()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        server: Any = None
        try:
            if self._pool is not None:
                await trio.to_thread.run_sync(self._pool.warm)
            async with trio.open_nursery() as nursery:
                await nursery.start(self.rejects.run)
                await nursery.start(self.node.run)
                await nursery.start(self.publisher.run)
                nursery.start_soon(self._gauge_loop)
                if self.settings.metrics_port is not None:
                    from prometheus_client import start_http_server

                    server, _thread = start_http_server(
                        self.settings.metrics_port, addr=self.settings.metrics_host
                    )
                    self.metrics_url = f"http://{self.settings.metrics_host}:{server.server_port}/metrics"
                    log.info(
                        "bridge metrics served url=http://%s:%d/metrics",
                        self.settings.metrics_host,
                        server.server_port,
                    )
                log.info(
                    "bridge started did=%s peer_id=%s verify_workers=%d batch=%d linger=%.3f",
                    self.did,
                    self.peer_id,
                    self.settings.verify_workers,
                    self.settings.writer_batch,
                    self.settings.writer_linger,
                )
                task_status.started()
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
            if self._pool is not None:
                self._pool.close()

    async def _gauge_loop(self) -> None:
        ticks = 0
        while True:
            self.metrics.writer_queue.set(self.node.writer_queue_depth())
            if ticks % 5 == 0:
                with contextlib.suppress(Exception):  # a gauge never stops the bridge
                    self.metrics.known_authors.set(await trio.to_thread.run_sync(self.replica.count_authors))
                    self.metrics.outbox_depth.set(await trio.to_thread.run_sync(self.store.outbox_depth))
            ticks += 1
            await trio.sleep(GAUGE_INTERVAL)
