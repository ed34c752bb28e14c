"""Verifying pulled ranges on several cores: a process pool behind the daemon's ``verify_range`` hook.

:class:`PoolVerifier` splits a range response into one chunk per worker
process, verifies the chunks with :func:`node.sync.verify_range` in parallel,
and returns the entries in order; the first bad entry raises the same
:class:`node.errors.BadEntryError` the in-thread verifier would (it pickles).
Small ranges are verified in a thread: shipping them to a process costs more
than it saves. Workers are started with ``spawn`` (forking a process that runs
trio and libp2p threads is unsafe) and import only ``protocol`` and ``node.sync``.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor

import trio

from node.daemon import verify_in_thread
from node.sync import verify_range
from protocol import Entry

MIN_CHUNK = 128  # entries: below this per worker, a thread is faster than a process


class PoolVerifier:
    """``await verifier(raws, author=…, start=…, max_skew_ms=…)`` on ``workers`` processes."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    async def __call__(
        self, raws: list[bytes], *, author: bytes, start: int, max_skew_ms: int
    ) -> list[Entry]:
        if len(raws) < 2 * MIN_CHUNK:
            return await verify_in_thread(raws, author=author, start=start, max_skew_ms=max_skew_ms)
        size = max(MIN_CHUNK, -(-len(raws) // self.workers))
        futures: list[Future[list[Entry]]] = [
            self._pool.submit(
                verify_range, raws[i : i + size], author=author, start=start + i, max_skew_ms=max_skew_ms
            )
            for i in range(0, len(raws), size)
        ]

        def collect() -> list[Entry]:
            out: list[Entry] = []
            try:
                for f in futures:  # in order: the first bad entry is the one reported
                    out.extend(f.result())
            finally:
                for f in futures:
                    f.cancel()
            return out

        return await trio.to_thread.run_sync(collect)

    def warm(self) -> None:
        """Start every worker process now (blocking; call from a thread), not on the first range."""
        for f in [self._pool.submit(_ready) for _ in range(self.workers)]:
            f.result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _ready() -> bool:
    return True
