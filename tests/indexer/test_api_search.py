"""GET /v1/assets (search through the Tantivy index fed from PostgreSQL), creators' listings, activity pages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from indexer.search import Feeder, open_index
from indexer.store import Store
from tests.indexer.apiclient import assert_problem, client_for, counts
from tests.node.conftest import LogBuilder


async def test_search_filters_pages_and_bad_input(
    make_app: Callable[..., Any],
    store: Store,
    tmp_path: Path,
    new_log: Callable[..., LogBuilder],
    put_body: Callable[..., dict[str, Any]],
) -> None:
    log = new_log()
    for i in range(5):
        log.next(key=f"jazz-{i}", body=put_body(f"Cafe jazz {i}", tags=["jazz"]))
    log.next(key="rock", body=put_body("Loud rock", tags=["rock"]))
    other = new_log()
    other.next(key="x", body=put_body("Jazz elsewhere", tags=["jazz"]))
    store.ingest(log.entries + other.entries)
    index = open_index(tmp_path / "idx", writer=True)
    Feeder(store, index).catch_up()
    did = log.signer.public.did
    async with client_for(make_app(index=index)) as c:
        r = await c.get("/v1/assets", params={"q": "jazz", "limit": 2, "facets": "true"})
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["total"] == 6 and len(page["items"]) == 2 and page["next_cursor"]
        seen = [i["uri"] for i in page["items"]]
        while page["next_cursor"]:
            page = (
                await c.get("/v1/assets", params={"q": "jazz", "limit": 2, "cursor": page["next_cursor"]})
            ).json()
            seen += [i["uri"] for i in page["items"]]
        assert len(seen) == len(set(seen)) == 6
        r = await c.get("/v1/assets", params=[("tag", "rock"), ("creator", did)])
        assert [i["key"] for i in r.json()["items"]] == ["rock"]
        r = await c.get("/v1/assets", params={"sort": "title", "creator": did})
        assert r.json()["items"][0]["title"] == "Cafe jazz 0"

        before = counts(store)
        for params, status in [
            ({"limit": 0}, 422),
            ({"limit": 101}, 422),
            ({"sort": "random"}, 422),
            ({"min_price": "abc"}, 422),
            ({"min_price": "-1"}, 422),
            ({"min_price": "5", "max_price": "1"}, 400),
            ({"creator": "did:key:nope"}, 400),
            ({"cursor": "garbage"}, 400),
            ({"facets": "maybe"}, 422),
        ]:
            p = assert_problem(await c.get("/v1/assets", params=params), status)
            if status == 422:
                assert p["code"] == "validation-failed" and p["errors"] and p["errors"][0]["field"], p
        assert counts(store) == before


async def test_search_without_an_index_is_503(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/assets"), 503, "search-unavailable")


async def test_creator_assets_pages_and_sync_status(
    client: httpx.AsyncClient, store: Store, new_log: Callable[..., LogBuilder]
) -> None:
    log = new_log()
    for i in range(5):
        log.next(key=f"k{i}")
    log.next(kind="asset.delete", key="k0")
    store.ingest(log.entries)
    did = log.signer.public.did
    keys: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"/v1/creators/{did}/assets", params=params)).json()
        keys += [i["key"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert keys == ["k4", "k3", "k2", "k1"]
    page = (await client.get(f"/v1/creators/{did}/assets", params={"deleted": "true"})).json()
    assert len(page["items"]) == 5
    assert_problem(await client.get(f"/v1/creators/{did}/assets", params={"cursor": "eyJ4Ijox"}), 400)

    # a gap: seq 8 arrives before 7
    e7 = log.next(key="late")
    e8 = log.next(key="later")
    store.ingest([e8])
    c = (await client.get(f"/v1/creators/{did}")).json()
    assert c["head"]["seq"] == 6
    assert c["sync"] == {"status": "gap", "missing": {"from": 7, "to": 7}, "forked_seq": None}
    store.ingest([e7])
    c = (await client.get(f"/v1/creators/{did}")).json()
    assert c["head"]["seq"] == 8 and c["sync"]["status"] == "synced"
    # a fork at seq 8
    store.ingest([log.next(seq=8, prev=e7.hash, key="forked")])
    c = (await client.get(f"/v1/creators/{did}")).json()
    assert c["sync"]["status"] == "forked" and c["sync"]["forked_seq"] == 8

    unknown = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
    assert_problem(await client.get(f"/v1/creators/{unknown}"), 404)


async def test_activity_pages(
    client: httpx.AsyncClient, store: Store, new_log: Callable[..., LogBuilder]
) -> None:
    log = new_log()
    for i in range(5):
        log.next(key=f"k{i % 2}")
    store.ingest(log.entries)
    did = log.signer.public.did
    ids: list[int] = []
    cursor = None
    while True:
        page = (
            await client.get("/v1/activity", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        ).json()
        ids += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert ids == sorted(ids, reverse=True) and len(ids) == 5
    page = (await client.get("/v1/activity", params={"after": ids[2], "limit": 10})).json()
    assert [i["id"] for i in page["items"]] == sorted(ids)[3:]
    more = (await client.get("/v1/activity", params={"cursor": page["next_cursor"]})).json()
    assert more["items"] == [] and more["next_cursor"] == page["next_cursor"]
    page = (await client.get("/v1/activity", params={"kind": "published", "did": did})).json()
    assert {i["kind"] for i in page["items"]} == {"published"} and len(page["items"]) == 2
    page = (await client.get("/v1/activity", params={"uri": f"empressa://{did}/k1"})).json()
    assert len(page["items"]) == 2
    for params in (
        {"cursor": "x"},
        {"did": "nope"},
        {"uri": "http://x"},
        {"after": "-1"},
        {"cursor": "x", "after": 1},
    ):
        assert_problem(
            await client.get("/v1/activity", params=params), 422 if params.get("after") == "-1" else 400
        )


NO_TERM_QUERIES = ['"', "/.*/", "a" * 200, "!!! ??? ...", "-", "* * *", "\"\" ''", "—·—", "(" * 50]


async def test_a_q_without_a_searchable_term_is_a_400_every_time(
    make_app: Callable[..., Any],
    store: Store,
    tmp_path: Path,
    new_log: Callable[..., LogBuilder],
    put_body: Callable[..., dict[str, Any]],
) -> None:
    """A q that analyses to no term is refused (never the unfiltered listing); one that does still matches."""
    log = new_log()
    log.next(key="cafe", body=put_body("Café del Mar", tags=["chill"]))
    log.next(key="the", body=put_body("The quiet one", tags=["ambient"]))
    log.next(key="other", body=put_body("Loud rock", tags=["rock"]))
    store.ingest(log.entries)
    index = open_index(tmp_path / "idx", writer=True)
    Feeder(store, index).catch_up()
    async with client_for(make_app(index=index)) as c:
        for q in NO_TERM_QUERIES:
            for extra in ({}, {"sort": "newest"}, {"tag": "rock"}):
                p = assert_problem(
                    await c.get("/v1/assets", params={"q": q, **extra}), 400, "no-search-terms"
                )
                assert "no searchable term" in p["detail"], p
        for q, keys in [
            ("cafe", {"cafe"}),
            ('"cafe"', {"cafe"}),
            ("/rock/", {"other"}),
            ("the", {"the"}),
            ("!!! loud ???", {"other"}),
        ]:
            r = await c.get("/v1/assets", params={"q": q})
            assert r.status_code == 200, r.text
            assert {i["key"] for i in r.json()["items"]} == keys, q
        # No q, or a blank one, is the unfiltered listing (newest first), as documented.
        for params in ({}, {"q": ""}, {"q": "   "}):
            r = await c.get("/v1/assets", params=params)
            assert r.status_code == 200 and r.json()["total"] == 3, (params, r.text)
