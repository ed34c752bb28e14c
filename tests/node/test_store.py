"""The node's SQLite store: log rules, forks, asset state, paging, and two writers on one file."""

from __future__ import annotations

import itertools
import random
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.errors import NotFoundError, StoreError
from node.store import Store, StoreBusy
from protocol import AssetUri, Entry, EntryHash, Signer, fold, parse_and_verify

from .conftest import LogBuilder


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "node.db")
    yield s
    s.close()


def stored_log(store: Store, author: bytes) -> list[Entry]:
    """Every entry the store holds for ``author``, re-verified, in seq order."""
    return [parse_and_verify(raw, now_ms=None) for raw in store.range_raw(author, 1, 2**62)]


def assert_chained(entries: list[Entry]) -> None:
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert entries[0].prev is None
    for before, after in itertools.pairwise(entries):
        assert after.prev == before.hash


# -- ingest: order, duplicates, gaps ------------------------------------------------


def test_ingest_in_order(store: Store, new_log) -> None:
    log = new_log()
    entries = log.extend(10)
    report = store.ingest(entries)
    assert report.appended == entries
    assert report.duplicates == 0 and not report.gaps and not report.forks and not report.refused
    head = store.head(log.signer.public)
    assert head is not None and (head.seq, head.hash) == (10, entries[-1].hash)
    assert [e.hash for e in stored_log(store, log.author)] == [e.hash for e in entries]
    assert store.count_entries() == 10


def test_ingest_shuffled_batch_lands_entirely(store: Store, new_log) -> None:
    logs = [new_log() for _ in range(3)]
    entries = [e for log in logs for e in log.extend(40)]
    shuffled = entries[:]
    random.Random(1).shuffle(shuffled)
    assert shuffled != entries

    report = store.ingest(shuffled)

    assert len(report.appended) == 120
    assert not report.gaps and not report.forks and not report.refused
    for log in logs:
        assert [e.hash for e in stored_log(store, log.author)] == [e.hash for e in log.entries]
        head = store.head(log.signer.public)
        assert head is not None and head.hash == log.entries[-1].hash


def test_entries_out_of_order_across_batches(store: Store, new_log) -> None:
    log = new_log()
    entries = log.extend(6)
    first = store.ingest([entries[4], entries[5]])  # ahead of an empty log: a gap, nothing stored
    assert first.appended == [] and store.count_entries() == 0
    assert first.gaps == {log.signer.public: (1, 6)}
    second = store.ingest(entries[:4])
    assert len(second.appended) == 4
    third = store.ingest(entries[4:])
    assert len(third.appended) == 2
    assert_chained(stored_log(store, log.author))


def test_duplicates_counted_not_stored_twice(store: Store, new_log) -> None:
    log = new_log()
    entries = log.extend(5)
    store.ingest(entries)
    report = store.ingest(entries + entries[:2])
    assert report.appended == []
    assert report.duplicates == 7
    assert store.count_entries() == 5
    # A batch that mixes new and held entries appends only the new ones.
    more = log.extend(2)
    mixed = store.ingest(entries[3:] + more)
    assert mixed.appended == more and mixed.duplicates == 2


def test_gap_reports_missing_range_and_stores_nothing_past_it(store: Store, new_log) -> None:
    log = new_log()
    entries = log.extend(8)
    store.ingest(entries[:3])

    report = store.ingest(entries[5:])  # seq 6..8 while the head is 3

    assert report.appended == []
    # The range to pull runs from the first missing seq to the highest seq seen
    # (the entries past the gap are not kept: they come again inside the range).
    assert report.gaps == {log.signer.public: (4, 8)}
    head = store.head(log.signer.public)
    assert head is not None and head.seq == 3
    assert store.range_raw(log.author, 4, 100) == []
    assert store.count_entries() == 3


def test_gap_in_the_middle_of_a_batch(store: Store, new_log) -> None:
    log = new_log()
    entries = log.extend(7)
    report = store.ingest(entries[:3] + entries[4:])  # seq 4 missing
    assert [e.seq for e in report.appended] == [1, 2, 3]
    assert report.gaps == {log.signer.public: (4, 7)}
    assert store.count_entries() == 3
    filled = store.ingest(entries[3:])
    assert [e.seq for e in filled.appended] == [4, 5, 6, 7] and not filled.gaps


# -- forks ----------------------------------------------------------------------------


