"""Signing and the one strict parser: round trips, limits and the clock check."""

from __future__ import annotations

import copy
import re
from typing import Any

import cbor2
import cbrrr
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import VerifyKey

from protocol import (
    MAX_ENTRY_BYTES,
    MAX_SKEW_MS,
    AssetUri,
    DecodeError,
    Entry,
    EntryHash,
    SchemaError,
    SignatureError,
    Signer,
    TimestampError,
    canonical_bytes,
    parse_and_verify,
    sign_entry,
)
from tests.protocol.strategies import asset_keys, attest_bodies, positions, put_bodies, signers, uints
from tests.vectors import AUTHOR_SEED, TS0, unsigned_fields

ALICE = Signer(AUTHOR_SEED)
BODY: dict[str, Any] = {
    "title": "Loop 7",
    "description": "",
    "tags": ["loop"],
    "media": {
        "cid": "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        "mime": "audio/wav",
        "size": 9,
    },
    "license": {"type": "cc0"},
}


def put(**over: Any) -> Entry:
    fields: dict[str, Any] = {
        "seq": 1,
        "prev": None,
        "ts": TS0,
        "kind": "asset.put",
        "key": "loop-7",
        "body": BODY,
    }
    fields.update(over)
    return sign_entry(ALICE, **fields)


def check_round_trip(e: Entry, body: dict[str, Any]) -> None:
    """``e`` parses back to itself, re-encodes to its bytes and verifies under plain PyNaCl."""
    assert e.body == body
    again = parse_and_verify(e.raw, now_ms=None)
    assert again == e
    assert again.hash == EntryHash.of(e.raw)
    m = unsigned_fields(again)
    assert canonical_bytes({**m, "sig": again.sig}) == e.raw
    assert cbor2.dumps(cbor2.loads(e.raw), canonical=True) == e.raw
    VerifyKey(e.author.raw).verify(canonical_bytes(m), e.sig)
    assert len(e.raw) <= MAX_ENTRY_BYTES


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signer=signers, pos=positions(), ts=uints, key=asset_keys, body=put_bodies)
def test_any_valid_put_round_trips(
    signer: Signer, pos: tuple[int, EntryHash | None], ts: int, key: str, body: dict[str, Any]
) -> None:
    seq, prev = pos
    e = sign_entry(signer, seq=seq, prev=prev, ts=ts, kind="asset.put", key=key, body=copy.deepcopy(body))
    assert (e.author, e.seq, e.prev, e.ts, e.kind, e.key) == (signer.public, seq, prev, ts, "asset.put", key)
    check_round_trip(e, body)


@settings(deadline=None)
@given(signer=signers, pos=positions(), ts=uints, attest=attest_bodies())
def test_any_valid_attest_round_trips(
    signer: Signer, pos: tuple[int, EntryHash | None], ts: int, attest: tuple[str, dict[str, Any]]
) -> None:
    key, body = attest
    e = sign_entry(signer, seq=pos[0], prev=pos[1], ts=ts, kind="attest", key=key, body=body)
    check_round_trip(e, body)


@settings(deadline=None)
@given(signer=signers, pos=positions(), ts=uints, key=asset_keys)
def test_any_valid_delete_round_trips(
    signer: Signer, pos: tuple[int, EntryHash | None], ts: int, key: str
) -> None:
    e = sign_entry(signer, seq=pos[0], prev=pos[1], ts=ts, kind="asset.delete", key=key, body={})
    check_round_trip(e, {})


def test_entry_accessors() -> None:
    e = put()
    assert e.v == 1
    assert e.uri == AssetUri.of(ALICE.public, "loop-7")
    assert ALICE.public.did in repr(e) and e.hash.cid in repr(e)


def test_parse_accepts_any_bytes_like_and_keeps_bytes() -> None:
    e = put()
    for raw in (bytearray(e.raw), memoryview(e.raw)):
        again = parse_and_verify(raw, now_ms=None)  # type: ignore[arg-type]
        assert type(again.raw) is bytes and again == e


def test_sign_entry_does_not_alias_the_callers_body() -> None:
    body = copy.deepcopy(BODY)
    e = put(body=body)
    body["tags"].append("mutated")
    body["media"]["size"] = 10
    assert e.body == BODY
    assert parse_and_verify(e.raw, now_ms=None) == e


def test_sign_entry_is_deterministic() -> None:
    assert put().raw == put().raw
    assert put(ts=TS0 + 1).raw != put().raw


def test_clock_limit_is_inclusive_at_ten_minutes() -> None:
    e = put(ts=TS0 + MAX_SKEW_MS)
    assert parse_and_verify(e.raw, now_ms=TS0) == e
    late = put(ts=TS0 + MAX_SKEW_MS + 1)
    with pytest.raises(TimestampError, match="ahead of this clock"):
        parse_and_verify(late.raw, now_ms=TS0)
    assert parse_and_verify(late.raw, now_ms=TS0 + 1) == late
    assert parse_and_verify(late.raw, now_ms=None) == late


