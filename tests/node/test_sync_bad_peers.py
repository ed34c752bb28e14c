"""A real node against a rogue libp2p peer: invalid gossip, a lying sync server, an abusive client.

The rogue is a bare :class:`node.net.host.P2P` with its own key, so it speaks
real libp2p (Noise, Yamux, gossipsub) but none of the node's rules.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import cbor2
import pytest
import trio

from node.daemon import Node
from node.errors import PeerError, PeerUnavailable
from node.net.host import P2P, FrameStream
from node.store import Store
from node.sync import SyncServer, fetch_heads_page
from node.testing import TestNetwork, spawn_network
from protocol import MAX_SKEW_MS, Entry, canonical_bytes, wire
from tests.vectors import HERE as VECTORS_DIR
from tests.vectors import invalid_vectors

from .conftest import LogBuilder

SETTLE = 15.0  # upper bound to wait, never a performance target
TIMEOUT = 1.0  # the nodes' sync_request_timeout in these tests


async def wait_until(pred: Callable[[], bool], *, timeout: float, what: str) -> None:
    with trio.move_on_after(timeout):
        while not pred():
            await trio.sleep(0.05)
    assert pred(), f"gave up waiting after {timeout}s: {what}"


@asynccontextmanager
async def rogue_peer(
    target: Node, *, serve: Callable[[FrameStream], Awaitable[None]] | None = None, store: Store | None = None
) -> AsyncIterator[P2P]:
    """A bare libp2p host connected to ``target``.

    It answers the sync protocol with ``serve`` or, by default, honestly from
    ``store`` (an empty one unless given): a peer that does not speak sync at
    all is struck by anti-entropy and would be cut off for the wrong reason.
    """
    p2p = P2P(peer_seed=secrets.token_bytes(32), listen=["/ip4/127.0.0.1/tcp/0"])
    async with trio.open_nursery() as nursery:
        await nursery.start(p2p.run)
        if serve is None:
            assert store is not None
            serve = SyncServer(store, request_timeout=TIMEOUT).serve
        p2p.handle(wire.PROTOCOL_ID, serve)
        await p2p.connect(target.addrs()[0])
        try:
            yield p2p
        finally:
            nursery.cancel_scope.cancel()


def snapshot(net: TestNetwork) -> list[tuple[int, list[tuple[bytes, int, bytes]]]]:
    return [(net.nodes[i].store.count_entries(), net.heads(i)) for i in net.running()]


async def still_replicates(net: TestNetwork, put_body, *, key: str) -> None:
    """A new entry from honest node 1 reaches honest node 0."""
    entry = await net.nodes[1].publish(kind="asset.put", key=key, body=put_body(key))
    await net.settle(timeout=SETTLE)
    assert net.nodes[0].store.get_raw(entry.hash) == entry.raw


def resign_field(entry: Entry, **changes) -> bytes:
    m = cbor2.loads(entry.raw)
    m.update(changes)
    return canonical_bytes(m)


def flip_sig(entry: Entry) -> bytes:
    m = cbor2.loads(entry.raw)
    m["sig"] = bytes([m["sig"][0] ^ 0x01]) + m["sig"][1:]
    return canonical_bytes(m)


def crafted_invalid(new_log: Callable[[], LogBuilder]) -> dict[str, bytes]:
    """Invalid first entries of fresh authors (stored at once if accepted), each for one reason."""
    good = new_log().next(key="crafted")
    future = new_log().next(key="future", ts=int(time.time() * 1000) + MAX_SKEW_MS + 3_600_000)
    return {
        "flipped_signature_byte": flip_sig(good),
        "bad_cbor": b"\xa9\x61v\x01\xff\x00garbage",
        "future_ts": future.raw,
        "unknown_field": resign_field(good, zzz=1),
        "map_keys_out_of_order": cbor2.dumps(dict(reversed(cbor2.loads(good.raw).items()))),
    }


def vector_invalid() -> dict[str, bytes]:
    """``tests/vectors/invalid.json`` (if generated), minus those only invalid at their own clock."""
    if not (VECTORS_DIR / "invalid.json").exists():
        return {}
    out = {}
    horizon = int(time.time() * 1000) + MAX_SKEW_MS
    for v in invalid_vectors():
        if v.error == "TimestampError" and cbor2.loads(v.raw)["ts"] <= horizon:
            continue  # in the future only for the vector's 2023 clock
        out[v.name] = v.raw
    return out


# -- (a) invalid gossip ----------------------------------------------------------------


async def test_invalid_gossip_is_rejected_and_stores_nothing(tmp_path: Path, new_log, put_body) -> None:
    async with spawn_network(2, sync_request_timeout=TIMEOUT) as net:
        node = net.nodes[0]
        empty = Store.open(tmp_path / "rogue.db")
        async with rogue_peer(node, store=empty) as rogue:
            # Warm up: publish fresh valid entries until one arrives, so the gossip
            # path from the rogue is known to work before anything is expected of it.
            warm: list[Entry] = []

            def arrived() -> bool:
                return any(node.store.get_raw(e.hash) for e in warm)

            with trio.move_on_after(SETTLE):
                while not arrived():
                    warm.append(new_log().next(key="warm-up"))
                    await rogue.publish(warm[-1].raw)
                    await trio.sleep(0.2)
            assert arrived(), "gossip from the rogue never reached the node"
            await net.settle(timeout=SETTLE)
            before = snapshot(net)

            bad = crafted_invalid(new_log) | vector_invalid()
            assert len(bad) >= 5
            for name, raw in bad.items():
                rejected = node.stats.rejected
                await rogue.publish(raw)
                await wait_until(
                    lambda rejected=rejected: node.stats.rejected > rejected,
                    timeout=5,
                    what=f"the node rejects {name}",
                )
                assert node.stats.rejected == rejected + 1, name

            # A valid entry after all that is still taken in, and only it.
            last = new_log().next(key="after")
            await rogue.publish(last.raw)
            await wait_until(
                lambda: node.store.get_raw(last.hash) is not None, timeout=5, what="valid gossip lands"
            )
            assert node.store.count_entries() == before[0][0] + 1
            held = set(node.store.export_raw(local_only=False))
            assert held.isdisjoint(bad.values())
            assert node._banned_until.get(rogue.peer_id, 0) <= trio.current_time()
            await still_replicates(net, put_body, key="honest")
        empty.close()


# -- (b) a lying sync server ------------------------------------------------------------


class LyingServer:
    """Claims a head for author X (one short of its log), then answers range requests per ``mode``."""

    def __init__(self, mode: str, x: LogBuilder, other: LogBuilder) -> None:
        self.mode = mode
        self.x = x
        self.other = other
        self.requests: list[wire.Frame] = []
        self.release = trio.Event()

    async def serve(self, fs: FrameStream) -> None:
        req = await fs.recv()
        self.requests.append(req)
        if isinstance(req, wire.HeadsRequest):
            head = self.x.entries[-2]  # keep one entry back, to send too many
            await fs.send(wire.HeadsPage([(self.x.author, head.seq, head.hash.raw)], None))
            return
        assert isinstance(req, wire.RangeRequest)
        n = req.end - req.start + 1
        if self.mode == "other_author":
            # Valid, correctly chained entries, but of somebody else.
            await fs.send(wire.EntriesFrame([e.raw for e in self.other.entries[:n]]), wire.EndFrame())
        elif self.mode == "bad_signature":
            raws = [e.raw for e in self.x.entries[req.start - 1 : req.end]]
            raws[-1] = flip_sig(self.x.entries[req.end - 1])
            await fs.send(wire.EntriesFrame(raws), wire.EndFrame())
        elif self.mode == "too_many":
            await fs.send(
                wire.EntriesFrame([e.raw for e in self.x.entries[req.start - 1 : req.end + 1]]),
                wire.EndFrame(),
            )
        elif self.mode == "wrong_frame":
            await fs.send(wire.HeadsPage([], None))
        elif self.mode == "junk_bytes":
            await fs._stream.write(b"\x08" + b"\xff" * 8)  # a frame whose body is not CBOR
            await self.release.wait()
        elif self.mode == "oversize_length":
            prefix = wire._uvarint(wire.MAX_FRAME + 1)
            await fs._stream.write(prefix + b"\xa1" * 64)
            await self.release.wait()
        elif self.mode == "stall":
            await self.release.wait()
        else:  # pragma: no cover
            raise AssertionError(self.mode)


@pytest.mark.parametrize(
    "mode",
    ["other_author", "bad_signature", "too_many", "wrong_frame", "junk_bytes", "oversize_length", "stall"],
)
async def test_lying_sync_server_changes_nothing_and_is_cut_off(mode: str, new_log, put_body) -> None:
    x, other = new_log(), new_log()
    x.extend(6)
    other.extend(6)
    server = LyingServer(mode, x, other)
    async with spawn_network(2, sync_request_timeout=TIMEOUT) as net:
        node = net.nodes[0]
        await net.settle(timeout=SETTLE)
        before = snapshot(net)
        try:
            async with rogue_peer(node, serve=server.serve) as rogue:
                await wait_until(
                    lambda: node._banned_until.get(rogue.peer_id, 0) > trio.current_time(),
                    timeout=SETTLE,
                    what="the lying peer is banned after repeated failures",
                )
                assert any(isinstance(r, wire.RangeRequest) and r.author == x.author for r in server.requests)
                await wait_until(
                    lambda: rogue.peer_id not in node.p2p.peers(),
                    timeout=5,
                    what="the node hangs up on the liar",
                )
                # Nothing the liar sent was stored, on either honest node.
                assert snapshot(net) == before
                for n in net.nodes:
                    assert n.store.head(x.signer.public) is None
                    assert n.store.head(other.signer.public) is None

                # While banned, the liar is refused service even if it dials back. (Its old
                # connection may still be closing as it redials: then dial again.)
                for attempt in range(10):
                    await rogue.connect(node.addrs()[0])
                    try:
                        fs = await rogue.open(node.peer_id, wire.PROTOCOL_ID)
                        break
                    except PeerUnavailable:
                        if attempt == 9:
                            raise
                        await trio.sleep(0.2)
                with trio.fail_after(5):
                    await fs.send(wire.HeadsRequest(None, 10))
                    reply = await fs.recv()
                assert isinstance(reply, wire.ErrorFrame) and reply.code == "refused"
                await fs.close()

                await still_replicates(net, put_body, key=f"after-{mode}")
        finally:
            server.release.set()


async def test_ban_is_per_peer_honest_data_for_the_same_author_still_arrives(new_log, put_body) -> None:
    """The liar claims author X; once it is cut off, an honest peer holding X's log serves it."""
    x, other = new_log(), new_log()
    x.extend(6)
    other.extend(1)
    server = LyingServer("bad_signature", x, other)
    async with spawn_network(2, sync_request_timeout=TIMEOUT) as net:
        node = net.nodes[0]
        try:
            async with rogue_peer(node, serve=server.serve) as rogue:
                await wait_until(
                    lambda: node._banned_until.get(rogue.peer_id, 0) > trio.current_time(),
                    timeout=SETTLE,
                    what="the liar is banned",
                )
                assert node.store.head(x.signer.public) is None
                # X's genuine log shows up at honest node 1 (say, imported from a file).
                await trio.to_thread.run_sync(net.nodes[1].store.ingest, x.entries)
                await net.settle(timeout=SETTLE)
                assert [node.store.get_raw(e.hash) for e in x.entries] == [e.raw for e in x.entries]
        finally:
            server.release.set()