def test_fork_at_held_seq_recorded_and_author_frozen(store: Store, new_log) -> None:
    log = new_log()
    entries = log.extend(3)
    store.ingest(entries)
    # A second, validly signed entry at seq 2 chained to the same seq 1.
    rival = log.next(seq=2, prev=entries[0].hash, key="other", body=None)
    assert rival.hash != entries[1].hash

    report = store.ingest([rival])

    assert report.forks == [rival] and report.appended == []
    assert store.forks() == [(log.signer.public, 2, rival.hash)]
    (row,) = store.authors()
    assert row.forked_seq == 2
    # Both versions are kept as proof: the held one in the log, the rival in forks.
    assert [e.hash for e in stored_log(store, log.author)] == [e.hash for e in entries]

    # Nothing at or past the fork is applied any more, each refusal with a reason.
    later = log.extend(2)
    frozen = store.ingest(later)
    assert frozen.appended == []
    assert [e for e, _ in frozen.refused] == later
    assert all("fork" in why for _, why in frozen.refused)
    head = store.head(log.signer.public)
    assert head is not None and head.seq == 3
    assert store.count_entries() == 3
    # Entries before the fork are still recognised as held.
    assert store.ingest([entries[0]]).duplicates == 1
    # The same rival again is not a second fork record.
    store.ingest([rival])
    assert len(store.forks()) == 1


def test_fork_via_conflicting_prev(store: Store, new_log) -> None:
    log = new_log()
    entries = log.extend(3)
    store.ingest(entries)
    # seq 4 chained to seq 2: the author must have signed another seq 3.
    rival = log.next(seq=4, prev=entries[1].hash)

    report = store.ingest([rival])

    assert report.forks == [rival] and report.appended == []
    assert store.forks() == [(log.signer.public, 4, rival.hash)]
    (row,) = store.authors()
    assert row.forked_seq == 3
    genuine_next = log.next()
    frozen = store.ingest([genuine_next])
    assert frozen.appended == [] and [e for e, _ in frozen.refused] == [genuine_next]
    assert store.count_entries() == 3


def test_own_forked_log_refuses_local_appends(store: Store, new_log, put_body) -> None:
    log = new_log()
    entries = log.extend(2)
    store.ingest(entries, local=True)
    store.ingest([log.next(seq=2, prev=entries[0].hash, key="elsewhere")])
    with pytest.raises(StoreError, match="fork"):
        store.append_local(log.signer, kind="asset.put", key="k", body=put_body())
    assert store.count_entries() == 2


# -- append_local ------------------------------------------------------------------------


def test_append_local_chains_seq_and_prev(store: Store, new_signer, put_body) -> None:
    signer = new_signer()
    made = [
        store.append_local(signer, kind="asset.put", key="a", body=put_body("A")),
        store.append_local(signer, kind="asset.put", key="b", body=put_body("B")),
        store.append_local(signer, kind="asset.delete", key="a", body={}),
        store.append_local(signer, kind="asset.put", key="a", body=put_body("A again"), ts=1_700_000_000_000),
    ]
    assert_chained(made)
    assert made[3].ts == 1_700_000_000_000
    assert [e.hash for e in stored_log(store, signer.public.raw)] == [e.hash for e in made]
    (row,) = store.authors()
    assert row.local and row.head.seq == 4 and row.head.hash == made[-1].hash
    # An invalid body writes nothing and does not advance the log.
    with pytest.raises(Exception, match="title"):
        store.append_local(signer, kind="asset.put", key="c", body=put_body(""))
    assert store.count_entries() == 4
    nxt = store.append_local(signer, kind="asset.put", key="c", body=put_body("C"))
    assert nxt.seq == 5 and nxt.prev == made[-1].hash


def test_append_local_continues_a_replicated_log(store: Store, new_log, put_body) -> None:
    log = new_log()
    store.ingest(log.extend(3))
    e = store.append_local(log.signer, kind="asset.put", key="k", body=put_body())
    assert e.seq == 4 and e.prev == log.entries[-1].hash


# -- asset state vs protocol.fold ---------------------------------------------------------


def assert_assets_match_fold(store: Store, entries: list[Entry]) -> None:
    expected = fold(entries)
    rows = {r.uri: r for r in store.assets(local_only=False, include_deleted=True)}
    assert set(rows) == set(expected)
    for uri, state in expected.items():
        row = store.asset(uri)
        assert row == rows[uri]
        assert row.deleted == state.deleted, uri
        assert row.versions == state.versions, uri
        assert row.last_hash == state.last.hash, uri
        assert (row.put.hash if row.put else None) == (state.put.hash if state.put else None), uri
        assert row.created_ts == state.created_ts, uri
        assert row.updated_ts == state.updated_ts, uri
    live = {r.uri for r in store.assets(local_only=False)}
    assert live == {uri for uri, s in expected.items() if not s.deleted}


