"""Batched gossip (``empressa/entries/2``), v1 compatibility, and sync streams reused.

Real libp2p hosts on 127.0.0.1: nodes from ``spawn_network`` and, where a peer
must misbehave or be old, a bare :class:`node.net.host.P2P` that speaks only
what the test tells it to.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pytest
import trio

from node.daemon import Node
from node.errors import PeerClosed
from node.net.host import P2P, FrameStream
from node.store import Store
from node.sync import SyncServer, fetch_heads_page, fetch_range
from node.testing import spawn_network
from protocol import Entry, canonical_bytes, wire

from .conftest import LogBuilder
from .test_network import wait_until

SETTLE = 20.0  # an upper bound to wait, never a performance target
QUIET = 3600.0  # an anti-entropy interval that never comes round in a test: only gossip carries entries
TIMEOUT = 1.0


def holds(node: Node, entries: list[Entry]) -> bool:
    return all(node.store.get_raw(e.hash) == e.raw for e in entries)


@asynccontextmanager
async def bare_peer(
    target: Node,
    *,
    serve: Callable[[FrameStream], Awaitable[None]] | None = None,
    topics: tuple[str, ...] = (wire.GOSSIP_TOPIC, wire.GOSSIP_TOPIC_V2),
) -> AsyncIterator[P2P]:
    """A bare libp2p host connected to ``target``, serving sync with ``serve`` (if given)."""
    p2p = P2P(peer_seed=secrets.token_bytes(32), listen=["/ip4/127.0.0.1/tcp/0"], topics=topics)
    async with trio.open_nursery() as nursery:
        await nursery.start(p2p.run)
        if serve is not None:
            p2p.handle(wire.PROTOCOL_ID, serve)
        await p2p.connect(target.addrs()[0])
        await wait_until(
            lambda: target.peer_id in p2p.topic_peers(topics[-1]), timeout=SETTLE, what="the subscription"
        )
        try:
            yield p2p
        finally:
            await p2p.close()  # hang up first, as a process exit would
            nursery.cancel_scope.cancel()


def batch_bytes(log: LogBuilder, lo: int, hi: int) -> bytes:
    """Entries ``lo..hi`` (seqs) of ``log`` as one v2 message."""
    return wire.encode_gossip_batch(
        wire.GossipBatch(log.author, lo, [e.raw for e in log.entries[lo - 1 : hi]])
    )


# -- batches ----------------------------------------------------------------------------


async def test_a_burst_goes_out_in_batches_and_lands_without_a_pull(put_body) -> None:
    async with spawn_network(2, anti_entropy_interval=QUIET) as net:
        src, peer = net.nodes
        # The node's own log, signed ahead of time, so that a burst lands in one transaction.
        log = LogBuilder(src.keys.author, put_body)
        log.extend(601)
        await trio.to_thread.run_sync(src.store.ingest, log.entries[:1])
        src.announce(log.entries[:1])
        await wait_until(lambda: holds(peer, log.entries[:1]), timeout=SETTLE, what="the first entry")
        pulled, messages = peer.stats.pulled, src.stats.announced

        burst = log.entries[1:]
        await trio.to_thread.run_sync(src.store.ingest, burst)
        src.announce(burst)  # as the bridge's attestation publisher does
        await wait_until(lambda: holds(peer, burst), timeout=SETTLE, what="the burst")
        assert peer.stats.pulled == pulled, "a batch that continues the head is applied, not pulled"
        assert src.stats.announced_entries == 601
        assert src.stats.announced - messages <= 10, "600 entries go out in a few batches, not one by one"

        # Entries another process appended (no announce() call) are found and announced too.
        more = await trio.to_thread.run_sync(
            lambda: [
                src.store.append_local(src.keys.author, kind="asset.put", key=f"c{i}", body=put_body(f"c{i}"))
                for i in range(50)
            ]
        )
        await wait_until(
            lambda: holds(peer, more), timeout=SETTLE, what="entries appended behind the node's back"
        )
        assert peer.stats.pulled == pulled


async def test_a_gossip_message_is_read_off_yamux_in_one_read(put_body, monkeypatch) -> None:
    """Pubsub asks for a message a byte at a time (varint) and then its body; every yamux read that
    consumes bytes may answer with a window update, a Noise-encrypted write of its own. The
    receiver's read-ahead (``node.net.host._ReadAhead``) makes it one read a message."""
    from libp2p.stream_muxer.yamux.yamux import YamuxStream

    reads = 0
    read = YamuxStream.read

    async def counted(self: YamuxStream, n: int | None = -1) -> bytes:
        nonlocal reads
        data = await read(self, n)
        reads += bool(data)
        return data

    async with spawn_network(2, anti_entropy_interval=QUIET) as net:
        src, peer = net.nodes
        await src.publish(kind="asset.put", key="first", body=put_body())
        await net.settle(timeout=SETTLE)
        monkeypatch.setattr(YamuxStream, "read", counted)
        received = peer.stats.gossip_received
        for i in range(20):
            await src.publish(kind="asset.put", key=f"k{i}", body=put_body())
            await net.settle(timeout=SETTLE)
        messages = peer.stats.gossip_received - received
        assert messages >= 20
        # One read a message, and a little room for gossipsub's own control traffic (heartbeats).
        assert reads <= messages * 1.5, f"{reads} yamux reads for {messages} gossip messages"


