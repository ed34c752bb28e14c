"""The bridge's writers: no linger when the store is idle, batches while a write is in flight.

The daemon's writer tasks run on the bridge's real replica (PostgreSQL) under
trio's autojump clock: a linger shows as the clock moving on before a write,
so "written at once" is exact, not a timing.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import trio
import trio.testing

from bridge.config import BridgeSettings
from bridge.service import Bridge
from indexer.store import IngestReport, Store
from node.daemon import _Write
from node.keystore import Keys
from protocol import Entry, Signer

from .conftest import read


async def test_first_entry_after_idle_is_written_at_once_and_queued_ones_form_the_next_batch(
    db_url: str,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    new_log: Callable[..., object],
) -> None:
    store = Store.connect(db_url, pool_size=2)
    try:
        settings = BridgeSettings(data_dir=tmp_path, database_url=db_url, listen=["/ip4/127.0.0.1/tcp/0"])
        assert settings.writer_linger > 0 and settings.writer_batch >= 4
        keys = Keys(author=Signer(secrets.token_bytes(32)), peer_seed=secrets.token_bytes(32))
        bridge = Bridge(settings=settings, keys=keys, store=store)
        entries: list[Entry] = new_log().extend(5)  # type: ignore[attr-defined]

        calls: list[tuple[float, list[int]]] = []  # (trio clock at the write, seqs written)
        in_flight = trio.Event()
        second = trio.Event()
        release = threading.Event()
        ingest = bridge.replica.ingest

        def spy(batch: Sequence[Entry]) -> IngestReport:  # the real ingest, with the first held open
            calls.append((trio.from_thread.run_sync(trio.current_time), [e.seq for e in batch]))
            if len(calls) == 1:
                trio.from_thread.run_sync(in_flight.set)
                assert release.wait(60), "the first write was never released"
            else:
                trio.from_thread.run_sync(second.set)
            return ingest(batch)

        bridge.replica.ingest = spy  # type: ignore[method-assign]
        node = bridge.node
        async with trio.open_nursery() as nursery:
            for _ in range(2):  # the bridge runs two writers
                nursery.start_soon(node._writer_loop)
            t0 = trio.current_time()
            await node._inbox_send.send(_Write([entries[0]], None))
            await in_flight.wait()
            for e in entries[1:]:  # arrive while the first write is in the store
                await node._inbox_send.send(_Write([e], None))
            await second.wait()
            release.set()
            while bridge.replica.appended_total < 5:
                await node.changed.wait()
            nursery.cancel_scope.cancel()

        assert calls[0] == (t0, [1])  # idle: no linger
        assert calls[1][1] == [2, 3, 4, 5]  # queued during the write: one batch
        assert calls[1][0] == t0 + settings.writer_linger  # under load it lingered, the linger and no more
        assert len(calls) == 2
        snap = await read(db_url)
        assert snap.entries == {e.hash.raw: e.raw for e in entries}  # the gap filled: all five held
        assert snap.pending == 0 and snap.activity == 5
    finally:
        store.close()
