"""Replication between real nodes: complete-delivery throughput and publish-to-peer latency.

    ./dev bench replication [--nodes 2] [--entries 10000] [--samples 300] [--interval-ms 20]
                            [--publish all|node|batch|catchup] [--batch 500]

Prints figures only; it never passes or fails. The nodes come from
``node.testing.spawn_network``: real libp2p hosts (TCP, Noise, Yamux,
gossipsub) on 127.0.0.1, each with its own SQLite store, all in this one
process and one trio loop — so publisher, network and receivers share one
core's worth of Python, which a real deployment would not.

(a) Throughput: ``--entries`` entries are published on node 0 and the clock
    runs until every other node holds all of them (its store head for node
    0's author reaches the last seq). Three ways, each on a fresh network:
    ``node.publish()`` awaited in a loop (sign, store in a worker thread, wake
    the announcer); ``store.append_local`` called in batches inside one worker
    thread (the same signing and storing without a thread hop per entry; the
    node finds them through its announcer's poll and anti-entropy); and
    catch-up, where the peers are stopped while node 0 publishes and the
    clock starts when they restart (sync alone, no publishing competing for
    the process). Entries/s = entries / time until the last peer is complete.
(b) Latency: entries are published one at a time every ``--interval-ms``; for
    each, the time from ``await node.publish()`` returning on node 0 to the
    peer's store holding it. Receipt is observed through each peer's
    ``Node.changed`` event (set in the trio thread right after the store
    write), so there is no polling error.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

# Run as ``python bench/replication.py``, this file's folder comes first on
# sys.path and bench/protocol.py would shadow the ``protocol`` package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import trio  # noqa: E402

from node.daemon import Node  # noqa: E402
from node.testing import TestNetwork, spawn_network  # noqa: E402

TARGET_RATE = 2_000.0
TARGET_P50_MS = 10.0
TARGET_P99_MS = 50.0
COMPLETE_TIMEOUT = 600.0


def body(i: int) -> dict[str, Any]:
    return {
        "title": f"Bench take {i}",
        "description": "A short loop recorded for the replication benchmark.",
        "tags": ["bench", "loop"],
        "media": {
            "cid": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
            "mime": "audio/wav",
            "size": 1_234_567 + i,
            "duration_ms": 4_000,
        },
        "license": {"type": "commercial", "price": {"amount": "12.50", "currency": "USD"}},
    }


def head_seq(node: Node, author: Node) -> int:
    h = node.store.head(author.keys.author.public)
    return h.seq if h is not None else 0


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


# -- (a) throughput ----------------------------------------------------------------------------


async def publish_loop(node: Node, n: int) -> None:
    for i in range(n):
        await node.publish(kind="asset.put", key=f"t{i:06d}", body=body(i))


async def publish_batches(node: Node, n: int, batch: int) -> None:
    signer = node.keys.author

    def write(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            node.store.append_local(signer, kind="asset.put", key=f"t{i:06d}", body=body(i))

    for lo in range(0, n, batch):
        await trio.to_thread.run_sync(write, lo, min(n, lo + batch))


async def wait_complete(net: TestNetwork, target: int, deadline: float) -> dict[int, float]:
    """Per peer, the trio time at which its head for node 0's author reached ``target``.

    Woken by each peer's ``changed`` event; heads are read in a worker thread,
    as the node itself does, so the loop never waits on a store lock.
    """
    done: dict[int, float] = {}

    async def watch(i: int) -> None:
        while True:
            peer, src = net.nodes[i], net.nodes[0]  # a restarted peer is a new Node object
            ev = peer.changed  # taken before reading, so no store after the read is missed
            if await trio.to_thread.run_sync(head_seq, peer, src) >= target:
                done[i] = trio.current_time()
                return
            with trio.move_on_after(0.05):  # also catch a peer replaced by net.start()
                await ev.wait()

    with trio.move_on_at(deadline):
        async with trio.open_nursery() as nursery:
            for i in range(1, len(net.nodes)):
                nursery.start_soon(watch, i)
    return done


async def throughput(n_nodes: int, n: int, mode: str, batch: int) -> dict[str, Any]:
    async with spawn_network(n_nodes) as net:
        src = net.nodes[0]
        await src.publish(kind="asset.put", key="warmup", body=body(-1))
        await net.settle()
        base = head_seq(src, src)
        target = base + n
        result: dict[str, Any] = {}
        if mode == "catchup":
            # The peers are offline while node 0 publishes; the clock starts when they come back.
            for i in range(1, n_nodes):
                await net.stop(i)
            t = trio.current_time()
            await publish_batches(src, n, batch)
            result["published"] = trio.current_time() - t
            t0 = trio.current_time()
            for i in range(1, n_nodes):
                await net.start(i)
            result["done"] = await wait_complete(net, target, t0 + COMPLETE_TIMEOUT)
        else:
            t0 = trio.current_time()
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    result["done"] = await wait_complete(net, target, t0 + COMPLETE_TIMEOUT)

                nursery.start_soon(watch)
                if mode == "node":
                    await publish_loop(src, n)
                else:
                    await publish_batches(src, n, batch)
                result["published"] = trio.current_time() - t0
        done: dict[int, float] = result["done"]
        stats = {k: sum(getattr(p.stats, k) for p in net.nodes[1:]) for k in ("gossip_received", "pulled")}
        held = {i: head_seq(p, src) - base for i, p in enumerate(net.nodes[1:], start=1)}
        return {
            "mode": mode,
            "n": n,
            "publish_s": result["published"],
            "complete_s": (max(done.values()) - t0) if len(done) == n_nodes - 1 else None,
            "held": held,
            "announced": src.stats.announced,
            **stats,
        }


# -- (b) latency -------------------------------------------------------------------------------


async def latency(n_nodes: int, samples: int, interval: float) -> dict[str, Any]:
    async with spawn_network(n_nodes) as net:
        src = net.nodes[0]
        for i in range(5):  # warm up connections and the gossip mesh
            await src.publish(kind="asset.put", key=f"w{i}", body=body(i))
        await net.settle()
        base = head_seq(src, src)
        arrived: dict[int, dict[int, float]] = {i: {} for i in range(1, len(net.nodes))}
        returned: dict[int, float] = {}
        call_ms: list[float] = []

        async def watch(i: int, peer: Node) -> None:
            seen = head_seq(peer, src)
            ev = peer.changed
            while True:
                await ev.wait()
                now = trio.current_time()
                ev = peer.changed  # grab the next event before reading, so no store is missed
                head = await trio.to_thread.run_sync(
                    head_seq, peer, src
                )  # never block the loop on the store lock
                for seq in range(seen + 1, head + 1):
                    arrived[i][seq] = now
                seen = max(seen, head)

        async with trio.open_nursery() as nursery:
            for i, peer in enumerate(net.nodes[1:], start=1):
                nursery.start_soon(watch, i, peer)
            tick = trio.current_time()
            for k in range(samples):
                t0 = trio.current_time()
                e = await src.publish(kind="asset.put", key=f"l{k:05d}", body=body(k))
                returned[e.seq] = trio.current_time()
                call_ms.append((returned[e.seq] - t0) * 1000)
                tick += interval
                await trio.sleep_until(tick)
            last = base + samples
            with trio.move_on_after(60):
                while any(max(a, default=0) < last for a in arrived.values()):
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        lat = [
            (arrived[i][seq] - returned[seq]) * 1000
            for i in arrived
            for seq in range(base + 1, last + 1)
            if seq in arrived[i]
        ]
        stats = {k: sum(getattr(p.stats, k) for p in net.nodes[1:]) for k in ("gossip_received", "pulled")}
        return {
            "lat": lat,
            "missing": samples * (len(net.nodes) - 1) - len(lat),
            "call_ms": call_ms,
            **stats,
        }


# -- report ------------------------------------------------------------------------------------


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


LABEL = {
    "node": "await node.publish() loop",
    "batch": "store.append_local, batches",
    "catchup": "catch-up over sync (peers offline)",
}


def print_throughput(rows: list[dict[str, Any]], batch: int) -> None:
    print(f"(a) complete replication: {rows[0]['n']:,} entries published on node 0")
    print()
    hdr = f"  {'publish path':<36} {'publish':>11} {'all peers hold all':>19} {'throughput':>13}   target"
    print(hdr)
    print("  " + "-" * (len(hdr) - 2))
    for r in rows:
        label = LABEL[r["mode"]] + (f" of {batch}" if r["mode"] == "batch" else "")
        if r["mode"] == "catchup":
            label = "catch-up after being offline"
        pub_rate = r["n"] / r["publish_s"]
        if r["complete_s"] is None:
            held = ", ".join(f"node {i}: {h:,}" for i, h in r["held"].items())
            done, rate = f"incomplete ({held})", "—"
        else:
            done, rate = f"{r['complete_s']:.2f} s", f"{r['n'] / r['complete_s']:,.0f} /s"
        print(f"  {label:<36} {pub_rate:>9,.0f}/s {done:>19} {rate:>13}   ≥ {TARGET_RATE:,.0f} /s")
    print()
    for r in rows:
        print(
            f"  {LABEL[r['mode']]}: announced {r['announced']:,} by gossip; peers received "
            f"{r['gossip_received']:,} gossip messages and pulled {r['pulled']:,} entries over sync"
        )
    print("  for scale: Peerbit 96 /s, OrbitDB 105 /s")
    print()


def print_latency(r: dict[str, Any], samples: int, interval_ms: float, n_peers: int) -> None:
    lat = r["lat"]
    print(
        f"(b) publish-to-peer latency: {samples} entries, one every {interval_ms:g} ms, "
        f"{n_peers} peer{'s' if n_peers > 1 else ''}"
    )
    print()
    if not lat:
        print("  no entry arrived")
        return
    rows = [
        ("p50", pct(lat, 50), f"< {TARGET_P50_MS:g} ms", "5–10 ms"),
        ("p90", pct(lat, 90), "", ""),
        ("p99", pct(lat, 99), f"< {TARGET_P99_MS:g} ms", "30 ms"),
        ("max", max(lat), "", ""),
    ]
    print(f"  {'':<5} {'measured':>10}   {'target':<10} {'reference'}")
    print("  " + "-" * 40)
    for name, v, target, ref in rows:
        print(f"  {name:<5} {v:>7.2f} ms   {target:<10} {ref}")
    print()
    print(
        f"  mean {statistics.fmean(lat):.2f} ms over {len(lat)} deliveries"
        + (f"; {r['missing']} never arrived within 60 s" if r["missing"] else "")
    )
    print(f"  publish() call itself: p50 {pct(r['call_ms'], 50):.2f} ms, p99 {pct(r['call_ms'], 99):.2f} ms")
    print(
        f"  peers received {r['gossip_received']:,} gossip messages and pulled {r['pulled']:,} entries over sync"
    )
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=2, help="nodes in the network (default 2)")
    ap.add_argument("--entries", type=int, default=10_000, help="entries for the throughput run")
    ap.add_argument("--samples", type=int, default=300, help="entries for the latency run")
    ap.add_argument("--interval-ms", type=float, default=20.0, help="pace of the latency run")
    ap.add_argument(
        "--publish",
        choices=("all", "node", "batch", "catchup"),
        default="all",
        help="publish path(s) for (a)",
    )
    ap.add_argument("--batch", type=int, default=500, help="entries per worker-thread call in batch mode")
    args = ap.parse_args()
    if args.nodes < 2:
        ap.error("--nodes must be at least 2")

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("libp2p").setLevel(logging.ERROR)
    logging.getLogger("multiaddr").setLevel(logging.ERROR)

    print(
        f"Empressa replication — {args.nodes} nodes on 127.0.0.1, one process "
        f"(python {platform.python_version()}, libp2p {version('libp2p')}, trio {version('trio')}, "
        f"{os.cpu_count()} CPUs)"
    )
    print()
    modes = ["node", "batch", "catchup"] if args.publish == "all" else [args.publish]
    t = time.perf_counter()
    if args.entries > 0:
        rows = [trio.run(throughput, args.nodes, args.entries, m, args.batch) for m in modes]
        print_throughput(rows, args.batch)
    if args.samples > 0:
        lat = trio.run(latency, args.nodes, args.samples, args.interval_ms / 1000)
        print_latency(lat, args.samples, args.interval_ms, args.nodes - 1)
    print(f"(ran for {time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