def test_asset_state_put_edit_delete_reput(store: Store, new_log, put_body) -> None:
    log = new_log()
    ts = 1_700_000_000_000
    steps = [
        ("asset.put", "song", put_body("Song")),
        ("asset.put", "song", put_body("Song (remaster)")),
        ("asset.put", "art", put_body("Art")),
        ("asset.delete", "song", {}),
        ("asset.delete", "ghost", {}),  # a delete of something never put
        ("asset.put", "song", put_body("Song is back")),
        ("asset.delete", "art", {}),
    ]
    for i, (kind, key, body) in enumerate(steps):
        log.next(kind=kind, key=key, body=body, ts=ts + i * 1000)
    store.ingest(log.entries)

    assert_assets_match_fold(store, log.entries)
    song = store.asset(AssetUri(log.signer.public, "song"))
    assert not song.deleted and song.versions == 4
    assert song.put is not None and song.put.body["title"] == "Song is back"
    art = store.asset(AssetUri(log.signer.public, "art"))
    assert art.deleted and art.put is not None and art.put.body["title"] == "Art"
    ghost = store.asset(AssetUri(log.signer.public, "ghost"))
    assert ghost.deleted and ghost.put is None
    with pytest.raises(NotFoundError):
        store.asset(AssetUri(log.signer.public, "never"))


_OPS = st.lists(
    st.tuples(
        st.integers(0, 1), st.sampled_from(["asset.put", "asset.delete"]), st.sampled_from(["a", "b", "c"])
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS, order_seed=st.integers(0, 2**32 - 1), local_author=st.booleans())
def test_asset_state_matches_fold_for_any_history(
    ops, order_seed, local_author, new_signer, put_body
) -> None:
    signers = [new_signer(), new_signer()]
    logs = [LogBuilder(s, put_body) for s in signers]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "node.db")
        try:
            for i, (who, kind, key) in enumerate(ops):
                if who == 0 and local_author:
                    body = put_body(f"{key} {i}") if kind == "asset.put" else {}
                    logs[0].entries.append(
                        store.append_local(signers[0], kind=kind, key=key, body=body, ts=1_000 + i)
                    )
                else:
                    logs[who].next(kind=kind, key=key, ts=1_000 + i)
            remote = [e for log in logs[(1 if local_author else 0) :] for e in log.entries]
            rng = random.Random(order_seed)
            rng.shuffle(remote)
            # Deliver in a few shuffled batches, then whatever a gap held back.
            cut = rng.randint(0, len(remote))
            store.ingest(remote[:cut])
            store.ingest(remote[cut:])
            store.ingest(remote)
            every = [e for log in logs for e in log.entries]
            assert store.count_entries() == len(every)
            assert_assets_match_fold(store, every)
        finally:
            store.close()


# -- reading: export, heads paging ----------------------------------------------------------


def test_export_raw_in_author_seq_order_across_pages(store: Store, new_log, put_body) -> None:
    # More than one 1,000-row page, with a page boundary inside an author's log.
    logs = [new_log() for _ in range(3)]
    sizes = [700, 450, 5]
    for log, n in zip(logs, sizes, strict=True):
        for i in range(n):
            log.next(key=f"k{i % 50}", ts=1_700_000_000_000 + i)
    entries = [e for log in logs for e in log.entries]
    shuffled = entries[:]
    random.Random(7).shuffle(shuffled)
    store.ingest(shuffled[:600])
    store.ingest(shuffled[600:])
    store.ingest(entries)  # deliver whatever the shuffled batches left behind a gap
    local = store.append_local(logs[2].signer, kind="asset.put", key="mine", body=put_body("Mine"))

    exported = list(store.export_raw(local_only=False))
    expected = sorted([*entries, local], key=lambda e: (e.author.raw, e.seq))
    assert exported == [e.raw for e in expected]
    assert len(exported) == sum(sizes) + 1

    mine = list(store.export_raw(local_only=True))
    assert mine == [e.raw for e in expected if e.author == logs[2].signer.public]
    assert len(mine) == sizes[2] + 1


def test_heads_paging(store: Store, new_log) -> None:
    logs = [new_log() for _ in range(23)]
    for i, log in enumerate(logs):
        store.ingest(log.extend(1 + i % 4))
    every = store.heads(limit=1000)
    assert len(every) == 23
    assert [h[0] for h in every] == sorted(log.author for log in logs)
    assert {h[0]: (h[1], h[2]) for h in every} == {
        log.author: (log.entries[-1].seq, log.entries[-1].hash.raw) for log in logs
    }

    pages, after = [], None
    while True:
        page = store.heads(after=after, limit=10)
        if not page:
            break
        assert len(page) <= 10
        pages.append(page)
        after = page[-1][0]
    assert [len(p) for p in pages] == [10, 10, 3]
    assert [h for p in pages for h in p] == every
    assert store.heads(after=every[-1][0], limit=10) == []

    lo, hi = every[5][0], every[9][0]
    assert store.heads_between(lo, hi) == {a: (s, h) for a, s, h in every[5:10]}


