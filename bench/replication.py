"""Replication between real nodes: complete-delivery throughput and publish-to-peer latency.

    ./dev bench replication [--mode both|processes|in-process] [--nodes 2] [--entries 10000]
                            [--samples 300] [--interval-ms 50] [--clients 8] [--batch 500]
                            [--publish all|node|batch|catchup]

Prints figures only; it never passes or fails. Two settings, both by default:

**processes** (what a user runs): ``--nodes`` real ``empressa node run``
processes started through the CLI (fresh data dirs, ``node init`` with
``EMPRESSA_KEK``, listening on 127.0.0.1:0, each bootstrapped to the first from
its ``node.json``). The bench writes through node A's local API
(``POST /v1/local/entries``, bearer token, keep-alive HTTP connections, one blocking
socket per client in its own thread: :class:`Writer`) and
sees receipt through every other node's ``GET /v1/events`` stream, not a poll
loop. (a) ``--entries`` writes, each awaited, one client; (b) the same with
``--clients`` concurrent clients; (c) bulk requests of ``--batch`` writes; for
each, entries/s = entries / time until the last peer's stream has delivered
them all. (d) latency: one write every ``--interval-ms``, ``--samples`` of them,
from A's write returning to the peer's event for it. The event carries the
peer's receive time as ``CLOCK_MONOTONIC`` (``time.monotonic_ns()``), which all
processes on one machine share, so the two ends are read on one clock. The
local-API write latency itself is printed too.

**in-process**: the nodes come from ``node.testing.spawn_network``: real libp2p
hosts (TCP, Noise, Yamux, gossipsub) on 127.0.0.1, each with its own SQLite
store, all in this one process and one trio loop — so publisher, network and
receivers share one core's worth of Python, which a real deployment would not.

(a) Throughput: ``--entries`` entries are published on node 0 and the clock
    runs until every other node holds all of them (its store head for node
    0's author reaches the last seq). Three ways, each on a fresh network:
    ``node.publish()`` awaited in a loop (sign, store in a worker thread, wake
    the announcer); ``node.publish_many()`` in batches of ``--batch`` (the bulk
    path: one transaction and one thread hop per batch); and
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
import json
import logging
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

# Run as ``python bench/replication.py``, this file's folder comes first on
# sys.path and bench/protocol.py would shadow the ``protocol`` package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import httptools  # noqa: E402
import httpx  # noqa: E402
import orjson  # noqa: E402
import trio  # noqa: E402

from node.daemon import Node  # noqa: E402
from node.store import LocalWrite  # noqa: E402
from node.testing import TestNetwork, spawn_network  # noqa: E402

TARGET_RATE = 2_000.0  # issue 10: entries/s, two real processes, until the peer holds all
TARGET_P50_MS = 2.0  # issue 10: from A's write returning to B holding it
TARGET_P99_MS = 8.0
TARGET_WRITE_P50_MS = 1.5  # issue 10: one write through the local API
COMPLETE_TIMEOUT = 600.0
START_TIMEOUT = 60.0
# Issue 10's reference figures: writer and replica in separate processes, each write awaited.
REFERENCES = (("Peerbit 5.3", 183, 2.3, 8.1), ("OrbitDB 4.0", 136, 9.9, 20.0))


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
    for lo in range(0, n, batch):
        await node.publish_many(
            [LocalWrite("asset.put", f"t{i:06d}", body(i)) for i in range(lo, min(n, lo + batch))]
        )


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


# -- real processes ------------------------------------------------------------------------------

EMPRESSA = str(Path(sys.executable).with_name("empressa"))


class Proc:
    """One ``empressa node run`` child in its own fresh data dir."""

    def __init__(self, root: Path, name: str, env: dict[str, str], bootstrap: str | None) -> None:
        self.data = root / name
        subprocess.run(
            [EMPRESSA, "node", "init", "--data", str(self.data), "--json"],
            env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        args = [
            EMPRESSA,
            "node",
            "run",
            "--data",
            str(self.data),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
        ]
        if bootstrap:
            args += ["--bootstrap", bootstrap]
        self.log = (root / f"{name}.log").open("wb")
        self.proc = subprocess.Popen(
            args, env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log
        )
        self.info: dict[str, Any] = {}

    def wait_ready(self) -> Proc:
        deadline = time.monotonic() + START_TIMEOUT
        path = self.data / "node.json"
        while not path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"node run failed to start; see {self.log.name}")
            time.sleep(0.05)
        self.info = json.loads(path.read_text())
        self.token = (self.data / "api.token").read_text().strip()
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@contextmanager
def processes(n: int) -> Iterator[list[Proc]]:
    root = Path(tempfile.mkdtemp(prefix="empressa-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPRESSA")}
    env["EMPRESSA_KEK"] = secrets.token_hex(32)
    procs: list[Proc] = []
    try:
        procs.append(Proc(root, "a", env, None).wait_ready())
        first = procs[0].info["multiaddrs"][0]
        procs += [Proc(root, f"n{i}", env, first) for i in range(1, n)]
        for p in procs[1:]:
            p.wait_ready()
        yield procs
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(root, ignore_errors=True)


class _Response:
    """httptools callbacks for one response: its body chunks, and whether it has ended."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done = self.close = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"connection" and value.lower() == b"close":
            self.close = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class _Http1:
    """What both HTTP/1.1 clients share: the target, and requests as one preformatted ``bytes``.

    A load generator should cost little next to what it measures, and it runs
    on the same two cores: httpx spends about as much CPU per request as the
    node's whole write (see the httpx figure the bench prints beside it), and
    h11, which these clients used before, about 40 us of pure Python per
    request. Here a request is one ``bytes`` and one socket send, and a
    response is parsed by llhttp in C (httptools, the parser uvicorn uses).
    """

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        hostport = base_url.split("//", 1)[1].rstrip("/")
        self.host, _, port = hostport.rpartition(":")
        self.port = int(port)
        fields = [("host", hostport), *((k.lower(), v) for k, v in (headers or {}).items())]
        self._fields = "".join(f"{k}: {v}\r\n" for k, v in fields).encode()

    def _request(self, method: str, path: str, body: bytes | None) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self._fields
        if body is not None:
            head += b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
        return head + b"\r\n" + (body or b"")