async def test_a_read_hands_over_its_message_before_the_window_update_goes_out(put_body, monkeypatch) -> None:
    """A yamux read sends its WINDOW_UPDATE (an encrypted write) before it returns the data, so the
    reader waits on it; on an inbound pubsub stream the read-ahead owes the update instead, and
    another task sends it once pubsub has the message."""
    from libp2p.stream_muxer.yamux.yamux import TYPE_WINDOW_UPDATE, Yamux, YamuxStream

    readers: dict[tuple[int, int], set[object]] = {}  # (connection, stream id) -> tasks that read it
    updates: list[tuple[tuple[int, int], object]] = []  # window updates sent: stream, sending task
    read, write_frame = YamuxStream.read, Yamux._write_frame

    async def traced_read(self: YamuxStream, n: int | None = -1) -> bytes:
        readers.setdefault((id(self.conn), self.stream_id), set()).add(trio.lowlevel.current_task())
        return await read(self, n)

    async def traced_write_frame(self: Yamux, data: bytes) -> None:
        if len(data) >= 12 and data[1] == TYPE_WINDOW_UPDATE and data[2:4] == b"\0\0":  # no flags
            updates.append(((id(self), int.from_bytes(data[4:8], "big")), trio.lowlevel.current_task()))
        await write_frame(self, data)

    async with spawn_network(2, anti_entropy_interval=QUIET) as net:
        src, peer = net.nodes
        await src.publish(kind="asset.put", key="first", body=put_body())
        await net.settle(timeout=SETTLE)
        pulled = peer.stats.pulled
        monkeypatch.setattr(YamuxStream, "read", traced_read)
        monkeypatch.setattr(Yamux, "_write_frame", traced_write_frame)
        for i in range(10):
            await src.publish(kind="asset.put", key=f"k{i}", body=put_body())
            await net.settle(timeout=SETTLE)
        await trio.sleep(0.2)  # the last update is owed a moment longer
        assert peer.stats.pulled == pulled  # gossip only: every stream read here is a pubsub stream
    sent = [(stream, task) for stream, task in updates if stream in readers]
    assert sent, "no window update at all for the streams gossip was read from"
    inline = [stream for stream, task in sent if task in readers[stream]]
    assert not inline, f"{len(inline)} of {len(sent)} window updates sent by the task reading the stream"


