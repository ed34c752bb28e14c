"""/v1/admin: API keys, scopes, moderation labels, the quarantine."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexer.store import Store
from tests.indexer.apiclient import assert_problem, cid, client_for, counts, q
from tests.node.conftest import LogBuilder


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_api_key_lifecycle(client: httpx.AsyncClient, store: Store) -> None:
    _, admin = store.admin.create_api_key(name="root", scopes=["admin"])
    r = await client.post(
        "/v1/admin/api-keys", json={"name": "mod", "scopes": ["moderate"]}, headers=bearer(admin)
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("ek_") and created["scopes"] == ["moderate"]
    # the secret is stored only as a hash
    rows = q(store, "SELECT secret_hash FROM api_keys WHERE id = :i", i=created["id"])
    assert bytes(rows[0][0]) != created["secret"].encode()
    r = await client.get("/v1/admin/api-keys", headers=bearer(admin))
    listed = r.json()["items"]
    assert {k["id"] for k in listed} >= {created["id"]} and all("secret" not in k for k in listed)
    # a moderate key cannot manage keys
    assert_problem(
        await client.get("/v1/admin/api-keys", headers=bearer(created["secret"])), 403, "forbidden"
    )
    r = await client.delete(f"/v1/admin/api-keys/{created['id']}", headers=bearer(admin))
    assert r.status_code == 200 and r.json()["revoked_at"]
    before = counts(store)
    p = assert_problem(await client.get("/v1/admin/quarantine", headers=bearer(created["secret"])), 401)
    assert "revoked" in p["detail"]
    assert_problem(await client.delete("/v1/admin/api-keys/nope", headers=bearer(admin)), 404)
    assert counts(store) == before


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
        bearer("ek_0123456789abcdef_" + "x" * 43),
    ],
)
async def test_admin_without_a_valid_key(
    client: httpx.AsyncClient, store: Store, headers: dict[str, str]
) -> None:
    before = counts(store)
    assert_problem(await client.get("/v1/admin/api-keys", headers=headers), 401, "unauthorized")
    assert_problem(
        await client.post("/v1/admin/api-keys", json={"scopes": ["admin"]}, headers=headers),
        401,
        "unauthorized",
    )
    assert counts(store) == before


async def test_bad_key_requests(client: httpx.AsyncClient, store: Store) -> None:
    _, admin = store.admin.create_api_key(name="root", scopes=["admin"])
    before = counts(store)
    bad_bodies = (
        {"scopes": []},
        {"scopes": ["root"]},
        {"name": 5},
        {"name": "a\x00b", "scopes": ["ingest"]},
        "junk",
    )
    for body in bad_bodies:
        kw = {"json": body} if not isinstance(body, str) else {"content": body}
        p = assert_problem(await client.post("/v1/admin/api-keys", headers=bearer(admin), **kw), 422)
        assert p["errors"], p
    assert counts(store)["api_keys"] == before["api_keys"]


async def test_moderation_hides_and_restores(
    client: httpx.AsyncClient, store: Store, new_log: Callable[..., LogBuilder]
) -> None:
    log = new_log()
    log.next(key="a")
    store.ingest(log.entries)
    did = log.signer.public.did
    _, mod = store.admin.create_api_key(name="mod", scopes=["moderate"])
    _, ingest = store.admin.create_api_key(name="ing", scopes=["ingest"])
    seq0 = q(store, "SELECT change_seq FROM assets")[0][0]
    before = counts(store)
    assert_problem(
        await client.put(f"/v1/admin/moderation/{did}/a", json={"label": "spam"}, headers=bearer(ingest)), 403
    )
    assert_problem(await client.put(f"/v1/admin/moderation/{did}/a", json={"label": "spam"}), 401)
    for body in ({"label": "Bad Label"}, {"label": "spam", "reason": "nul\x00"}):
        assert_problem(await client.put(f"/v1/admin/moderation/{did}/a", json=body, headers=bearer(mod)), 422)
    assert_problem(
        await client.put(f"/v1/admin/moderation/{did}/nope", json={"label": "spam"}, headers=bearer(mod)), 404
    )
    assert_problem(
        await client.put("/v1/admin/moderation/did:key:zz/a", json={"label": "spam"}, headers=bearer(mod)),
        400,
    )
    c = counts(store)
    assert {k: c[k] for k in c if k != "api_keys"} == {k: before[k] for k in before if k != "api_keys"}

    r = await client.put(
        f"/v1/admin/moderation/{did}/a", json={"label": "spam", "reason": "link farm"}, headers=bearer(mod)
    )
    assert r.status_code == 200 and r.json()["hidden"] is True
    hidden, seq1 = q(store, "SELECT hidden, change_seq FROM assets")[0]
    assert hidden and seq1 > seq0
    a = (await client.get(f"/v1/assets/{did}/a")).json()
    assert a["hidden"] and a["labels"][0]["label"] == "spam" and a["labels"][0]["reason"] == "link farm"
    kinds = [r[0] for r in q(store, "SELECT kind FROM activity ORDER BY id")]
    assert kinds[-1] == "moderated"
    assert (await client.get(f"/v1/creators/{did}/assets")).json()["items"] == []

    assert_problem(await client.delete(f"/v1/admin/moderation/{did}/a/other", headers=bearer(mod)), 404)
    r = await client.delete(f"/v1/admin/moderation/{did}/a/spam", headers=bearer(mod))
    assert r.status_code == 200 and r.json()["hidden"] is False
    hidden, seq2 = q(store, "SELECT hidden, change_seq FROM assets")[0]
    assert not hidden and seq2 > seq1
    assert [r[0] for r in q(store, "SELECT kind FROM activity ORDER BY id")][-1] == "unmoderated"


async def test_quarantine_listing(client: httpx.AsyncClient, store: Store) -> None:
    _, admin = store.admin.create_api_key(name="root", scopes=["admin"])
    junk = b"\xa1\x61a\x01"  # a CBOR map, but not an entry
    r = await client.post("/v1/entries", content=junk, headers={"content-type": "application/cbor"})
    assert r.status_code == 422
    r = await client.get("/v1/admin/quarantine", headers=bearer(admin))
    items = r.json()["items"]
    assert len(items) == 1 and base64.b64decode(items[0]["raw_base64"]) == junk
    assert items[0]["source"].startswith("http:") and items[0]["times_seen"] == 1 and items[0]["code"]
    assert_problem(await client.get("/v1/admin/quarantine?cursor=bad!", headers=bearer(admin)), 400)


async def test_a_label_takes_the_asset_out_of_search(
    make_app: Callable[..., Any], store: Store, tmp_path: Path, new_log: Callable[..., LogBuilder]
) -> None:
    from indexer.search import Feeder, open_index

    log = new_log()
    log.next(key="a")
    store.ingest(log.entries)
    index = open_index(tmp_path / "idx", writer=True)
    feeder = Feeder(store, index)
    feeder.catch_up()
    did = log.signer.public.did
    _, mod = store.admin.create_api_key(name="mod", scopes=["moderate"])
    async with client_for(make_app(index=index)) as c:
        assert (await c.get("/v1/assets")).json()["total"] == 1
        r = await c.put(f"/v1/admin/moderation/{did}/a", json={"label": "spam"}, headers=bearer(mod))
        assert r.status_code == 200
        feeder.catch_up()
        assert (await c.get("/v1/assets")).json()["total"] == 0
        await c.delete(f"/v1/admin/moderation/{did}/a/spam", headers=bearer(mod))
        feeder.catch_up()
        assert (await c.get("/v1/assets")).json()["total"] == 1


async def test_authors_behind(
    client: httpx.AsyncClient, store: Store, new_log: Callable[..., LogBuilder]
) -> None:
    _, admin = store.admin.create_api_key(name="root", scopes=["admin"])
    synced = new_log()
    for i in range(3):
        synced.next(key=f"s{i}")
    gap = new_log()  # seq 2 missing: 3 and 4 held
    for i in range(4):
        gap.next(key=f"g{i}")
    headless = new_log()  # seq 1 missing: nothing applied yet, so no head
    for i in range(2):
        headless.next(key=f"h{i}")
    forked = new_log()  # two different entries at seq 2
    for i in range(2):
        forked.next(key=f"f{i}")
    store.ingest([*synced.entries, gap.entries[0], *gap.entries[2:], *headless.entries[1:], *forked.entries])
    store.ingest([forked.next(seq=2, prev=forked.entries[0].hash, key="other")])
    did = {
        name: lg.signer.public.did for name, lg in [("gap", gap), ("headless", headless), ("forked", forked)]
    }
    expected = {
        did["gap"]: {
            "head": {"seq": 1, "hash": cid(gap.entries[0])},
            "sync": {"status": "gap", "missing": {"from": 2, "to": 2}, "forked_seq": None},
            "held": 2,
        },
        did["headless"]: {
            "head": None,
            "sync": {"status": "gap", "missing": {"from": 1, "to": 1}, "forked_seq": None},
            "held": 1,
        },
        did["forked"]: {
            "head": {"seq": 2, "hash": cid(forked.entries[1])},
            "sync": {"status": "forked", "missing": None, "forked_seq": 2},
            "held": 0,
        },
    }

    async def listing(**params: Any) -> list[dict[str, Any]]:
        """Every page at ``params``, checking each page's size."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            r = await client.get(
                "/v1/admin/authors",
                params={**params, **({"cursor": cursor} if cursor else {})},
                headers=bearer(admin),
            )
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["items"]) <= params.get("limit", 50)
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items

    everyone = await listing()
    assert {i["did"]: {k: i[k] for k in ("head", "sync", "held")} for i in everyone} == expected
    assert len(everyone) == 3 and all((i["updated_at"] is None) == (i["head"] is None) for i in everyone)
    assert await listing(limit=1) == everyone  # pages, in the same order
    assert [i["did"] for i in await listing(status="gap", limit=1)] == [
        i["did"] for i in everyone if i["sync"]["status"] == "gap"
    ]
    assert [i["did"] for i in await listing(status="forked")] == [did["forked"]]

    # once the missing entries arrive, they leave the listing
    store.ingest([gap.entries[1], headless.entries[0]])
    assert [i["did"] for i in await listing()] == [did["forked"]]
    assert await listing(status="gap") == []

    before = counts(store)
    quarantine_cursor = base64.urlsafe_b64encode(b'["quarantine",1]').decode().rstrip("=")
    wrong_author = base64.urlsafe_b64encode(b'["authors-behind","abc"]').decode().rstrip("=")
    for params, status in [
        ({"limit": 0}, 422),
        ({"limit": 501}, 422),
        ({"status": "synced"}, 422),
        ({"cursor": "x" * 2001}, 422),
        ({"cursor": "garbage!"}, 400),
        ({"cursor": quarantine_cursor}, 400),
        ({"cursor": wrong_author}, 400),
    ]:
        p = assert_problem(
            await client.get("/v1/admin/authors", params=params, headers=bearer(admin)), status
        )
        if status == 422:
            assert p["errors"], p
    for scope in ("ingest", "moderate"):
        _, key = store.admin.create_api_key(name=scope, scopes=[scope])
        assert_problem(await client.get("/v1/admin/authors", headers=bearer(key)), 403, "forbidden")
    assert_problem(await client.get("/v1/admin/authors"), 401, "unauthorized")
    c = counts(store)
    assert {k: c[k] for k in c if k != "api_keys"} == {k: before[k] for k in before if k != "api_keys"}


