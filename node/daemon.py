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

Gossip runs on two topics (:mod:`protocol.wire`). On ``empressa/entries/2`` the
announcer sends every own entry not yet announced, whoever appended it, in
batches of consecutive entries (``gossip_rate`` batches per second at most; the
first after a quiet spell goes at once); a receiver verifies each entry and
hands the batch to the writers, so a batch that continues its head is applied
with no pull. On ``empressa/entries/1`` (one raw entry a message, for peers
that predate batches) it publishes the newest entry of each batch, only while
some connected peer subscribes to v1 alone. A gap waits ``GAP_LINGER`` before
it is pulled, so a late message can fill it and several gaps of one author
become one range request; range and heads requests reuse a few open sync
streams per peer (:class:`node.sync.SyncClient`).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from protocol import (
    AuthorKey,
    Entry,
    FrameError,
    ProtocolError,
    Signer,
    check_write,
    now_ms,
    parse_and_verify,
    wire,
)

from .config import NodeSettings
from .errors import PeerError, PeerUnavailable, StoreError, WritesRejected
from .keystore import Keys
from .net.host import P2P
from .replica import IngestOutcome, Replica
from .store import LocalWrite, StoreBusy
from .sync import (
    BadEntryError,
    ClientStream,
    SyncClient,
    SyncServer,
    fetch_heads_page,
    fetch_range,
    verify_range,
)

log = logging.getLogger(__name__)

WRITER_BATCH = 1000
MAX_PULLED_UNWRITTEN = 20_000  # entries pulled and verified, waiting for the writers
PULLERS = 4
STRIKES_TO_BAN = 3
BAN_SECONDS = 60.0
MAX_HEADS_PAGES = 500  # heads pages read from one peer per anti-entropy round (1M authors)
MAX_GROUP_WRITES = 5000  # local writes signed and stored in one transaction by the local writer
INLINE_MAX = 16  # writes (or received entries) few enough to commit in the trio thread, no thread hop
VERIFY_INLINE_MAX = 8  # gossip entries verified in the trio thread (~70 µs each); more go to verify_range
CHECKPOINT_EVERY = 1.0  # seconds between WAL checkpoints (in a worker thread) while the node writes
RETRY_MAX_DELAY = 5.0  # seconds: the longest wait between retries of a failing store call
GAP_LINGER = 0.005  # seconds a gap from gossip waits before it is pulled (a late message may fill it)
BEHIND_LINGER = 0.25  # seconds a peer's head seen a little ahead (periodic anti-entropy) waits: gossip
LINGER_MAX_BEHIND = 512  # in flight may bring it. Further behind, or on connect, the pull starts at once.
ANNOUNCE_BURST = 8  # gossip batches sent back to back after a quiet spell, before pacing starts
ANNOUNCE_POLL = 0.1  # seconds between looks at the store for own entries another process appended
MAX_OWN_PENDING = 4096  # own entries kept in memory for the announcer (past that it reads the store)
MAX_PARKED = 20_000  # gossip entries past a gap kept in memory until the gap fills
GOSSIP_VERSIONS = (1, 2)

RangeVerifier = Callable[..., Awaitable[list[Entry]]]
"""``await verify(raws, author=…, start=…, max_skew_ms=…)``: :func:`node.sync.verify_range`, somewhere."""


async def verify_in_thread(raws: list[bytes], *, author: bytes, start: int, max_skew_ms: int) -> list[Entry]:
    """The default :data:`RangeVerifier`: :func:`~node.sync.verify_range` in a worker thread."""
    return await trio.to_thread.run_sync(
        partial(verify_range, raws, author=author, start=start, max_skew_ms=max_skew_ms)
    )


@dataclass
class _Write:
    """Verified entries for the writers: one gossip entry, or a pulled range."""

    entries: list[Entry]
    source: str | None  # the gossip origin, or None for a pulled range
    on_written: Callable[[IngestOutcome], None] | None = None  # pulled ranges: called once stored


