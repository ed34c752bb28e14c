"""Announcing: every own entry gossiped once, in paced batches of consecutive entries.

Gossip runs on two topics (:mod:`protocol.wire`). On ``empressa/entries/2`` the
announcer sends every own entry not yet announced, whoever appended it, in
batches of consecutive entries (``gossip_rate`` batches per second at most; the
first after a quiet spell goes at once); a receiver verifies each entry and
hands the batch to the writers, so a batch that continues its head is applied
with no pull. On ``empressa/entries/1`` (one raw entry a message, for peers
that predate batches) it publishes the newest entry of each batch, only while
some connected peer subscribes to v1 alone.

Own entries come from the local writer (:mod:`node.local_writes`), the
writers (an own entry received back), or :meth:`Announcing.announce` (another
writer of the same store: the bridge's attestations); up to ``MAX_OWN_PENDING``
wait in memory, past that the announcer reads them from the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import trio

from protocol import Entry, wire

from .config import NodeSettings
from .keystore import Keys
from .net.host import P2P
from .replica import Replica

if TYPE_CHECKING:
    from .daemon import NodeStats

log = logging.getLogger(__name__)

ANNOUNCE_BURST = 8  # gossip batches sent back to back after a quiet spell, before pacing starts
ANNOUNCE_POLL = 0.1  # seconds between looks at the store for own entries another process appended
MAX_OWN_PENDING = 4096  # own entries kept in memory for the announcer (past that it reads the store)


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


class Announcing:
    """The announcer of :class:`node.daemon.Node` (a mixin: it shares the node's state).

    What it uses of the node: ``settings``, ``keys``, ``store``, ``p2p``,
    ``stats``, ``_db`` and ``_stored``; it owns ``_own``, ``_own_max``,
    ``_own_stale``, ``_announced_seq`` and ``_announce_wakeup`` (``_stored``
    fills the first two).
    """

    settings: NodeSettings
    keys: Keys
    store: Replica
    p2p: P2P
    stats: NodeStats
    _versions: frozenset[int]
    _me: bytes
    _own: dict[int, bytes]
    _own_max: int
    _own_stale: bool
    _announced_seq: int
    _announce_wakeup: trio.Event
    _db: Callable[..., Any]
    _stored: Callable[[list[Entry]], None]

    def announce(self, entries: Sequence[Entry] = ()) -> None:
        """Entries were appended to this node's own log by another writer of the same store (the
        bridge's attestation publisher): count them as stored and wake the announcer, which gossips
        the newest; peers that see the gap pull the rest over sync."""
        if entries:
            self._stored(list(entries))
        else:
            self._own_stale = True
        self._announce_wakeup.set()

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
