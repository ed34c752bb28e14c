"""Verifying pulled ranges: in one thread at a time (:class:`ThreadVerifier`, ``verify_workers = 0``),
or with their rows built on several cores, by a process pool (:class:`PoolVerifier`), behind the
daemon's ``verify_range`` hook.

Without workers, a range is verified in a worker thread, as the node does,
but one range at a time: the daemon's four pullers would otherwise verify four
ranges in four threads, and on two cores those threads and the writers and
the trio thread hand the GIL back and forth at every signature check
(libsodium releases it) for nothing: the Python part of a check holds the GIL
anyway. Measured on this machine (``bench/ingest.py``, 20,000 entries, back to
back, a loaded machine): the bridge's threads spent 244/244 us an entry
unbounded, 178/221 us with one thread, and the bridge ran faster in each pair.

One process does the bridge's network, and its writer executes each batch's
plan; everything else an entry costs in Python (decode, schema, canonical
check, signature, and building its encoded COPY rows) is done here, off that
process's GIL. :class:`PoolVerifier` splits a range response into one chunk per
worker process; each worker verifies its chunk with
:func:`node.sync.verify_range` and builds the chunk's rows with the indexer's
:class:`~indexer.store.rows.Rows` (the one row builder), and hands back the
entries as plain values and their encoded rows (:mod:`indexer.store.prepare`:
cheap to pickle, unlike an :class:`~protocol.Entry`). The entries are rebuilt
here, and the rows go to ``on_rows`` (the replica keeps them until the writer
ingests the entries:
:meth:`~bridge.replica.IndexerReplica.prepared`). The first bad entry raises
the same :class:`node.errors.BadEntryError` the in-thread verifier would (it
pickles). Small ranges are verified in a thread and their rows built by the
writer: shipping them to a process costs more than it saves. Workers are
started with ``spawn`` (forking a process that runs trio and libp2p threads is
unsafe) and import only ``protocol``, ``node.sync`` and ``indexer.store``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial

import trio

from indexer.store.prepare import EntryFields, entries_from_fields, entry_fields
from indexer.store.rows import Prepared, Rows
from node.daemon import verify_in_thread
from node.sync import verify_range
from protocol import Entry, now_ms

MIN_CHUNK = 64  # entries: below this per worker, a thread is faster than a process
SMALL_RANGE = 32  # entries: a range this small is verified in a thread
VERIFY_THREADS = 1  # ranges verified at once without workers (see the module docstring)


class ThreadVerifier:
    """``await verifier(raws, author=…, start=…, max_skew_ms=…)``: :func:`node.sync.verify_range` in a
    worker thread, at most ``threads`` ranges at a time (the others wait their turn)."""

    def __init__(self, threads: int = VERIFY_THREADS) -> None:
        self.threads = threads
        self._limiter: trio.CapacityLimiter | None = None  # made in the trio run that first uses it

    @property
    def limiter(self) -> trio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = trio.CapacityLimiter(self.threads)
        return self._limiter

    async def __call__(
        self, raws: list[bytes], *, author: bytes, start: int, max_skew_ms: int
    ) -> list[Entry]:
        return await trio.to_thread.run_sync(
            partial(verify_range, raws, author=author, start=start, max_skew_ms=max_skew_ms),
            limiter=self.limiter,
        )


def prepare_range(
    raws: list[bytes], *, author: bytes, start: int, max_skew_ms: int, received_ms: int
) -> tuple[list[EntryFields], Prepared]:
    """In a worker: verify a chunk of a range and build its rows (see the module docstring)."""
    entries = verify_range(raws, author=author, start=start, max_skew_ms=max_skew_ms)
    rows = Rows(dict.fromkeys((e.hash.raw for e in entries), received_ms))
    rows.build(entries)
    return [entry_fields(e) for e in entries], rows.export()


class PoolVerifier:
    """``await verifier(raws, author=…, start=…, max_skew_ms=…)`` on ``workers`` processes.

    Args:
        workers: worker processes.
        on_rows: called (in the trio thread) with the rows the workers built, before
            the entries are returned.
    """

    def __init__(self, workers: int, *, on_rows: Callable[[Prepared], None]) -> None:
        self.workers = workers
        self._on_rows = on_rows
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    async def __call__(
        self, raws: list[bytes], *, author: bytes, start: int, max_skew_ms: int
    ) -> list[Entry]:
        if len(raws) <= SMALL_RANGE:
            return await verify_in_thread(raws, author=author, start=start, max_skew_ms=max_skew_ms)
        received = now_ms()
        size = max(MIN_CHUNK, -(-len(raws) // self.workers))
        futures: list[Future[tuple[list[EntryFields], Prepared]]] = [
            self._pool.submit(
                prepare_range,
                raws[i : i + size],
                author=author,
                start=start + i,
                max_skew_ms=max_skew_ms,
                received_ms=received,
            )
            for i in range(0, len(raws), size)
        ]

        def collect() -> tuple[list[Entry], Prepared]:
            out: list[Entry] = []
            rows: Prepared = {}
            try:
                for f in futures:  # in order: the first bad entry is the one reported
                    fields, built = f.result()
                    out.extend(entries_from_fields(fields))
                    rows.update(built)
            finally:
                for f in futures:
                    f.cancel()
            return out, rows

        entries, rows = await trio.to_thread.run_sync(collect)
        self._on_rows(rows)
        return entries

    def warm(self) -> None:
        """Start every worker process now (blocking; call from a thread), not on the first range."""
        for f in [self._pool.submit(_ready) for _ in range(self.workers)]:
            f.result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _ready() -> bool:
    from indexer.store.rows import codec

    codec()  # import and build the encoders now, not on the first range
    return True