def test_custom_skew_and_past_timestamps() -> None:
    e = put(ts=TS0 + 5_000)
    with pytest.raises(TimestampError, match="limit 1 s"):
        parse_and_verify(e.raw, now_ms=TS0, max_skew_ms=1_000)
    assert parse_and_verify(put(ts=0).raw, now_ms=TS0).ts == 0


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"seq": 0}, "seq: must be an integer from 1"),
        ({"seq": 2}, "prev: must be the hash of seq 1"),
        ({"prev": EntryHash(bytes(32))}, "prev: must be null at seq 1"),
        ({"ts": -1}, "ts: must be an integer"),
        ({"kind": "asset.patch"}, "kind: must be one of"),
        ({"key": "bad key"}, "key: must be an asset key"),
        ({"body": {**BODY, "title": "t" * 201}}, "body.title: must be 1..200 characters (is 201)"),
        ({"body": {**BODY, "extra": 1}}, "body: unknown field 'extra'"),
        ({"body": {**BODY, "tags": ("a", "a")}}, "body.tags: must not repeat a tag"),
        ({"body": {**BODY, "media": {**BODY["media"], "size": 1.0}}}, "body.media.size: must be an integer"),
        ({"kind": "attest"}, "body: missing field"),
    ],
)
def test_sign_entry_refuses_invalid_fields(over: dict[str, Any], reason: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(reason)):
        put(**over)


@pytest.mark.parametrize(
    "body",
    [
        {**BODY, "title": "\ud800"},  # a lone surrogate has no UTF-8 encoding
        {**BODY, "description": object()},
        {**BODY, "tags": {"set"}},
    ],
)
def test_sign_entry_refuses_unencodable_or_non_plain_bodies(body: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        put(body=body)


class _Title(str):
    pass


@pytest.mark.parametrize(
    "body",
    [
        BODY,
        {**BODY, "tags": ("loop", "drums")},  # a tuple: cbor2 writes it as an array
        {**BODY, "title": _Title("Loop 7")},  # a str subclass
        {**BODY, "media": {**BODY["media"], "size": 1.5}},  # a float (cbrrr: 64-bit, cbor2: shortest)
        {**BODY, "media": {**BODY["media"], "size": 2**70}},  # a bignum
        {**BODY, "media": {**BODY["media"], "size": float("nan")}},
        {**BODY, "title": "\ud800"},
    ],
    ids=["plain", "tuple", "str-subclass", "float", "bignum", "nan", "surrogate"],
)
def test_sign_entry_gives_the_general_paths_bytes_or_error(body: dict[str, Any], monkeypatch: Any) -> None:
    """The one-pass encoder (cbrrr) signs the same bytes, or refuses with the same reason, as cbor2."""

    def outcome() -> bytes | str:
        try:
            return put(body=body).raw
        except SchemaError as exc:
            return exc.reason

    fast = outcome()
    monkeypatch.setattr(cbrrr, "encode_dag_cbor", lambda *a, **k: (_ for _ in ()).throw(TypeError("off")))
    assert outcome() == fast


def test_sign_entry_refuses_entries_over_16_kib() -> None:
    body = {**BODY, "description": "𝄞" * 5000}  # 5,000 characters but 20,000 bytes
    with pytest.raises(SchemaError, match="the limit is 16384"):
        put(body=body)


def test_parse_rejects_oversize_before_decoding() -> None:
    with pytest.raises(DecodeError, match="exceeds the 16384-byte limit"):
        parse_and_verify(b"\xff" * (MAX_ENTRY_BYTES + 1), now_ms=None)


@pytest.mark.parametrize("field", ["v", "body"])
def test_deeply_nested_values_are_refused_with_a_schema_error(field: str) -> None:
    """A value nested thousands deep (canonical, so decoded in one pass) is refused, not a crash
    (the version's error message once printed its value: a RecursionError)."""
    raw = put().raw
    deep = b"\x81" * 16_000 + b"\x00"
    if field == "v":
        assert raw[:4] == b"\xa9\x61v\x01"
        forged = raw[:3] + deep + raw[4:]
    else:
        at = raw.index(b"\x64body") + 5
        end = at + len(canonical_bytes(BODY))
        forged = raw[:at] + deep + raw[end:]
    with pytest.raises(SchemaError, match="unsupported protocol version" if field == "v" else "body"):
        parse_and_verify(forged, now_ms=None)


def test_a_huge_bignum_version_is_refused_with_a_schema_error() -> None:
    # tag 2 (bignum) of 5,000 bytes: an int of ~12,000 digits, which Python refuses to print
    raw = put().raw
    forged = raw[:3] + b"\xc2\x59\x13\x88" + b"\x01" * 5000 + raw[4:]
    with pytest.raises(SchemaError, match="unsupported protocol version int"):
        parse_and_verify(forged, now_ms=None)


def test_signature_covers_every_field() -> None:
    """Swapping any one field for another valid value, keeping the signature, fails to verify."""
    e = put()
    good = unsigned_fields(e)
    variants = {
        "author": Signer(bytes(32)).public.raw,
        "seq": 2,
        "ts": e.ts + 1,
        "key": "loop-8",
        "body": {**BODY, "title": "Loop 8"},
        "kind": "asset.delete",
    }
    for field, value in variants.items():
        m = {**good, field: value, "sig": e.sig}
        if field == "seq":
            m["prev"] = bytes(32)
        if field == "kind":
            m["body"] = {}
        with pytest.raises(SignatureError):
            parse_and_verify(canonical_bytes(m), now_ms=None)


def test_signer_checks_its_seed_and_hides_it() -> None:
    with pytest.raises(ValueError):
        Signer(bytes(31))
    with pytest.raises(ValueError):
        Signer("0" * 32)  # type: ignore[arg-type]
    assert AUTHOR_SEED.hex() not in repr(ALICE) and str(list(AUTHOR_SEED)) not in repr(ALICE)
    assert repr(AUTHOR_SEED) not in repr(ALICE)


@given(st.integers(1, 64))
def test_keys_of_every_length_sign_and_parse(n: int) -> None:
    """Keys of 24+ characters take a two-byte text header; the signing-bytes splice must follow."""
    e = put(key="k" * n)
    check_round_trip(e, BODY)
