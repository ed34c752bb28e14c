"""Offline media CIDs: ``node.media.file_cid`` (UnixFS, raw leaves) beside raw SHA-256 of the same file;
and pins/s through the indexer's pin worker beside the raw RPC pin rate of the same js-ipfs.

    ./dev bench media [--mib 50] [--runs 5] [--pins 200] [--pin-kib 4]

Prints figures only; it never passes or fails. The file is one of the golden
vectors' generated files (written to a temporary folder, so after the first run
it is read from the page cache); each way of naming it is run ``--runs`` times
over it and the best and median wall time and CPU time (this process's user +
system, from ``resource.getrusage``) are shown, with MiB/s. The old rule (one raw
block over all the bytes) cost exactly the SHA-256 line, so that line is also
"before". What the issue measured for ``aleph-cid``: 50 MiB in 0.15 s.

Pins (skipped, saying why, without js-ipfs; ``--pins 0`` skips them): a js-ipfs of its
own (offline, the tests' daemon) and an embedded PostgreSQL. ``2 x --pins`` small
distinct files are added (not pinned). Raw RPC: the first half pinned one ``pin add``
after another through :class:`ipfsrpc.RpcClient`. Worker: the second half named by
as many signed assets, ingested, then :class:`indexer.pins.PinWorker` steps
(reconcile from ``assets``, claim ``FOR UPDATE SKIP LOCKED``, pin, record) until every
job is ``pinned``: the figure includes deriving the jobs from the assets and a
PostgreSQL commit per claim and per outcome.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

from node.media import READ_SIZE, file_cid  # noqa: E402
from tests.vectors import media as vectors  # noqa: E402


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(READ_SIZE):
            h.update(chunk)
    return h.hexdigest()


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(fn: Callable[[], object], runs: int) -> tuple[list[float], list[float]]:
    fn()  # warm-up: the page cache, the extension
    walls, cpus = [], []
    for _ in range(runs):
        c0, t0 = cpu_s(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_s() - c0)
    return walls, cpus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pins", type=int, default=200, help="files pinned each way (0: no pin figures)")
    ap.add_argument("--pin-kib", type=int, default=4, help="size of each pinned file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
        path = vectors.write_file("bench", args.mib << 20, Path(tmp))
        print(f"file: {args.mib} MiB, {args.runs} runs each (best / median)")
        print(f"{'':>22} {'wall s':>15} {'cpu s':>15} {'MiB/s (wall)':>14}")
        for label, fn in (
            ("sha-256 (old rule)", lambda: sha256_file(path)),
            ("unixfs file_cid", lambda: file_cid(path)),
        ):
            walls, cpus = measure(fn, args.runs)
            best, med = min(walls), statistics.median(walls)
            print(
                f"{label:>22} {best:7.3f} / {med:5.3f} {min(cpus):7.3f} / {statistics.median(cpus):5.3f}"
                f" {args.mib / best:8.0f} / {args.mib / med:4.0f}"
            )
        print(f"cid: {file_cid(path)[0]}")
        print("issue's figure for aleph-cid: 50 MiB in 0.15 s (333 MiB/s)")
        if args.pins:
            bench_pins(Path(tmp), args.pins, args.pin_kib)


def bench_pins(tmp: Path, n: int, kib: int) -> None:
    import os

    from sqlalchemy import text

    from indexer.pins import PinClient, PinWorker
    from indexer.store import Store
    from indexer.store.pins import Pins
    from indexer.testing import PostgresForTests
    from node.ipfs_testing import JsIpfsMissing, find_jsipfs, start_jsipfs
    from protocol import Signer
    from tests.node.conftest import _BASE_PUT, LogBuilder

    try:
        tool = find_jsipfs()
    except JsIpfsMissing as exc:
        print(f"pins: skipped ({exc})")
        return
    print(f"pins: {n} files of {kib} KiB each way, js-ipfs offline on 127.0.0.1, embedded PostgreSQL")
    daemon = start_jsipfs(tmp / "ipfs", tool)
    server = PostgresForTests.start(tmp / "pg")
    try:
        url = server.fresh_database()
        store = Store.connect(url, pool_size=2)
        with PinClient(daemon.api) as ipfs:
            cids = []
            for i in range(2 * n):
                f = tmp / f"pin-{i}.bin"
                f.write_bytes(os.urandom(kib << 10))
                cids.append((ipfs.add_file(f), f.stat().st_size))
                f.unlink()
            raw, named = cids[:n], cids[n:]
            t0 = time.perf_counter()
            for cid, _ in raw:
                ipfs.pin(cid)
            raw_s = time.perf_counter() - t0

            log = LogBuilder(Signer(os.urandom(32)), lambda title: {**_BASE_PUT, "title": title})
            for i, (cid, size) in enumerate(named):
                body = {
                    **_BASE_PUT,
                    "title": f"pin {i}",
                    "media": {"cid": cid, "mime": "audio/wav", "size": size},
                }
                log.next(key=f"pin-{i}", body=body)
            store.ingest(log.entries, source="bench")
            worker = PinWorker(pins=Pins(store.engine), ipfs=ipfs, interval=0.01)
            t0 = time.perf_counter()
            while True:
                worker.step()
                with store.engine.connect() as conn:
                    left = conn.execute(text("SELECT count(*) FROM pins WHERE status <> 'pinned'")).scalar()
                    total = conn.execute(text("SELECT count(*) FROM pins")).scalar()
                if total == n and left == 0:
                    break
            worker_s = time.perf_counter() - t0
        print(f"{'raw RPC pin add':>22} {n / raw_s:8.1f} pins/s ({raw_s:.2f} s)")
        print(
            f"{'pin worker':>22} {n / worker_s:8.1f} pins/s ({worker_s:.2f} s, batch {worker.batch}; "
            f"{worker.figures.pinned} pinned, {worker.figures.failures} failures)"
        )
        store.close()
    finally:
        server.stop()
        daemon.stop()


if __name__ == "__main__":
    main()
