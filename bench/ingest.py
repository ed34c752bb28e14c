"""Ingest throughput into PostgreSQL: through the bridge from the network, through ``Store.ingest``, and the ceilings.

    .venv/bin/python bench/ingest.py [--entries 100000] [--nodes 4] [--authors-per-node 5]
                                     [--workers 0,1,2] [--serving process|inprocess]

Prints figures only; it never passes or fails. All in one run, on the same signed entries:

(a) raw verify: :func:`protocol.parse_and_verify` on one core (no I/O);
(b) raw upsert: the same rows straight into PostgreSQL with psycopg, in batches
    of 1,000, each one transaction: binary COPY into a staging table, then
    ``INSERT … ON CONFLICT DO NOTHING`` into ``entries``, plus the ``assets``
    upsert (COPY to a stage, ``INSERT … ON CONFLICT DO UPDATE``). Rows are
    built before the clock starts: this is the database's ceiling;
(c) ``Store.ingest`` directly with verified entries, batches of 1,000 (the one
    ingest path: classification, assets, activity, heads);
(d) ``POST /v1/entries`` on a real ``empressa indexer run`` process (:func:`bench_http`), by
    one submitter and by two at once (``--http-clients``);
(e) the network: ``--nodes`` creator nodes hold the entries; a bridge
    (``bridge.testing``, in this process) is started on an empty database, dials
    them all and catches up over sync. Time = the bridge's first received entry
    to its last commit. Once per ``--workers`` value (the ``verify_workers``
    setting: 0 = verify in a thread, and the writer builds the rows).

The creator nodes are real ``empressa node run`` processes by default
(``--serving process``), as users run them: each holds its share of the logs
in its own SQLite store (written before it starts) and serves them over
libp2p; they know no bootstrap peer and have mDNS off, so they do not
replicate among themselves. ``--serving inprocess`` runs them in this process
instead (``node.testing.spawn_network``), where serving ranges shares the
bridge's GIL: that measures the bridge and four nodes on one core, which is
not what the bridge is asked to keep up with.

Each rate is printed beside the limit it chases: the bridge's share of (b)
(limit 80%) and ``POST /v1/entries``' share of (c) (limit 80%). All are
measured in the same run, so on a shared machine compare the shares, not the
absolute figures. An embedded PostgreSQL is started in a temporary directory.

Under each rate, the CPU it cost per entry, by process (:class:`CpuMeter`:
``/proc`` utime + stime of this process's main thread and its other threads,
its worker processes, PostgreSQL's backends, the creator nodes, the API
process), and the rate that total allows on this machine's cores. Then the
ceilings: POST's (the cores over (c)'s CPU plus one verification) and the
bridge's (the cores over (c)'s CPU, one verification, and the creator nodes'
and the bridge's main thread's CPU in the cheapest bridge run), beside the
80% targets, so a target can be judged against what the machine allows.
``--py-spy PATH`` records the bridge runs (this process) and the API process
with and without ``--gil`` into ``--profile-dir`` (raw collapsed stacks).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

# Run as ``python bench/ingest.py``, this folder comes first on sys.path and
# bench/protocol.py would shadow the ``protocol`` package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import psycopg  # noqa: E402
import trio  # noqa: E402

from bridge.testing import spawn_bridge  # noqa: E402
from indexer.db import libpq_url  # noqa: E402
from indexer.store import Store  # noqa: E402
from indexer.store.rows import ASSET_COLUMNS, ASSET_TYPES, ENTRY_TYPES, asset_fields, binary_copy  # noqa: E402
from indexer.testing import PostgresForTests  # noqa: E402
from node.testing import spawn_network  # noqa: E402
from protocol import AuthorKey, Entry, Signer, parse_and_verify, sign_entry  # noqa: E402

BATCH = 1000
LIMIT = 0.8  # the share of its reference each rate is asked to reach
PASSPHRASE = "bench ingest"  # the creator nodes' keystores (throwaway)
CORES = len(os.sched_getaffinity(0))


# -- CPU accounting -------------------------------------------------------------------------------


_TICK = os.sysconf("SC_CLK_TCK")


def _stat(path: str) -> list[str] | None:
    try:
        with open(path) as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2 :].split()  # fields from 3 (state) on


def proc_cpu(pid: int, *, children: bool = False) -> float:
    """CPU seconds (user + system) of process ``pid``, all its threads; with ``children``, plus
    those of its children it has reaped (a postmaster's exited backends)."""
    f = _stat(f"/proc/{pid}/stat")
    if f is None:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if children else 0)
    return ticks / _TICK


