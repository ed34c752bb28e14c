"""The one ingest path against a real PostgreSQL: heads, assets, activity, gaps, forks, quarantine."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from indexer.store import Rejected, Store
from protocol import AuthorKey, Entry, fold, parse_and_verify
from tests.node.conftest import LogBuilder
from tests.vectors import invalid_vectors, valid_vectors


def q(store: Store, sql: str, **params: Any) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def counts(store: Store) -> dict[str, int]:
    tables = ["entries", "assets", "authors", "activity", "pending", "forks", "quarantine"]
    return {t: q(store, f"SELECT count(*) FROM {t}")[0][0] for t in tables}


def assert_mirrors(store: Store, entries: list[Entry]) -> None:
    """PostgreSQL holds exactly these entries once each, with assets equal to protocol.fold."""
    rows = q(store, "SELECT hash, raw FROM entries")
    assert sorted(bytes(h) for h, _ in rows) == sorted({e.hash.raw for e in entries})
    assert all(bytes(r) == {e.hash.raw: e.raw for e in entries}[bytes(h)] for h, r in rows)
    want = fold(entries)
    got = {
        r.uri: r
        for r in q(
            store, "SELECT uri, deleted, versions, title, entry_hash, created_ts, updated_ts FROM assets"
        )
    }
    assert set(got) == {u.text for u in want}
    for uri, state in want.items():
        row = got[uri.text]
        assert row.deleted == state.deleted
        assert row.versions == state.versions
        assert bytes(row.entry_hash) == state.last.hash.raw
        assert row.created_ts == state.created_ts and row.updated_ts == state.updated_ts
        if state.put is not None:
            assert row.title == state.put.body["title"]
    heads: dict[bytes, Entry] = {}
    for e in entries:
        if e.author.raw not in heads or e.seq > heads[e.author.raw].seq:
            heads[e.author.raw] = e
    got_heads = {
        bytes(a): (s, bytes(h)) for a, s, h in q(store, "SELECT author, head_seq, head_hash FROM authors")
    }
    assert got_heads == {a: (e.seq, e.hash.raw) for a, e in heads.items()}


def test_a_log_lands_with_assets_activity_and_head(store: Store, new_log: Callable[..., LogBuilder]) -> None:
    log = new_log()
    log.next(key="a")
    log.next(key="b")
    log.next(key="a")  # edit
    log.next(kind="asset.delete", key="b")
    report = store.ingest(log.entries, source="test")
    assert [e.seq for e in report.appended] == [1, 2, 3, 4]
    assert_mirrors(store, log.entries)
    kinds = [r[0] for r in q(store, "SELECT kind FROM activity ORDER BY id")]
    assert kinds == ["published", "published", "updated", "deleted"]
    deleted = q(store, "SELECT title, deleted FROM assets WHERE key = 'b'")[0]
    assert deleted.deleted and deleted.title == "b v2"  # the tombstone keeps what was deleted


def test_resubmitting_changes_nothing(store: Store, new_log: Callable[..., LogBuilder]) -> None:
    log = new_log()
    log.extend(5)
    store.ingest(log.entries)
    before = counts(store), q(store, "SELECT uri, change_seq FROM assets ORDER BY uri")
    report = store.ingest(list(reversed(log.entries)))
    assert report.appended == [] and report.duplicates == 5
    assert (counts(store), q(store, "SELECT uri, change_seq FROM assets ORDER BY uri")) == before


def test_entries_past_a_gap_are_held_then_applied(store: Store, new_log: Callable[..., LogBuilder]) -> None:
    log = new_log()
    log.extend(6)
    report = store.ingest(log.entries[3:])  # seq 4..6 first
    author = AuthorKey(log.author)
    assert report.appended == [] and report.held == 3
    assert report.gaps == {author: (1, 3)}
    assert counts(store)["pending"] == 3 and counts(store)["entries"] == 0
    report = store.ingest(log.entries[:1])
    assert [e.seq for e in report.appended] == [1]
    assert report.gaps == {author: (2, 3)}
    report = store.ingest(log.entries[1:3])
    assert [e.seq for e in report.appended] == [2, 3, 4, 5, 6]  # the held ones rejoin
    assert counts(store)["pending"] == 0
    assert_mirrors(store, log.entries)


def test_a_fork_is_quarantined_and_later_entries_held_back(
    store: Store, new_log: Callable[..., LogBuilder], put_body: Callable[..., dict[str, Any]]
) -> None:
    log = new_log()
    log.extend(3)
    store.ingest(log.entries[:2])
    rival = log.next(seq=2, prev=log.entries[0].hash, body=put_body("rival"), key="rival")
    report = store.ingest([rival, log.entries[2]])
    assert report.forks == [rival]
    assert report.status[log.entries[2].hash.raw] == "refused"
    assert q(store, "SELECT forked_seq FROM authors")[0][0] == 2
    quarantined = {r.code: r for r in q(store, "SELECT code, seq, reason FROM quarantine")}
    assert set(quarantined) == {"fork", "after-fork"}
    assert [bytes(r[0]) for r in q(store, "SELECT hash FROM forks")] == [rival.hash.raw]
    assert_mirrors(store, log.entries[:2])
    # Seeing the same fork again changes nothing but the sighting count.
    store.ingest([rival])
    assert counts(store)["forks"] == 1 and q(store, "SELECT max(times_seen) FROM quarantine")[0][0] == 2


def test_invalid_inputs_are_quarantined_with_their_reasons(store: Store) -> None:
    vectors = invalid_vectors()
    for v in vectors:
        result = store.ingest_raw([v.raw], source="test", now=v.now_ms if v.now_ms is not None else 10**13)
        item = result.results[0]
        assert item.status == "invalid", v.name
        assert item.code == v.error_class.code and v.reason_contains in (item.reason or ""), v.name
    assert counts(store)["entries"] == 0 and counts(store)["assets"] == 0
    distinct = len({v.raw for v in vectors})
    assert counts(store)["quarantine"] == distinct
    store.quarantine([Rejected(vectors[0].raw, "decode", "again", "test")])
    assert counts(store)["quarantine"] == distinct


def test_every_valid_vector_is_accepted(store: Store) -> None:
    vectors = valid_vectors()
    result = store.ingest_raw([v.raw for v in vectors], source="test", now=10**13)
    # max_integers carries ts = 2^63-1, beyond any receiver's clock: refused at the door.
    edge = [v for v in vectors if v.name == "max_integers"]
    assert [r.code for r in result.results if r.status == "invalid"] == ["timestamp"]
    by_hash = {r.hash: r.status for r in result.results if r.hash}
    for v in vectors:
        if v not in edge:
            assert by_hash[v.hash_cid] == "appended", v.name
    entries = [parse_and_verify(v.raw, now_ms=None) for v in vectors if v not in edge]
    assert_mirrors(store, entries)
    assert "attested" in {r[0] for r in q(store, "SELECT kind FROM activity")}


def test_the_replica_interface(store: Store, new_log: Callable[..., LogBuilder]) -> None:
    logs = [new_log() for _ in range(3)]
    for log in logs:
        log.extend(4)
        store.ingest(log.entries)
    ordered = sorted(logs, key=lambda lg: lg.author)
    page = store.heads(limit=2)
    assert [a for a, _, _ in page] == [lg.author for lg in ordered[:2]]
    rest = store.heads(after=page[-1][0])
    assert [a for a, _, _ in rest] == [ordered[2].author]
    assert store.heads_between(ordered[0].author, ordered[1].author).keys() == {
        ordered[0].author,
        ordered[1].author,
    }
    assert store.range_raw(ordered[0].author, 2, 3) == [e.raw for e in ordered[0].entries[1:3]]
    assert store.get_raw(ordered[1].entries[0].hash) == ordered[1].entries[0].raw
    head = store.head(AuthorKey(ordered[2].author))
    assert head is not None and head.seq == 4 and head.hash == ordered[2].entries[-1].hash


def test_append_local_extends_the_bridges_own_log(store: Store, new_signer: Callable[..., Any]) -> None:
    signer = new_signer()
    first = store.append_local(signer, kind="asset.put", key="k", body=_body())
    second = store.append_local(signer, kind="asset.delete", key="k", body={})
    assert (first.seq, second.seq, second.prev) == (1, 2, first.hash)


def _body() -> dict[str, Any]:
    from tests.node.conftest import _BASE_PUT

    return dict(_BASE_PUT)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_arrival_order_and_batching_gives_the_same_mirror(
    pg_server: Any, new_log: Callable[..., LogBuilder], data: st.DataObject
) -> None:
    """Logs of 3 authors, shuffled, split into random batches, some resent: the mirror equals fold()."""
    url = pg_server.fresh_database()
    store = Store.connect(url, pool_size=1)
    try:
        rng = random.Random(data.draw(st.integers(0, 2**32)))
        entries: list[Entry] = []
        for _ in range(3):
            log = new_log()
            for _ in range(data.draw(st.integers(1, 6))):
                choice = rng.random()
                key = rng.choice(["a", "b", "c"])
                log.next(kind="asset.delete" if choice < 0.25 else "asset.put", key=key)
            entries += log.entries
        stream = entries + rng.sample(entries, k=len(entries) // 3)  # some arrive twice
        rng.shuffle(stream)
        while stream:
            n = rng.randint(1, 5)
            store.ingest(stream[:n])
            stream = stream[n:]
        assert counts(store)["pending"] == 0
        assert_mirrors(store, entries)
    finally:
        store.close()
        pg_server.drop_database(url)


def test_concurrent_writers_share_one_ordered_path(store: Store, new_log: Callable[..., LogBuilder]) -> None:
    """The bridge and POST /v1/entries writing overlapping batches at once: one exact mirror, in order."""
    import threading

    logs = [new_log() for _ in range(4)]
    for log in logs:
        log.extend(40)
    entries = [e for log in logs for e in log.entries]
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        stream = entries[:]
        rng.shuffle(stream)
        try:
            for i in range(0, len(stream), 7):
                store.ingest(stream[i : i + 7], source=f"writer-{seed}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert counts(store)["pending"] == 0
    assert_mirrors(store, entries)
    # change_seq and activity ids were handed out in commit order: both strictly increase with id order.
    seqs = [r[0] for r in q(store, "SELECT change_seq FROM assets ORDER BY change_seq")]
    assert len(seqs) == len(set(seqs))
    assert q(store, "SELECT count(*) FROM activity")[0][0] == len(entries)


def test_an_entry_postgresql_cannot_store_is_quarantined_and_the_rest_applied(
    store: Store, new_log: Callable[..., LogBuilder]
) -> None:
    """Defence in depth: protocol refuses U+0000, but should a verified entry still hold a value
    PostgreSQL cannot store, the batch is not retried forever: that entry is quarantined
    (``unstorable``), the others land, and its author's later entries wait for it."""
    log, other = new_log(), new_log()
    log.extend(5)
    other.extend(2)
    poison = log.entries[2]._replace(body={**log.entries[2].body, "title": "Night\x00Drive"})
    batch = [*log.entries[:2], poison, *log.entries[3:], *other.entries]
    report = store.ingest(batch, source="test")
    assert [e.seq for e in report.appended if e.author == log.signer.public] == [1, 2]
    assert {e.hash for e in report.appended if e.author == other.signer.public} == {
        e.hash for e in other.entries
    }
    assert report.status[poison.hash.raw] == "refused"
    assert report.refused[0][0] == poison and "cannot store" in report.refused[0][1]
    ((code, reason, seq),) = q(store, "SELECT code, reason, seq FROM quarantine")
    assert code == "unstorable" and seq == 3 and "0x00" in reason
    assert q(store, "SELECT head_seq FROM authors WHERE author = :a", a=log.author) == [(2,)]
    assert sorted(s for (s,) in q(store, "SELECT seq FROM pending")) == [4, 5]
    # The same batch again changes nothing but the quarantine's count.
    before = counts(store)
    again = store.ingest(batch, source="test")
    assert again.status[poison.hash.raw] == "refused" and counts(store) == before
    assert q(store, "SELECT times_seen FROM quarantine") == [(2,)]


def test_checked_in_process_keeps_the_entries_and_a_worker_result_stays_plain(
    new_log: Callable[..., LogBuilder],
) -> None:
    """``check_raws(in_process=True)`` hands ingest the verified entries themselves; without it (a
    worker process) the result holds only plain tuples, and the entries rebuilt from them are equal."""
    import pickle

    from indexer.store.prepare import check_raws

    log = new_log()
    log.extend(3)
    raws = [e.raw for e in log.entries] + [b"\xa0"]
    here = check_raws(raws, in_process=True)
    there = pickle.loads(pickle.dumps(check_raws(raws)))
    assert here.local_entries is not None and there.local_entries is None
    assert here.entries() == there.entries() == [parse_and_verify(r, now_ms=None) for r in raws[:3]]
    assert [i for i, *_ in there.invalid] == [3]
    assert b"Entry" not in pickle.dumps(check_raws(raws))  # plain values cross the process boundary
