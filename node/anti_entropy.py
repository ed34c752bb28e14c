"""Anti-entropy: heads compared with every connected peer, on connect and every interval.

Gossip is lossy by design; the heads comparison (:func:`node.sync.fetch_heads_page`,
page by page) finds every author a peer is ahead on and queues a pull for it
(:mod:`node.puller`), so delivery completes even when gossip drops messages. This
side also serves sync to peers (:class:`node.sync.SyncServer`), except to peers
cut off for their strikes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from protocol import now_ms, wire

from .config import NodeSettings
from .errors import PeerError, PeerUnavailable
from .net.host import P2P
from .replica import Replica
from .sync import ClientStream, SyncClient, SyncServer, fetch_heads_page

if TYPE_CHECKING:
    from .daemon import NodeStats

log = logging.getLogger(__name__)

MAX_HEADS_PAGES = 500  # heads pages read from one peer per anti-entropy round (1M authors)
# Seconds a peer's head seen ahead in a periodic round waits before it is pulled: gossip in flight may
# bring it, and while the head moves meanwhile it waits again (node.puller). On connect: at once.
BEHIND_LINGER = 0.25


class AntiEntropy:
    """The heads comparisons of :class:`node.daemon.Node` and its sync server (a mixin: it shares the node's state).

    What it uses of the node: ``settings``, ``store``, ``p2p``, ``stats``,
    ``sync_client``, ``_db``, and of the pullers (:mod:`node.puller`) ``_want``,
    ``_fetch_verified``, ``_usable`` and ``_strike``, and of the writers
    (:mod:`node.gossip_in`) ``_after_ingest`` for a fork proof; it owns ``_comparing``.
    """

    settings: NodeSettings
    store: Replica
    p2p: P2P
    stats: NodeStats
    sync_client: SyncClient
    _sync_server: SyncServer
    _comparing: set[str]
    _nursery: trio.Nursery | None
    _db: Callable[..., Any]
    _want: Callable[..., None]
    _fetch_verified: Callable[..., Any]
    _usable: Callable[[str], bool]
    _strike: Callable[[str, str], None]
    _after_ingest: Callable[..., None]

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

        With ``linger`` (periodic rounds) an author the peer is ahead on waits
        ``BEHIND_LINGER`` before it is pulled, and again while this node's head
        for it moves meanwhile (:meth:`node.puller.Pulling._want`): the gossip
        already in flight usually brings it first, even in the middle of a
        burst of thousands. An author whose head stands still is pulled.

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
                        self._want(
                            author,
                            seq,
                            peer,
                            linger=BEHIND_LINGER if linger else 0.0,
                            have=local[0] if local else 0,
                        )
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
