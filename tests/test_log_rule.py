"""One log rule, three executions: the node's SQLite store, the indexer's PostgreSQL store, ``protocol.fold``.

The same sequences (the shared vectors, and hypothesis logs with edits, deletes,
forks, gaps, duplicates and out-of-order delivery in random batches) go through
both stores, and at the end the two agree with each other and with
:func:`protocol.fold` on heads, held entries, forks and fork marks, entries
waiting past a gap, and the current state of every asset.

The node's store does not keep entries past a gap (its daemon pulls the missing
range and the entries come again); :class:`NodeDriver` plays that part by
offering them again with every later batch, as ``node.archive`` does on import.
"""

from __future__ import annotations

import copy
import itertools
import random
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from indexer.store import Store as IndexerStore
from node.store import Store as NodeStore
from protocol import AuthorKey, Entry, EntryHash, IngestReport, Signer, fold, parse_and_verify, sign_entry
from tests.node.conftest import _BASE_PUT, LogBuilder
from tests.vectors import valid_vectors

TOP = 2**63 - 1


def put_body(title: str) -> dict[str, Any]:
    body = copy.deepcopy(_BASE_PUT)
    body["title"] = title
    return body


def new_log() -> LogBuilder:
    """A log of a fresh author (every hypothesis example gets its own, sharing one database)."""
    return LogBuilder(Signer(secrets.token_bytes(32)), put_body)


class NodeDriver:
    """The node's store with the caller's part: entries past a gap are offered again later."""

    def __init__(self, store: NodeStore) -> None:
        self.store = store
        self.waiting: dict[bytes, Entry] = {}

    def deliver(self, batch: list[Entry]) -> IngestReport:
        offered = [*batch, *sorted(self.waiting.values(), key=lambda e: (e.author.raw, e.seq, e.hash.raw))]
        report = self.store.ingest(offered)
        for e in offered:
            if report.status.get(e.hash.raw) == "gap":
                self.waiting[e.hash.raw] = e
            else:
                self.waiting.pop(e.hash.raw, None)
        return report


def rows(store: IndexerStore, sql: str, **params: Any) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def node_state(node: NodeDriver, authors: set[bytes]) -> dict[str, Any]:
    s = node.store
    marks = {r.author.raw: r.forked_seq for r in s.authors() if r.author.raw in authors}
    assets = {
        r.uri.text: (
            r.deleted,
            r.versions,
            r.last_hash.raw,
            r.put.hash.raw if r.put else None,
            r.created_ts,
            r.updated_ts,
        )
        for r in s.assets(local_only=False, include_deleted=True)
        if r.uri.author.raw in authors
    }
    return {
        "heads": {a: _head(s.head(AuthorKey(a))) for a in authors},
        "logs": {a: s.range_raw(a, 1, TOP) for a in authors},
        "forks": {(k.raw, seq, h.raw) for k, seq, h in s.forks() if k.raw in authors},
        "marks": {a: m for a, m in marks.items() if m is not None},
        "waiting": set(node.waiting),
        "assets": assets,
    }


def indexer_state(store: IndexerStore, authors: set[bytes]) -> dict[str, Any]:
    wanted = list(authors)
    marks = {
        bytes(a): m
        for a, m in rows(store, "SELECT author, forked_seq FROM authors WHERE author = ANY(:a)", a=wanted)
        if m is not None
    }
    # Entries parked at or past a fork mark stay in ``pending`` (refused each time they rejoin):
    # only the ones still waiting for a gap compare with the node's.
    pending = {
        bytes(h)
        for h, a, seq in rows(store, "SELECT hash, author, seq FROM pending WHERE author = ANY(:a)", a=wanted)
        if bytes(a) not in marks or seq < marks[bytes(a)]
    }
    assets = {
        r.uri: (
            r.deleted,
            r.versions,
            bytes(r.entry_hash),
            bytes(r.put_hash) if r.put_hash is not None else None,
            r.created_ts,
            r.updated_ts,
        )
        for r in rows(
            store,
            "SELECT uri, deleted, versions, entry_hash, put_hash, created_ts, updated_ts FROM assets "
            "WHERE author = ANY(:a)",
            a=wanted,
        )
    }
    forks = rows(store, "SELECT author, seq, hash FROM forks WHERE author = ANY(:a)", a=wanted)
    return {
        "heads": {a: _head(store.head(AuthorKey(a))) for a in authors},
        "logs": {a: store.range_raw(a, 1, TOP) for a in authors},
        "forks": {(bytes(a), seq, bytes(h)) for a, seq, h in forks},
        "marks": marks,
        "waiting": pending,
        "assets": assets,
    }


