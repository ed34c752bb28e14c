"""The search feeder (follows PostgreSQL's ``assets.change_seq``) and the full rebuild, :func:`reindex`.

Following
    :meth:`Feeder.catch_up` reads ``assets`` rows past the index's position in
    ``change_seq`` order (batches of up to 1,000), upserts each one (delete by
    ``uri``, add back unless deleted or hidden), commits, then records the
    batch's last ``change_seq`` in the position file inside the index
    directory. Under low load each wake-up is one small batch committed at
    once (publish → searchable in tens of milliseconds); under load batches
    fill up and commits amortise.

Why the position file may trail the commit
    Tantivy's Python binding has no commit payload, so the position is a small
    JSON file replaced atomically (write, fsync, rename) right *after* the
    commit. A crash between the two leaves the index ahead of its recorded
    position; on restart the feeder re-applies those rows, and since applying
    a row is "delete by uri, then add its current state", re-applying yields
    the same index. The reverse order could lose changes; this one cannot.

Cadence
    Idle, a change is committed as soon as it is read: nothing waits for a
    timer. Under load each commit takes whatever arrived during the last one
    (up to 1,000 rows), and a wake-up less than :data:`MIN_COMMIT_INTERVAL`
    after the last commit ended waits out the rest of it
    (:func:`pause_before_commit`), so commits (each a new segment, fsyncs
    and a reload in every API process) stay under ~40 a second however the
    changes trickle in.

Waking up
    :meth:`Feeder.run` LISTENs on :data:`~indexer.models.ASSETS_CHANNEL` (the
    ingest path NOTIFYs in its transaction) and polls every second anyway, so
    a lost notification costs at most a second, never a change. If PostgreSQL
    goes away it reconnects with exponential backoff (0.5 s → 30 s).

Rebuilding
    :func:`reindex` builds a fresh index from one REPEATABLE READ snapshot into
    ``<dir>.new``, records the snapshot's highest ``change_seq`` (by the
    ordering rule, every change up to it and none after it is in the
    snapshot), then swaps directories (``dir`` → ``dir.old``, ``dir.new`` →
    ``dir``, remove ``dir.old``). It holds the old index's writer lock
    throughout, so it refuses to run while a feeder writes that directory.
    Readers notice the swap on their next :meth:`SearchIndex.refresh`.
    The feeder's process opens its index with :func:`open_for_feeding`, which
    rebuilds an index of another schema version this way first.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from tqdm import tqdm

from ..errors import Conflict, DatabaseError, SearchUnavailable
from ..models import ASSETS_CHANNEL
from ..stop import StopCue
from ..store import Store
from ..store.changes import ChangeListener
from .index import SCHEMA_VERSION, SearchIndex, exists, hold_writer_lock, open_index, read_position

log = logging.getLogger(__name__)

BATCH = 1000
POLL_INTERVAL = 1.0
MAX_BACKOFF = 30.0
MIN_COMMIT_INTERVAL = 0.025  # seconds from the end of one commit to the start of the next, under load


def pause_before_commit(*, now: float, last_commit: float | None, min_interval: float) -> float:
    """Seconds to wait before reading the next batch: none when idle, else the rest of ``min_interval``."""
    if last_commit is None:
        return 0.0
    return max(0.0, min(min_interval, last_commit + min_interval - now))


class Feeder:
    """Applies ``assets`` changes to one index it writes (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        index: SearchIndex,
        *,
        batch_size: int = BATCH,
        poll_interval: float = POLL_INTERVAL,
        min_commit_interval: float = MIN_COMMIT_INTERVAL,
    ) -> None:
        self.store = store
        self.index = index
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.min_commit_interval = min_commit_interval
        self.last_commit: float | None = None  # time.monotonic() at the end of the last commit

    def catch_up(self) -> int:
        """Apply every change committed so far; returns how many rows were applied."""
        applied = 0
        while True:
            started_at = time.time()
            rows = self.store.changes.changes_after(after=self.index.position, limit=self.batch_size)
            if not rows:
                return applied
            started = time.perf_counter()
            try:
                self.index.apply(rows)
                self.index.commit(position=rows[-1].change_seq, started_at=started_at)
            except SearchUnavailable:
                self.index.rollback()
                raise
            self.last_commit = time.monotonic()
            applied += len(rows)
            log.debug(
                "search feeder batch rows=%d position=%d ms=%.1f",
                len(rows),
                rows[-1].change_seq,
                (time.perf_counter() - started) * 1000,
            )
            if len(rows) < self.batch_size:
                return applied

    def run(self, stop_event: StopCue) -> None:
        """Follow PostgreSQL until ``stop_event`` is set (blocking; for the feeder's own process)."""
        log.info("search feeder starting path=%s position=%d", self.index.path, self.index.position)
        listener: ChangeListener | None = None
        backoff = 0.5
        try:
            while not stop_event.is_set():
                try:
                    if listener is None:
                        listener = self.store.changes.listener(ASSETS_CHANNEL)
                        log.info("search feeder listening channel=%s", ASSETS_CHANNEL)
                    applied = self.catch_up()
                    if applied:
                        log.info("search feeder applied rows=%d position=%d", applied, self.index.position)
                    backoff = 0.5
                    if listener.wait(self.poll_interval):
                        pause = pause_before_commit(
                            now=time.monotonic(),
                            last_commit=self.last_commit,
                            min_interval=self.min_commit_interval,
                        )
                        if pause:
                            stop_event.wait(pause)
                except (DatabaseError, SearchUnavailable) as exc:
                    log.warning(
                        "search feeder error=%s detail=%r retry_in_s=%.1f",
                        exc.__class__.__name__,
                        str(exc),
                        backoff,
                    )
                    if listener is not None:
                        listener.close()
                        listener = None
                    stop_event.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            if listener is not None:
                listener.close()
            log.info("search feeder stopped position=%d", self.index.position)