class Writer(_Http1):
    """The load generator: a keep-alive connection on a blocking socket, for a worker thread.

    Blocking, as curl or a ``requests`` script is: a response wakes the thread
    straight out of ``recv``, where an event loop would take an EAGAIN, an
    epoll registration and a scheduler pass per request (trio's, about as much
    again as the parse). The GIL is released while the thread waits, so the
    trio thread (the event-stream watchers) runs meanwhile.
    """

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(base_url, headers)
        self._sock: socket.socket | None = None

    def post_json(self, path: str, doc: Any) -> tuple[int, bytes]:
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port))
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.sendall(self._request("POST", path, orjson.dumps(doc)))
        r = _Response()
        parser = httptools.HttpResponseParser(r)
        while not r.done:
            data = self._sock.recv(65536)
            if not data:
                raise ConnectionError("the node closed the connection mid-response")
            parser.feed_data(data)
        if r.close:
            self.close()
        return parser.get_status_code(), b"".join(r.chunks)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Http1(_Http1):
    """A streamed ``GET`` on one trio socket (the peers' event streams), parsed by httptools."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(base_url, headers)
        self._stream: trio.SocketStream | None = None

    async def lines(self, path: str) -> Any:
        """The body of ``GET path`` line by line, as it streams."""
        self._stream = await trio.open_tcp_stream(self.host, self.port)
        await self._stream.send_all(self._request("GET", path, None))
        r = _Response()
        parser = httptools.HttpResponseParser(r)
        pending = b""
        while not r.done:
            data = await self._stream.receive_some(65536)
            if not data:
                return
            parser.feed_data(data)
            if r.chunks:
                pending += b"".join(r.chunks)
                r.chunks.clear()
                *done, pending = pending.split(b"\n")
                for line in done:
                    yield line

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None


class Watcher:
    """One peer's ``GET /v1/events`` stream: A's entries as they arrive, with the peer's receive times."""

    def __init__(self, proc: Proc, author: str) -> None:
        self.proc, self.author = proc, author
        self.seen: dict[int, int] = {}  # seq -> received_ns (the peer's CLOCK_MONOTONIC)
        self.top = 0
        self._changed = trio.Event()
        self.ready = trio.Event()

    async def run(self) -> None:
        c = Http1(self.proc.info["api_url"])
        try:
            async for line in c.lines("/v1/events"):
                self.ready.set()  # the stream is open (its first line is a comment)
                if not line.startswith(b"data: "):
                    continue
                ev = orjson.loads(line[6:])
                if ev["did"] == self.author:
                    self.seen[ev["seq"]] = ev["received_ns"]
                    self.top = max(self.top, ev["seq"])
                    self._changed.set()
                    self._changed = trio.Event()
        finally:
            await c.aclose()

    async def wait_for(self, seq: int) -> int | None:
        """The monotonic ns at which this peer stored A's ``seq`` (and everything before it), or None."""
        with trio.move_on_after(COMPLETE_TIMEOUT):
            while self.top < seq:
                await self._changed.wait()
            return self.seen[seq]
        return None


