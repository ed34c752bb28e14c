"""The bridge follows an in-process network into a real PostgreSQL (node.testing + bridge.testing).

Every test waits with a deadline for PostgreSQL to hold what was published and
then checks all of it: each entry exactly once, the heads, the assets' state,
one activity row per entry, and what went to quarantine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from urllib.request import urlopen

import trio

from bridge.testing import spawn_bridge
from node.daemon import Node
from node.testing import spawn_network
from protocol import MAX_ENTRY_BYTES, AssetUri, Entry, ProtocolError, fold, parse_and_verify, sign_entry
from tests.vectors import invalid_vectors

from .conftest import Snapshot, read, wait_for

DEADLINE = 30.0  # an upper bound to wait, never a performance target


async def publish_many(
    node: Node, n: int, put_body: Callable[..., dict[str, Any]], *, prefix: str
) -> list[Entry]:
    return [
        await node.publish(kind="asset.put", key=f"{prefix}-{k}", body=put_body(f"{prefix} {k}"))
        for k in range(n)
    ]


def assert_mirrors(snap: Snapshot, entries: list[Entry]) -> None:
    """PostgreSQL holds exactly ``entries``: once each, right heads, folded assets, one activity row each."""
    assert len(snap.entries) == len(entries) == len({e.hash.raw for e in entries})
    assert snap.entries == {e.hash.raw: e.raw for e in entries}
    last: dict[bytes, Entry] = {}
    for e in entries:
        if e.author.raw not in last or e.seq > last[e.author.raw].seq:
            last[e.author.raw] = e
    assert {a: (s, h) for a, (s, h, _f) in snap.heads.items()} == {
        a: (e.seq, e.hash.raw) for a, e in last.items()
    }, "heads"
    assert snap.assets == {
        (u.author.raw, u.key): (s.last.hash.raw, s.deleted, s.versions) for u, s in fold(entries).items()
    }, "asset state"
    assert snap.activity == len(entries), "one activity row per entry"
    assert snap.pending == 0


async def mirrored(url: str, entries: list[Entry]) -> bool:
    snap = await read(url)
    return len(snap.entries) >= len(entries) and all(e.hash.raw in snap.entries for e in entries)


async def test_network_lands_in_postgres_exactly_once(db_url: str, put_body) -> None:
    async with spawn_network(4) as net, spawn_bridge(db_url, net=net, metrics_port=0) as bridge:
        published: list[Entry] = []
        for i in range(4):
            published += await publish_many(net.nodes[i], 5, put_body, prefix=f"n{i}")
        author = net.nodes[0]
        published.append(
            await author.publish(kind="asset.put", key="n0-1", body=put_body("n0 1, remastered"))
        )
        published.append(await author.publish(kind="asset.delete", key="n0-2", body={}))
        await wait_for(
            lambda: mirrored(db_url, published), timeout=DEADLINE, what="every entry in PostgreSQL"
        )
        await net.settle(timeout=DEADLINE)
        # A few more anti-entropy rounds: nothing is written twice.
        await trio.sleep(1.2)
        snap = await read(db_url)
        assert_mirrors(snap, published)
        assert snap.quarantine == [] and snap.forks == set()
        assert bridge.metrics_url is not None
        url = bridge.metrics_url
        text = await trio.to_thread.run_sync(lambda: urlopen(url, timeout=5).read().decode())
        for name in (
            "empressa_bridge_receive_lag_seconds_count",
            "empressa_bridge_commit_lag_seconds_count",
            "empressa_bridge_entries_ingested_total",
            "empressa_bridge_known_authors",
            "empressa_bridge_writer_queue_depth",
        ):
            assert name in text, name
        ingested = [
            ln for ln in text.splitlines() if ln.startswith("empressa_bridge_entries_ingested_total ")
        ]
        assert float(ingested[0].split()[1]) >= len(published)


async def test_lossy_gossip_completes_through_sync(db_url: str, put_body) -> None:
    async with spawn_network(3) as net, spawn_bridge(db_url, net=net) as bridge:
        published: list[Entry] = []
        for rate in (0.5, 1.0):
            net.drop_rate = rate
            bridge.node.gossip_drop_rate = rate
            for i in range(3):
                published += await publish_many(net.nodes[i], 6, put_body, prefix=f"r{int(rate * 10)}-n{i}")
            await wait_for(
                lambda p=list(published): mirrored(db_url, p),
                timeout=DEADLINE,
                what=f"everything at drop rate {rate}",
            )
        assert_mirrors(await read(db_url), published)
        assert bridge.node.stats.gossip_dropped > 0 and bridge.node.stats.pulled > 0


def _invalid_now() -> list[tuple[bytes, type[ProtocolError], str]]:
    """Invalid vectors that are invalid at today's clock too (not only at the vector's own ``now_ms``)."""
    out = []
    for v in invalid_vectors():
        try:
            parse_and_verify(v.raw, now_ms=None if v.now_ms is None else 10**13)
        except ProtocolError as exc:
            if isinstance(exc, v.error_class) and len(v.raw) < 60_000:
                out.append((v.raw, v.error_class, v.reason_contains))
    return out


async def test_invalid_gossip_is_quarantined_with_its_reason(db_url: str, put_body) -> None:
    bad = _invalid_now()
    assert len(bad) >= 5
    async with spawn_network(2) as net, spawn_bridge(db_url, net=net) as bridge:
        published = await publish_many(net.nodes[1], 3, put_body, prefix="ok")
        await wait_for(lambda: mirrored(db_url, published), timeout=DEADLINE, what="the valid entries")
        before = await read(db_url)
        for raw, _cls, _why in bad:
            await net.nodes[0].p2p.publish(raw)
            await trio.sleep(0.02)

        def held(raw: bytes) -> bytes:  # what quarantine keeps of it: the bytes, or past 16 KiB the digest
            return raw if len(raw) <= MAX_ENTRY_BYTES else hashlib.sha256(raw).digest()

        async def all_quarantined() -> bool:
            return {q[3] for q in (await read(db_url)).quarantine} >= {held(raw) for raw, _, _ in bad}

        await wait_for(all_quarantined, timeout=DEADLINE, what="every invalid gossip message in quarantine")
        after = await read(db_url)
        by_raw = {q[3]: q for q in after.quarantine}
        for raw, cls, why in bad:
            code, reason, source, _ = by_raw[held(raw)]
            assert code == cls.code and why in reason, (code, reason, cls, why)
            assert source == f"gossip:{net.nodes[0].peer_id}"
        assert len(after.quarantine) == len({raw for raw, _, _ in bad})
        # Nothing else changed.
        assert (after.entries, after.heads, after.assets, after.activity, after.forks) == (
            before.entries,
            before.heads,
            before.assets,
            before.activity,
            before.forks,
        )
        assert bridge.rejects.dropped == 0


async def test_the_bridge_keeps_to_its_quarantine_bound(db_url: str, put_body) -> None:
    """``quarantine_max_source_bytes`` of the bridge's settings reaches its store: a peer past it is not kept."""
    bad = _invalid_now()
    async with (
        spawn_network(2) as net,
        spawn_bridge(db_url, net=net, quarantine_max_source_bytes=0) as bridge,
    ):
        for raw, _cls, _why in bad:
            await net.nodes[0].p2p.publish(raw)
            await trio.sleep(0.02)
        await wait_for(
            lambda: bridge.rejects.over_bound >= len({raw for raw, _, _ in bad}),
            timeout=DEADLINE,
            what="every invalid gossip message refused by the quarantine's bound",
        )
        published = await publish_many(net.nodes[1], 2, put_body, prefix="ok")
        await wait_for(lambda: mirrored(db_url, published), timeout=DEADLINE, what="the valid entries")
        assert (await read(db_url)).quarantine == []


