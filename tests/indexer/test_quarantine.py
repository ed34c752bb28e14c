"""The quarantine holds bounded bytes: no raw input past 16 KiB, bounds per source and in total, aging out."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cbor2
import httpx
import pytest

from indexer.api import create_app
from indexer.store import QuarantineLimits, Rejected, Store
from protocol import MAX_ENTRY_BYTES
from tests.indexer.apiclient import assert_problem, cbor_seq, client_for, q, settings_for
from tests.node.conftest import LogBuilder

CBOR = {"content-type": "application/cbor"}


def stored_raw_bytes(store: Store) -> int:
    return int(q(store, "SELECT coalesce(sum(octet_length(raw)), 0) FROM quarantine")[0][0])


def usage(store: Store) -> dict[str, tuple[int, int]]:
    """quarantine_usage as {source: (bytes, rows)}, checked against the rows it sums."""
    have = {
        s: (int(b), int(n))
        for s, b, n in q(store, "SELECT source, stored_bytes, row_count FROM quarantine_usage")
    }
    cost = "coalesce(octet_length(raw), 0) + octet_length(reason) + octet_length(source) + 128"
    real = {
        s: (int(b), int(n))
        for s, b, n in q(store, f"SELECT source, sum({cost}), count(*) FROM quarantine GROUP BY source")
    }
    total = q(store, f"SELECT coalesce(sum({cost}), 0), count(*) FROM quarantine")[0]
    real["*"] = (int(total[0]), int(total[1]))
    assert {s: v for s, v in have.items() if v != (0, 0) or s == "*"} == real
    return have


def junk(i: int, size: int = 1000) -> bytes:
    """A distinct CBOR item that is not an entry."""
    return cbor2.dumps(i.to_bytes(8, "big") + bytes(size))


@pytest.fixture
def bounded(db_url: str) -> Iterator[Callable[..., Store]]:
    made: list[Store] = []

    def make(**limits: Any) -> Store:
        s = Store.connect(db_url, quarantine_limits=QuarantineLimits(**limits))
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


async def test_the_disk_fill_attack_stores_bounded_bytes(client: httpx.AsyncClient, store: Store) -> None:
    """Issue 7 (1), scaled down: anonymous bodies of 4 x 100 kB random CBOR byte strings."""
    sent = 0
    for _ in range(8):
        body = b"".join(cbor2.dumps(os.urandom(100_000)) for _ in range(4))
        sent += len(body)
        r = await client.post("/v1/entries", content=body, headers=CBOR)
        p = assert_problem(r, 400, "bad-request")
        assert f"at most {MAX_ENTRY_BYTES} bytes" in p["detail"], p
    assert sent > 3_000_000
    assert stored_raw_bytes(store) == 0


async def test_a_body_past_the_largest_legal_batch_is_413(make_app: Callable[..., Any], store: Store) -> None:
    app = make_app(max_entries_per_request=2)
    assert app.state.ctx.settings.max_body_bytes == 2 * MAX_ENTRY_BYTES
    async with client_for(app) as c:
        r = await c.post("/v1/entries", content=b"\x40" * (2 * MAX_ENTRY_BYTES + 1), headers=CBOR)
        assert_problem(r, 413, "payload-too-large")
    with pytest.raises(ValueError, match="largest legal batch"):
        settings_for(Path("/nonexistent"), max_entries_per_request=2, max_body_bytes=2 * MAX_ENTRY_BYTES + 1)


def test_an_input_over_16_kib_keeps_its_digest_and_size_not_its_bytes(store: Store) -> None:
    """The bridge's path (RejectQueue → Store.quarantine) and ingest_raw keep no raw bytes past the limit."""
    big = os.urandom(1_000_000)
    at_limit = os.urandom(MAX_ENTRY_BYTES)
    store.quarantine([Rejected(big, "decode", "not an entry", "gossip:peer-a")])
    store.ingest_raw([cbor2.dumps(os.urandom(200_000))], source="http:127.0.0.1")
    store.quarantine([Rejected(at_limit, "decode", "not an entry", "gossip:peer-a")])
    rows = {
        int(size): (raw, bytes(digest))
        for size, raw, digest in q(store, "SELECT size, raw, digest FROM quarantine")
    }
    assert rows[1_000_000] == (None, hashlib.sha256(big).digest())
    assert rows[200_005][0] is None
    assert bytes(rows[MAX_ENTRY_BYTES][0]) == at_limit
    assert stored_raw_bytes(store) == MAX_ENTRY_BYTES
    usage(store)