async def test_own_gossip_is_not_run_back_through_pubsubs_checks(put_body, monkeypatch) -> None:
    """Pubsub's publish checks its own message as if a peer had sent it (its signature verified,
    validators, delivered to its own subscription); P2P.publish signs it the same way and hands it
    to the router. The peer still checks it, signature first (strict signing), and takes it."""
    from libp2p.pubsub.pubsub import Pubsub

    pushed: list[tuple[int, bytes]] = []
    push_msg = Pubsub.push_msg

    async def traced(self: Pubsub, forwarder: object, msg: object) -> None:
        pushed.append((id(self), msg.from_id))  # type: ignore[attr-defined]
        await push_msg(self, forwarder, msg)  # type: ignore[arg-type]

    async with spawn_network(2, anti_entropy_interval=QUIET) as net:
        src, peer = net.nodes
        await src.publish(kind="asset.put", key="first", body=put_body())
        await net.settle(timeout=SETTLE)
        monkeypatch.setattr(Pubsub, "push_msg", traced)
        pulled, received = peer.stats.pulled, peer.stats.gossip_received
        entries = [await src.publish(kind="asset.put", key=f"k{i}", body=put_body()) for i in range(5)]
        await wait_until(lambda: holds(peer, entries), timeout=SETTLE, what="the gossiped entries")
        me = src.p2p._host.get_id().to_bytes()
        assert (id(src.p2p._pubsub), me) not in pushed
        assert (id(peer.p2p._pubsub), me) in pushed
        assert peer.stats.pulled == pulled and peer.stats.gossip_received > received


LINGER = 1.0  # a periodic round's wait, long enough that the test's own steps never race it


@dataclass
class Lingering:
    src: Node
    peer: Node
    entries: list[Entry]  # seqs 2..21 of src's log, which the peer never heard of
    want: Any  # the peer's want for them (node.puller._Want)
    pulled: int  # the peer's pull count before it


@asynccontextmanager
async def a_lingering_want(put_body: Callable[[], dict]) -> AsyncIterator[Lingering]:
    """Two nodes; the source writes 20 entries the peer never hears of (gossip lost); the peer raises
    the want a periodic heads round would (seq 21 seen against its 1, waiting ``LINGER``), and seqs
    2..5 land in its store before the want's time comes, as if gossip brought them."""
    async with spawn_network(2, anti_entropy_interval=QUIET) as net:
        src, peer = net.nodes
        await src.publish(kind="asset.put", key="first", body=put_body())
        await net.settle(timeout=SETTLE)
        net.drop_rate = 1.0  # from here on only what the test hands over, and pulls
        entries = [await src.publish(kind="asset.put", key=f"k{i}", body=put_body()) for i in range(20)]
        pulled = peer.stats.pulled
        author = src.keys.author.public.raw
        peer._want(author, 21, src.peer_id, linger=LINGER, have=1)
        want = peer._wants[author]
        peer.store.ingest(entries[:4])
        yield Lingering(src, peer, entries, want, pulled)


async def test_a_lingering_want_waits_again_while_the_head_moves(put_body) -> None:
    """A periodic heads round that finds a peer ahead waits before it pulls (gossip in flight usually
    brings the entries); when its time comes and the head has moved meanwhile, it waits again, and
    what lands meanwhile is never pulled."""
    async with a_lingering_want(put_body) as w:
        await wait_until(lambda: w.want.relingers == 1, timeout=SETTLE, what="the want to wait again")
        w.peer.store.ingest(w.entries[4:])  # the rest lands while it waits
        author = w.src.keys.author.public.raw
        await wait_until(lambda: author not in w.peer._wants, timeout=SETTLE, what="the want to be dropped")
        assert holds(w.peer, w.entries)
        assert w.peer.stats.pulled == w.pulled


async def test_a_lingering_want_pulls_once_the_head_stands_still(put_body) -> None:
    async with a_lingering_want(put_body) as w:
        await wait_until(lambda: holds(w.peer, w.entries), timeout=SETTLE, what="the rest, pulled")
        assert w.want.relingers == 1
        assert w.peer.stats.pulled == w.pulled + 16  # seqs 6..21: nothing that had landed