def _put(i: int, prefix: str) -> dict[str, Any]:
    return {"kind": "asset.put", "key": f"{prefix}{i:06d}", "body": body(i)}


def cpu_seconds(pid: int | None = None) -> float | None:
    """CPU time (user + system, all threads) of process ``pid``, or of this one; ``None`` off Linux."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def cpu_per_write(before: list[float | None], after: list[float | None], n: int) -> list[float | None]:
    """Microseconds of CPU per write, process by process, between two :func:`cpu_seconds` readings."""
    return [None if a is None or b is None else (b - a) / n * 1e6 for a, b in zip(before, after, strict=True)]


async def proc_throughput(
    procs: list[Proc], watchers: list[Watcher], first_seq: int, n: int, how: str, clients: int, batch: int
) -> dict[str, Any]:
    api, token = procs[0].info["api_url"], procs[0].token
    headers = {"Authorization": f"Bearer {token}"}
    call_ms: list[float] = []
    last = first_seq + n - 1
    cpu0 = [cpu_seconds(p.proc.pid) for p in procs] + [cpu_seconds()]
    t0 = time.monotonic_ns()

    def writer(lo: int, hi: int, step: int) -> None:
        c = Writer(api, headers)  # one keep-alive connection per client, in its own thread
        try:
            for i in range(lo, hi, step):
                doc: Any = (
                    [_put(j, how[0]) for j in range(i, min(hi, i + batch))]
                    if how == "bulk"
                    else _put(i, how[0])
                )
                t = time.perf_counter()
                status, body = c.post_json("/v1/local/entries", doc)
                call_ms.append((time.perf_counter() - t) * 1000)
                if status != 201:
                    raise SystemExit(f"write refused: {status} {body[:200]!r}")
        finally:
            c.close()

    async with trio.open_nursery() as nursery:
        done: list[int | None] = []

        async def watch(w: Watcher) -> None:
            done.append(await w.wait_for(last))

        for w in watchers:
            nursery.start_soon(watch, w)
        if how == "concurrent":
            async with trio.open_nursery() as writers:
                for k in range(clients):
                    writers.start_soon(partial(trio.to_thread.run_sync, writer, k, n, clients))
        else:
            await trio.to_thread.run_sync(writer, 0, n, batch if how == "bulk" else 1)
        written = time.monotonic_ns()
    complete = None if None in done else max(d for d in done if d is not None)
    cpu1 = [cpu_seconds(p.proc.pid) for p in procs] + [cpu_seconds()]
    return {
        # CPU per write of A, each peer and this bench, from the first write until all peers held all
        "cpu_us": cpu_per_write(cpu0, cpu1, n),
        "how": how,
        "n": n,
        "write_s": (written - t0) / 1e9,
        "complete_s": (complete - t0) / 1e9 if complete is not None else None,
        "held": [w.top - first_seq + 1 for w in watchers],
        "call_ms": call_ms,
    }


async def proc_latency(
    procs: list[Proc], watchers: list[Watcher], first_seq: int, samples: int, interval: float
) -> dict[str, Any]:
    api, token = procs[0].info["api_url"], procs[0].token
    returned: dict[int, int] = {}
    call_ms: list[float] = []
    cpu0 = [cpu_seconds(p.proc.pid) for p in procs]

    def write_paced() -> None:
        c = Writer(api, {"Authorization": f"Bearer {token}"})
        try:
            tick = time.monotonic()
            for k in range(samples):
                t = time.perf_counter()
                _status, body = c.post_json("/v1/local/entries", _put(k, "l"))
                returned[orjson.loads(body)["seq"]] = time.monotonic_ns()
                call_ms.append((time.perf_counter() - t) * 1000)
                tick += interval
                time.sleep(max(0.0, tick - time.monotonic()))
        finally:
            c.close()

    await trio.to_thread.run_sync(write_paced)
    last = first_seq + samples - 1
    for w in watchers:
        await w.wait_for(last)
    cpu1 = [cpu_seconds(p.proc.pid) for p in procs]
    lat = [(w.seen[s] - returned[s]) / 1e6 for w in watchers for s in returned if s in w.seen]
    return {
        "lat": lat,
        "missing": samples * len(watchers) - len(lat),
        "call_ms": call_ms,
        # CPU per write of A and each peer over the paced run (idle work between writes included)
        "cpu_us": cpu_per_write(cpu0, cpu1, samples),
    }


async def httpx_writes(api: str, token: str, n: int) -> list[float]:
    """``n`` writes one at a time through ``httpx.AsyncClient`` (what a Python user's script would
    use): the per-request cost with a heavier client, printed beside the load generator's."""
    call_ms: list[float] = []
    async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        for k in range(n):
            t = time.perf_counter()
            r = await c.post("/v1/local/entries", json=_put(k, "x"))
            call_ms.append((time.perf_counter() - t) * 1000)
            if r.status_code != 201:
                raise SystemExit(f"write refused: {r.status_code} {r.text[:200]}")
    return call_ms


