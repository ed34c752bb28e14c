"""POST /v1/entries and GET /v1/entries/{hash}: the HTTP door to the one ingest path."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from indexer.store import Store
from indexer.store import admin as admin_store
from protocol import MAX_ENTRY_BYTES, ProtocolError, split_sequence
from tests.indexer.apiclient import assert_problem, cbor_seq, cid, client_for, counts, q
from tests.node.conftest import LogBuilder
from tests.vectors import invalid_vectors, valid_vectors

CBOR = {"content-type": "application/cbor"}
DATA_TABLES = ("entries", "assets", "authors", "activity", "pending", "forks")


def data(c: dict[str, int]) -> dict[str, int]:
    return {t: c[t] for t in DATA_TABLES}


def one_item(raw: bytes) -> bool:
    try:
        return list(split_sequence(raw)) == [raw]
    except ProtocolError:
        return False


def not_cbor(raw: bytes) -> bool:
    try:
        list(split_sequence(raw))
    except ProtocolError:
        return True
    return False


def accepted_item(raw: bytes) -> bool:
    """One whole CBOR item no larger than an entry can be (a larger one makes the request a 400)."""
    return one_item(raw) and len(raw) <= MAX_ENTRY_BYTES


def forged(*, whole: bool = True) -> list[Any]:
    """Invalid vectors (not the clock-dependent ones); ``whole``: only those that are one whole CBOR item
    of at most 16 KiB."""
    return [
        v
        for v in invalid_vectors()
        if v.error in ("DecodeError", "SchemaError", "SignatureError") and (accepted_item(v.raw) or not whole)
    ]


async def test_submit_then_resubmit(client: httpx.AsyncClient, store: Store) -> None:
    vectors = [v for v in valid_vectors() if v.ts < 2**50]  # not the edge case dated far in the future
    body = cbor_seq(v.raw for v in vectors)
    r = await client.post("/v1/entries", content=body, headers={"content-type": "application/cbor-seq"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert [x["hash"] for x in out["results"]] == [v.hash_cid for v in vectors]
    assert out["counts"]["invalid"] == 0 and out["counts"]["appended"] == len(vectors)
    after = counts(store)
    assert after["entries"] == out["counts"]["appended"]

    r = await client.post("/v1/entries", content=body, headers=CBOR)
    assert r.status_code == 200
    assert {x["status"] for x in r.json()["results"]} <= {"duplicate", "held"}
    assert data(counts(store)) == data(after)

    # one entry alone is a sequence of one; the raw bytes come back exactly
    r = await client.get(f"/v1/entries/{vectors[0].hash_cid}")
    assert r.content == vectors[0].raw


async def test_invalid_entries_give_422_and_valid_ones_still_apply(
    client: httpx.AsyncClient, store: Store, new_log: Callable[..., LogBuilder]
) -> None:
    log = new_log()
    good = log.next(key="kept")
    bad = forged()
    assert bad
    r = await client.post("/v1/entries", content=cbor_seq([good.raw, *(v.raw for v in bad)]), headers=CBOR)
    p = assert_problem(r, 422, "invalid-entries")
    assert p["results"][0] == {
        "index": 0,
        "hash": cid(good),
        "status": "appended",
        "code": None,
        "reason": None,
    }
    assert all(x["status"] == "invalid" and x["code"] and x["reason"] for x in p["results"][1:])
    assert p["counts"]["invalid"] == len(bad) and p["counts"]["appended"] == 1
    c = counts(store)
    assert c["entries"] == 1 and c["quarantine"] == len({v.raw for v in bad})
    # each forged vector alone: 422 (or 400 when it is not even one CBOR item of at most 16 KiB),
    # nothing applied
    for v in forged(whole=False):
        if not one_item(v.raw) and not_cbor(v.raw) is False:
            continue  # e.g. "trailing bytes": in a CBOR sequence that is a valid entry and then a second item
        before = data(counts(store))
        r = await client.post("/v1/entries", content=v.raw, headers=CBOR)
        if accepted_item(v.raw):
            body = assert_problem(r, 422, "invalid-entries")
            assert body["results"][0]["status"] == "invalid", v.name
        else:
            assert_problem(r, 400, "bad-request")
        assert data(counts(store)) == before


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"\xff\xfe junk", CBOR, 400, "bad-request"),
        (b"", CBOR, 400, "bad-request"),
        (b"\xa1", CBOR, 400, "bad-request"),  # truncated map
        (b"{}", {"content-type": "application/json"}, 415, "unsupported-media-type"),
        (b"\x01", {}, 415, "unsupported-media-type"),
        (b"\x01" * 5000, CBOR, 413, "payload-too-large"),
    ],
)
async def test_bad_bodies_change_nothing(
    make_app: Callable[..., Any], store: Store, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    before = counts(store)
    async with client_for(make_app(max_body_bytes=4096)) as c:
        assert_problem(await c.post("/v1/entries", content=body, headers=headers), status, code)
    assert counts(store) == before


async def test_too_many_entries(
    make_app: Callable[..., Any], store: Store, new_log: Callable[..., LogBuilder]
) -> None:
    log = new_log()
    log.extend(3)
    before = counts(store)
    async with client_for(make_app(max_entries_per_request=2)) as c:
        p = assert_problem(await c.post("/v1/entries", content=cbor_seq(log.entries), headers=CBOR), 400)
    assert "at most 2" in p["detail"]
    assert counts(store) == before


async def test_idempotency_key(
    client: httpx.AsyncClient, store: Store, new_log: Callable[..., LogBuilder]
) -> None:
    log = new_log()
    log.extend(2)
    headers = {**CBOR, "Idempotency-Key": "retry-1"}
    r1 = await client.post("/v1/entries", content=cbor_seq(log.entries), headers=headers)
    assert r1.status_code == 200 and "idempotent-replayed" not in r1.headers
    after = counts(store)
    r2 = await client.post("/v1/entries", content=cbor_seq(log.entries), headers=headers)
    assert r2.status_code == 200 and r2.headers["idempotent-replayed"] == "true"
    assert r2.json() == r1.json()  # the stored response, not a fresh "duplicate" one
    assert counts(store) == after
    other = log.next(key="other")
    r3 = await client.post("/v1/entries", content=other.raw, headers=headers)
    assert_problem(r3, 409, "conflict")
    assert counts(store) == after
    assert_problem(
        await client.post("/v1/entries", content=other.raw, headers={**CBOR, "Idempotency-Key": "a b"}), 400
    )
    # a 422 is stored and replayed too
    bad = forged()[0].raw
    h = {**CBOR, "Idempotency-Key": "retry-2"}
    p1 = assert_problem(await client.post("/v1/entries", content=bad, headers=h), 422)
    r = await client.post("/v1/entries", content=bad, headers=h)
    p2 = assert_problem(r, 422)
    assert r.headers["idempotent-replayed"] == "true"
    assert p2["results"] == p1["results"] and p2["request_id"] != p1["request_id"]


async def test_idempotency_keys_are_per_caller_and_expire(
    client: httpx.AsyncClient, store: Store, new_log: Callable[..., LogBuilder]
) -> None:
    log = new_log()
    first, second = log.extend(2)
    alice_id, alice = store.admin.create_api_key(name="alice", scopes=["ingest"])
    _, bob = store.admin.create_api_key(name="bob", scopes=["ingest"])

    def as_(secret: str) -> dict[str, str]:
        return {**CBOR, "Idempotency-Key": "same", "Authorization": f"Bearer {secret}"}

    r = await client.post("/v1/entries", content=first.raw, headers=as_(alice))
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers
    # Bob's "same" is not Alice's: his request is processed, not answered with hers (or a 409).
    r = await client.post("/v1/entries", content=second.raw, headers=as_(bob))
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers
    assert r.json()["results"][0]["hash"] == cid(second)
    assert_problem(await client.post("/v1/entries", content=second.raw, headers=as_(alice)), 409, "conflict")
    # A day later the key is free again: a different request under it is processed and stored.
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"))
    r = await client.post("/v1/entries", content=second.raw, headers=as_(alice))
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers
    r = await client.post("/v1/entries", content=second.raw, headers=as_(alice))
    assert r.headers["idempotent-replayed"] == "true"
    # Expired keys are cleared as new ones are stored: only Alice's fresh one is left.
    assert q(store, "SELECT key FROM idempotency_keys") == [(f"entries:key:{alice_id}:same",)]


async def test_api_keys_on_submit(
    client: httpx.AsyncClient, store: Store, new_log: Callable[..., LogBuilder]
) -> None:
    log = new_log()
    e = log.next()
    _, secret = store.admin.create_api_key(name="bridge-2", scopes=["ingest"])
    before = counts(store)
    for auth in ("Bearer nope", f"Bearer {secret[:-2]}xx", "Bearer ek_0123456789abcdef_" + "a" * 43):
        assert_problem(
            await client.post("/v1/entries", content=e.raw, headers={**CBOR, "Authorization": auth}), 401
        )
    assert counts(store) == before
    r = await client.post("/v1/entries", content=e.raw, headers={**CBOR, "Authorization": f"Bearer {secret}"})
    assert r.status_code == 200 and r.json()["results"][0]["status"] == "appended"


async def test_raw_entry_not_found_and_conditional(
    client: httpx.AsyncClient, store: Store, new_log: Callable[..., LogBuilder]
) -> None:
    log = new_log()
    e = log.next()
    assert_problem(await client.get(f"/v1/entries/{cid(e)}"), 404, "not-found")
    store.ingest([e])
    r = await client.get(f"/v1/entries/{cid(e)}", headers={"If-None-Match": f'"{cid(e)}"'})
    assert r.status_code == 304 and r.headers["etag"] == f'"{cid(e)}"'


async def test_concurrent_requests_with_one_idempotency_key_apply_one_body(
    client: httpx.AsyncClient, store: Store, new_log: Callable[..., LogBuilder]
) -> None:
    """Issue 7 (4): two requests at once, same new key, different bodies. One is processed; the
    other is a 409 and nothing of its body is stored (before the fix both bodies were ingested)."""
    import trio

    for trial in range(8):
        bodies = []
        for _ in range(2):
            log = new_log()
            log.extend(3)
            bodies.append(log.entries)
        headers = {**CBOR, "Idempotency-Key": f"race-{trial}"}
        responses: list[httpx.Response | None] = [None, None]

        async def send(
            i: int, body: bytes, headers: dict[str, str], out: list[httpx.Response | None]
        ) -> None:
            out[i] = await client.post("/v1/entries", content=body, headers=headers)

        async with trio.open_nursery() as nursery:
            for i in (0, 1):
                nursery.start_soon(send, i, cbor_seq(bodies[i]), headers, responses)
        statuses = sorted(r.status_code for r in responses if r is not None)
        assert statuses == [200, 409], (trial, [r.text for r in responses if r is not None])
        for r, entries in zip(responses, bodies, strict=True):
            assert r is not None
            stored = {
                bytes(h)
                for (h,) in q(
                    store, "SELECT hash FROM entries WHERE hash = ANY(:h)", h=[e.hash.raw for e in entries]
                )
            }
            if r.status_code == 409:
                assert stored == set(), (trial, r.text)
                assert_problem(r, 409)
            else:
                assert stored == {e.hash.raw for e in entries}


async def test_an_idempotency_key_in_progress_is_a_409_and_a_stale_claim_expires(
    client: httpx.AsyncClient, store: Store, new_log: Callable[..., LogBuilder]
) -> None:
    log = new_log()
    e = log.next()
    headers = {**CBOR, "Idempotency-Key": "slow"}
    # A request that claimed the key and has not finished (or crashed): the same body waits its turn.
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO idempotency_keys (key, request_hash, status, response) "
                "VALUES ('entries:ip:127.0.0.1:slow', :h, NULL, NULL)"
            ),
            {"h": admin_store.request_digest(b"application/cbor", e.raw)},
        )
    p = assert_problem(await client.post("/v1/entries", content=e.raw, headers=headers), 409, "in-progress")
    assert "in progress" in p["detail"] and counts(store)["entries"] == 0
    assert_problem(await client.post("/v1/entries", content=log.next().raw, headers=headers), 409, "conflict")
    # A claim older than the lease belongs to a request that died: the key is free again.
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE idempotency_keys SET created_at = now() - interval '6 minutes'"))
    r = await client.post("/v1/entries", content=e.raw, headers=headers)
    assert r.status_code == 200 and r.json()["counts"]["appended"] == 1, r.text
    r = await client.post("/v1/entries", content=e.raw, headers=headers)
    assert r.headers["idempotent-replayed"] == "true"
    # A request that fails (here: a body that is not CBOR) releases its claim.
    bad = {**CBOR, "Idempotency-Key": "fails"}
    assert_problem(await client.post("/v1/entries", content=b"\xff", headers=bad), 400)
    r = await client.post("/v1/entries", content=log.next().raw, headers=bad)
    assert r.status_code == 200, r.text


def _app_with_pool(make_app: Callable[..., Any]) -> tuple[Any, Any]:
    """An app with a pool of 2 verify workers, as the lifespan builds it (ASGITransport runs none)."""
    from indexer.api.routers.entries import VerifyPool

    app = make_app(verify_workers=2)
    pool = VerifyPool(2)
    app.state.ctx.verify_pool = pool
    return app, pool


def _gapped_body(log: LogBuilder) -> tuple[list[Any], list[bytes]]:
    """300 entries and a body of them: the last 150, a forged entry, then the first 150."""
    entries = log.extend(300)
    bad = forged()[0]
    return entries, [e.raw for e in entries[150:]] + [bad.raw] + [e.raw for e in entries[:150]]


async def test_a_body_checked_in_worker_processes_is_answered_as_if_in_one_transaction(
    make_app: Callable[..., Any], store: Store, new_log: Callable[..., LogBuilder]
) -> None:
    """With ``verify_workers``, a body's parts are checked in processes and ingested in order;
    entries an early part holds past a gap that a later part fills are ``appended``."""
    from indexer.api.routers.entries import VerifyPool

    entries, raws = _gapped_body(new_log())
    app, pool = _app_with_pool(make_app)
    try:
        async with client_for(app) as client:
            r = await client.post("/v1/entries", content=cbor_seq(raws), headers=CBOR)
    finally:
        pool.close()
    p = assert_problem(r, 422, "invalid-entries")
    assert len(raws) > 2 * 2 * VerifyPool.PART  # several parts
    assert [x["index"] for x in p["results"]] == list(range(len(raws)))
    assert p["results"][150]["status"] == "invalid" and p["results"][150]["hash"] is None
    valid = p["results"][:150] + p["results"][151:]
    assert [x["hash"] for x in valid] == [cid(e) for e in entries[150:] + entries[:150]]
    assert {x["status"] for x in valid} == {"appended"}
    assert p["counts"]["appended"] == 300 and p["counts"]["invalid"] == 1
    c = counts(store)
    assert c["entries"] == 300 and c["pending"] == 0 and c["activity"] == 300 and c["quarantine"] == 1


async def test_parts_checked_while_an_earlier_one_is_ingested_go_in_one_transaction(
    make_app: Callable[..., Any],
    store: Store,
    new_log: Callable[..., LogBuilder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A transaction per part costs PostgreSQL a commit and the API a plan each: the parts whose
    check ended while the part before them was ingested are ingested together, and answered as
    if one by one."""

    from indexer.api.routers.entries import VerifyPool

    PART = VerifyPool.PART
    entries, raws = _gapped_body(new_log())
    app, pool = _app_with_pool(make_app)
    checks: list[concurrent.futures.Future[Any]] = []
    submit = pool._pool.submit
    first_ingest = threading.Event()

    def gated(check: concurrent.futures.Future[Any]) -> concurrent.futures.Future[Any]:
        """``check``, seen done only once the first part's ingest has begun: however fast the
        workers are, the first part goes in alone."""
        seen: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def relay() -> None:
            first_ingest.wait()
            try:
                seen.set_result(check.result())
            except BaseException as e:  # relayed to the awaiting request
                seen.set_exception(e)

        threading.Thread(target=relay, daemon=True).start()
        return seen

    def submit_and_keep(*args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        f = submit(*args, **kwargs)
        checks.append(f if not checks else gated(f))
        return checks[-1]

    sizes: list[int] = []
    ingest_checked = store.ingest_checked

    def ingest_once_all_are_checked(checked: Any, *, source: str) -> Any:
        if not sizes:  # the first part is ingested until every later one has been checked
            first_ingest.set()
            concurrent.futures.wait(checks)
        sizes.append(len(checked.valid) + len(checked.invalid))
        return ingest_checked(checked, source=source)

    monkeypatch.setattr(pool._pool, "submit", submit_and_keep)
    monkeypatch.setattr(store, "ingest_checked", ingest_once_all_are_checked)
    try:
        async with client_for(app) as client:
            r = await client.post("/v1/entries", content=cbor_seq(raws), headers=CBOR)
    finally:
        pool.close()
    assert len(checks) > 2, "the body should be checked in several parts"
    # The first transaction holds the first part; the rest were checked while it was ingested.
    assert sizes == [PART, len(raws) - PART], f"the parts checked meanwhile should be one: {sizes}"
    p = assert_problem(r, 422, "invalid-entries")
    assert [x["index"] for x in p["results"]] == list(range(len(raws)))
    assert p["results"][150]["status"] == "invalid"
    valid = p["results"][:150] + p["results"][151:]
    assert [x["hash"] for x in valid] == [cid(e) for e in entries[150:] + entries[:150]]
    assert {x["status"] for x in valid} == {"appended"}
    c = counts(store)
    assert c["entries"] == 300 and c["pending"] == 0 and c["activity"] == 300 and c["quarantine"] == 1


@pytest.mark.parametrize("tail", [b"\xff\xfe junk", b"\xa1"], ids=["not cbor", "truncated"])
async def test_a_body_bad_past_its_first_parts_changes_nothing_though_they_were_sent_to_be_checked(
    make_app: Callable[..., Any],
    store: Store,
    new_log: Callable[..., LogBuilder],
    monkeypatch: pytest.MonkeyPatch,
    tail: bytes,
) -> None:
    """The verify workers start on a body's first parts while the rest is split; a body that
    proves bad after them is still a 400 that stores nothing."""
    from indexer.api.routers.entries import VerifyPool

    raws = [e.raw for e in new_log().extend(3 * VerifyPool.PART)]
    app, pool = _app_with_pool(make_app)
    submitted: list[int] = []
    submit = pool._pool.submit

    def submit_and_count(*args: Any, **kwargs: Any) -> Any:
        submitted.append(len(args[0].args[0]))  # the part's entries (a partial of check_raws)
        return submit(*args, **kwargs)

    monkeypatch.setattr(pool._pool, "submit", submit_and_count)
    before = counts(store)
    try:
        async with client_for(app) as client:
            r = await client.post("/v1/entries", content=cbor_seq(raws) + tail, headers=CBOR)
    finally:
        pool.close()
    assert_problem(r, 400, "bad-request")
    assert submitted == [VerifyPool.PART] * 3, "the parts split before the bad item should have been sent"
    assert counts(store) == before