class _Budget:
    """Entries pulled but not yet written, bounded: pullers wait while the writers catch up."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._freed = trio.Event()

    async def reserve(self, n: int) -> None:
        while self.used and self.used + n > self.limit:
            await self._freed.wait()
        self.used += n

    def release(self, n: int) -> None:
        self.used -= n
        self._freed.set()
        self._freed = trio.Event()


class _Parked:
    """Gossip entries that arrived past a gap, kept (bounded) until the gap fills.

    The SQLite store does not keep entries past a gap; parking them here lets
    the entries that fill the gap (a late gossip message, or a pulled range)
    bring them in without pulling them again. Past ``limit`` the author parked
    longest ago is forgotten (its entries are pulled like any gap).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._by_author: dict[bytes, dict[int, Entry]] = {}

    def park(self, entries: Sequence[Entry]) -> None:
        for e in entries:
            a = e.author.raw
            while self.count >= self.limit and next(iter(self._by_author), a) != a:
                self.count -= len(self._by_author.pop(next(iter(self._by_author))))
            if self.count >= self.limit:
                return  # this author alone fills the bound: the rest is pulled
            held = self._by_author.setdefault(a, {})
            if e.seq not in held:
                held[e.seq] = e
                self.count += 1

    def take_run(self, author: bytes, seq: int) -> list[Entry]:
        """The parked entries ``seq``, ``seq + 1``, … (removed); parked entries before ``seq`` are dropped."""
        held = self._by_author.get(author)
        if not held:
            return []
        run = []
        while seq in held:
            run.append(held.pop(seq))
            seq += 1
        stale = [s for s in held if s < seq]
        for s in stale:
            del held[s]
        self.count -= len(run) + len(stale)
        if not held:
            del self._by_author[author]
        return run

    def run_start(self, author: bytes, end: int) -> int:
        """The lowest ``s`` such that ``s..end`` are all parked (``end + 1`` when ``end`` is not)."""
        held = self._by_author.get(author, {})
        s = end + 1
        while s - 1 in held:
            s -= 1
        return s


@dataclass
class _LocalBatch:
    """One call's writes for the local writer, and what became of them."""

    writes: list[LocalWrite]
    entries: list[Entry] = field(default_factory=list)
    error: Exception | None = None
    done: trio.Event = field(default_factory=trio.Event)

    def finish(self, *, entries: list[Entry] | None = None, error: Exception | None = None) -> None:
        if not self.done.is_set():
            self.entries, self.error = entries or [], error
            self.done.set()


def _append_each(
    store: Replica, signer: Signer, batches: list[list[LocalWrite]]
) -> list[list[Entry] | WritesRejected]:
    """:meth:`node.store.Store.append_local_many` for a replica that has only ``append_local``.

    A batch of several is checked whole first (:func:`protocol.check_write`), so a
    bad item stores nothing of its batch; the writes are then appended one by one.
    """
    out: list[list[Entry] | WritesRejected] = []
    for batch in batches:
        bad: list[tuple[int, ProtocolError]] = []
        for i, w in enumerate(batch if len(batch) > 1 else ()):
            try:
                check_write(kind=w.kind, key=w.key, body=w.body)
            except ProtocolError as exc:
                bad.append((i, exc))
        done: list[Entry] = []
        if not bad:
            try:
                for w in batch:
                    done.append(store.append_local(signer, kind=w.kind, key=w.key, body=w.body))
            except ProtocolError as exc:  # a lone write (or the size edge check_write cannot see)
                bad.append((len(done), exc))
        out.append(WritesRejected([(i, str(e)) for i, e in bad], cause=bad[0][1]) if bad else done)
    return out


@dataclass
class _Want:
    target: int
    ready_at: float = 0.0  # trio time before which it is not pulled (GAP_LINGER)
    peers: list[str] = field(default_factory=list)


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


class _TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.stamp = trio.current_time()

    async def take(self) -> None:
        while True:
            now = trio.current_time()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await trio.sleep((1 - self.tokens) / self.rate)