async def run_processes(args: argparse.Namespace) -> None:
    with processes(args.nodes) as procs:
        a = procs[0]
        api, token, author = a.info["api_url"], a.token, a.info["did"]
        print(
            f"(processes) {args.nodes} `empressa node run` processes on 127.0.0.1; writes through A's local "
            f"API, receipt through the peers' /v1/events"
        )
        print()
        async with trio.open_nursery() as nursery:
            watchers = [Watcher(p, author) for p in procs[1:]]
            for w in watchers:
                nursery.start_soon(w.run)
                await w.ready.wait()
            seq = 1
            warm = await proc_throughput(procs, watchers, seq, 50, "single", 1, 1)  # connections, mesh
            if warm["complete_s"] is None:
                raise SystemExit("the peers never received the warm-up writes")
            seq += 50
            rows = []
            for how in ("single", "concurrent", "bulk"):
                if args.entries <= 0:
                    break
                r = await proc_throughput(procs, watchers, seq, args.entries, how, args.clients, args.batch)
                rows.append(r)
                seq += args.entries
            lat = None
            if args.samples > 0:
                lat = await proc_latency(procs, watchers, seq, args.samples, args.interval_ms / 1000)
                lat["httpx_ms"] = await httpx_writes(api, token, args.samples)
            async with httpx.AsyncClient(timeout=10) as c:
                stats = [(await c.get(p.info["api_url"] + "/v1/status")).json()["stats"] for p in procs[1:]]
            nursery.cancel_scope.cancel()
    print_proc_throughput(rows, args)
    if lat is not None:
        print_proc_latency(lat, rows, args)
    print(
        f"  peers received {sum(s['gossip_received'] for s in stats):,} gossip messages and pulled "
        f"{sum(s['pulled'] for s in stats):,} entries over sync"
    )
    print()