# -- (c) an abusive client against the node's sync server ---------------------------------


async def expect_cut_off(fs: FrameStream) -> None:
    """The server resets or closes the stream (any frames before that are drained)."""
    with trio.fail_after(TIMEOUT + 5), pytest.raises(PeerError):
        while True:
            await fs.recv()


async def test_abusive_client_is_cut_off_and_others_are_served(tmp_path: Path, new_log, put_body) -> None:
    async with spawn_network(2, sync_request_timeout=TIMEOUT) as net:
        node = net.nodes[0]
        await node.publish(kind="asset.put", key="mine", body=put_body("Mine"))
        await net.settle(timeout=SETTLE)
        empty = Store.open(tmp_path / "rogue.db")
        async with rogue_peer(node, store=empty) as rogue:

            async def open_stream() -> FrameStream:
                return await rogue.open(node.peer_id, wire.PROTOCOL_ID)

            # Garbage instead of a request frame.
            fs = await open_stream()
            await fs._stream.write(b"\x08" + b"\xff" * 8)
            await expect_cut_off(fs)

            # A length prefix over the frame cap.
            fs = await open_stream()
            await fs._stream.write(wire._uvarint(wire.MAX_FRAME + 1) + b"\x00" * 32)
            await expect_cut_off(fs)

            # A well-formed frame that is not a request: an error frame, then the end.
            fs = await open_stream()
            await fs.send(wire.EndFrame())
            with trio.fail_after(5):
                reply = await fs.recv()
            assert isinstance(reply, wire.ErrorFrame) and reply.code == "bad_request"
            await expect_cut_off(fs)

            # A request cap the frame layer refuses (heads limit over MAX_HEADS_PAGE).
            fs = await open_stream()
            body = canonical_bytes({"t": "heads", "after": None, "limit": wire.MAX_HEADS_PAGE + 1})
            await fs._stream.write(wire._uvarint(len(body)) + body)
            await expect_cut_off(fs)

            # Half a frame, then silence; and a stream that never sends anything.
            # Several at once: they must not stop the server answering others.
            silent: list[FrameStream] = []
            for k in range(8):
                fs = await open_stream()
                if k % 2:
                    await fs._stream.write(wire._uvarint(100) + b"\xa3" + b"\x00" * 9)
                silent.append(fs)
            honest = await open_stream()
            with trio.fail_after(5):
                page = await fetch_heads_page(honest, after=None)
            await honest.close()
            assert [(a, s) for a, s, _ in page.heads] == [(node.keys.author.public.raw, 1)]
            for fs in silent:
                await expect_cut_off(fs)

            # The server still answers a proper range request afterwards.
            fs = await open_stream()
            with trio.fail_after(5):
                await fs.send(wire.RangeRequest(node.keys.author.public.raw, 1, 1))
                entries = await fs.recv()
                end = await fs.recv()
            assert isinstance(entries, wire.EntriesFrame) and isinstance(end, wire.EndFrame)
            assert entries.entries == [node.store.range_raw(node.keys.author.public.raw, 1, 1)[0]]

            assert node._banned_until.get(rogue.peer_id, 0) <= trio.current_time()
            await still_replicates(net, put_body, key="after-abuse")
        empty.close()