async def test_a_gap_joining_a_lingering_want_is_pulled_when_its_time_comes(put_body) -> None:
    """Entries past a gap (from the writers) cannot land in order by gossip alone: a gap want that
    joins a lingering one makes it pull when its time comes, head moved or not."""
    from node.gossip_in import GAP_LINGER

    async with a_lingering_want(put_body) as w:
        w.peer._want(w.src.keys.author.public.raw, 21, w.src.peer_id, linger=GAP_LINGER)  # a writers' gap
        await wait_until(lambda: holds(w.peer, w.entries), timeout=SETTLE, what="the rest, pulled")
        assert w.want.relingers == 0
        assert w.peer.stats.pulled == w.pulled + 16


async def test_a_late_batch_fills_the_gap_and_the_parked_entries_follow(new_log) -> None:
    """Batches out of order: the one past the gap is parked, the late one fills it; nothing is pulled."""
    log = new_log()
    log.extend(9)
    async with spawn_network(1, anti_entropy_interval=QUIET) as net:
        node = net.nodes[0]
        async with bare_peer(node) as peer:
            await peer.publish(batch_bytes(log, 1, 3), wire.GOSSIP_TOPIC_V2)
            await wait_until(lambda: holds(node, log.entries[:3]), timeout=SETTLE, what="the first batch")
            # The rogue serves no sync: a pull would fail, only gossip can complete the log.
            await peer.publish(batch_bytes(log, 7, 9), wire.GOSSIP_TOPIC_V2)
            await peer.publish(batch_bytes(log, 4, 6), wire.GOSSIP_TOPIC_V2)
            await wait_until(lambda: holds(node, log.entries), timeout=SETTLE, what="all nine entries")
            assert node.stats.pulled == 0


@pytest.mark.parametrize("answer", ["unavailable", "the same entries"])
async def test_a_gap_filled_while_it_is_pulled_still_sends_the_parked_entries_on(
    answer: str, tmp_path: Path, new_log
) -> None:
    """The gap's pull is in flight when the late batch lands (so the writers leave the parked run to the
    puller); then the pull fails with nobody else to ask, or brings only what the batch brought (so its
    want is dropped): either way the parked entries still go to the writers."""
    log = new_log()
    log.extend(9)
    store = Store.open(tmp_path / "peer.db")
    store.ingest(log.entries)
    asked, release = trio.Event(), trio.Event()

    async def slow(fs: FrameStream) -> None:  # heads: "unavailable"; a range once released
        while True:
            request = await fs.recv()
            if isinstance(request, wire.RangeRequest):
                asked.set()
                await release.wait()
                if answer == "the same entries":
                    await SyncServer(store, request_timeout=TIMEOUT)._answer(fs, request)
                    continue
            await fs.send(wire.ErrorFrame("unavailable", "the store is restarting"))

    async with spawn_network(1, anti_entropy_interval=QUIET) as net:
        node = net.nodes[0]
        async with bare_peer(node, serve=slow) as peer:
            await peer.publish(batch_bytes(log, 1, 3), wire.GOSSIP_TOPIC_V2)
            await wait_until(lambda: holds(node, log.entries[:3]), timeout=SETTLE, what="the first batch")
            await peer.publish(batch_bytes(log, 7, 9), wire.GOSSIP_TOPIC_V2)  # parked; 4..6 is pulled
            with trio.fail_after(SETTLE):
                await asked.wait()
            await peer.publish(batch_bytes(log, 4, 6), wire.GOSSIP_TOPIC_V2)  # lands mid-pull
            await wait_until(lambda: holds(node, log.entries[:6]), timeout=SETTLE, what="the late batch")
            release.set()
            await wait_until(lambda: holds(node, log.entries), timeout=SETTLE, what="the parked entries")
    store.close()


