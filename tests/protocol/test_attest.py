"""``attest`` bodies built and read by protocol's own rule."""

from __future__ import annotations

import pytest

from protocol import AssetUri, EntryHash, SchemaError, Signer, attest_body, attestation_of, now_ms, sign_entry

CHAIN = "eip155:31337"


def test_attest_body_is_checked_by_the_protocol_rule_and_read_back() -> None:
    uri = AssetUri(Signer(b"\x01" * 32).public, "k")
    body = attest_body(uri, subject=b"\x02" * 32, status="verified", chain=CHAIN, onchain_id="1", tx="0x01")
    assert body["asset"] == {"author": uri.author.raw, "key": "k"}
    for bad, where in (
        ({"status": "pending"}, r"body\.status"),
        ({"subject": b"\x02"}, r"body\.subject"),
        ({"chain": "x"}, r"body\.chain"),
        ({"onchain_id": ""}, r"body\.onchain_id"),
    ):
        args = {
            "subject": b"\x02" * 32,
            "status": "verified",
            "chain": CHAIN,
            "onchain_id": "1",
            "tx": "0x01",
        }
        with pytest.raises(SchemaError, match=where):
            attest_body(uri, **{**args, **bad})  # type: ignore[arg-type]
    bridge = Signer(b"\x03" * 32)
    e = sign_entry(bridge, seq=1, prev=None, ts=now_ms(), kind="attest", key=uri.id_b32, body=body)
    a = attestation_of(e)
    assert (a.by, a.asset, a.subject, a.status, a.chain, a.onchain_id, a.tx, a.entry, a.seq) == (
        bridge.public, uri, EntryHash(b"\x02" * 32), "verified", CHAIN, "1", "0x01", e.hash, 1,
    )  # fmt: skip
    assert a.to_json()["by"] == bridge.public.did and a.to_json()["subject"] == EntryHash(b"\x02" * 32).cid