def thread_cpu(pid: int, tid: int) -> float:
    f = _stat(f"/proc/{pid}/task/{tid}/stat")
    return 0.0 if f is None else (int(f[11]) + int(f[12])) / _TICK


def child_pids(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants."""
    return proc_cpu(pid) + sum(tree_cpu(c) for c in child_pids(pid))


def postmaster_pid(server: PostgresForTests) -> int:
    pid = server.pg.server_pid()
    assert pid is not None, "the embedded PostgreSQL is not running"
    return pid


class CpuMeter:
    """CPU seconds spent by the processes of a run, by role, between :meth:`start` and :meth:`stop`.

    Roles: ``main`` (this process's main thread), ``threads`` (its other threads),
    ``workers`` (its child processes other than ``others``: the verify pools),
    ``postgres`` (the postmaster, its live backends and the ones it reaped), and
    any named group of ``others`` pids (the creator nodes, the API process).
    Read from ``/proc`` (``utime + stime``), so every process of the machine is
    measured the same way, whatever it runs.
    """

    def __init__(self, *, postmaster: int, others: dict[str, list[int]] | None = None) -> None:
        self.postmaster = postmaster
        self.others = others or {}
        self._start: dict[str, float] = {}
        self._workers: dict[int, float] = {}
        self.used: dict[str, float] = {}
        self.ignore: set[int] = set()  # child processes that are not part of the run (py-spy)

    def _sample(self) -> dict[str, float]:
        me = os.getpid()
        own = proc_cpu(me)
        main = thread_cpu(me, me)
        pg = proc_cpu(self.postmaster, children=True) + sum(proc_cpu(c) for c in child_pids(self.postmaster))
        named = {p for pids in self.others.values() for p in pids} | self.ignore
        for c in child_pids(me):
            if c not in named and c != self.postmaster:
                self._workers[c] = proc_cpu(c)  # the last value seen: a pool may be gone at the end
        out = {"main": main, "threads": own - main, "postgres": pg}
        for name, pids in self.others.items():
            out[name] = sum(tree_cpu(p) for p in pids)
        return out

    def start(self) -> None:
        self._workers = {}
        self._start = self._sample()
        self._workers_start = dict(self._workers)

    def poll(self) -> None:
        """Note the worker processes' CPU now (call while a pool still runs)."""
        self._sample()

    def stop(self) -> dict[str, float]:
        end = self._sample()
        self.used = {k: end[k] - self._start.get(k, 0.0) for k in end}
        self.used["workers"] = sum(v - self._workers_start.get(p, 0.0) for p, v in self._workers.items())
        return self.used

    def per_entry_us(self, n: int) -> dict[str, float]:
        return {k: v / n * 1e6 for k, v in self.used.items()}


def cpu_line(meter: CpuMeter, n: int, seconds: float) -> str:
    """CPU per entry by role, the total, and the rate that total allows on this machine's cores."""
    us = meter.per_entry_us(n)
    total = sum(us.values())
    parts = "  ".join(f"{k} {v:.0f}" for k, v in us.items() if v >= 0.5)
    busy = total * n / 1e6 / seconds if seconds > 0 else 0.0
    return (
        f"    CPU per entry (us): {parts}  = {total:.0f} us -> ceiling {CORES / total * 1e6:,.0f}/s on {CORES} cores"
        f" (cores busy {busy:.2f})"
    )


class Spy:
    """``py-spy record`` of this process (``--gil`` and without) while a block runs, if asked for."""

    def __init__(
        self, exe: str | None, out_dir: Path | None, label: str, *, meter: CpuMeter | None = None
    ) -> None:
        self.exe, self.out_dir, self.label, self.meter = exe, out_dir, label, meter
        self.pid = os.getpid()
        self._procs: list[Any] = []

    def __enter__(self) -> Spy:
        import subprocess

        if self.exe and self.out_dir:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for gil in (True, False):
                out = self.out_dir / f"{self.label}{'-gil' if gil else ''}.txt"
                args = [self.exe, "record", "--pid", str(self.pid), "--format", "raw", "--nonblocking"]
                args += ["--rate", "200", "-o", str(out), *(["--gil"] if gil else [])]
                self._procs.append(
                    subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
                if self.meter is not None:
                    self.meter.ignore.add(self._procs[-1].pid)
            time.sleep(0.5)  # attached before the work starts
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for p in self._procs:
            p.send_signal(signal.SIGINT)
        for p in self._procs:
            p.wait(60)


def body(i: int) -> dict[str, Any]:
    return {
        "title": f"Bench take {i}",
        "description": "A short loop recorded for the ingest benchmark.",
        "tags": ["bench", "loop"],
        "media": {
            "cid": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
            "mime": "audio/wav",
            "size": 1_000_000 + i,
            "duration_ms": 4_000,
        },
        "license": {"type": "commercial", "price": {"amount": "12.50", "currency": "USD"}},
    }


def make_logs(n_authors: int, per_author: int) -> list[list[Entry]]:
    now = time.time_ns() // 1_000_000
    logs = []
    for a in range(n_authors):
        signer = Signer(secrets.token_bytes(32))
        prev = None
        log = []
        for s in range(1, per_author + 1):
            e = sign_entry(
                signer,
                seq=s,
                prev=prev,
                ts=now - per_author + s,
                kind="asset.put",
                key=f"a{a}-{s}",
                body=body(s),
            )
            prev = e.hash
            log.append(e)
        logs.append(log)
    return logs


def batches(entries: list[Entry], size: int = BATCH) -> list[list[Entry]]:
    return [entries[i : i + size] for i in range(0, len(entries), size)]


# -- (a) raw verify ---------------------------------------------------------------------------


def raw_verify(entries: list[Entry]) -> float:
    raws = [e.raw for e in entries]
    t = time.perf_counter()
    now = time.time_ns() // 1_000_000
    for r in raws:
        parse_and_verify(r, now_ms=now)
    return len(raws) / (time.perf_counter() - t)


# -- (b) raw upsert ---------------------------------------------------------------------------


def raw_upsert(url: str, entries: list[Entry], meter: CpuMeter) -> float:
    dids: dict[bytes, str] = {}
    heads: dict[bytes, Entry] = {}
    for e in entries:
        dids.setdefault(e.author.raw, AuthorKey(e.author.raw).did)
        heads[e.author.raw] = e
    entry_rows = [
        [(e.hash.raw, e.author.raw, e.seq, e.ts, e.kind, e.key, e.raw) for e in b] for b in batches(entries)
    ]
    asset_rows = []
    for b in batches(entries):
        rows = []
        for e in b:
            did = dids[e.author.raw]
            fields = asset_fields(e.body)
            rows.append(
                (
                    e.author.raw,
                    did,
                    e.key,
                    f"empressa://{did}/{e.key}",
                    e.hash.raw,
                    e.hash.raw,
                    e.seq,
                    False,
                    *fields,
                    1,
                    e.ts,
                    e.ts,
                )
            )
        asset_rows.append(rows)
    with psycopg.connect(libpq_url(url)) as conn:
        with conn.transaction():
            conn.cursor().executemany(
                "INSERT INTO authors (author, did, head_seq, head_hash) VALUES (%s, %s, %s, %s)",
                [(a, dids[a], e.seq, e.hash.raw) for a, e in heads.items()],
            )
        cur = conn.cursor()
        cur.execute(
            "CREATE TEMP TABLE entry_stage ON COMMIT DELETE ROWS AS "
            "SELECT hash, author, seq, ts, kind, key, raw FROM entries WITH NO DATA"
        )
        cur.execute(
            f"CREATE TEMP TABLE asset_stage ON COMMIT DELETE ROWS AS SELECT {ASSET_COLUMNS} FROM assets WITH NO DATA"
        )
        conn.commit()
        meter.start()
        t = time.perf_counter()
        for er, ar in zip(entry_rows, asset_rows, strict=True):
            with conn.transaction():
                with binary_copy(
                    cur, "COPY entry_stage (hash, author, seq, ts, kind, key, raw)", ENTRY_TYPES[:7]
                ) as copy:
                    for row in er:
                        copy.write_row(row)
                cur.execute(
                    "INSERT INTO entries (hash, author, seq, ts, kind, key, raw) "
                    "SELECT hash, author, seq, ts, kind, key, raw FROM entry_stage ON CONFLICT DO NOTHING"
                )
                with binary_copy(cur, f"COPY asset_stage ({ASSET_COLUMNS})", ASSET_TYPES) as copy:
                    for row in ar:
                        copy.write_row(row)
                cur.execute(
                    f"INSERT INTO assets ({ASSET_COLUMNS}) SELECT {ASSET_COLUMNS} FROM asset_stage "
                    "ON CONFLICT (author, key) DO UPDATE SET entry_hash = EXCLUDED.entry_hash, "
                    "put_hash = EXCLUDED.put_hash, seq = EXCLUDED.seq, title = EXCLUDED.title, "
                    "body = EXCLUDED.body, versions = assets.versions + 1, updated_ts = EXCLUDED.updated_ts, "
                    "change_seq = nextval('asset_change_seq')"
                )
        rate = len(entries) / (time.perf_counter() - t)
        meter.stop()
        return rate


# -- (c) Store.ingest ---------------------------------------------------------------------------


def store_ingest(url: str, entries: list[Entry], meter: CpuMeter) -> float:
    store = Store.connect(url)
    try:
        meter.start()
        t = time.perf_counter()
        n = 0
        for b in batches(entries):
            n += len(store.ingest(b, source="bench").appended)
        rate = len(entries) / (time.perf_counter() - t)
        meter.stop()
        assert n == len(entries), f"appended {n} of {len(entries)}"
        return rate
    finally:
        store.close()


# -- (d) POST /v1/entries -----------------------------------------------------------------------


def bench_http(
    url: str, entries: list[Entry], meter: CpuMeter, spy: Spy, *, verify_workers: int = 0, clients: int = 1
) -> float | None:
    """``POST /v1/entries`` on a real ``empressa indexer run`` process, CBOR sequences of 1,000.

    The entries are posted in log order by ``clients`` submitters at once, each
    its own share of the authors, one request at a time on its own keep-alive
    connection, with an ``ingest`` API key (the key's rate limit, not the per-IP one).
    The API parses and verifies every entry and calls the same ``Store.ingest``;
    with ``verify_workers`` it checks the parts of a body in that many processes
    while the part before is ingested.
    """
    import socket
    import subprocess

    import httpx

    store = Store.connect(url, pool_size=1)
    _, secret = store.admin.create_api_key(name="bench", scopes=["ingest"])
    store.close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPRESSA_")}
    env.update(
        DATABASE_URL=url,
        EMPRESSA_INDEXER_RATE_LIMIT_ENABLED="false",
        EMPRESSA_INDEXER_LOG_LEVEL="WARNING",
        EMPRESSA_INDEXER_VERIFY_WORKERS=str(verify_workers),
    )
    exe = Path(sys.executable).with_name("empressa")
    index_dir = Path(tempfile.mkdtemp(prefix="bench-ingest-index-"))
    proc = subprocess.Popen(
        [str(exe), "indexer", "run", "--port", str(port), "--index-dir", str(index_dir)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ordered = sorted(entries, key=lambda e: (e.author.raw, e.seq))
    rank = {a: i for i, a in enumerate(sorted({e.author.raw for e in ordered}))}
    shares = [[e for e in ordered if rank[e.author.raw] % clients == k] for k in range(clients)]
    bodies_of = [
        [b"".join(e.raw for e in sh[i : i + BATCH]) for i in range(0, len(sh), BATCH)] for sh in shares
    ]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    return None
                time.sleep(0.1)
            headers = {"content-type": "application/cbor-seq", "authorization": f"Bearer {secret}"}
            meter.others = {"api": [proc.pid]}
            spy.pid = proc.pid
            with spy:
                meter.start()
                t0 = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    for f in [pool.submit(_post_all, http.base_url, b, headers) for b in bodies_of]:
                        f.result()
                rate = len(ordered) / (time.perf_counter() - t0)
                meter.stop()
            return rate
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(index_dir, ignore_errors=True)


def _post_all(base_url: Any, bodies: list[bytes], headers: dict[str, str]) -> None:
    """One submitter: its bodies one at a time, each awaited, on its own keep-alive connection."""
    import httpx

    with httpx.Client(base_url=base_url, timeout=120) as http:
        for body in bodies:
            r = http.post("/v1/entries", content=body, headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"POST /v1/entries -> {r.status_code}: {r.text[:300]}")


# -- (e) through the network and the bridge ------------------------------------------------------


async def network_to_bridge(
    server: PostgresForTests,
    logs: list[list[Entry]],
    meter: CpuMeter,
    spy: Spy,
    *,
    n_nodes: int,
    workers: list[int],
) -> dict[int, dict[str, Any]]:
    total = sum(len(log) for log in logs)
    out: dict[int, dict[str, Any]] = {}
    async with spawn_network(n_nodes, anti_entropy_interval=3600.0) as net:
        await net.partition(*[[i] for i in range(n_nodes)])  # no replication among the creators
        for i, log in enumerate(logs):
            store = net.nodes[i % n_nodes].store
            for b in batches(log, 5000):
                await trio.to_thread.run_sync(store.ingest, b)
        addrs = [node.addrs()[0] for node in net.nodes]
        for w in workers:
            out[w] = await _bridge_catch_up(server, addrs, total, w, meter, spy)
    return out


class ServingNodes:
    """``--nodes`` real ``empressa node run`` processes holding ``logs`` between them (log i on node i % n)."""

    def __init__(self, root: Path, logs: list[list[Entry]], n_nodes: int) -> None:
        import json
        import subprocess

        from node.store import Store as NodeStore

        exe = str(Path(sys.executable).with_name("empressa"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMPRESSA_")}
        env.update(
            EMPRESSA_PASSPHRASE=PASSPHRASE,
            EMPRESSA_NODE_ANTI_ENTROPY_INTERVAL="3600",
            EMPRESSA_NODE_LOG_LEVEL="WARNING",
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        self.addrs: list[str] = []
        dirs = [root / f"node{i}" for i in range(n_nodes)]
        for d in dirs:
            subprocess.run([exe, "node", "init", "--data", str(d)], env=env, check=True, capture_output=True)
        for i, log in enumerate(logs):
            store = NodeStore.open(dirs[i % n_nodes] / "node.db")
            try:
                for b in batches(log, 5000):
                    store.ingest(b)
            finally:
                store.close()
        try:
            for d in dirs:
                args = [exe, "node", "run", "--data", str(d), "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"]
                self.procs.append(
                    subprocess.Popen(
                        args,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            deadline = time.monotonic() + 120
            for d, proc in zip(dirs, self.procs, strict=True):
                info = d / "node.json"
                while not info.exists():
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"empressa node run in {d} did not start (exit {proc.poll()})")
                    time.sleep(0.1)
                self.addrs.append(json.loads(info.read_text())["multiaddrs"][0])
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(30)


async def network_to_bridge_processes(
    server: PostgresForTests,
    logs: list[list[Entry]],
    meter: CpuMeter,
    spy: Spy,
    *,
    n_nodes: int,
    workers: list[int],
) -> dict[int, dict[str, Any]]:
    """(e) with the creator nodes as real processes (``--serving process``)."""
    total = sum(len(log) for log in logs)
    out: dict[int, dict[str, Any]] = {}
    root = Path(tempfile.mkdtemp(prefix="bench-ingest-nodes-"))
    try:
        nodes = await trio.to_thread.run_sync(ServingNodes, root, logs, n_nodes)
        meter.others = {"nodes": [p.pid for p in nodes.procs]}
        try:
            for w in workers:
                out[w] = await _bridge_catch_up(server, nodes.addrs, total, w, meter, spy)
        finally:
            nodes.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


async def _bridge_catch_up(
    server: PostgresForTests, addrs: list[str], total: int, w: int, meter: CpuMeter, spy: Spy
) -> dict[str, Any]:
    """A bridge on a fresh database dials ``addrs`` and catches up with ``total`` entries."""
    url = await trio.to_thread.run_sync(server.fresh_database)
    async with spawn_bridge(url, anti_entropy_interval=3600.0, verify_workers=w) as bridge:
        spy.label, spy.pid = f"bridge-w{w}", os.getpid()
        with spy:
            meter.start()
            t_dial = time.perf_counter()
            for addr in addrs:
                await bridge.node.p2p.connect(addr)
            with trio.fail_after(1800):
                while bridge.replica.appended_total < total:
                    await trio.sleep(0.01)
            meter.stop()
        t_end = bridge.replica.last_commit_at or time.perf_counter()
        t_first = bridge.replica.first_received_at or t_dial
        held = await trio.to_thread.run_sync(_count, url)
        assert held == total, f"PostgreSQL holds {held} of {total}"
        result = {
            "rate": total / (t_end - t_first),
            "rate_from_dial": total / (t_end - t_dial),
            "seconds": t_end - t_first,
            "cpu": cpu_line(meter, total, t_end - t_dial),
            "cpu_us": sum(meter.per_entry_us(total).values()),
            "nodes_us": meter.per_entry_us(total).get("nodes", 0.0),
            "main_us": meter.per_entry_us(total).get("main", 0.0),
        }
    await trio.to_thread.run_sync(server.drop_database, url)
    return result


def _count(url: str) -> int:
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SELECT count(*) FROM entries").fetchone()
        return int(row[0]) if row else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--authors-per-node", type=int, default=5)
    ap.add_argument("--workers", default="0,1,2", help="verify_workers values to run the network bench with")
    ap.add_argument("--skip-network", action="store_true")
    ap.add_argument(
        "--serving",
        choices=["process", "inprocess"],
        default="process",
        help="creator nodes as real `empressa node run` processes (default), or in this process",
    )
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--http-workers", default="0,2", help="verify_workers values of the API process for (d)")
    ap.add_argument(
        "--http-clients",
        default="1,2",
        help="submitters posting at once for (d), each its own authors' logs in order (default 1,2)",
    )
    ap.add_argument(
        "--py-spy", help="py-spy executable: profile the bridge (this process) and the API process"
    )
    ap.add_argument("--profile-dir", type=Path, default=Path("/tmp/bench-ingest-profiles"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    n_authors = args.nodes * args.authors_per_node
    per_author = max(1, args.entries // n_authors)
    total = n_authors * per_author
    print(
        f"# bench/ingest.py  python {platform.python_version()}  cpus={os.cpu_count()}  {platform.machine()}"
    )
    print(f"# {total} entries: {n_authors} authors x {per_author}, on {args.nodes} nodes; batches of {BATCH}")
    t = time.perf_counter()
    logs = make_logs(n_authors, per_author)
    entries = [e for log in logs for e in log]
    print(f"signed {total} entries in {time.perf_counter() - t:.1f} s")

    with tempfile.TemporaryDirectory(prefix="empressa-bench-") as tmp:
        server = PostgresForTests.start(Path(tmp) / "pg")
        meter = CpuMeter(postmaster=postmaster_pid(server))
        spy = Spy(args.py_spy, args.profile_dir, "", meter=meter)
        try:
            verify = raw_verify(entries[: min(total, 30_000)])
            print(f"(a) raw verify (parse_and_verify, one core):     {verify:10,.0f} entries/s")
            url = server.fresh_database()
            upsert = raw_upsert(url, entries, meter)
            server.drop_database(url)
            print(f"(b) raw upsert (COPY+INSERT ON CONFLICT+assets): {upsert:10,.0f} entries/s")
            print(cpu_line(meter, total, total / upsert))
            upsert_us = sum(meter.per_entry_us(total).values())
            url = server.fresh_database()
            ingest = store_ingest(url, entries, meter)
            server.drop_database(url)
            print(f"(c) Store.ingest (batches of {BATCH}):            {ingest:10,.0f} entries/s")
            print(cpu_line(meter, total, total / ingest))
            ingest_us = sum(meter.per_entry_us(total).values())
            verify_us = 1e6 / verify
            runs = [] if args.skip_http else [int(w) for w in args.http_workers.split(",") if w.strip()]
            for vw in runs:
                for nc in [int(c) for c in args.http_clients.split(",") if c.strip()]:
                    url = server.fresh_database()
                    spy.label = f"api-w{vw}-c{nc}"
                    http = bench_http(url, entries, meter, spy, verify_workers=vw, clients=nc)
                    server.drop_database(url)
                    post = (
                        f"{http:10,.0f} entries/s = {http / ingest:.0%} of (c) (limit {LIMIT:.0%})"
                        if http
                        else ""
                    )
                    who = "1 submitter " if nc == 1 else f"{nc} submitters"
                    print(
                        f"(d) POST /v1/entries, verify_workers={vw}, {who}: "
                        + (post or "  not measured (no API)")
                    )
                    if http:
                        print(cpu_line(meter, total, total / http))
            # What 2 cores allow at best: the CPU Store.ingest spends per entry (this process and
            # PostgreSQL), plus one verification, plus whatever parsing the request costs (not counted).
            post_ceiling = CORES / (ingest_us + verify_us) * 1e6
            print(
                f"    POST ceiling on {CORES} cores: {CORES} / ((c) {ingest_us:.0f} us + verify {verify_us:.0f} us)"
                f" = {post_ceiling:,.0f}/s = {post_ceiling / ingest:.0%} of (c) (limit {LIMIT:.0%}: {LIMIT * ingest:,.0f}/s)"
            )
            if not args.skip_network:
                run = network_to_bridge_processes if args.serving == "process" else network_to_bridge
                res = trio.run(lambda: run(server, logs, meter, spy, n_nodes=args.nodes, workers=workers))
                for w, r in res.items():
                    print(
                        f"(e) network -> bridge -> PostgreSQL, verify_workers={w}: {r['rate']:10,.0f} entries/s "
                        f"= {r['rate'] / upsert:.0%} of (b) (limit {LIMIT:.0%}; "
                        f"first entry to last commit, {r['seconds']:.1f} s; {r['rate_from_dial']:,.0f}/s from dial; "
                        f"creator nodes {'in processes' if args.serving == 'process' else 'in this process'})"
                    )
                    print(r["cpu"])
                # The bridge's ceiling: the cores over the CPU an entry needs at least: what
                # Store.ingest spends (this process and PostgreSQL: (c)), one verification ((a)),
                # and from the cheapest bridge run above the creator nodes' serving and the
                # bridge's main thread (libp2p: the receiving end of the network).
                best = min(res.values(), key=lambda r: r["cpu_us"])
                floor = ingest_us + verify_us + best["nodes_us"] + best["main_us"]
                ceiling = CORES / floor * 1e6
                print(
                    f"    bridge ceiling on {CORES} cores: {CORES} / (ingest {ingest_us:.0f} + verify {verify_us:.0f}"
                    f" + serving {best['nodes_us']:.0f} + network {best['main_us']:.0f} = {floor:.0f} us)"
                    f" = {ceiling:,.0f}/s = {ceiling / upsert:.0%} of (b) (limit {LIMIT:.0%}: {LIMIT * upsert:,.0f}/s);"
                    f" the best run above reached {max(r['rate'] for r in res.values()) / ceiling:.0%} of the ceiling;"
                    f" raw upsert itself costs {upsert_us:.0f} us"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