def test_get_raw_and_range_raw(store: Store, new_log) -> None:
    log = new_log()
    entries = log.extend(5)
    store.ingest(entries)
    assert store.get_raw(entries[2].hash) == entries[2].raw
    assert store.get_raw(EntryHash(b"\x00" * 32)) is None
    assert store.range_raw(log.author, 2, 4) == [e.raw for e in entries[1:4]]
    assert store.range_raw(log.author, 6, 9) == []


# -- two processes on one file -------------------------------------------------------------


def test_two_stores_on_one_file_never_collide(tmp_path: Path, new_signer, new_log, put_body) -> None:
    """The CLI and the daemon each open node.db and append to the same author's log at once."""
    path = tmp_path / "node.db"
    cli, daemon = Store.open(path), Store.open(path)
    signer: Signer = new_signer()
    remote = new_log()
    remote_entries = remote.extend(60)
    per_writer = 60
    errors: list[BaseException] = []
    made: list[list[Entry]] = [[], []]
    start = threading.Barrier(3)

    def append(i: int, s: Store) -> None:
        try:
            start.wait()
            for n in range(per_writer):
                made[i].append(
                    s.append_local(signer, kind="asset.put", key=f"w{i}-{n}", body=put_body(f"{i} {n}"))
                )
        except BaseException as exc:
            errors.append(exc)

    def ingest_remote() -> None:
        try:
            start.wait()
            for k in range(0, len(remote_entries), 5):
                daemon.ingest(remote_entries[k : k + 5])
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=append, args=(0, cli)),
        threading.Thread(target=append, args=(1, daemon)),
        threading.Thread(target=ingest_remote),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        seqs = sorted(e.seq for e in made[0] + made[1])
        assert seqs == list(range(1, 2 * per_writer + 1))
        for s in (cli, daemon):
            log = stored_log(s, signer.public.raw)
            assert_chained(log)
            assert len(log) == 2 * per_writer
            assert {e.hash for e in log} == {e.hash for e in made[0] + made[1]}
            head = s.head(signer.public)
            assert head is not None and head.seq == 2 * per_writer
            assert len(stored_log(s, remote.author)) == 60
            assert s.count_entries() == 2 * per_writer + 60
    finally:
        cli.close()
        daemon.close()


# -- writing without waiting (the daemon's hot path) ------------------------------------------


def test_try_now_gives_up_at_once_when_another_process_writes(tmp_path: Path, new_signer, put_body) -> None:
    """Another connection (the CLI, another process) holds the write lock: try_now does nothing and
    says so, instead of waiting out the busy timeout in the caller's (the event loop's) thread."""
    path = tmp_path / "node.db"
    daemon, other = Store.open(path), Store.open(path)
    signer: Signer = new_signer()
    try:
        with other._tx(), pytest.raises(StoreBusy):  # BEGIN IMMEDIATE held by the other connection
            daemon.try_now(daemon.append_local, signer, kind="asset.put", key="a", body=put_body("a"))
        assert daemon.head(signer.public) is None, "nothing was written"
        # Free again: the same call goes through, and the store still waits when not trying.
        e = daemon.try_now(daemon.append_local, signer, kind="asset.put", key="a", body=put_body("a"))
        head = daemon.head(signer.public)
        assert e.seq == 1 and head is not None and (head.seq, head.hash) == (1, e.hash)
        assert daemon._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
    finally:
        daemon.close()
        other.close()


def test_try_now_gives_up_when_another_thread_is_in_the_store(store: Store, new_signer, put_body) -> None:
    signer: Signer = new_signer()
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._lock:
            inside.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    inside.wait(30)
    try:
        with pytest.raises(StoreBusy):
            store.try_now(store.append_local, signer, kind="asset.put", key="a", body=put_body("a"))
    finally:
        release.set()
        t.join()
    assert store.head(signer.public) is None


def test_manual_checkpoints_leave_the_wal_to_the_owner(store: Store, new_signer, put_body) -> None:
    """With manual checkpoints a commit never copies the WAL back; checkpoint() does, all of it, and
    the WAL is then reused from its start instead of growing."""
    signer: Signer = new_signer()
    wal = store.path.with_name(store.path.name + "-wal")
    page = store._conn.execute("PRAGMA page_size").fetchone()[0]
    store.manual_checkpoints()

    def write(n: int, start: int) -> None:
        for i in range(start, start + n):
            store.append_local(signer, kind="asset.put", key=f"k{i}", body=put_body(f"t{i}"))

    write(400, 0)
    grown = wal.stat().st_size
    assert grown > 1500 * page, "past the 1,000-page autocheckpoint, no commit checkpointed on its own"
    frames, copied = store.checkpoint()
    assert frames > 1000 and copied == frames
    write(100, 400)
    assert wal.stat().st_size == grown, "after the checkpoint the WAL is reused, not grown"
    assert store.head(signer.public).seq == 500
