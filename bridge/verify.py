"""Verifying pulled ranges and building their rows on several cores: a process pool behind the
daemon's ``verify_range`` hook.

One process does the bridge's network, and its writer executes each batch's
plan; everything else an entry costs in Python (decode, schema, canonical
check, signature, and building its encoded COPY rows) is done here, off that
process's GIL. :class:`PoolVerifier` splits a range response into one chunk per
worker process; each worker verifies its chunk with
:func:`node.sync.verify_range` and builds the chunk's rows with the indexer's
:class:`~indexer.store.rows.Rows` (the one row builder), and hands back::

    ([(seq, prev, ts, kind, key, body, sig, raw, hash), …], {hash: (entries row, put fields, activity)})

plain tuples and bytes, which cost little to pickle and unpickle (an
:class:`~protocol.Entry` pickles as dataclasses, four times dearer). The
entries are rebuilt here from the fields the worker verified, the same values
:func:`protocol.parse_and_verify` returned there, and the rows go to
``on_rows`` (the replica keeps them until the writer ingests the entries:
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
from typing import Any

import trio

from indexer.store.rows import Prepared, Rows
from node.daemon import verify_in_thread
from node.sync import verify_range
from protocol import AuthorKey, Entry, EntryHash, now_ms

MIN_CHUNK = 64  # entries: below this per worker, a thread is faster than a process
SMALL_RANGE = 32  # entries: a range this small is verified in a thread

_Fields = tuple[int, bytes | None, int, str, str, dict[str, Any], bytes, bytes, bytes]


def prepare_range(
    raws: list[bytes], *, author: bytes, start: int, max_skew_ms: int, received_ms: int
) -> tuple[list[_Fields], Prepared]:
    """In a worker: verify a chunk of a range and build its rows (see the module docstring)."""
    entries = verify_range(raws, author=author, start=start, max_skew_ms=max_skew_ms)
    rows = Rows(dict.fromkeys((e.hash.raw for e in entries), received_ms))
    rows.build(entries)
    fields = [
        (
            e.seq,
            e.prev.raw if e.prev is not None else None,
            e.ts,
            e.kind,
            e.key,
            e.body,
            e.sig,
            e.raw,
            e.hash.raw,
        )
        for e in entries
    ]
    return fields, rows.export()


def rebuild(author: bytes, fields: list[_Fields]) -> list[Entry]:
    """The entries a worker verified, from their fields (:func:`prepare_range`)."""
    key = AuthorKey(author)
    return [
        Entry(
            key, seq, EntryHash(prev) if prev is not None else None, ts, kind, k, body, sig, raw, EntryHash(h)
        )
        for seq, prev, ts, kind, k, body, sig, raw, h in fields
    ]


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
        futures: list[Future[tuple[list[_Fields], Prepared]]] = [
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
                    out.extend(rebuild(author, fields))
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