async def test_fork_is_quarantined_and_author_flagged(db_url: str, put_body) -> None:
    async with spawn_network(2) as net, spawn_bridge(db_url, net=net):
        node = net.nodes[0]
        published = await publish_many(node, 2, put_body, prefix="a")
        await wait_for(lambda: mirrored(db_url, published), timeout=DEADLINE, what="the first two entries")
        # The same key signs a second, different entry at seq 2.
        first = published[0]
        fork = sign_entry(
            node.keys.author,
            seq=2,
            prev=first.hash,
            ts=published[1].ts + 1,
            kind="asset.put",
            key="other",
            body=put_body("a fork"),
        )
        await node.p2p.publish(fork.raw)

        async def flagged() -> bool:
            snap = await read(db_url)
            return fork.hash.raw in snap.forks and snap.heads[node.keys.author.public.raw][2] is not None

        await wait_for(flagged, timeout=DEADLINE, what="the fork recorded and the author flagged")
        snap = await read(db_url)
        assert snap.heads[node.keys.author.public.raw][2] == 2
        assert [(q[0], q[3]) for q in snap.quarantine] == [("fork", fork.raw)]
        assert fork.hash.raw not in snap.entries
        assert_mirrors(snap, published)


async def test_bridge_attest_log_is_served_to_peers(db_url: str) -> None:
    """The bridge's own log (attest entries) goes through the same store and reaches the nodes."""
    async with spawn_network(2) as net, spawn_bridge(db_url, net=net) as bridge:
        body = {
            "subject": b"\x01" * 32,
            "asset": {"author": net.nodes[0].keys.author.public.raw, "key": "k"},
            "status": "verified",
            "chain": "eip155:31337",
            "onchain_id": "1",
            "tx": "0x" + "ab" * 32,
        }
        uri = AssetUri(net.nodes[0].keys.author.public, "k")
        entry = await bridge.node.publish(kind="attest", key=uri.id_b32, body=body)
        await wait_for(
            lambda: all(n.store.get_raw(entry.hash) == entry.raw for n in net.nodes),
            timeout=DEADLINE,
            what="the bridge's attest entry on every node",
        )
        assert (await read(db_url)).entries[entry.hash.raw] == entry.raw


async def test_catching_up_with_many_small_logs_writes_few_batches(
    db_url: str, new_log: Callable[..., Any]
) -> None:
    """Pulled ranges share the writers' batches: 60 authors of 2 entries each do not cost 60
    transactions (DESIGN: batches of about 1,000 entries or the linger, whichever first)."""
    logs = [new_log() for _ in range(60)]
    entries = [e for log in logs for e in log.extend(2)]
    async with spawn_network(1, anti_entropy_interval=3600.0) as net:
        await trio.to_thread.run_sync(net.nodes[0].store.ingest, entries)
        async with spawn_bridge(db_url, net=net, writer_linger=0.5) as bridge:
            await wait_for(
                lambda: mirrored(db_url, entries), timeout=DEADLINE, what="every small log in PostgreSQL"
            )
            assert_mirrors(await read(db_url), entries)
            assert bridge.replica.writes_total <= 10, bridge.replica.writes_total
