"""A bridge beside an in-process network, for tests and benchmarks (like :mod:`node.testing`).

::

    async with spawn_network(4) as net, spawn_bridge(db_url, net=net) as bridge:
        await net.nodes[0].publish(kind="asset.put", key="k", body=body)
        ...                       # PostgreSQL (db_url) fills up

The bridge is a real libp2p host on 127.0.0.1 with fresh keys, writing into the
PostgreSQL database at ``database_url`` (already migrated), and dialled to
every running node of ``net``.
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

from indexer.store import Store
from node.keystore import Keys
from node.testing import TestNetwork
from protocol import Signer

from .attest import trusted_attesters
from .config import BridgeSettings
from .service import Bridge


async def follow(bridge: Bridge, net: TestNetwork) -> None:
    """Dial every running node of ``net`` that the bridge is not connected to."""
    connected = set(bridge.node.p2p.peers())
    for i in net.running():
        node = net.nodes[i]
        if node.peer_id not in connected:
            await bridge.node.p2p.connect(node.addrs()[0])


@contextlib.asynccontextmanager
async def spawn_bridge(
    database_url: str,
    *,
    net: TestNetwork | None = None,
    root: Path | None = None,
    keys: Keys | None = None,
    anti_entropy_interval: float = 0.5,
    **settings: Any,
) -> AsyncIterator[Bridge]:
    """Start a bridge on 127.0.0.1 writing to ``database_url``; ``settings`` are :class:`BridgeSettings` fields."""
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="empressa-bridge-")))
        keys = keys or Keys(author=Signer(secrets.token_bytes(32)), peer_seed=secrets.token_bytes(32))
        conf = BridgeSettings(
            data_dir=root,
            database_url=database_url,
            listen=["/ip4/127.0.0.1/tcp/0"],
            anti_entropy_interval=anti_entropy_interval,
            **settings,
        )
        store = Store.connect(
            database_url,
            pool_size=conf.db_pool_size,
            quarantine_limits=conf.quarantine_limits,
            trusted_attesters=trusted_attesters(conf, keys),
        )
        try:
            async with trio.open_nursery() as nursery:
                bridge = Bridge(settings=conf, keys=keys, store=store)
                await nursery.start(bridge.run)
                try:
                    if net is not None:
                        await follow(bridge, net)
                    yield bridge
                finally:
                    await bridge.node.p2p.close()
                    nursery.cancel_scope.cancel()
        finally:
            store.close()
