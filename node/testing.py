"""An in-process network of real nodes for tests and benchmarks.

Every node is a real libp2p host on 127.0.0.1 with its own SQLite store; only
the process is shared. ::

    async with spawn_network(5) as net:
        await net.nodes[0].publish(kind="asset.put", key="k", body=body)
        net.drop_rate = 0.5          # lose half of all gossip from now on
        await net.partition([0, 1], [2, 3, 4])
        await net.heal()
        await net.stop(3); …; await net.start(3)   # a node that was offline
        await net.settle()           # every running node holds the same heads
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from protocol import Signer

from .config import NodeSettings
from .daemon import Node
from .keystore import Keys
from .paths import NODE_DB
from .store import Store


@dataclass
class _Slot:
    keys: Keys
    store: Store
    data_dir: Path
    node_kwargs: dict[str, Any] = field(default_factory=dict)
    node: Node | None = None
    scope: trio.CancelScope | None = None
    done: trio.Event = field(default_factory=trio.Event)


class TestNetwork:
    """Handle on a running in-process network; see the module docstring."""

    __test__ = False  # not a pytest test class

    def __init__(self, nursery: trio.Nursery, root: Path, settings: dict[str, Any], topology: str) -> None:
        self._nursery = nursery
        self._root = root
        self._settings = settings
        self._topology = topology
        self._slots: list[_Slot] = []
        self._drop_rate = 0.0

    @property
    def nodes(self) -> list[Node]:
        """The nodes, by index (a stopped node keeps its last :class:`Node` object)."""
        return [s.node for s in self._slots if s.node is not None]

    @property
    def drop_rate(self) -> float:
        return self._drop_rate

    @drop_rate.setter
    def drop_rate(self, rate: float) -> None:
        self._drop_rate = rate
        for node in self.nodes:
            node.gossip_drop_rate = rate

    def running(self) -> list[int]:
        return [i for i, s in enumerate(self._slots) if s.scope is not None]

    async def add(self, **node_kwargs: Any) -> Node:
        """Create and start one more node, connected per the topology.

        ``node_kwargs`` go to :class:`~node.daemon.Node` at every start (say
        ``gossip_versions=(1,)`` for a node that predates batched gossip).
        """
        i = len(self._slots)
        data_dir = self._root / f"node{i}"
        data_dir.mkdir(parents=True, exist_ok=True)
        keys = Keys(author=Signer(secrets.token_bytes(32)), peer_seed=secrets.token_bytes(32))
        self._slots.append(_Slot(keys, Store.open(data_dir / NODE_DB), data_dir, node_kwargs))
        return await self.start(i)

    async def start(self, i: int) -> Node:
        slot = self._slots[i]
        if slot.scope is not None:
            raise RuntimeError(f"node {i} is already running")
        settings = NodeSettings(
            data_dir=slot.data_dir, listen=["/ip4/127.0.0.1/tcp/0"], mdns=False, **self._settings
        )
        node = Node(settings=settings, keys=slot.keys, store=slot.store, **slot.node_kwargs)
        node.gossip_drop_rate = self._drop_rate
        slot.node = node
        slot.done = trio.Event()

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with trio.CancelScope() as scope:
                slot.scope = scope
                try:
                    async with trio.open_nursery() as n:
                        await n.start(node.run)
                        task_status.started()
                finally:
                    slot.done.set()

        await self._nursery.start(run)
        targets = [j for j in self.running() if j != i]
        if self._topology == "line":
            targets = [j for j in targets if j < i][-1:] or targets[:1]
        for j in targets:
            await self.connect(i, j)
        return node

    async def stop(self, i: int) -> None:
        slot = self._slots[i]
        if slot.scope is None:
            return
        if slot.node is not None:
            await slot.node.p2p.close()  # hang up on peers first, as a process exit would
        slot.scope.cancel()
        await slot.done.wait()
        slot.scope = None

    async def connect(self, i: int, j: int) -> None:
        a, b = self._slots[i].node, self._slots[j].node
        assert a is not None and b is not None
        await a.p2p.connect(b.addrs()[0])

    async def partition(self, *groups: list[int]) -> None:
        """Cut every link between nodes of different groups (gossip and sync)."""
        group_of = {i: g for g, members in enumerate(groups) for i in members}
        for i in self.running():
            for j in self.running():
                if group_of.get(i) != group_of.get(j):
                    a, b = self._slots[i].node, self._slots[j].node
                    assert a is not None and b is not None
                    a.blocked.add(b.peer_id)
                    await a.p2p.disconnect(b.peer_id)

    async def heal(self) -> None:
        """Undo :meth:`partition` and reconnect every running pair."""
        running = self.running()
        for i in running:
            node = self._slots[i].node
            assert node is not None
            node.blocked.clear()
        for i in running:
            for j in running:
                if i < j:
                    await self.connect(i, j)

    def heads(self, i: int) -> list[tuple[bytes, int, bytes]]:
        return self._slots[i].store.heads(limit=1_000_000)

    async def settle(self, *, timeout: float = 30.0, poll: float = 0.05) -> None:
        """Wait until every running node holds exactly the same heads.

        Raises:
            trio.TooSlowError: with the nodes' head counts, if they never agree.
        """
        with trio.move_on_after(timeout) as scope:
            while True:
                views = [self.heads(i) for i in self.running()]
                if all(v == views[0] for v in views):
                    return
                await trio.sleep(poll)
        if scope.cancelled_caught:
            counts = {i: sum(s for _, s, _ in self.heads(i)) for i in self.running()}
            raise trio.TooSlowError(f"network did not settle in {timeout}s; entries per node: {counts}")

    async def close(self) -> None:
        async with trio.open_nursery() as nursery:  # in parallel: each hang-up takes a moment
            for i in self.running():
                nursery.start_soon(self.stop, i)
        for slot in self._slots:
            slot.store.close()


@contextlib.asynccontextmanager
async def spawn_network(
    n: int,
    *,
    root: Path | None = None,
    topology: str = "mesh",
    anti_entropy_interval: float = 0.5,
    **settings: Any,
) -> AsyncIterator[TestNetwork]:
    """Start ``n`` connected nodes on 127.0.0.1 (``topology``: ``mesh`` or ``line``)."""
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="empressa-net-")))
        async with trio.open_nursery() as nursery:
            net = TestNetwork(
                nursery, root, {"anti_entropy_interval": anti_entropy_interval, **settings}, topology
            )
            try:
                for _ in range(n):
                    await net.add()
                yield net
            finally:
                await net.close()
                nursery.cancel_scope.cancel()
