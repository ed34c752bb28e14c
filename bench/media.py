"""Offline media CIDs: ``node.media.file_cid`` (UnixFS, raw leaves) beside raw SHA-256 of the same file.

    ./dev bench media [--mib 50] [--runs 5]

Prints figures only; it never passes or fails. The file is one of the golden
vectors' generated files (written to a temporary folder, so after the first run
it is read from the page cache); each way of naming it is run ``--runs`` times
over it and the best and median wall time and CPU time (this process's user +
system, from ``resource.getrusage``) are shown, with MiB/s. The old rule (one raw
block over all the bytes) cost exactly the SHA-256 line, so that line is also
"before". What the issue measured for ``aleph-cid``: 50 MiB in 0.15 s.
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


if __name__ == "__main__":
    main()