async def test_failed_pins_are_retried_by_an_admin(
    client: httpx.AsyncClient,
    store: Store,
    new_log: Callable[..., LogBuilder],
    put_body: Callable[..., dict[str, Any]],
) -> None:
    from indexer.store.pins import Pins

    pin_cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    log = new_log()
    log.next(key="a", body=put_body("A", media={"cid": pin_cid, "mime": "audio/wav", "size": 1}))
    store.ingest(log.entries)
    pins = Pins(store.engine)
    while pins.reconcile(grace_s=3600):
        pass
    (job,) = pins.claim(n=1, lease_s=60, grace_s=60)
    pins.failed(job, "ipfs-unavailable", max_attempts=1, backoff_s=1, backoff_max_s=1)
    _, admin = store.admin.create_api_key(name="root", scopes=["admin"])
    _, mod = store.admin.create_api_key(name="mod", scopes=["moderate"])
    assert_problem(await client.post("/v1/admin/pins/retry", headers=bearer(mod)), 403)
    assert_problem(await client.post("/v1/admin/pins/retry"), 401)
    bad = await client.post("/v1/admin/pins/retry", json={"cids": ["not a cid!"]}, headers=bearer(admin))
    assert_problem(bad, 422)
    assert q(store, "SELECT status FROM pins")[0][0] == "failed", "refused requests change nothing"
    r = await client.post("/v1/admin/pins/retry", json={"cids": [pin_cid]}, headers=bearer(admin))
    assert r.status_code == 200 and r.json() == {"retried": [pin_cid]}
    assert q(store, "SELECT status, attempts FROM pins")[0] == ("pending", 0)
    r = await client.post("/v1/admin/pins/retry", headers=bearer(admin))
    assert r.json() == {"retried": []}
