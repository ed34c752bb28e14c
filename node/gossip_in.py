"""Gossip in, and the writers: every received entry, verified, then written in batches.

::

    gossip ──verify──▶ inbox ──▶ writers (batches into the store) ──gaps──▶ wants (node.puller)
                         ▲
                         └── pulled ranges (node.puller), parked runs that now continue a head

A v1 message is one raw entry; a v2 message (:mod:`protocol.wire`) a batch of
consecutive entries of one author, verified here when small (``VERIFY_INLINE_MAX``)
or by the node's ``verify_range`` (a worker thread, or the bridge's process pool).
Gossip entries the store leaves past a gap are parked (:class:`_Parked`), so the
entries that fill the gap bring them in without a second pull.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from protocol import AuthorKey, Entry, FrameError, ProtocolError, now_ms, parse_and_verify, wire

from .config import NodeSettings
from .errors import BadEntryError, PeerError
from .net.host import P2P
from .replica import IngestOutcome, Replica
from .sync import verify_range

if TYPE_CHECKING:
    from .daemon import NodeStats, RangeVerifier

log = logging.getLogger(__name__)

WRITER_BATCH = 1000
VERIFY_INLINE_MAX = 8  # gossip entries verified in the trio thread (~70 µs each); more go to verify_range
GAP_LINGER = 0.005  # seconds a gap from gossip waits before it is pulled (a late message may fill it)
MAX_PARKED = 20_000  # gossip entries past a gap kept in memory until the gap fills


@dataclass
class _Write:
    """Verified entries for the writers: one gossip entry, or a pulled range."""

    entries: list[Entry]
    source: str | None  # the gossip origin, or None for a pulled range
    on_written: Callable[[IngestOutcome], None] | None = None  # pulled ranges: called once stored


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

    def holds(self, author: bytes) -> bool:
        return author in self._by_author

    def run_start(self, author: bytes, end: int) -> int:
        """The lowest ``s`` such that ``s..end`` are all parked (``end + 1`` when ``end`` is not)."""
        held = self._by_author.get(author, {})
        s = end + 1
        while s - 1 in held:
            s -= 1
        return s


class GossipIn:
    """Gossip in and the writers of :class:`node.daemon.Node` (a mixin: it shares the node's state).

    What it uses of the node: ``settings``, ``store``, ``p2p``, ``stats``, the
    callbacks, the writer tuning, ``_db_now``, ``_stored`` and ``_want`` (a gap
    to pull, :mod:`node.puller`); it owns the inbox, ``_parked`` and the
    writers' counters, and shares ``_in_flight`` with the pullers.
    """

    settings: NodeSettings
    store: Replica
    p2p: P2P
    peer_id: str
    stats: NodeStats
    blocked: set[str]
    gossip_drop_rate: float
    _rng: random.Random
    _on_receive: Callable[[Sequence[Entry], str], None] | None
    _on_reject: Callable[[bytes, ProtocolError, str], None] | None
    _verify_range: RangeVerifier
    _writer_batch: int
    _writer_linger: float
    _writing: int
    _forming: trio.Lock
    _inbox_send: trio.MemorySendChannel[_Write]
    _inbox: trio.MemoryReceiveChannel[_Write]
    _parked: _Parked
    _in_flight: set[bytes]
    _wants_changed: trio.Event
    _nursery: trio.Nursery | None
    _db_now: Callable[..., Any]
    _stored: Callable[[list[Entry]], None]
    _want: Callable[..., None]

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