class Node:
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
        try_now = getattr(self.store, "try_now", None)
        if try_now is not None and size <= INLINE_MAX:
            try:
                result = try_now(fn, *args)
            except StoreBusy:
                pass
            else:
                self._commits += 1
                return result
        return await self._db(fn, *args)

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

    # -- writing our own log -------------------------------------------------------

    async def publish(self, *, kind: str, key: str, body: dict[str, Any]) -> Entry:
        """Sign, store and announce the next entry of this node's author.

        Raises:
            protocol.SchemaError: the fields are invalid (nothing is stored).
            StoreError: the log has a fork, or the store cannot be written.
        """
        try:
            [entry] = await self.publish_many([LocalWrite(kind, key, body)])
        except WritesRejected as exc:
            raise exc.cause or exc from None
        return entry

    async def publish_many(self, writes: Sequence[LocalWrite]) -> list[Entry]:
        """Sign, store and announce ``writes`` as the next entries of this node's author, all or none.

        Calls made while a commit is under way are committed together (a group
        commit): one local writer task takes every call waiting, up to
        ``MAX_GROUP_WRITES`` writes, and signs and stores them in one transaction
        and one worker-thread hop, each call still all or nothing. So N writers
        get more than 1/latency writes per second, and a bulk request costs one
        transaction. A caller that is cancelled while it waits does not withdraw
        its writes: once handed over they are stored and announced.

        Raises:
            WritesRejected: some writes are invalid (each bad one's index); none of ``writes`` is stored.
            StoreError: the log has a fork, or the store cannot be written.
        """
        if not writes:
            return []
        pending = _LocalBatch(list(writes))
        if self._nursery is None:  # not running: no writer task to hand it to
            await self._commit_local([pending])
        else:
            if self._local_send is None:  # started on first use, in the node's nursery
                self._local_send, receive = trio.open_memory_channel[_LocalBatch](math.inf)
                self._nursery.start_soon(self._local_writer, receive)
            # Unbounded, yet bounded by the callers: each one waits for its own batch below.
            self._local_send.send_nowait(pending)
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.entries

    async def _local_writer(self, receive: trio.MemoryReceiveChannel[_LocalBatch]) -> None:
        async for first in receive:
            group, size = [first], len(first.writes)
            while size < MAX_GROUP_WRITES:
                try:
                    more = receive.receive_nowait()
                except trio.WouldBlock:
                    break
                group.append(more)
                size += len(more.writes)
            await self._commit_local(group)

    async def _commit_local(self, group: list[_LocalBatch]) -> None:
        """One transaction for ``group`` (:meth:`node.store.Store.append_local_many`); every caller told."""
        # The creator's SQLite store commits the group in one transaction; another replica (the
        # bridge's PostgreSQL store, which publishes little) one write at a time.
        many = getattr(self.store, "append_local_many", None) or partial(_append_each, self.store)
        try:
            outcomes = await self._db_now(
                sum(len(p.writes) for p in group), many, self.keys.author, [p.writes for p in group]
            )
        except BaseException as exc:
            for p in group:
                p.finish(error=exc if isinstance(exc, Exception) else StoreError("the node is stopping"))
            raise
        stored: list[Entry] = []
        for p, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, WritesRejected):
                p.finish(error=outcome)
            else:
                stored += outcome
                p.finish(entries=outcome)
        if stored:
            self._stored(stored)
            self._announce_wakeup.set()

    def announce(self, entries: Sequence[Entry] = ()) -> None:
        """Entries were appended to this node's own log by another writer of the same store (the
        bridge's attestation publisher): count them as stored and wake the announcer, which gossips
        the newest; peers that see the gap pull the rest over sync."""
        if entries:
            self._stored(list(entries))
        else:
            self._own_stale = True
        self._announce_wakeup.set()

    # -- gossip in -----------------------------------------------------------------

    async def _gossip_loop(self) -> None:
        async for msg in self.p2p.gossip:
            if msg.origin == self.peer_id:
                continue  # our own announcement, echoed back by pubsub
            self.stats.gossip_received += 1
            if msg.origin in self.blocked or (
                self.gossip_drop_rate and self._rng.random() < self.gossip_drop_rate
            ):
                self.stats.gossip_dropped += 1
                continue
            if msg.topic == wire.GOSSIP_TOPIC_V2:
                entries = await self._gossip_batch(msg.data, msg.origin)
            else:
                entries = self._gossip_entry(msg.data, msg.origin)
            if not entries:
                continue
            if self._on_receive is not None:
                self._on_receive(entries, f"gossip:{msg.origin}")
            await self._inbox_send.send(_Write(entries, msg.origin))

    def _gossip_entry(self, data: bytes, origin: str) -> list[Entry]:
        """A v1 message: one entry, verified (or rejected: ``[]``)."""
        try:
            return [parse_and_verify(data, now_ms=now_ms(), max_skew_ms=self.settings.max_clock_skew_ms)]
        except ProtocolError as exc:
            self._reject_gossip(data, exc, origin)
            return []

    async def _gossip_batch(self, data: bytes, origin: str) -> list[Entry]:
        """A v2 message: consecutive entries of one author, each verified (or all rejected: ``[]``).

        Up to ``VERIFY_INLINE_MAX`` entries are verified here (a thread hop costs
        more than that); more go to ``verify_range`` (a worker thread, or the
        bridge's process pool), like a pulled range.
        """
        try:
            batch = wire.decode_gossip_batch(data)
        except FrameError as exc:
            self.stats.rejected += 1
            log.info("gossip batch rejected origin=%s code=%s reason=%s", origin, exc.code, exc)
            return []
        skew = self.settings.max_clock_skew_ms
        try:
            if len(batch.entries) <= VERIFY_INLINE_MAX:
                return verify_range(batch.entries, author=batch.author, start=batch.start, max_skew_ms=skew)
            return await self._verify_range(
                batch.entries, author=batch.author, start=batch.start, max_skew_ms=skew
            )
        except BadEntryError as exc:
            self._reject_gossip(exc.raw, exc.cause, origin)
        except PeerError as exc:
            self.stats.rejected += 1
            log.info("gossip batch rejected origin=%s reason=%s", origin, exc)
        return []

    def _reject_gossip(self, raw: bytes, exc: ProtocolError, origin: str) -> None:
        self.stats.rejected += 1
        log.info("gossip entry rejected origin=%s code=%s reason=%s", origin, exc.code, exc)
        if self._on_reject is not None:
            self._on_reject(raw, exc, f"gossip:{origin}")

    async def _writer_loop(self) -> None:
        """A writer: every store write of received entries, in batches of about ``writer_batch``.

        Gossip entries and pulled ranges share the batches, so catching up with
        many authors of a few entries each costs a few large transactions, not
        one per author. A writer that finds no other write in the store writes
        what has queued at once: the first entry after an idle spell waits for
        nothing (latency). Under load, while another writer's batch is in the
        store, entries queue and form the next batch: with a linger (the
        bridge) a writer that starts a batch then lets it fill for up to that
        long or ``writer_batch`` entries (throughput: fewer, larger
        transactions). With ``writers`` > 1 one batch is prepared while another
        is in the database; the store keeps them consistent whatever their
        order (entries past a gap wait in it until the gap fills).
        """
        while True:
            async with self._forming:  # one batch forms at a time, beside the one being written
                batch = [await self._inbox.receive()]
                size = len(batch[0].entries)
                if self._writer_linger > 0 and self._writing:  # under load: let the batch fill
                    with trio.move_on_after(self._writer_linger):
                        while size < self._writer_batch:
                            batch.append(await self._inbox.receive())
                            size += len(batch[-1].entries)
                while size < self._writer_batch:
                    try:
                        batch.append(self._inbox.receive_nowait())
                    except trio.WouldBlock:
                        break
                    size += len(batch[-1].entries)
                self._writing += 1  # before the next writer looks
            try:
                entries = [e for w in batch for e in w.entries]
                report = await self._db_now(len(entries), self.store.ingest, entries)
            finally:
                self._writing -= 1
            self._after_ingest(report, {e.author: w.source for w in batch if w.source for e in w.entries})
            self._after_gossip(report, [e for w in batch if w.source for e in w.entries])
            for w in batch:
                if w.on_written is not None:
                    w.on_written(report)

    def _after_ingest(self, report: IngestOutcome, sources: dict[AuthorKey, str]) -> None:
        if report.appended:
            self._stored(report.appended)
        for author, (_lo, hi) in report.gaps.items():
            self._want(author.raw, hi, sources.get(author), linger=GAP_LINGER)
        for e in report.forks:
            self.stats.forks += 1
            log.warning("fork detected author=%s seq=%d hash=%s", e.author.did, e.seq, e.hash.cid)
        for e, why in report.refused:
            log.info("entry held back author=%s seq=%d reason=%s", e.author.did, e.seq, why)

    def _after_gossip(self, report: IngestOutcome, gossip: list[Entry]) -> None:
        """Park gossip entries the store left past a gap; send on parked runs that now continue a head."""
        status: dict[bytes, str] = getattr(report, "status", {})
        self._parked.park([e for e in gossip if status.get(e.hash.raw) == "gap"])
        grown: dict[bytes, int] = {}
        for e in report.appended:
            grown[e.author.raw] = max(grown.get(e.author.raw, 0), e.seq)
        for author, seq in grown.items():
            if author not in self._in_flight:  # else the puller sends them on once its range is in
                self._refill(author, seq + 1)

    def _refill(self, author: bytes, seq: int) -> bool:
        """Send ``author``'s parked entries from ``seq`` on to the writers; the author is in flight meanwhile."""
        run = self._parked.take_run(author, seq)
        if not run or self._nursery is None:
            return False
        self._in_flight.add(author)
        self._nursery.start_soon(
            self._inbox_send.send, _Write(run, None, on_written=partial(self._refill_written, author))
        )
        return True

    def _refill_written(self, author: bytes, report: IngestOutcome) -> None:
        self._in_flight.discard(author)
        self._wants_changed.set()

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

    # -- pulling ranges -------------------------------------------------------------

    def _want(self, author: bytes, target: int, peer: str | None, *, linger: float = 0.0) -> None:
        """Pull ``author``'s log up to ``target``; a new want waits ``linger`` first (merging later gaps)."""
        w = self._wants.get(author)
        if w is None:
            w = self._wants[author] = _Want(target, trio.current_time() + linger)
        w.target = max(w.target, target)
        if peer and peer not in w.peers:
            w.peers.insert(0, peer)
        self._wants_changed.set()

    def _next_want(self) -> tuple[bytes | None, float]:
        """An author whose want is ready and not in flight, else ``None`` and when the next is ready."""
        now = trio.current_time()
        soonest = float("inf")
        for a, w in self._wants.items():
            if a in self._in_flight:
                continue
            if w.ready_at <= now:
                return a, now
            soonest = min(soonest, w.ready_at)
        return None, soonest

    async def _puller_loop(self) -> None:
        while True:
            author, ready_at = self._next_want()
            if author is None:
                changed = self._wants_changed
                with trio.move_on_at(ready_at):
                    await changed.wait()
                if changed.is_set() and self._wants_changed is changed:
                    self._wants_changed = trio.Event()
                continue
            self._in_flight.add(author)
            handed_off = False
            try:
                handed_off = await self._pull(author)
            finally:
                if not handed_off:
                    self._in_flight.discard(author)

    async def _pull(self, author: bytes) -> bool:
        """Fetch and verify the next range ``author``'s want needs, and hand it to the writers.

        Returns True once a range is handed off: the author stays in flight until
        it is written (:meth:`_range_written`), while this puller moves on to
        another author, so catching up with many small logs fills whole batches.
        """
        want = self._wants[author]
        while True:
            head = await self._db(self.store.head, AuthorKey(author))
            have = head.seq if head else 0
            if have >= want.target:
                self._drop_want(author, want)
                return False
            parked_from = self._parked.run_start(author, want.target)
            if parked_from <= have + 1 and self._refill(author, have + 1):
                return True  # nothing is missing but what is parked: it goes to the writers
            peers = [p for p in want.peers if self._usable(p)] or [
                p for p in self.p2p.peers() if self._usable(p)
            ]
            if not peers:
                # Nobody to ask right now; anti-entropy will re-raise the want.
                self._drop_want(author, want)
                return False
            peer = peers[0]
            start, end = have + 1, min(want.target, parked_from - 1)  # parked entries need no pull
            try:
                entries = await self._fetch_verified(peer, author, start, end)
            except PeerUnavailable as exc:
                # Not misbehaviour. Ask another peer that has it, if any; otherwise
                # anti-entropy (or the peer's reconnection) raises the want again later.
                log.info("peer cannot serve a range now peer=%s reason=%s", peer, exc)
                if peer in want.peers:
                    want.peers.remove(peer)
                if not any(self._usable(p) for p in want.peers):
                    self._drop_want(author, want)
                    return False
                continue
            except (PeerError, trio.TooSlowError) as exc:
                self._strike(peer, f"range {start}..{end}: {exc or 'timed out'}")
                if peer in want.peers:
                    want.peers.remove(peer)
                continue
            if not entries:
                # The peer does not have what it was thought to have; ask another.
                if peer in want.peers:
                    want.peers.remove(peer)
                else:
                    self._drop_want(author, want)
                    return False
                continue
            self.stats.pulled += len(entries)
            await self._queued.reserve(len(entries))
            await self._inbox_send.send(
                _Write(entries, None, on_written=partial(self._range_written, author, want, len(entries)))
            )
            return True

    def _range_written(self, author: bytes, want: _Want, n: int, report: IngestOutcome) -> None:
        """A pulled range is in the store: free the author for the next range, or drop the want."""
        self._queued.release(n)
        self._in_flight.discard(author)
        if not any(e.author.raw == author for e in report.appended):
            self._drop_want(author, want)  # nothing new: the next anti-entropy round decides
        self._wants_changed.set()

    async def _fetch_verified(self, peer: str, author: bytes, start: int, end: int) -> list[Entry]:
        """Entries ``start..end`` of ``author`` from ``peer``, verified; raises PeerError/TooSlowError."""
        with trio.fail_after(self.settings.sync_request_timeout):
            raws = await self.sync_client.request(
                peer, partial(fetch_range, author=author, start=start, end=end)
            )
        try:
            entries = await self._verify_range(
                raws, author=author, start=start, max_skew_ms=self.settings.max_clock_skew_ms
            )
        except BadEntryError as exc:
            self.stats.rejected += 1
            if self._on_reject is not None:
                self._on_reject(exc.raw, exc.cause, f"sync:{peer}")
            raise
        if entries and self._on_receive is not None:
            self._on_receive(entries, f"sync:{peer}")
        return entries

    def _drop_want(self, author: bytes, want: _Want) -> None:
        """Forget ``want`` unless a newer want for the author replaced it meanwhile."""
        if self._wants.get(author) is want:
            del self._wants[author]

    def _usable(self, peer: str) -> bool:
        return peer not in self.blocked and self._banned_until.get(peer, 0) <= trio.current_time()

    def _strike(self, peer: str, reason: str) -> None:
        n = self._strikes.get(peer, 0) + 1
        self._strikes[peer] = n
        log.info("sync with peer failed peer=%s strike=%d reason=%s", peer, n, reason)
        if n >= STRIKES_TO_BAN:
            self._strikes[peer] = 0
            self._banned_until[peer] = trio.current_time() + BAN_SECONDS
            log.warning("peer cut off peer=%s for=%.0fs reason=%s", peer, BAN_SECONDS, reason)
            if self._nursery is not None:
                self._nursery.start_soon(self.p2p.disconnect, peer)

    # -- anti-entropy ---------------------------------------------------------------

    async def _open_sync(self, peer: str) -> ClientStream:
        return await self.p2p.open(peer, wire.SYNC_PROTOCOLS, many=(wire.PROTOCOL_ID_STREAMING,))

    async def _connection_loop(self) -> None:
        async for peer, up in self.p2p.connections:
            if self._nursery is None:
                continue
            if not up:
                self._nursery.start_soon(self.sync_client.forget, peer)
            elif self._usable(peer):
                self._nursery.start_soon(self._sync_peer_quietly, peer, 0.2, False)

    async def _anti_entropy_loop(self) -> None:
        """Every interval, compare heads with each connected peer not already being compared.

        Each peer's walk runs on its own: a slow or endless one (a liar inventing
        authors page after page) delays only itself, never the rounds with the others.
        """
        assert self._nursery is not None
        while True:
            await trio.sleep(self.settings.anti_entropy_interval)
            for peer in self.p2p.peers():
                if self._usable(peer) and peer not in self._comparing:
                    self._nursery.start_soon(self._sync_peer_quietly, peer, 0.0, True)

    async def _sync_peer_quietly(self, peer: str, delay: float, linger: bool) -> None:
        await trio.sleep(delay)
        if peer in self._comparing:
            return
        self._comparing.add(peer)
        try:
            await self.sync_with(peer, linger=linger)
        except PeerUnavailable as exc:
            log.info("peer cannot compare heads now peer=%s reason=%s", peer, exc)
        except (PeerError, trio.TooSlowError) as exc:
            self._strike(peer, f"heads: {exc or 'timed out'}")
        finally:
            self._comparing.discard(peer)

    async def sync_with(self, peer: str, *, linger: bool = False) -> int:
        """Compare heads with ``peer`` and queue pulls for every author it is ahead on.

        With ``linger`` (periodic rounds) an author the peer is only a little
        ahead on waits ``BEHIND_LINGER`` before it is pulled: the gossip already
        in flight usually brings it first.

        Returns the number of authors found behind.
        """
        behind = 0
        after: bytes | None = None
        for _ in range(MAX_HEADS_PAGES):
            with trio.fail_after(self.settings.sync_request_timeout):
                page = await self.sync_client.request(peer, partial(fetch_heads_page, after=after))
            if page.next is not None and (
                page.next <= (after or b"") or (page.heads and page.next < page.heads[-1][0])
            ):
                # Paging would never end (and this round would hold up anti-entropy with everyone).
                raise PeerError(f"peer {peer} sent a heads page whose cursor does not advance")
            if page.heads:
                lo, hi = page.heads[0][0], page.heads[-1][0]
                mine = await self._db(self.store.heads_between, lo, hi)
                for author, seq, h in page.heads:
                    local = mine.get(author)
                    if local is None or local[0] < seq:
                        behind += 1
                        near = linger and seq - (local[0] if local else 0) <= LINGER_MAX_BEHIND
                        self._want(author, seq, peer, linger=BEHIND_LINGER if near else 0.0)
                    elif local[0] == seq and local[1] != h:
                        # Same seq, different hash: fetch theirs so the store records the fork.
                        self._want_fork_proof(peer, author, seq)
            if page.next is None or not page.heads:
                self.stats.last_sync_ms = now_ms()
                return behind
            after = page.next
        log.info("heads walk stopped at the page cap peer=%s pages=%d", peer, MAX_HEADS_PAGES)
        return behind

    def _want_fork_proof(self, peer: str, author: bytes, seq: int) -> None:
        async def fetch() -> None:
            try:
                entries = await self._fetch_verified(peer, author, seq, seq)
            except PeerUnavailable:
                return
            except (PeerError, trio.TooSlowError) as exc:
                self._strike(peer, f"fork proof: {exc or 'timed out'}")
                return
            report = await self._db(self.store.ingest, entries)
            self._after_ingest(report, {})

        if self._nursery is not None:
            self._nursery.start_soon(fetch)

    async def _serve_sync(self, stream: Any, *, many: bool) -> None:
        if not self._usable(stream.peer):
            await stream.send(wire.ErrorFrame("refused", "this node is not syncing with you right now"))
            return
        await self._sync_server.serve(stream, many=many)

    # -- announcing our own entries ------------------------------------------------------

    async def _announce_loop(self) -> None:
        """Gossip every own entry past ``_announced_seq``, in batches, paced by ``gossip_rate``.

        On start only the newest entry is announced, and while no peer listens
        nothing is (what was written meanwhile reaches peers through the heads
        comparison every new connection starts with), so a peer that comes back
        is not sent a backlog by gossip that sync brings it anyway.
        """
        bucket = _TokenBucket(self.settings.gossip_rate, burst=ANNOUNCE_BURST)
        self._announced_seq = max(self._announced_seq, await self._own_head() - 1)
        while True:
            if not await self._unannounced():
                with trio.move_on_after(ANNOUNCE_POLL) as idle:
                    await self._announce_wakeup.wait()
                self._own_stale |= idle.cancelled_caught  # another process may have appended
                self._announce_wakeup = trio.Event()
                continue
            if not self._listeners():
                self._announced_seq = max(self._announced_seq, await self._own_head())
                self._own.clear()
                continue
            await bucket.take()  # while it waits, more entries may join the batch
            raws = await self._take_unannounced()
            if raws:
                batch, *rest = wire.pack_gossip_batches(self._me, self._announced_seq + 1, raws)
                for later in rest:  # over the byte cap: the next messages carry them
                    self._own.update(zip(range(later.start, later.end + 1), later.entries, strict=True))
                await self._publish_batch(batch)
                self._announced_seq = batch.end

    async def _own_head(self) -> int:
        """The seq of this node's own head: what it stored itself, or, when another writer of the store
        may have appended (:meth:`announce` without entries, or a quiet spell), read from the store."""
        if self._own_stale:
            self._own_stale = False  # before the read: an append meanwhile marks it again
            head = await self._db(self.store.head, self.keys.author.public)
            self._own_max = max(self._own_max, head.seq if head else 0)
        return self._own_max

    async def _unannounced(self) -> bool:
        nxt = self._announced_seq + 1
        if nxt in self._own:
            return True
        self._own.clear()  # stale, or incomplete: the store has them all
        return await self._own_head() >= nxt

    async def _take_unannounced(self) -> list[bytes]:
        """The raw own entries from ``_announced_seq + 1`` on, at most a batch's worth."""
        nxt = self._announced_seq + 1
        cap = wire.GOSSIP_BATCH_MAX_ENTRIES
        raws: list[bytes] = []
        while nxt in self._own and len(raws) < cap:
            raws.append(self._own.pop(nxt))
            nxt += 1
        if raws:
            return raws
        head = await self._own_head()
        if head < nxt:
            return []
        found: list[bytes] = await self._db(self.store.range_raw, self._me, nxt, min(head, nxt + cap - 1))
        return found

    async def _publish_batch(self, batch: wire.GossipBatch) -> None:
        try:
            if 2 in self._versions:
                await self.p2p.publish(wire.encode_gossip_batch(batch), wire.GOSSIP_TOPIC_V2)
                self.stats.announced += 1
            if 1 in self._versions and (2 not in self._versions or self._v1_only_peers()):
                # What a v1 peer expects: the newest entry; it pulls the ones before over sync.
                await self.p2p.publish(batch.entries[-1], wire.GOSSIP_TOPIC)
                self.stats.announced += 1
            self.stats.announced_entries += len(batch.entries)
        except Exception as exc:  # libp2p may raise on a closing host
            log.info("gossip publish failed seq=%d..%d err=%s", batch.start, batch.end, exc)

    def _listeners(self) -> bool:
        """Whether some connected peer subscribes to a gossip topic this node publishes on."""
        return any(self.p2p.topic_peers(t) for t in self.p2p.topics)

    def _v1_only_peers(self) -> bool:
        """Whether some connected peer subscribes to gossip v1 and not v2 (it predates batches)."""
        return bool(self.p2p.topic_peers(wire.GOSSIP_TOPIC) - self.p2p.topic_peers(wire.GOSSIP_TOPIC_V2))

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