async def test_heads_pages_that_never_advance_do_not_stall_anti_entropy(new_log, put_body) -> None:
    """A liar whose heads pages loop forever must not keep the node from syncing with others."""
    x = new_log()
    x.extend(1)
    served = 0

    async def looping_heads(fs: FrameStream) -> None:
        nonlocal served
        req = await fs.recv()
        if isinstance(req, wire.HeadsRequest):
            served += 1
            # A full-looking page whose cursor points back where the client started.
            await fs.send(wire.HeadsPage([(x.author, 1, x.entries[0].hash.raw)], req.after or b"\x00" * 32))
        else:
            await fs.send(wire.EndFrame())

    async with spawn_network(2, sync_request_timeout=TIMEOUT) as net:
        node = net.nodes[0]
        net.drop_rate = 1.0  # only anti-entropy can carry entries from node 1 to node 0
        async with rogue_peer(node, serve=looping_heads) as rogue:
            await wait_until(
                lambda: served >= 3, timeout=SETTLE, what="the node pages through the liar's heads"
            )
            entry = await net.nodes[1].publish(kind="asset.put", key="through", body=put_body("Through"))
            await net.settle(timeout=SETTLE)
            assert node.store.get_raw(entry.hash) == entry.raw
            await wait_until(
                lambda: node._banned_until.get(rogue.peer_id, 0) > trio.current_time(),
                timeout=SETTLE,
                what="the liar is banned",
            )
            assert node.store.head(x.signer.public) is None


async def test_endless_heads_pages_are_capped(put_body) -> None:
    """A liar that invents a new author on every page cannot hold a round open forever."""
    served = 0

    async def endless_heads(fs: FrameStream) -> None:
        nonlocal served
        req = await fs.recv()
        if isinstance(req, wire.HeadsRequest):
            served += 1
            after = int.from_bytes(req.after or b"\x00" * 32, "big")
            fake = (after + 1).to_bytes(32, "big")
            await fs.send(wire.HeadsPage([(fake, 1, b"\x11" * 32)], fake))
        else:
            await fs.send(wire.EndFrame())

    async with spawn_network(2, sync_request_timeout=TIMEOUT) as net:
        node = net.nodes[0]
        net.drop_rate = 1.0
        async with rogue_peer(node, serve=endless_heads):
            await wait_until(
                lambda: served >= 3, timeout=SETTLE, what="the node pages through the liar's heads"
            )
            entry = await net.nodes[1].publish(kind="asset.put", key="through", body=put_body("Through"))
            await net.settle(timeout=SETTLE)
            assert node.store.get_raw(entry.hash) == entry.raw
            assert node.store.count_entries() == 1