@pytest.mark.parametrize(
    "case", ["not_cbor", "other_author", "seq_out_of_place", "bad_signature", "oversize"]
)
async def test_a_malformed_batch_is_rejected_whole_and_stores_nothing(case: str, new_log) -> None:
    log, other = new_log(), new_log()
    log.extend(4)
    other.extend(2)
    raws = [e.raw for e in log.entries]
    if case == "not_cbor":
        data = b"\xa3\xff garbage"
    elif case == "other_author":
        data = wire.encode_gossip_batch(wire.GossipBatch(log.author, 1, [*raws[:1], other.entries[1].raw]))
    elif case == "seq_out_of_place":
        data = wire.encode_gossip_batch(wire.GossipBatch(log.author, 1, [raws[0], raws[2]]))
    elif case == "bad_signature":
        m = cbor2.loads(raws[1])
        m["sig"] = bytes([m["sig"][0] ^ 1]) + m["sig"][1:]
        data = wire.encode_gossip_batch(wire.GossipBatch(log.author, 1, [raws[0], canonical_bytes(m)]))
    else:
        data = canonical_bytes({"author": log.author, "from": 1, "entries": raws * 40})
    async with spawn_network(1, anti_entropy_interval=QUIET) as net:
        node = net.nodes[0]
        async with bare_peer(node) as peer:
            await peer.publish(data, wire.GOSSIP_TOPIC_V2)
            await wait_until(lambda: node.stats.rejected == 1, timeout=SETTLE, what="the rejection")
            assert node.store.count_entries() == 0
            await peer.publish(batch_bytes(log, 1, 4), wire.GOSSIP_TOPIC_V2)
            await wait_until(lambda: holds(node, log.entries), timeout=SETTLE, what="a good batch after it")
            assert node.store.count_entries() == 4 and node.stats.rejected == 1


# -- v1 compatibility ---------------------------------------------------------------------


async def test_a_node_that_speaks_only_v1_replicates_both_ways(put_body) -> None:
    async with spawn_network(1, anti_entropy_interval=QUIET) as net:
        new = net.nodes[0]
        old = await net.add(gossip_versions=(1,))
        assert old.p2p.topics == (wire.GOSSIP_TOPIC,)
        await wait_until(
            lambda: old.peer_id in new.p2p.topic_peers(wire.GOSSIP_TOPIC),
            timeout=SETTLE,
            what="subscriptions",
        )
        for rnd in range(
            3
        ):  # past the one heads comparison on connect, only gossip (and gap pulls) carry them
            mine = [await new.publish(kind="asset.put", key=f"n{rnd}{k}", body=put_body()) for k in range(5)]
            theirs = [
                await old.publish(kind="asset.put", key=f"o{rnd}{k}", body=put_body()) for k in range(5)
            ]
            await wait_until(
                lambda m=mine, t=theirs: holds(old, m) and holds(new, t), timeout=SETTLE, what="both ways"
            )
        assert old.stats.gossip_received > 0 and new.stats.gossip_received > 0
        await net.settle(timeout=SETTLE)


async def test_v1_is_not_published_when_every_peer_speaks_v2(put_body) -> None:
    async with spawn_network(2, anti_entropy_interval=QUIET) as net:
        src, peer = net.nodes
        async with bare_peer(src, topics=(wire.GOSSIP_TOPIC,)) as v1_listener:
            # A v1-only listener is connected: the newest entry goes out on v1 too.
            e = await src.publish(kind="asset.put", key="one", body=put_body())
            got = []
            with trio.move_on_after(SETTLE):
                async for msg in v1_listener.gossip:
                    if msg.origin == src.peer_id:
                        got.append(msg)
                        break
            assert [(m.topic, m.data) for m in got] == [(wire.GOSSIP_TOPIC, e.raw)]
        await wait_until(
            lambda: src.p2p.topic_peers(wire.GOSSIP_TOPIC) <= src.p2p.topic_peers(wire.GOSSIP_TOPIC_V2),
            timeout=SETTLE,
            what="the v1 listener gone",
        )
        before = src.stats.announced
        e2 = await src.publish(kind="asset.put", key="two", body=put_body())
        await wait_until(lambda: holds(peer, [e2]), timeout=SETTLE, what="the entry on v2")
        assert src.stats.announced == before + 1, "one v2 message, no v1 copy"