async def test_the_admin_listing_says_whether_raw_is_kept(client: httpx.AsyncClient, store: Store) -> None:
    _, admin = store.admin.create_api_key(name="root", scopes=["admin"])
    store.quarantine([Rejected(b"\x01" * (MAX_ENTRY_BYTES + 1), "decode", "too big", "gossip:p")])
    store.quarantine([Rejected(b"\xa1\x61a\x01", "schema", "not an entry", "gossip:p")])
    r = await client.get("/v1/admin/quarantine", headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200, r.text
    small, big = r.json()["items"]
    assert big["raw_kept"] is False and big["raw_base64"] is None and big["size"] == MAX_ENTRY_BYTES + 1
    assert big["digest"] == hashlib.sha256(b"\x01" * (MAX_ENTRY_BYTES + 1)).hexdigest()
    assert small["raw_kept"] is True and base64.b64decode(small["raw_base64"]) == b"\xa1\x61a\x01"
    assert small["size"] == 4


def test_bounds_per_source_and_in_total(bounded: Callable[..., Store]) -> None:
    store = bounded(max_source_bytes=20_000, max_total_bytes=50_000)
    dropped = store.quarantine([Rejected(junk(i), "decode", "x", "src-a") for i in range(100)])
    u = usage(store)
    assert u["src-a"][0] <= 20_000 and dropped == 100 - u["src-a"][1] > 0
    assert u["src-a"][0] + 1200 > 20_000  # filled up to the bound, not stopped short
    # Another source still has room; the total stops it.
    for src in ("src-b", "src-c", "src-d"):
        store.quarantine([Rejected(junk(1000 + i), "decode", "x", src) for i in range(30)])
    u = usage(store)
    assert u["*"][0] <= 50_000 and all(u[s][0] <= 20_000 for s in u if s != "*")
    assert u["*"][0] + 1200 > 50_000
    held = u["*"][1]
    # Past the bounds a repeat is still counted on its row; new inputs are dropped.
    assert store.quarantine([Rejected(junk(0), "decode", "x", "src-a")]) == 0
    assert q(
        store, "SELECT times_seen FROM quarantine WHERE digest = :d", d=hashlib.sha256(junk(0)).digest()
    ) == [(2,)]
    assert store.quarantine([Rejected(junk(5000), "decode", "x", "src-e")]) == 1
    assert usage(store)["*"][1] == held


async def test_http_rejects_past_the_bound_are_answered_and_counted(
    bounded: Callable[..., Store], tmp_path: Path
) -> None:
    store = bounded(max_source_bytes=10_000, max_total_bytes=10**9)
    app = create_app(settings_for(tmp_path), store=store)
    async with client_for(app) as c:
        body = cbor_seq(junk(i) for i in range(50))
        p = assert_problem(await c.post("/v1/entries", content=body, headers=CBOR), 422, "invalid-entries")
        assert p["counts"]["invalid"] == 50
        metrics = (await c.get("/metrics")).text
    held = usage(store)["http:127.0.0.1"]
    assert held[0] <= 10_000 and 0 < held[1] < 50
    assert f"empressa_quarantine_dropped_total {float(50 - held[1])}" in metrics


def test_rows_age_out_as_new_ones_come(
    bounded: Callable[..., Store], new_log: Callable[..., LogBuilder]
) -> None:
    store = bounded(max_source_bytes=10**9, max_total_bytes=10**9)
    store.quarantine([Rejected(junk(i), "decode", "x", "old") for i in range(10)])
    with store.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("UPDATE quarantine SET last_seen = now() - interval '8 days' WHERE source = 'old'"))
    store.quarantine([Rejected(junk(100), "decode", "x", "new")])
    assert [r[0] for r in q(store, "SELECT source FROM quarantine")] == ["new"]
    u = usage(store)
    assert u["*"][1] == 1 and "old" not in u
    # Forks written inside an ingest transaction go through the same rules.
    log = new_log()
    e1 = log.next(key="a")
    store.ingest([e1, log.next(key="b")])
    store.ingest([log.next(seq=2, prev=e1.hash, key="forked")], source="sync:peer")
    assert q(store, "SELECT code, source FROM quarantine WHERE code = 'fork'") == [("fork", "sync:peer")]
    usage(store)
