"""GET endpoints of the indexer API against a real PostgreSQL: assets, history, creators, activity, entries."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexer.store import Store
from protocol import parse_and_verify
from tests.indexer.apiclient import assert_problem, cid, client_for, counts
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


async def test_creator_searchable_follows_the_search_index(
    make_app: Callable[..., Any],
    client: httpx.AsyncClient,
    store: Store,
    tmp_path: Path,
    new_log: Callable[..., LogBuilder],
    put_body: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from indexer.search import Feeder, index, open_index

    monkeypatch.setattr(index, "REFRESH_INTERVAL", 0.0)  # the reader looks at every request
    log = new_log()
    log.next(key="a", body=put_body("Night drive"))
    store.ingest(log.entries)
    did = log.signer.public.did
    # without a search index on this server: null, the rest as usual
    c = (await client.get(f"/v1/creators/{did}")).json()
    assert c["searchable"] is None and c["head"]["seq"] == 1

    feeder = Feeder(store, open_index(tmp_path / "idx", writer=True))
    reader = open_index(tmp_path / "idx", writer=False)  # the API server's own, read-only
    async with client_for(make_app(index=reader)) as api:

        async def creator() -> dict[str, Any]:
            r = await api.get(f"/v1/creators/{did}")
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body

        async def found() -> list[str]:
            r = await api.get("/v1/assets", params={"q": "drive", "creator": did})
            return [i["key"] for i in r.json()["items"]]

        c = await creator()
        assert c["head"]["seq"] == 1 and c["searchable"] is False and await found() == []
        feeder.catch_up()
        assert (await creator())["searchable"] is True and await found() == ["a"]

        # another write: stored at once, searchable once the feeder has applied it
        store.ingest([log.next(key="b", body=put_body("Drive home"))])
        c = await creator()
        assert c["head"]["seq"] == 2 and c["searchable"] is False and await found() == ["a"]
        feeder.catch_up()
        assert (await creator())["searchable"] is True and sorted(await found()) == ["a", "b"]

        # a delete is a change too: searchable once it has left search
        store.ingest([log.next(kind="asset.delete", key="a")])
        assert (await creator())["searchable"] is False
        feeder.catch_up()
        assert (await creator())["searchable"] is True and await found() == ["b"]

        # other authors' changes do not hold this one back
        other = new_log()
        other.next(key="x")
        store.ingest(other.entries)
        assert (await creator())["searchable"] is True
        assert (await api.get(f"/v1/creators/{other.signer.public.did}")).json()["searchable"] is False