def open_for_feeding(store: Store, index_dir: str | Path) -> SearchIndex:
    """The feeder's index, created if missing; one of another schema version is rebuilt from PostgreSQL first."""
    index_dir = Path(index_dir)
    if exists(index_dir):
        version = read_position(index_dir).get("version")
        if version != SCHEMA_VERSION:
            log.warning(
                "search index schema version=%s expected=%d: rebuilding path=%s",
                version,
                SCHEMA_VERSION,
                index_dir,
            )
            reindex(store, index_dir, progress=False)
    return open_index(index_dir, writer=True)


REINDEX_HEAP_MAX = 3_500_000_000  # Tantivy's limit is 4 GB per indexing thread


def reindex_heap() -> int:
    """The reindex's indexing budget: a quarter of the machine's memory, at most 3.5 GB, at least 64 MB.

    Tantivy grows its arena as documents arrive, so a small corpus uses little of it.
    """
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        memory = 2_000_000_000
    return max(64_000_000, min(REINDEX_HEAP_MAX, memory // 4))


def reindex(
    store: Store,
    index_dir: str | Path,
    *,
    progress: bool,
    heap_size: int | None = None,
    threads: int = 1,
    batch: int = 5000,
) -> int:
    """Rebuild the index from PostgreSQL into a fresh directory and swap it in; returns the documents indexed.

    One indexing thread with a large budget (:func:`reindex_heap`) writes as
    few segments as it can (one at 1M assets): every query pays per segment
    (its fuzzy and prefix automata walk each term dictionary), and 1 segment
    instead of 6 cut search with facets by ~25% at 1M, while the build, bound
    by reading PostgreSQL and building documents in Python, took ~15% longer.

    Raises :class:`~indexer.errors.Conflict` if another process (a feeder) writes ``index_dir``.
    """
    heap_size = reindex_heap() if heap_size is None else heap_size
    index_dir = Path(index_dir)
    new, old = index_dir.with_suffix(".new"), index_dir.with_suffix(".old")
    with hold_writer_lock(index_dir) as held:
        if not held:
            raise Conflict(
                f"the search index at {index_dir} is being written by another process; stop the feeder"
            )
        shutil.rmtree(new, ignore_errors=True)
        started = time.perf_counter()
        target = open_index(new, writer=True, heap_size=heap_size, threads=threads)
        added = 0
        try:
            with store.changes.snapshot() as snap:
                total, position = snap.count_searchable(), snap.max_change_seq()
                with tqdm(
                    total=total, disable=not progress, unit="asset", desc="reindex", smoothing=0.1
                ) as bar:
                    chunk = []
                    for row in snap.searchable_rows():
                        chunk.append(row)
                        if len(chunk) >= batch:
                            target.add(chunk)
                            bar.update(len(chunk))
                            added += len(chunk)
                            chunk = []
                    target.add(chunk)
                    bar.update(len(chunk))
                    added += len(chunk)
            target.commit(position=position)
        finally:
            target.close()
        shutil.rmtree(old, ignore_errors=True)
        if index_dir.exists():
            index_dir.rename(old)
        new.rename(index_dir)
    shutil.rmtree(old, ignore_errors=True)
    log.info(
        "search reindex done path=%s docs=%d position=%d s=%.1f",
        index_dir,
        added,
        position,
        time.perf_counter() - started,
    )
    return added