def folded_state(held: list[Entry]) -> dict[str, Any]:
    return {
        uri.text: (
            s.deleted,
            s.versions,
            s.last.hash.raw,
            s.put.hash.raw if s.put else None,
            s.created_ts,
            s.updated_ts,
        )
        for uri, s in fold(held).items()
    }


def _head(h: Any) -> tuple[int, bytes] | None:
    return None if h is None else (h.seq, h.hash.raw)


def run_both(node: NodeDriver, indexer: IndexerStore, batches: list[list[Entry]]) -> dict[str, Any]:
    """Deliver ``batches`` to both stores; assert they agree with each other and with fold."""
    authors = {e.author.raw for b in batches for e in b}
    for batch in batches:
        n, i = node.deliver(batch), indexer.ingest(batch, source="test")
        assert {e.hash for e in n.appended} == {e.hash for e in i.appended}
        assert {e.hash for e in n.forks} == {e.hash for e in i.forks}
        for author, (lo, _hi) in i.gaps.items():
            assert n.gaps[author][0] == lo  # the same first missing seq
    ns, ps = node_state(node, authors), indexer_state(indexer, authors)
    assert ns == ps
    held = [parse_and_verify(raw, now_ms=None) for a in sorted(authors) for raw in ns["logs"][a]]
    for a in authors:
        log = [e for e in held if e.author.raw == a]
        assert [e.seq for e in log] == list(range(1, len(log) + 1))  # contiguous …
        assert all(later.prev == earlier.hash for earlier, later in itertools.pairwise(log))  # … and chained
        assert ns["heads"][a] == ((log[-1].seq, log[-1].hash.raw) if log else None)
    assert ns["assets"] == folded_state(held)
    return ns


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeDriver]:
    s = NodeStore.open(tmp_path / "node.db")
    yield NodeDriver(s)
    s.close()


@pytest.fixture
def indexer(db_url: str) -> Iterator[IndexerStore]:
    s = IndexerStore.connect(db_url, pool_size=1)
    yield s
    s.close()


def test_the_shared_vectors_agree(node: NodeDriver, indexer: IndexerStore) -> None:
    entries = [parse_and_verify(v.raw, now_ms=None) for v in valid_vectors()]
    rng = random.Random(8)
    stream = entries[::-1] + rng.sample(entries, k=4)
    batches = [stream[i : i + 3] for i in range(0, len(stream), 3)]
    state = run_both(node, indexer, batches)
    # The edge author's seq 2^63-1 waits past a gap in both; every other log is complete.
    edge = {e.hash.raw for e in entries if e.seq == TOP}
    assert state["waiting"] == edge and not state["forks"]
    assert folded_state([e for e in entries if e.seq != TOP]) == state["assets"]


def _rival(log: LogBuilder, seq: int, *, wrong_prev: bool) -> Entry:
    """A second valid entry at ``seq``: chained to the right predecessor with another body, or
    chained to an earlier one (the author must have signed another entry in between)."""
    entries = log.entries
    if wrong_prev and seq >= 3:
        prev: EntryHash | None = entries[seq - 3].hash
    else:
        prev = entries[seq - 2].hash if seq >= 2 else None
    return sign_entry(
        log.signer,
        seq=seq,
        prev=prev,
        ts=entries[0].ts,
        kind="asset.put",
        key="rival",
        body=put_body("rival"),
    )


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_sequence_agrees(node: NodeDriver, indexer: IndexerStore, data: st.DataObject) -> None:
    """Random logs of 1-3 fresh authors (one database for every example), forks in some,
    shuffled, resent in part and split into random batches."""
    rng = random.Random(data.draw(st.integers(0, 2**32), label="seed"))
    genuine: list[Entry] = []
    rivals: list[Entry] = []
    for _ in range(data.draw(st.integers(1, 3), label="authors")):
        log = new_log()
        for seq in range(1, data.draw(st.integers(1, 7), label="length") + 1):
            kind = "asset.delete" if rng.random() < 0.25 else "asset.put"
            log.next(kind=kind, key=rng.choice(["a", "b", "c"]), ts=1_700_000_000_000 + seq)
        genuine += log.entries
        for _ in range(data.draw(st.integers(0, 2), label="rivals")):
            seq = rng.randint(1, len(log.entries))
            rivals.append(_rival(log, seq, wrong_prev=rng.random() < 0.5))
    stream = genuine + rivals + rng.sample(genuine, k=len(genuine) // 3)
    rng.shuffle(stream)
    batches: list[list[Entry]] = []
    while stream:
        n = rng.randint(1, 5)
        batches.append(stream[:n])
        stream = stream[n:]

    state = run_both(node, indexer, batches)

    if not rivals:  # without forks everything lands, whatever the order: the logs as written
        assert not state["forks"] and not state["marks"] and not state["waiting"]
        assert folded_state(genuine) == state["assets"]