# -- sync streams ---------------------------------------------------------------------------


async def test_on_sync_1_1_the_server_answers_many_requests_on_one_stream_then_closes_when_idle(
    put_body,
) -> None:
    async with spawn_network(1, sync_request_timeout=TIMEOUT) as net:
        node = net.nodes[0]
        entries = [await node.publish(kind="asset.put", key=f"k{i}", body=put_body()) for i in range(3)]
        me = node.keys.author.public.raw
        async with bare_peer(node) as peer:
            fs = await peer.open(node.peer_id, wire.SYNC_PROTOCOLS, many=(wire.PROTOCOL_ID_STREAMING,))
            with trio.fail_after(SETTLE):
                for i in range(3):
                    page = await fetch_heads_page(fs, after=None)
                    assert [(a, s) for a, s, _ in page.heads] == [(me, 3)]
                    assert await fetch_range(fs, author=me, start=1, end=i + 1) == [
                        e.raw for e in entries[: i + 1]
                    ]
            assert fs.reusable
            # Left idle past the server's timeout, the stream is closed (cleanly, not reset).
            with trio.fail_after(TIMEOUT + 5), pytest.raises(PeerClosed):
                await fs.recv()


async def test_on_sync_1_0_the_server_closes_the_stream_after_its_one_answer(put_body) -> None:
    """A client written against DESIGN.md's one-request streams reads to the end of the stream: the
    server must close it after the answer, not hold it open until its idle timeout."""
    async with spawn_network(1, sync_request_timeout=60.0) as net:
        node = net.nodes[0]
        entry = await node.publish(kind="asset.put", key="k", body=put_body())
        async with bare_peer(node) as peer:
            fs = await peer.open(node.peer_id, wire.PROTOCOL_ID)
            assert not fs.reusable
            with trio.fail_after(SETTLE):  # far inside the 60 s idle timeout
                assert await fetch_range(fs, author=entry.author.raw, start=1, end=1) == [entry.raw]
                with pytest.raises(PeerClosed):
                    await fs.recv()


async def test_anti_entropy_and_pulls_reuse_streams(put_body) -> None:
    async with spawn_network(2, anti_entropy_interval=0.1) as net:
        net.drop_rate = 1.0  # no gossip: every entry comes over sync
        a, b = net.nodes
        for i in range(5):
            await a.publish(kind="asset.put", key=f"k{i}", body=put_body())
            await net.settle(timeout=SETTLE)
        await wait_until(
            lambda: b.sync_client.requests >= 20, timeout=SETTLE, what="several anti-entropy rounds"
        )
        assert b.stats.pulled == 5
        assert b.sync_client.opened <= 4 < b.sync_client.requests


async def test_an_old_server_that_answers_once_per_stream_still_serves(tmp_path: Path, new_log) -> None:
    """A peer whose server closes every stream after one answer (today's peers): the client opens new ones."""
    log = new_log()
    log.extend(7)
    store = Store.open(tmp_path / "old.db")
    store.ingest(log.entries)
    served = []

    async def one_shot(fs: FrameStream) -> None:
        served.append(await fs.recv())
        inner = SyncServer(store, request_timeout=TIMEOUT)
        # Answer exactly one request, then return (the host closes the stream), as 1.0.0 servers did.
        await inner._answer(fs, served[-1])

    async with spawn_network(1, anti_entropy_interval=0.2, sync_request_timeout=TIMEOUT) as net:
        node = net.nodes[0]
        async with bare_peer(node, serve=one_shot) as old:
            await wait_until(lambda: holds(node, log.entries), timeout=SETTLE, what="the old peer's log")
            await wait_until(lambda: len(served) >= 6, timeout=SETTLE, what="a few more rounds")
            assert node._strikes.get(old.peer_id, 0) == 0
            assert node.sync_client.opened >= len(served) - 1
    store.close()
