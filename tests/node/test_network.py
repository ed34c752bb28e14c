"""Replication between real libp2p nodes on 127.0.0.1 (node.testing.spawn_network).

Each test waits with ``net.settle()`` (or a bounded poll) and then checks what
every store actually holds: heads, entry counts and the assets themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import trio

from node.daemon import Node
from node.testing import TestNetwork, spawn_network
from protocol import AssetUri, Entry, fold, now_ms, parse_and_verify

SETTLE = 20.0  # an upper bound to wait, never a performance target


async def wait_until(pred: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``pred`` until it holds or ``timeout`` passes; then it must hold."""
    with trio.move_on_after(timeout):
        while not pred():
            await trio.sleep(0.05)
    assert pred(), f"gave up waiting after {timeout}s: {what}"


def holds_all(node: Node, entries: Iterable[Entry]) -> bool:
    return all(node.store.get_raw(e.hash) == e.raw for e in entries)


def assert_converged(net: TestNetwork, entries: list[Entry], nodes: Iterable[int] | None = None) -> None:
    """Every listed node holds exactly ``entries``, with equal heads and the same asset state."""
    idx = list(net.running() if nodes is None else nodes)
    heads = [net.heads(i) for i in idx]
    assert all(h == heads[0] for h in heads), "heads differ"
    expected = fold(entries)
    for i in idx:
        node = net.nodes[i]
        assert node.store.count_entries() == len(entries), f"node {i}"
        assert holds_all(node, entries), f"node {i} misses entries"
        rows = {r.uri: r for r in node.store.assets(local_only=False, include_deleted=True)}
        assert {u: (r.last_hash, r.deleted, r.versions) for u, r in rows.items()} == {
            u: (s.last.hash, s.deleted, s.versions) for u, s in expected.items()
        }, f"node {i} asset state"


async def publish_many(node: Node, n: int, put_body, *, prefix: str) -> list[Entry]:
    return [
        await node.publish(kind="asset.put", key=f"{prefix}-{k}", body=put_body(f"{prefix} {k}"))
        for k in range(n)
    ]


async def test_mesh_of_five_converges(put_body) -> None:
    async with spawn_network(5) as net:
        published: list[Entry] = []
        for i in (0, 2, 4):
            published += await publish_many(net.nodes[i], 4, put_body, prefix=f"n{i}")
        await net.settle(timeout=SETTLE)
        assert_converged(net, published)
        for i in (1, 3):
            uri = AssetUri(net.nodes[4].keys.author.public, "n4-3")
            row = net.nodes[i].store.asset(uri)
            assert row.put is not None and row.put.body["title"] == "n4 3" and not row.local


async def test_line_of_five_converges_transitively(put_body) -> None:
    # drop_rate 1.0: no gossip is taken in at all, so the ends learn of each
    # other only through anti-entropy, hop by hop along the line.
    async with spawn_network(5, topology="line") as net:
        net.drop_rate = 1.0
        ends = net.nodes[0], net.nodes[4]
        assert ends[1].peer_id not in ends[0].p2p.peers()
        published = await publish_many(ends[0], 3, put_body, prefix="left")
        published += await publish_many(ends[1], 3, put_body, prefix="right")
        await net.settle(timeout=SETTLE)
        assert_converged(net, published)
        assert ends[1].peer_id not in ends[0].p2p.peers()
        assert ends[0].stats.pulled >= 3 and ends[1].stats.pulled >= 3


async def test_line_with_gossip_converges(put_body) -> None:
    async with spawn_network(5, topology="line") as net:
        published = await publish_many(net.nodes[0], 5, put_body, prefix="a")
        published += await publish_many(net.nodes[2], 5, put_body, prefix="b")
        await net.settle(timeout=SETTLE)
        assert_converged(net, published)


async def test_lossy_gossip_still_converges(put_body) -> None:
    async with spawn_network(4) as net:
        published: list[Entry] = []
        for rate in (0.5, 1.0):
            net.drop_rate = rate
            for i in range(4):
                published += await publish_many(net.nodes[i], 5, put_body, prefix=f"r{int(rate * 10)}-n{i}")
            await net.settle(timeout=SETTLE)
            assert_converged(net, published)
        assert sum(n.stats.gossip_dropped for n in net.nodes) > 0
        assert all(n.stats.pulled > 0 for n in net.nodes)


