"""GET endpoints of the indexer API against a real PostgreSQL: assets, history, creators, activity, entries."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from indexer.store import Store
from protocol import parse_and_verify
from tests.indexer.apiclient import assert_problem, cid, counts
from tests.node.conftest import LogBuilder


async def test_asset_history_creator_and_raw(
    client: httpx.AsyncClient, store: Store, new_log: Callable[..., LogBuilder]
) -> None:
    log = new_log()
    log.next(key="a")
    log.next(key="b")
    log.next(key="a")
    log.next(kind="asset.delete", key="b")
    store.ingest(log.entries, source="test")
    did = log.signer.public.did

    r = await client.get(f"/v1/assets/{did}/a")
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["uri"] == f"empressa://{did}/a" and not a["deleted"] and a["versions"] == 2
    assert a["entry_hash"] == cid(log.entries[2]) and a["raw_url"] == f"/v1/entries/{cid(log.entries[2])}"
    assert a["onchain"] == {} and a["verification"] == {}
    assert r.headers["x-request-id"]

    r = await client.get(f"/v1/assets/{did}/b")
    assert r.json()["deleted"] is True

    r = await client.get(f"/v1/assets/{did}/a/history")
    versions = r.json()["versions"]
    assert [v["seq"] for v in versions] == [1, 3]
    assert versions[0]["body"] == log.entries[0].body

    r = await client.get(f"/v1/assets/{did}/b/history")
    assert [v["kind"] for v in r.json()["versions"]] == ["asset.put", "asset.delete"]

    r = await client.get(f"/v1/creators/{did}")
    c = r.json()
    assert c["head"] == {"seq": 4, "hash": cid(log.entries[3])}
    assert c["sync"]["status"] == "synced" and c["counts"] == {"assets": 1, "deleted": 1}

    r = await client.get(f"/v1/entries/{cid(log.entries[1])}")
    assert r.status_code == 200 and r.content == log.entries[1].raw
    assert r.headers["content-type"] == "application/cbor"
    assert r.headers["etag"] == f'"{cid(log.entries[1])}"' and "immutable" in r.headers["cache-control"]
    assert parse_and_verify(r.content, now_ms=None).hash == log.entries[1].hash
    r = await client.get(f"/v1/entries/{log.entries[1].hash.raw.hex()}")
    assert r.content == log.entries[1].raw


async def test_bad_identifiers(client: httpx.AsyncClient, store: Store) -> None:
    before = counts(store)
    assert_problem(await client.get("/v1/assets/did:key:nope/a"), 400, "bad-request")
    assert_problem(await client.get("/v1/creators/not-a-did"), 400)
    assert_problem(await client.get("/v1/entries/zzzz"), 400)
    assert counts(store) == before
