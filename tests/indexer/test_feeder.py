"""The search feeder: idempotent apply, crash between commit and position, restart, run loop, reindex."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text

import indexer.search.index as search_index
from indexer.errors import Conflict, DatabaseError, SearchUnavailable
from indexer.models import ASSETS_CHANNEL, INGEST_LOCK, Asset
from indexer.search import Feeder, SearchIndex, SearchQuery, open_index, reindex
from indexer.search import feeder as feeder_module
from indexer.search.feeder import open_for_feeding, pause_before_commit
from indexer.search.index import read_position
from indexer.store import Store
from tests.indexer.test_search import Env, all_rows, asset, every_page, insert_assets, make_env, update_asset
from tests.node.conftest import LogBuilder


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[Env]:
    yield from make_env(db_url, tmp_path)


def dump(index: SearchIndex) -> list[dict[str, Any]]:
    """Every document of an index, in a fixed order."""
    return every_page(index, SearchQuery(sort="newest", limit=100))


def probe(index: SearchIndex) -> list[list[str]]:
    queries = [SearchQuery(q="river"), SearchQuery(q="rivr stone"), SearchQuery(sort="title", tags=["b"])]
    return [sorted(i["uri"] for i in every_page(index, q)) for q in queries]


def random_history(env: Env, rng: random.Random, rounds: int = 4) -> None:
    """Inserts, edits, deletes, hides and un-hides, fed round by round."""
    uris: list[str] = []
    for _ in range(rounds):
        uris += env.put(
            *(
                asset(
                    f"{rng.choice(['river', 'stone', 'Rívér'])} {rng.randrange(100)}",
                    tags=tuple(rng.sample("abc", 2)),
                    description=rng.choice(["stone age", "", "a river"]),
                )
                for _ in range(15)
            )
        )
        for uri in rng.sample(uris, 6):
            change = rng.choice(
                [
                    {"title": f"stone {rng.randrange(9)}"},
                    {"deleted": True},
                    {"hidden": True},
                    {"hidden": False},
                ]
            )
            update_asset(env.engine, uri, **change)
        env.feeder.catch_up()


def test_applying_the_same_changes_twice_changes_nothing(env: Env) -> None:
    random_history(env, random.Random(1))
    before, docs = dump(env.index), env.index.num_docs
    rows = all_rows(env.store)
    env.index.apply(rows)
    env.index.apply(rows)
    env.index.commit(position=env.index.position)
    assert dump(env.index) == before
    assert env.index.num_docs == docs == sum(r.searchable for r in rows)


def test_a_crash_between_commit_and_position_is_repaired_on_restart(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.put(*(asset(f"river {i}") for i in range(10)))
    position = env.index.position
    insert_assets(env.engine, [asset(f"stone {i}") for i in range(10)])

    def crash(path: Path, change_seq: int, **_: Any) -> None:
        raise KeyboardInterrupt("power cut after commit")

    monkeypatch.setattr(search_index, "write_position", crash)
    with pytest.raises(KeyboardInterrupt):
        env.feeder.catch_up()
    monkeypatch.undo()
    env.index.close()
    assert (
        read_position(tmp_path / "search")["change_seq"] == position
    )  # the commit landed, the position did not

    index = open_index(tmp_path / "search", writer=True)
    try:
        assert index.num_docs == 20  # committed already
        assert Feeder(env.store, index).catch_up() == 10  # re-applied …
        assert index.num_docs == 20  # … without doubles
        assert len(every_page(index, SearchQuery(q="stone", limit=3))) == 10
    finally:
        index.close()


def test_a_restarted_feeder_resumes_from_its_position(env: Env, tmp_path: Path) -> None:
    env.put(*(asset(f"river {i}") for i in range(12)))
    env.index.close()
    insert_assets(env.engine, [asset(f"stone {i}") for i in range(5)])
    index = open_index(tmp_path / "search", writer=True)
    try:
        assert Feeder(env.store, index, batch_size=2).catch_up() == 5
        assert Feeder(env.store, index).catch_up() == 0
        assert index.position == max(r.change_seq for r in all_rows(env.store))
        assert index.num_docs == 17
    finally:
        index.close()


def test_reindex_equals_the_incrementally_fed_index(env: Env, tmp_path: Path) -> None:
    random_history(env, random.Random(2))
    rebuilt_dir = tmp_path / "rebuilt"
    assert reindex(env.store, rebuilt_dir, progress=False) == env.index.num_docs
    rebuilt = open_index(rebuilt_dir, writer=False)
    assert rebuilt.position == env.index.position
    assert dump(rebuilt) == dump(env.index)
    assert probe(rebuilt) == probe(env.index)


def test_reindex_writes_one_segment(env: Env, tmp_path: Path) -> None:
    for i in range(3):
        env.put(*(asset(f"river {i} {j}") for j in range(50)))  # three commits: three segments
    env.index.close()
    assert reindex(env.store, tmp_path / "search", progress=False) == 150
    reader = open_index(tmp_path / "search", writer=False)
    assert reader._index.searcher().num_segments == 1
    assert reader.search(SearchQuery(q="river")).total == 150


def test_reindex_swaps_under_a_reader_and_refuses_a_busy_directory(env: Env, tmp_path: Path) -> None:
    env.put(*(asset(f"river {i}") for i in range(3)))
    with pytest.raises(Conflict):
        reindex(env.store, tmp_path / "search", progress=False)  # the feeder holds the writer lock
    env.index.close()
    reader = open_index(tmp_path / "search", writer=False)
    assert reader.search(SearchQuery(q="river")).total == 3
    insert_assets(env.engine, [asset("river delta")])
    assert reindex(env.store, tmp_path / "search", progress=False) == 4
    assert not (tmp_path / "search.new").exists() and not (tmp_path / "search.old").exists()
    reader.refresh(force=True)
    assert reader.search(SearchQuery(q="river")).total == 4


def test_a_reader_in_another_process_role_sees_commits_after_refresh(env: Env, tmp_path: Path) -> None:
    reader = open_index(tmp_path / "search", writer=False)
    env.put(asset("river one"))
    reader.refresh(force=True)
    assert [i["title"] for i in reader.search(SearchQuery(q="river")).items] == ["river one"]
    assert reader.position == env.index.position


def test_the_feeder_commits_at_once_when_idle_and_paces_commits_under_load() -> None:
    assert pause_before_commit(now=100.0, last_commit=None, min_interval=0.025) == 0.0  # first ever
    assert pause_before_commit(now=100.0, last_commit=99.0, min_interval=0.025) == 0.0  # idle
    assert pause_before_commit(now=100.0, last_commit=99.99, min_interval=0.025) == pytest.approx(0.015)
    assert pause_before_commit(now=100.0, last_commit=100.0, min_interval=0.025) == pytest.approx(0.025)
    assert (
        pause_before_commit(now=100.0, last_commit=150.0, min_interval=0.025) == 0.025
    )  # clock oddity: bounded


def test_catch_up_records_its_commits(env: Env) -> None:
    assert env.feeder.last_commit is None
    env.put(asset("river"))
    first = env.feeder.last_commit
    assert first is not None
    assert env.feeder.catch_up() == 0 and env.feeder.last_commit == first  # nothing new: no commit
    env.put(asset("river two"))
    assert env.feeder.last_commit is not None and env.feeder.last_commit >= first


def test_the_feeder_rebuilds_an_index_of_another_schema_version(env: Env, tmp_path: Path) -> None:
    env.put(*(asset(f"river {i}") for i in range(3)))
    env.index.close()
    position_file = tmp_path / "search" / search_index.POSITION_FILE
    body = json.loads(position_file.read_text())
    position_file.write_text(json.dumps(body | {"version": 1}))
    with pytest.raises(SearchUnavailable, match="schema version 1"):
        open_index(tmp_path / "search", writer=False)  # what the API says until it is rebuilt
    index = open_for_feeding(env.store, tmp_path / "search")
    try:
        assert read_position(tmp_path / "search")["version"] == search_index.SCHEMA_VERSION
        assert index.search(SearchQuery(q="river")).total == 3
    finally:
        index.close()


class _CountingIndex:
    """A tantivy.Index that counts its reader's reloads."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.reloads = inner, 0

    def reload(self) -> None:
        self.reloads += 1
        self.inner.reload()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_reader_sees_each_commit_at_its_next_search_and_reloads_only_then(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = open_index(tmp_path / "search", writer=False)
    counting = _CountingIndex(reader._index)
    reader._index = counting  # type: ignore[assignment]
    frozen = time.monotonic()
    monkeypatch.setattr(search_index.time, "monotonic", lambda: frozen)  # however soon after the last look
    for i in range(1, 4):
        env.put(asset(f"tide {i}"))
        assert reader.search(SearchQuery(q="tide")).total == i
        assert reader.position == env.index.position
    reloads = counting.reloads
    for _ in range(5):
        assert reader.search(SearchQuery(q="tide")).total == 3
    assert counting.reloads == reloads  # nothing changed: no reload


def _eventually(check: Callable[[], bool], *, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


@pytest.fixture
def running(env: Env) -> Iterator[threading.Event]:
    stop = threading.Event()
    env.feeder.poll_interval = 60.0  # only NOTIFY can wake it within the test
    thread = threading.Thread(target=env.feeder.run, args=(stop,), daemon=True)
    thread.start()
    yield stop
    stop.set()
    with env.engine.begin() as conn:  # wake it so it sees the stop flag
        conn.execute(text("SELECT pg_notify(:c, '0')"), {"c": ASSETS_CHANNEL})
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_run_wakes_on_notify(env: Env, running: threading.Event) -> None:
    time.sleep(0.3)  # let it park in LISTEN (if it has not, the 60 s poll is what the check below would need)
    row = asset("river at night")
    with env.engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": INGEST_LOCK})
        conn.execute(insert(Asset), [row])
        conn.execute(text("SELECT pg_notify(:c, currval('asset_change_seq')::text)"), {"c": ASSETS_CHANNEL})
    _eventually(lambda: env.index.search(SearchQuery(q="river")).total == 1)


def test_run_survives_database_errors(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    insert_assets(env.engine, [asset("river bend")])
    real, failures = env.store.changes.changes_after, [2]

    def flaky(*args: Any, **kw: Any) -> Any:
        if failures[0]:
            failures[0] -= 1
            raise DatabaseError("database unavailable: connection refused")
        return real(*args, **kw)

    monkeypatch.setattr(env.store.changes, "changes_after", flaky)
    monkeypatch.setattr(feeder_module, "MAX_BACKOFF", 0.05)
    stop = threading.Event()
    env.feeder.poll_interval = 0.05
    thread = threading.Thread(target=env.feeder.run, args=(stop,), daemon=True)
    thread.start()
    try:
        _eventually(lambda: env.index.search(SearchQuery(q="river")).total == 1)
        assert failures[0] == 0
    finally:
        stop.set()
        thread.join(timeout=30)


def test_published_entries_reach_search_through_the_ingest_path(
    store: Store, env: Env, new_log: Callable[..., LogBuilder], put_body: Callable[..., dict[str, Any]]
) -> None:
    log = new_log()
    log.next(key="first", body=put_body("Café Society", tags=["jazz"]))
    log.next(key="second", body=put_body("Night Drive"))
    store.ingest(log.entries)
    env.feeder.catch_up()
    hit = env.index.search(SearchQuery(q="cafe", tags=["jazz"])).items
    assert [i["uri"] for i in hit] == [f"empressa://{log.signer.public.did}/first"]
    assert hit[0]["price"] == "12.5" and hit[0]["license"] == "commercial" and hit[0]["media_type"] == "audio"
    store.ingest([log.next(kind="asset.delete", key="first")])
    env.feeder.catch_up()
    assert env.index.search(SearchQuery(q="cafe")).items == []
    assert [i["title"] for i in env.index.search(SearchQuery()).items] == ["Night Drive"]
