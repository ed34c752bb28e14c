"""Pulling: the ranges this node is missing, fetched from peers over sync and verified.

A gap (from the writers, :mod:`node.gossip_in`) or a peer's head seen ahead
(:mod:`node.anti_entropy`) becomes a want: pull ``author`` up to ``target``. A
gap waits ``GAP_LINGER`` before it is pulled, so a late message can fill it and
several gaps of one author become one range request; range and heads requests
reuse a few open sync streams per peer (:class:`node.sync.SyncClient`). A peer
that sends a bad range or times out gets a strike; ``STRIKES_TO_BAN`` strikes cut
it off for ``BAN_SECONDS``. Pulled ranges wait for the writers within a budget
(``MAX_PULLED_UNWRITTEN``), so pullers wait while the writers catch up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from protocol import AuthorKey, Entry, ProtocolError

from .config import NodeSettings
from .errors import BadEntryError, PeerError, PeerUnavailable
from .gossip_in import _Parked, _Write
from .net.host import P2P
from .replica import IngestOutcome, Replica
from .sync import SyncClient, fetch_range

if TYPE_CHECKING:
    from .daemon import NodeStats, RangeVerifier

log = logging.getLogger(__name__)

MAX_PULLED_UNWRITTEN = 20_000  # entries pulled and verified, waiting for the writers
PULLERS = 4
STRIKES_TO_BAN = 3
BAN_SECONDS = 60.0


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


RELINGER_MAX = 8  # times a lingering want waits again because its author's head moved meanwhile


@dataclass
class _Want:
    target: int
    ready_at: float = 0.0  # trio time before which it is not pulled (GAP_LINGER)
    peers: list[str] = field(default_factory=list)
    linger: float = 0.0  # how long it waited
    seen: int | None = None  # the author's head when it started waiting (None: it does not wait again)
    relingers: int = 0


class Pulling:
    """The pullers of :class:`node.daemon.Node` and its peers' strikes (a mixin: it shares the node's state).

    What it uses of the node: ``settings``, ``store``, ``p2p``, ``stats``,
    ``sync_client``, ``blocked``, the callbacks, ``_db``, ``_parked`` and
    ``_refill`` (:mod:`node.gossip_in`) and the inbox; it owns the wants, the
    budget and the strikes.
    """

    settings: NodeSettings
    store: Replica
    p2p: P2P
    stats: NodeStats
    sync_client: SyncClient
    blocked: set[str]
    _on_receive: Callable[[Sequence[Entry], str], None] | None
    _on_reject: Callable[[bytes, ProtocolError, str], None] | None
    _verify_range: RangeVerifier
    _wants: dict[bytes, _Want]
    _wants_changed: trio.Event
    _in_flight: set[bytes]
    _queued: _Budget
    _parked: _Parked
    _inbox_send: trio.MemorySendChannel[_Write]
    _strikes: dict[str, int]
    _banned_until: dict[str, float]
    _nursery: trio.Nursery | None
    _db: Callable[..., Any]
    _refill: Callable[[bytes, int], bool]

    def _want(
        self, author: bytes, target: int, peer: str | None, *, linger: float = 0.0, have: int | None = None
    ) -> None:
        """Pull ``author``'s log up to ``target``; a new want waits ``linger`` first (merging later gaps).

        ``have``: this node's head for ``author`` when the want was raised. A
        lingering want that finds the head moved past it when its time comes
        waits once more (at most ``RELINGER_MAX`` times): what it waited for is
        arriving by gossip, and a pull now would fetch entries already on
        their way to the store. Without movement, or once a want that does not
        wait again joins it (one without ``have``: a gap, which gossip cannot
        fill in order), it is pulled.
        """
        w = self._wants.get(author)
        if w is None:
            w = self._wants[author] = _Want(
                target, trio.current_time() + linger, linger=linger, seen=have if linger > 0 else None
            )
        elif have is None or linger <= 0:
            w.seen = None
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
            if not handed_off and self._parked.holds(author):
                await self._send_on_parked(author)

    async def _send_on_parked(self, author: bytes) -> None:
        """Send ``author``'s parked entries that now continue its head on to the writers, after a pull
        that ended without a new range (it failed, was not needed, or gossip brought the range first).

        A writer that appended meanwhile left them to this puller
        (:meth:`~node.gossip_in.GossipIn._after_gossip` does not send on the runs of an author in
        flight). The head is read after the author left flight, so a write it does not see yet sends
        them on itself.
        """
        head = await self._db(self.store.head, AuthorKey(author))
        if author not in self._in_flight:
            self._refill(author, (head.seq if head else 0) + 1)

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
            if want.seen is not None and have > want.seen and want.relingers < RELINGER_MAX:
                want.seen, want.relingers = have, want.relingers + 1  # gossip is landing: wait again
                want.ready_at = trio.current_time() + want.linger
                self._wants_changed.set()
                return False
            want.seen = None  # from here on it is pulled
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
            if self._parked.holds(author) and self._nursery is not None:
                self._nursery.start_soon(self._send_on_parked, author)  # gossip brought the range first
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