async def test_stopped_node_catches_up_after_restart(put_body) -> None:
    async with spawn_network(4) as net:
        first = await publish_many(net.nodes[0], 2, put_body, prefix="before")
        await net.settle(timeout=SETTLE)
        await net.stop(3)
        offline = net.nodes[3]
        published = first + await publish_many(net.nodes[0], 5, put_body, prefix="while-down")
        published += await publish_many(net.nodes[1], 5, put_body, prefix="also-down")
        # Offline-first: the stopped node's owner keeps writing to node.db meanwhile.
        written = trio.to_thread.run_sync
        published.append(
            await written(
                lambda: offline.store.append_local(
                    offline.keys.author, kind="asset.put", key="offline", body=put_body()
                )
            )
        )
        await wait_until(
            lambda: all(holds_all(net.nodes[i], published[:-1]) for i in (0, 1, 2)),
            timeout=SETTLE,
            what="the running nodes share what they published",
        )
        assert not holds_all(net.nodes[0], published[-1:])

        restarted = await net.start(3)
        assert restarted is not offline
        await net.settle(timeout=SETTLE)
        assert_converged(net, published)
        assert net.nodes[0].store.asset(AssetUri(offline.keys.author.public, "offline")).put is not None


async def test_partition_then_heal(put_body) -> None:
    async with spawn_network(5) as net:
        await net.partition([0, 1], [2, 3, 4])
        left = await publish_many(net.nodes[0], 3, put_body, prefix="left")
        left += await publish_many(net.nodes[1], 2, put_body, prefix="left1")
        right = await publish_many(net.nodes[3], 4, put_body, prefix="right")
        await wait_until(
            lambda: (
                all(holds_all(net.nodes[i], left) for i in (0, 1))
                and all(holds_all(net.nodes[i], right) for i in (2, 3, 4))
            ),
            timeout=SETTLE,
            what="each side converges on its own",
        )
        # Nothing crossed the partition.
        for i in (0, 1):
            assert net.nodes[i].store.count_entries() == len(left)
        for i in (2, 3, 4):
            assert net.nodes[i].store.count_entries() == len(right)

        await net.heal()
        await net.settle(timeout=SETTLE)
        assert_converged(net, left + right)


async def test_burst_of_500_arrives_complete(put_body) -> None:
    async with spawn_network(5) as net:
        source = net.nodes[0]
        burst = await publish_many(source, 500, put_body, prefix="burst")
        await net.settle(timeout=SETTLE)
        assert_converged(net, burst)
        for node in net.nodes[1:]:
            head = node.store.head(source.keys.author.public)
            assert head is not None and (head.seq, head.hash) == (500, burst[-1].hash)


async def test_edits_and_deletes_propagate(put_body) -> None:
    async with spawn_network(3) as net:
        author = net.nodes[0]
        await author.publish(kind="asset.put", key="song", body=put_body("Song"))
        await author.publish(kind="asset.put", key="art", body=put_body("Art"))
        await net.settle(timeout=SETTLE)
        await author.publish(kind="asset.put", key="song", body=put_body("Song (final mix)", tags=["final"]))
        await author.publish(kind="asset.delete", key="art", body={})
        await author.publish(kind="asset.put", key="sketch", body=put_body("Sketch"))
        await author.publish(kind="asset.delete", key="sketch", body={})
        await author.publish(kind="asset.put", key="sketch", body=put_body("Sketch, reworked"))
        await net.settle(timeout=SETTLE)

        mine = [parse_and_verify(raw, now_ms=None) for raw in author.store.export_raw(local_only=True)]
        assert len(mine) == 7
        assert_converged(net, mine)
        me = author.keys.author.public
        for peer in net.nodes[1:]:
            song = peer.store.asset(AssetUri(me, "song"))
            assert song.put is not None and song.put.body["title"] == "Song (final mix)"
            assert song.put.body["tags"] == ["final"] and song.versions == 2 and not song.deleted
            art = peer.store.asset(AssetUri(me, "art"))
            assert art.deleted and art.versions == 2
            sketch = peer.store.asset(AssetUri(me, "sketch"))
            assert not sketch.deleted and sketch.versions == 3
            assert sketch.put is not None and sketch.put.body["title"] == "Sketch, reworked"
            live = {r.uri.key for r in peer.store.assets(local_only=False)}
            assert live == {"song", "sketch"}
            assert peer.store.assets(local_only=True) == []


async def test_a_completed_sync_round_is_recorded_for_the_status(put_body) -> None:
    # My Library's "last sync" reads stats.last_sync_ms (via /v1/status): set when a heads comparison
    # with a peer completes (each new connection starts with one), whether or not the peer was ahead.
    async with spawn_network(2, anti_entropy_interval=3600) as net:
        a, b = net.nodes
        await wait_until(lambda: b.stats.last_sync_ms is not None, timeout=SETTLE, what="b's first sync")
        await publish_many(a, 3, put_body, prefix="s")
        before = now_ms()
        assert await b.sync_with(a.peer_id) >= 0
        assert b.stats.last_sync_ms is not None and b.stats.last_sync_ms >= before