def print_proc_throughput(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    if not rows:
        return
    print(f"(a–c) complete replication: {rows[0]['n']:,} writes through A's local API each")
    print()
    hdr = f"  {'write path':<38} {'writes':>10} {'all peers hold all':>19} {'throughput':>12}   target"
    print(hdr)
    print("  " + "-" * (len(hdr) - 2))
    label = {
        "single": "(a) one client, each write awaited",
        "concurrent": f"(b) {args.clients} clients, each write awaited",
        "bulk": f"(c) bulk requests of {args.batch}",
    }
    for r in rows:
        if r["complete_s"] is None:
            done, rate = "incomplete (" + ", ".join(f"{h:,}" for h in r["held"]) + ")", "—"
        else:
            done, rate = f"{r['complete_s']:.2f} s", f"{r['n'] / r['complete_s']:,.0f} /s"
        print(
            f"  {label[r['how']]:<38} {r['n'] / r['write_s']:>8,.0f}/s {done:>19} {rate:>12}   ≥ {TARGET_RATE:,.0f} /s"
        )
    refs = "; ".join(f"{name} {rate} /s" for name, rate, _, _ in REFERENCES)
    print(f"  for scale (issue 10, separate processes, each write awaited): {refs}")
    print()
    if all(None not in r["cpu_us"] for r in rows):
        peers = len(rows[0]["cpu_us"]) - 2
        names = ["node A"] + [f"peer {i}" for i in range(1, peers + 1)] + ["this bench"]
        print("  CPU per write (user + system, all threads, first write until all peers hold all):")
        print("  " + f"{'':<38}" + "".join(f"{n:>12}" for n in names))
        for r in rows:
            print("  " + f"{label[r['how']]:<38}" + "".join(f"{us:>9,.0f} µs" for us in r["cpu_us"]))
        print()


def print_proc_latency(r: dict[str, Any], rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    lat = r["lat"]
    print(
        f"(d) write-to-peer latency: {args.samples} writes, one every {args.interval_ms:g} ms, A's write returning → the peer's event"
    )
    print()
    if lat:
        refs = [f"{name} {p50} / {p99} ms" for name, _, p50, p99 in REFERENCES]
        print(f"  {'':<5} {'measured':>10}   {'target':<9} {'reference (p50 / p99)'}")
        print("  " + "-" * 62)
        print(f"  {'p50':<5} {pct(lat, 50):>7.2f} ms   < {TARGET_P50_MS:g} ms    {refs[0]}")
        print(f"  {'p90':<5} {pct(lat, 90):>7.2f} ms")
        print(f"  {'p99':<5} {pct(lat, 99):>7.2f} ms   < {TARGET_P99_MS:g} ms    {refs[1]}")
        print(f"  {'max':<5} {max(lat):>7.2f} ms")
        print(f"  ({len(lat)} deliveries" + (f"; {r['missing']} never arrived" if r["missing"] else "") + ")")
        cpu = ", ".join(
            f"{name} {us:,.0f} µs" if us is not None else f"{name} ?"
            for name, us in zip(
                ["node A"] + [f"peer {i}" for i in range(1, len(r["cpu_us"]))], r["cpu_us"], strict=True
            )
        )
        print(f"  CPU per write over the paced run (user + system; idle work between writes included): {cpu}")
    else:
        print("  no write arrived")
    print()
    single = next((x for x in rows if x["how"] == "single"), None)
    calls = (single["call_ms"] if single else []) + r["call_ms"]
    print(
        f"  one write through the local API (POST, awaited, one client; (a) and (d)): p50 {pct(calls, 50):.2f} ms, "
        f"p99 {pct(calls, 99):.2f} ms   target p50 < {TARGET_WRITE_P50_MS:g} ms"
    )
    if r.get("httpx_ms"):
        hx = r["httpx_ms"]
        print(
            f"    the same through httpx.AsyncClient ({len(hx)} writes): p50 {pct(hx, 50):.2f} ms, p99 {pct(hx, 99):.2f} ms"
        )
    for x in rows:
        if x["how"] != "single":
            print(
                f"    {x['how']}: p50 {pct(x['call_ms'], 50):.2f} ms, p99 {pct(x['call_ms'], 99):.2f} ms per request"
            )
    print()


# -- report ------------------------------------------------------------------------------------


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


LABEL = {
    "node": "await node.publish() loop",
    "batch": "await node.publish_many(), batches",
    "catchup": "catch-up over sync (peers offline)",
}


def print_throughput(rows: list[dict[str, Any]], batch: int) -> None:
    print(f"(a) complete replication: {rows[0]['n']:,} entries published on node 0")
    print()
    hdr = f"  {'publish path':<44} {'publish':>11} {'all peers hold all':>19} {'throughput':>13}   target"
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
        print(f"  {label:<44} {pub_rate:>9,.0f}/s {done:>19} {rate:>13}   ≥ {TARGET_RATE:,.0f} /s")
    print()
    for r in rows:
        print(
            f"  {LABEL[r['mode']]}: announced {r['announced']:,} by gossip; peers received "
            f"{r['gossip_received']:,} gossip messages and pulled {r['pulled']:,} entries over sync"
        )
    print("  for scale: " + "; ".join(f"{name} {rate} /s" for name, rate, _, _ in REFERENCES))
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
        ("p50", pct(lat, 50), f"< {TARGET_P50_MS:g} ms", " / ".join(f"{r[0]} {r[2]} ms" for r in REFERENCES)),
        ("p90", pct(lat, 90), "", ""),
        ("p99", pct(lat, 99), f"< {TARGET_P99_MS:g} ms", " / ".join(f"{r[0]} {r[3]} ms" for r in REFERENCES)),
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
    ap.add_argument(
        "--mode",
        choices=("both", "processes", "in-process"),
        default="both",
        help="real `empressa node run` processes, the in-process network, or both (default)",
    )
    ap.add_argument("--nodes", type=int, default=2, help="nodes in the network (default 2)")
    ap.add_argument("--entries", type=int, default=10_000, help="entries for the throughput runs")
    ap.add_argument("--samples", type=int, default=300, help="entries for the latency run")
    ap.add_argument("--interval-ms", type=float, default=50.0, help="pace of the latency run")
    ap.add_argument("--clients", type=int, default=8, help="concurrent writers in processes mode (b)")
    ap.add_argument(
        "--publish",
        choices=("all", "node", "batch", "catchup"),
        default="all",
        help="in-process publish path(s) for (a)",
    )
    ap.add_argument("--batch", type=int, default=500, help="writes per bulk request / worker-thread call")
    args = ap.parse_args()
    if args.nodes < 2:
        ap.error("--nodes must be at least 2")

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("libp2p").setLevel(logging.ERROR)
    logging.getLogger("multiaddr").setLevel(logging.ERROR)

    print(
        f"Empressa replication — {args.nodes} nodes on 127.0.0.1 "
        f"(python {platform.python_version()}, libp2p {version('libp2p')}, trio {version('trio')}, "
        f"{os.cpu_count()} CPUs)"
    )
    print()
    t = time.perf_counter()
    if args.mode in ("both", "processes"):
        trio.run(run_processes, args)
    if args.mode in ("both", "in-process"):
        print(f"(in-process) {args.nodes} nodes in this one process")
        print()
        modes = ["node", "batch", "catchup"] if args.publish == "all" else [args.publish]
        if args.entries > 0:
            rows = [trio.run(throughput, args.nodes, args.entries, m, args.batch) for m in modes]
            print_throughput(rows, args.batch)
        if args.samples > 0:
            lat = trio.run(latency, args.nodes, args.samples, args.interval_ms / 1000)
            print_latency(lat, args.samples, args.interval_ms, args.nodes - 1)
    print(f"(ran for {time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
