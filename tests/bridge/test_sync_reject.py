"""A peer serving a forged entry over sync: the range is refused and the entry lands in quarantine."""

from __future__ import annotations

import trio

from bridge.testing import spawn_bridge
from node.net.host import FrameStream
from protocol import wire
from tests.node.test_sync_bad_peers import rogue_peer

from .conftest import read, wait_for


async def test_forged_entry_in_a_range_is_quarantined(db_url: str, new_log) -> None:
    log = new_log()
    good = log.next(key="a")
    second = log.next(key="b")
    forged = second.raw[:-1] + bytes([second.raw[-1] ^ 1])  # the signature's last byte flipped

    async def serve(stream: FrameStream) -> None:
        req = await stream.recv()
        if isinstance(req, wire.HeadsRequest):
            await stream.send(wire.HeadsPage([(log.author, 2, second.hash.raw)], None))
        elif isinstance(req, wire.RangeRequest):
            await stream.send(
                *wire.pack_entries([good.raw, forged][req.start - 1 : req.end]), wire.EndFrame()
            )

    async with spawn_bridge(db_url) as bridge, rogue_peer(bridge.node, serve=serve) as rogue:

        async def quarantined() -> bool:
            return any(q[3] == forged for q in (await read(db_url)).quarantine)

        await wait_for(quarantined, timeout=20.0, what="the forged entry in quarantine")
        await trio.sleep(0.5)
        snap = await read(db_url)
        (row,) = [q for q in snap.quarantine if q[3] == forged]
        assert row[0] == "signature" and row[2] == f"sync:{rogue.peer_id}"
        assert snap.entries == {} and snap.heads == {}, "the whole range was refused"
        assert bridge.node.stats.rejected >= 1
