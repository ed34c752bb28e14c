"""What a gossip message costs py-libp2p's service manager to spawn its task, by the size of the tree.

    .venv/bin/python bench/service_tasks.py [--sizes 10,100,1000,3000] [--spawns 300]

Prints figures only; it never passes or fails. Pubsub (libp2p 0.8.1) runs one
long-lived task per connected peer and spawns one task per gossip message it
receives, from the stream's handler (outside its task tree). For each tree
size, a real ``TrioManager`` runs that many long-lived tasks and this measures
one ``run_task`` called from outside the tree, the median of ``--spawns``:
with libp2p's own parent lookup (a walk of the whole tree), with
``node.net.host``'s index, and, as the floor it chases, trio's own
``nursery.start_soon`` of the same function.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import trio  # noqa: E402
from libp2p.tools.anyio_service import (  # noqa: E402
    Service,
    background_trio_service,
    trio_manager,
)

from node.net import host  # noqa: E402  (installs the index)


class _Idle(Service):
    async def run(self) -> None:
        await trio.sleep_forever()


async def _noop() -> None:
    pass


async def _spawn_cost(size: int, spawns: int, *, walk: bool) -> float:
    """Median µs of one ``run_task`` from outside a tree of ``size`` long-lived tasks."""
    indexed = trio_manager.TrioManager._find_parent_task
    if walk:
        trio_manager.TrioManager._find_parent_task = host.LIBP2P_FIND_PARENT_TASK  # type: ignore[method-assign]
    try:
        async with background_trio_service(_Idle()) as m:
            for _ in range(size):
                m.run_daemon_task(trio.sleep_forever)
            await trio.sleep(0.05)
            times = []
            for _ in range(spawns):
                t = time.perf_counter()
                m.run_task(_noop)
                times.append(time.perf_counter() - t)
                await trio.sleep(0)  # let it run and leave the tree
                await trio.sleep(0)
            m.cancel()
    finally:
        trio_manager.TrioManager._find_parent_task = indexed  # type: ignore[method-assign]
    return statistics.median(times) * 1e6


async def _start_soon_cost(spawns: int) -> float:
    times = []
    async with trio.open_nursery() as nursery:
        for _ in range(spawns):
            t = time.perf_counter()
            nursery.start_soon(_noop)
            times.append(time.perf_counter() - t)
            await trio.sleep(0)
    return statistics.median(times) * 1e6


async def main(sizes: list[int], spawns: int) -> None:
    floor = await _start_soon_cost(spawns)
    print(
        f"one task spawned from outside the tree (median of {spawns}), node.net.host's index against libp2p's walk"
    )
    print(f"  {'long-lived tasks':>16}  {'libp2p (walk)':>14}  {'index':>10}  {'floor: start_soon':>18}")
    for size in sizes:
        walked = await _spawn_cost(size, spawns, walk=True)
        indexed = await _spawn_cost(size, spawns, walk=False)
        print(f"  {size:>16,}  {walked:>11.1f} µs  {indexed:>7.1f} µs  {floor:>15.1f} µs")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10,100,1000,3000")
    ap.add_argument("--spawns", type=int, default=300)
    args = ap.parse_args()
    trio.run(main, [int(x) for x in args.sizes.split(",")], args.spawns)
