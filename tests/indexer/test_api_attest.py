"""The API process applies the attestations of the bridges its settings trust (``trusted_bridges``):
``POST /v1/entries`` takes the same ingest path as the bridge, and ``GET /v1/assets/{did}/{key}`` shows
the verification (real PostgreSQL; the app builds its own store from its settings, as ``indexer run`` does)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from indexer.api import create_app
from protocol import Signer, attest_body, now_ms, sign_entry
from tests.indexer.apiclient import cbor_seq, client_for, settings_for
from tests.node.conftest import LogBuilder


async def verification_after_submit(tmp_path: Path, db_url: str, entries: list[Any], **settings: Any) -> Any:
    app = create_app(settings_for(tmp_path, database_url=db_url, **settings))
    async with app.router.lifespan_context(app), client_for(app) as c:
        r = await c.post(
            "/v1/entries", content=cbor_seq(entries), headers={"content-type": "application/cbor-seq"}
        )
        assert r.status_code == 200, r.text
        put = entries[0]
        r = await c.get(f"/v1/assets/{put.author.did}/{put.key}")
        assert r.status_code == 200, r.text
        return r.json()["verification"]


async def test_the_api_applies_attestations_of_the_bridges_it_trusts(
    tmp_path: Path, db_url: str, new_log: Callable[..., LogBuilder]
) -> None:
    bridge = Signer(secrets.token_bytes(32))
    creator = new_log()
    put = creator.next(key="song")
    body = attest_body(
        put.uri, subject=put.hash.raw, status="verified", chain="eip155:1", onchain_id="8", tx="0x08"
    )
    att = sign_entry(bridge, seq=1, prev=None, ts=now_ms(), kind="attest", key=put.uri.id_b32, body=body)

    untrusting = await verification_after_submit(tmp_path, db_url, [put, att])
    assert untrusting == {}, "an indexer that trusts no bridge applies nothing"

    other = new_log()
    put2 = other.next(key="song")
    body2 = attest_body(
        put2.uri, subject=put2.hash.raw, status="verified", chain="eip155:1", onchain_id="9", tx="0x09"
    )
    att2 = sign_entry(
        bridge, seq=2, prev=att.hash, ts=now_ms(), kind="attest", key=put2.uri.id_b32, body=body2
    )
    v = await verification_after_submit(tmp_path, db_url, [put2, att2], trusted_bridges=[bridge.public.did])
    assert (v["status"], v["by"], v["onchain_id"], v["attestation"]) == (
        "verified", bridge.public.did, "9", att2.hash.cid,
    )  # fmt: skip
