"""The node daemon: gossip for speed, sync for completeness.

Stages, each a task in one nursery, joined by bounded channels::

    gossip ──verify──▶ inbox ──▶ writers (batches into the store) ──gaps──▶ wants
                         ▲                                                    │
                         │   anti-entropy (every peer, every interval,        │
                         │   and on connect) ──behind──▶ wants                │
                         │                                                    ▼
                         └──────────── verify ◀── pullers: range requests ◀───┘

    local publish ─▶ store ─▶ announcer (every own entry, in paced batches)
    announce() (own entries another writer appended: the bridge's attestations) ─▶ announcer

:class:`Node` is the composition root: it holds the state the stages share,
starts them (:meth:`Node.run`) and makes the store calls; each stage is a mixin
in its own module, with the rest of its story in that module's docstring:

* :mod:`node.local_writes`: ``publish``/``publish_many`` and the group commit;
* :mod:`node.gossip_in`: gossip in (verify, parked entries) and the writers;
* :mod:`node.puller`: wants, pullers, verified ranges, strikes;
* :mod:`node.anti_entropy`: heads comparisons with every peer, and serving sync;
* :mod:`node.announcer`: own entries gossiped in paced batches.

The store is any :class:`~node.replica.Replica`: the creator's SQLite store,
or the indexer's PostgreSQL store when the bridge runs this same daemon. The
bridge tunes it with keyword arguments: ``writer_batch``/``writer_linger``
(batches of about 1,000 entries or 50 ms), ``on_receive`` (every verified
entry, with where it came from), ``on_reject`` (every entry that failed
verification, for its quarantine), ``verify_range`` (a process pool) and
``retry_errors`` (store errors retried with backoff instead of stopping the
node, so a database restart loses nothing).

Gossip is lossy by design; a receiver that sees an entry past its head pulls
the missing range from a peer, and periodic anti-entropy compares heads with
every connected peer, so delivery completes even when gossip drops messages.
Small writes and small batches of received entries are committed in the trio
thread when the store is free at once (:meth:`Node._db_now`), and a checkpoint
task copies the WAL into the database in a worker thread meanwhile.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from protocol import Entry, ProtocolError, wire

from .announcer import MAX_OWN_PENDING, Announcing
from .anti_entropy import AntiEntropy
from .config import NodeSettings
from .errors import PeerError, StoreError
from .gossip_in import MAX_PARKED, WRITER_BATCH, GossipIn, _Parked, _Write
from .keystore import Keys
from .local_writes import LocalWrites, _LocalBatch
from .net.host import P2P
from .puller import MAX_PULLED_UNWRITTEN, PULLERS, Pulling, _Budget, _Want
from .replica import Replica
from .store import StoreBusy
from .sync import SyncClient, SyncServer, verify_range

log = logging.getLogger(__name__)

INLINE_MAX = 16  # writes (or received entries) few enough to commit in the trio thread, no thread hop
CHECKPOINT_EVERY = 1.0  # seconds between WAL checkpoints (in a worker thread) while the node writes
RETRY_MAX_DELAY = 5.0  # seconds: the longest wait between retries of a failing store call
GOSSIP_VERSIONS = (1, 2)

RangeVerifier = Callable[..., Awaitable[list[Entry]]]
"""``await verify(raws, author=…, start=…, max_skew_ms=…)``: :func:`node.sync.verify_range`, somewhere."""


async def verify_in_thread(raws: list[bytes], *, author: bytes, start: int, max_skew_ms: int) -> list[Entry]:
    """The default :data:`RangeVerifier`: :func:`~node.sync.verify_range` in a worker thread."""
    return await trio.to_thread.run_sync(
        partial(verify_range, raws, author=author, start=start, max_skew_ms=max_skew_ms)
    )


@dataclass
class NodeStats:
    gossip_received: int = 0
    gossip_dropped: int = 0
    rejected: int = 0
    appended: int = 0
    pulled: int = 0
    forks: int = 0
    announced: int = 0  # gossip messages published (v2 batches and v1 entries)
    announced_entries: int = 0  # own entries carried by them
    last_sync_ms: int | None = None  # unix ms when a heads comparison with a peer last completed


class Node(LocalWrites, GossipIn, Pulling, AntiEntropy, Announcing):
    """A creator's node (and, with ``keys`` of a bridge, the bridge's networking).

    Args:
        settings: the node's settings (listen addresses, bootstrap peers, timings).
        keys: the unlocked author and peer keys.
        store: the replica it runs on (SQLite for a creator, PostgreSQL for the bridge).
        on_append: called (in the trio thread) with each batch of newly stored entries.
        on_receive: called (in the trio thread) with entries that passed
            verification, before they are written, and their source
            (``gossip:<peer>`` or ``sync:<peer>``).
        on_reject: called (in the trio thread) with the raw bytes, the error and
            the source of every entry that failed verification (gossip, or a
            range pulled over sync); the node itself only logs and counts them.
        writer_batch: most gossip entries written in one store call.
        writer_linger: seconds a writer lets a batch fill when it starts one
            while another batch is being written (0, or no write in the store:
            write whatever has queued at once).
        writers: writer tasks. One for SQLite, which takes one writer at a
            time (a second would wait on its lock); the bridge runs two on
            PostgreSQL, so one batch is prepared while the other is written.
        verify_range: how pulled ranges are verified (default: a worker thread).
        retry_errors: store errors that mean "try again later" (the database is
            restarting); the call is retried with backoff, the batch kept.
        gossip_versions: the gossip topics spoken (``(1, 2)``; ``(1,)`` behaves like a
            node that predates batched gossip, for compatibility tests).
    """

    def __init__(
        self,
        *,
        settings: NodeSettings,
        keys: Keys,
        store: Replica,
        on_append: Callable[[list[Entry]], None] | None = None,
        on_receive: Callable[[Sequence[Entry], str], None] | None = None,
        on_reject: Callable[[bytes, ProtocolError, str], None] | None = None,
        writer_batch: int = WRITER_BATCH,
        writer_linger: float = 0.0,
        writers: int = 1,
        verify_range: RangeVerifier = verify_in_thread,
        retry_errors: tuple[type[Exception], ...] = (),
        gossip_versions: Sequence[int] = GOSSIP_VERSIONS,
    ) -> None:
        if not gossip_versions or set(gossip_versions) - set(GOSSIP_VERSIONS):
            raise ValueError(f"gossip_versions must be a non-empty subset of {GOSSIP_VERSIONS}")
        self.settings = settings
        self._versions = frozenset(gossip_versions)
        self.keys = keys
        self.store = store
        self._on_receive = on_receive
        self._on_reject = on_reject
        self._writer_batch = max(1, writer_batch)
        self._writer_linger = writer_linger
        self._writers = max(1, writers)
        self._verify_range = verify_range
        self._retry_errors = retry_errors
        self.did = keys.author.public.did
        self.p2p = P2P(
            peer_seed=keys.peer_seed,
            listen=list(settings.listen),
            mdns=settings.mdns,
            gossip_max_per_second=max(1000.0, settings.gossip_rate * 2),
            topics=[wire.GOSSIP_TOPIC] * (1 in self._versions)
            + [wire.GOSSIP_TOPIC_V2] * (2 in self._versions),
        )
        self.peer_id = self.p2p.peer_id
        self.stats = NodeStats()
        self.gossip_drop_rate = 0.0  # testing: fraction of incoming gossip to drop
        self.blocked: set[str] = set()  # testing: partitioned-off peers
        self._on_append = on_append
        self._sync_server = SyncServer(
            store, request_timeout=settings.sync_request_timeout, unavailable_errors=retry_errors
        )
        self.sync_client = SyncClient(self._open_sync)
        self._inbox_send, self._inbox = trio.open_memory_channel[_Write](10_000)
        self._writing = 0  # writers with a batch in the store now
        self._forming = trio.Lock()  # held by the writer taking entries for its next batch
        self._wants: dict[bytes, _Want] = {}
        self._in_flight: set[bytes] = set()  # authors being pulled, or whose pulled range awaits the writers
        self._queued = _Budget(MAX_PULLED_UNWRITTEN)
        self._comparing: set[str] = set()  # peers whose heads are being compared now
        self._wants_changed = trio.Event()
        self._announce_wakeup = trio.Event()
        self._announced_seq = 0
        self._me = keys.author.public.raw
        self._own: dict[int, bytes] = {}  # own entries stored but not yet announced, by seq
        self._own_max = 0  # the highest own seq stored, as far as this node has seen
        self._own_stale = True  # another writer of the store may have appended past it: read the head
        self._commits = 0  # transactions committed in the trio thread since the last checkpoint
        self._parked = _Parked(MAX_PARKED)
        self._strikes: dict[str, int] = {}
        self._banned_until: dict[str, float] = {}
        self._rng = random.Random()
        self._nursery: trio.Nursery | None = None
        self.changed = trio.Event()  # set (and replaced) whenever entries are stored
        self._local_send: trio.MemorySendChannel[_LocalBatch] | None = None  # to the local writer
        self._local_committing = False  # a batch waits for the local writer, or it is committing
        # Called (in the trio thread, must not block) with each batch of newly stored entries, like
        # ``on_append``; the local API's event stream adds itself here.
        self.append_listeners: list[Callable[[list[Entry]], None]] = []

    # -- lifecycle ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.p2p.run)
            self.p2p.handle(wire.PROTOCOL_ID, partial(self._serve_sync, many=False))
            self.p2p.handle(wire.PROTOCOL_ID_STREAMING, partial(self._serve_sync, many=True))
            nursery.start_soon(self._gossip_loop)
            for _ in range(self._writers):
                nursery.start_soon(self._writer_loop)
            for _ in range(PULLERS):
                nursery.start_soon(self._puller_loop)
            nursery.start_soon(self._connection_loop)
            nursery.start_soon(self._anti_entropy_loop)
            nursery.start_soon(self._announce_loop)
            nursery.start_soon(self._bootstrap_loop)
            if hasattr(self.store, "try_now"):
                self.store.manual_checkpoints()
                nursery.start_soon(self._checkpoint_loop)
            log.info(
                "node started did=%s peer_id=%s addrs=%s", self.did, self.peer_id, ",".join(self.addrs())
            )
            task_status.started()

    def addrs(self) -> list[str]:
        return self.p2p.addrs()

    def writer_queue_depth(self) -> int:
        """Writes (gossip entries, pulled ranges) waiting for the writer."""
        return self._inbox_send.statistics().current_buffer_used

    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a worker thread; ``retry_errors`` are retried with backoff, forever."""
        delay = 0.1
        while True:
            try:
                return await trio.to_thread.run_sync(partial(fn, *args, **kwargs))
            except self._retry_errors as exc:
                log.warning(
                    "store call failed; retrying op=%s in=%.1fs err=%s",
                    getattr(fn, "__name__", fn),
                    delay,
                    exc,
                )
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)

    async def _db_now(self, size: int, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the trio thread when ``size`` (writes or entries) is small and the store is
        free at once (:meth:`node.store.Store.try_now`): a commit without two thread hops, which cost
        more than the commit itself. Otherwise, or when the store is busy, :meth:`_db`."""
        try:
            return self._db_inline(size, fn, *args)
        except StoreBusy:
            return await self._db(fn, *args)

    def _db_inline(self, size: int, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the trio thread, without waiting, when ``size`` is small and the store is
        free at once.

        Raises:
            StoreBusy: it cannot run now (a store without ``try_now``, a big batch, a busy store);
                nothing was done.
        """
        try_now = getattr(self.store, "try_now", None)
        if try_now is None or size > INLINE_MAX:
            raise StoreBusy
        result = try_now(fn, *args)
        self._commits += 1
        return result

    async def _checkpoint_loop(self) -> None:
        """Copy the WAL into ``node.db`` every ``CHECKPOINT_EVERY`` while commits happen, in a worker
        thread: commits made in the trio thread never run a checkpoint themselves (its copying and
        fsync would stall the event loop), so without this the WAL would only grow."""
        while True:
            await trio.sleep(CHECKPOINT_EVERY)
            if self._commits:
                self._commits = 0
                try:
                    await self._db(self.store.checkpoint)
                except StoreError as exc:
                    log.warning("store checkpoint failed err=%s", exc)

    # -- entries stored (by any path) ------------------------------------------------

    def _stored(self, entries: list[Entry]) -> None:
        for e in entries:
            if e.author.raw != self._me:
                continue
            self._own_max = max(self._own_max, e.seq)
            if e.seq > self._announced_seq and len(self._own) < MAX_OWN_PENDING:
                self._own[e.seq] = e.raw
        self.stats.appended += len(entries)
        if self._on_append is not None:
            self._on_append(entries)
        for listener in self.append_listeners:
            listener(entries)
        self.changed.set()
        self.changed = trio.Event()

    # -- bootstrap -------------------------------------------------------------------------

    async def _bootstrap_loop(self) -> None:
        if not self.settings.bootstrap:
            return
        delay = 0.5
        while True:
            connected = set(self.p2p.peers())
            for addr in self.settings.bootstrap:
                peer = addr.rsplit("/p2p/", 1)[-1]
                if peer in connected or peer == self.peer_id:
                    continue
                try:
                    await self.p2p.connect(addr)
                    log.info("connected to bootstrap peer=%s", peer)
                except PeerError as exc:
                    log.info("bootstrap dial failed addr=%s reason=%s", addr, exc)
            await trio.sleep(delay)
            delay = min(delay * 2, 30.0)
