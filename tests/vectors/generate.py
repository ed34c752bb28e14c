"""Regenerate the golden protocol vectors from fixed seeds and timestamps.

    .venv/bin/python -m tests.vectors.generate           # rewrite the files
    .venv/bin/python -m tests.vectors.generate --check   # exit 1 if any would change

Ed25519 signatures are deterministic, so the output is byte-for-byte
reproducible. Valid entries come from :func:`protocol.sign_entry`. Each invalid
one carries exactly one defect: bad content is re-signed correctly (so a
``SchemaError`` fires, not a ``SignatureError``), and bad encodings keep the
signature of the intended canonical content. Every vector is checked against
the parser here, so the generator refuses to write a file that disagrees with
the code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2

from protocol import (
    AssetUri,
    EntryHash,
    IdentifierError,
    ProtocolError,
    Signer,
    canonical_bytes,
    parse_and_verify,
    parse_asset_uri,
    parse_did,
    parse_entry_hash,
    sign_entry,
)
from tests.vectors import AUTHOR2_SEED, AUTHOR_SEED, BRIDGE_SEED, EDGE_SEED, HERE, NOW_MS, TS0

A = Signer(AUTHOR_SEED)
B = Signer(AUTHOR2_SEED)
BRIDGE = Signer(BRIDGE_SEED)
EDGE = Signer(EDGE_SEED)
MINUTE = 60_000
MAX_UINT = 2**63 - 1

CID_MEDIA = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
CID_PREVIEW = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
CID_ARTWORK = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
EVM = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
STELLAR = "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7"

FULL_BODY: dict[str, Any] = {
    "title": "Night Drive (Extended Mix)",
    "description": "Analog synths and a drum machine, recorded live to tape in one take.",
    "tags": ["synthwave", "instrumental", "120bpm"],
    "media": {"cid": CID_MEDIA, "mime": "audio/flac", "size": 48_213_377, "duration_ms": 412_000},
    "preview": {"cid": CID_PREVIEW, "mime": "audio/mpeg", "size": 480_000, "duration_ms": 30_000},
    "artwork": {"cid": CID_ARTWORK, "mime": "image/png", "size": 1_048_576},
    "license": {
        "type": "commercial",
        "price": {"amount": "12.50", "currency": "USDC"},
        "terms": "Sync and broadcast allowed; no resale of the stems.",
    },
    "payout": {"evm": EVM, "stellar": STELLAR},
}

MINIMAL_BODY: dict[str, Any] = {
    "title": "s",
    "description": "",
    "tags": [],
    "media": {"cid": CID_MEDIA, "mime": "audio/wav", "size": 0},
    "license": {"type": "personal"},
}


def _copy(obj: Any) -> Any:
    """A deep copy of plain data (bodies are mutated per vector)."""
    return cbor2.loads(canonical_bytes(obj))


# --------------------------------------------------------------------------- valid


def build_valid() -> list[tuple[str, Any]]:
    """The valid entries, in log order per author, as (name, Entry)."""
    out: list[tuple[str, Any]] = []

    def add(name: str, signer: Signer, **fields: Any) -> Any:
        entry = sign_entry(signer, **fields)
        out.append((name, entry))
        return entry

    put = add("put_full", A, seq=1, prev=None, ts=TS0, kind="asset.put", key="night-drive", body=FULL_BODY)
    edited = _copy(FULL_BODY)
    edited["title"] = "Night Drive (Extended Mix, remastered)"
    edited["license"]["price"]["amount"] = "15"
    edit = add(
        "edit",
        A,
        seq=2,
        prev=put.hash,
        ts=TS0 + 10 * MINUTE,
        kind="asset.put",
        key="night-drive",
        body=edited,
    )
    delete = add(
        "delete",
        A,
        seq=3,
        prev=edit.hash,
        ts=TS0 + 20 * MINUTE,
        kind="asset.delete",
        key="night-drive",
        body={},
    )
    reput = _copy(MINIMAL_BODY)
    reput["title"] = "Night Drive (back again)"
    add(
        "reput_after_delete",
        A,
        seq=4,
        prev=delete.hash,
        ts=TS0 + 30 * MINUTE,
        kind="asset.put",
        key="night-drive",
        body=reput,
    )

    b1 = add("put_minimal", B, seq=1, prev=None, ts=TS0 + 1, kind="asset.put", key="s", body=MINIMAL_BODY)
    long_key = "k" * 23 + "-" + "0123456789._~" + "A" * 27  # 64 characters: a two-byte text header
    b2 = add(
        "put_long_key", B, seq=2, prev=b1.hash, ts=TS0 + 2, kind="asset.put", key=long_key, body=MINIMAL_BODY
    )
    limits = _copy(MINIMAL_BODY)
    limits["title"] = ("Ünïcødé ✓ 音楽 🎵 " * 20)[:200]
    limits["description"] = ("ß∂ƒ ☃ " * 1000)[:5000]
    limits["tags"] = [f"{i:02d}" + "t" * 28 + "é✓" for i in range(20)]
    limits["license"] = {
        "type": "cc-by-nc-nd",
        "price": {"amount": "0.000000000000000001", "currency": "XLM"},
        "terms": "",
    }
    b3 = add("put_at_limits", B, seq=3, prev=b2.hash, ts=TS0 + 3, kind="asset.put", key="limits", body=limits)
    add(
        "put_exactly_16_kib",
        B,
        seq=4,
        prev=b3.hash,
        ts=TS0 + 4,
        kind="asset.put",
        key="big",
        body=_sized_body(B, 16384),
    )

    subject = AssetUri.of(A.public, "night-drive")
    att = {
        "subject": edit.hash.raw,
        "asset": {"author": A.public.raw, "key": "night-drive"},
        "status": "verified",
        "chain": "eip155:31337",
        "onchain_id": "1",
        "tx": "0x" + hashlib.sha256(b"register night-drive").hexdigest(),
    }
    a1 = add(
        "attest_verified",
        BRIDGE,
        seq=1,
        prev=None,
        ts=TS0 + 15 * MINUTE,
        kind="attest",
        key=subject.id_b32,
        body=att,
    )
    revoked = dict(
        att,
        status="revoked",
        chain="stellar:testnet",
        onchain_id="GA-memo",
        tx=hashlib.sha256(b"revoke").hexdigest(),
    )
    add(
        "attest_revoked",
        BRIDGE,
        seq=2,
        prev=a1.hash,
        ts=TS0 + 25 * MINUTE,
        kind="attest",
        key=subject.id_b32,
        body=revoked,
    )

    e1 = add("ts_zero", EDGE, seq=1, prev=None, ts=0, kind="asset.put", key="0", body=MINIMAL_BODY)
    maxed = _copy(MINIMAL_BODY)
    maxed["media"].update(size=MAX_UINT, duration_ms=MAX_UINT)
    add(
        "max_integers", EDGE, seq=MAX_UINT, prev=e1.hash, ts=MAX_UINT, kind="asset.put", key="max", body=maxed
    )
    return out


def _sized_body(signer: Signer, size: int) -> dict[str, Any]:
    """A minimal body whose description pads the signed entry to exactly ``size`` bytes."""
    body: dict[str, Any] = _copy(MINIMAL_BODY)
    body["description"] = "x" * 300  # a 3-byte text header, like the final one
    base = len(_encode_signed(signer, seq=4, prev=bytes(32), ts=TS0 + 4, key="big", body=body)) - 300
    room = size - base
    body["description"] = "𝄞" * (room // 4) + "x" * (room % 4)
    return body


# --------------------------------------------------------------------------- invalid helpers


def unsigned(signer: Signer = A, **over: Any) -> dict[str, Any]:
    """An unsigned v1 entry map (a minimal asset.put at seq 1 unless overridden)."""
    m: dict[str, Any] = {
        "v": 1,
        "author": signer.public.raw,
        "seq": 1,
        "prev": None,
        "ts": TS0,
        "kind": "asset.put",
        "key": "night-drive",
        "body": _copy(MINIMAL_BODY),
    }
    m.update(over)
    return m


def signed(m: dict[str, Any], signer: Signer = A) -> dict[str, Any]:
    """``m`` plus a correct signature over its canonical encoding."""
    return dict(m, sig=signer.sign(canonical_bytes(m)))


def _encode_signed(signer: Signer, **over: Any) -> bytes:
    return canonical_bytes(signed(unsigned(signer, **over), signer))


def with_body(**changes: Any) -> bytes:
    """A correctly signed seq-1 put whose body has ``changes`` (``None`` deletes a field)."""
    body = _copy(MINIMAL_BODY)
    for k, v in changes.items():
        if v is None:
            del body[k]
        else:
            body[k] = v
    return canonical_bytes(signed(unsigned(body=body)))


@dataclass(frozen=True)
class Pre:
    """An already-encoded CBOR item, spliced verbatim by :func:`cmap`."""

    data: bytes


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * width):
            return bytes([major << 5 | info]) + n.to_bytes(width, "big")
    raise ValueError(n)


def cmap(pairs: list[tuple[str, Any]], *, indefinite: bool = False) -> bytes:
    """A CBOR map with exactly these pairs, in this order (values canonical unless ``Pre``)."""
    out = b"\xbf" if indefinite else _head(5, len(pairs))
    for k, v in pairs:
        out += canonical_bytes(k) + (v.data if isinstance(v, Pre) else canonical_bytes(v))
    return out + (b"\xff" if indefinite else b"")


def pairs(m: dict[str, Any]) -> list[tuple[str, Any]]:
    """The pairs of ``m`` in canonical order."""
    return list(cbor2.loads(canonical_bytes(m)).items())


def replace(m: dict[str, Any], **values: Any) -> list[tuple[str, Any]]:
    """Canonical pairs of ``m`` with some values replaced (e.g. by ``Pre`` bytes)."""
    return [(k, values.get(k, v)) for k, v in pairs(m)]


# --------------------------------------------------------------------------- invalid


def build_invalid() -> list[dict[str, Any]]:
    """The invalid vectors: name, bytes, expected error class and reason substring, clock."""
    out: list[dict[str, Any]] = []

    def bad(name: str, raw: bytes, error: str, reason: str, now_ms: int | None = NOW_MS) -> None:
        out.append({"name": name, "raw": raw, "error": error, "reason_contains": reason, "now_ms": now_ms})

    good = signed(unsigned())
    raw = canonical_bytes(good)

    # -- not one deterministic CBOR entry
    table_order = ["v", "author", "seq", "prev", "ts", "kind", "key", "body", "sig"]
    bad(
        "key_order_top_level",
        cbor2.dumps({k: good[k] for k in table_order}),
        "DecodeError",
        "deterministic CBOR order",
    )
    body_rev = dict(reversed(list(good["body"].items())))
    bad(
        "key_order_body",
        cmap(replace(good, body=Pre(cbor2.dumps(body_rev)))),
        "DecodeError",
        "body: map keys are not",
    )
    media = good["body"]["media"]
    media_bad = Pre(cmap([("size", media["size"]), ("cid", media["cid"]), ("mime", media["mime"])]))
    bad(
        "key_order_media",
        cmap(replace(good, body=Pre(cmap(replace(good["body"], media=media_bad))))),
        "DecodeError",
        "body.media: map keys are not",
    )
    p = pairs(good)
    bad("duplicate_key_top_level", cmap([p[0], *p]), "DecodeError", "not deterministic CBOR")
    bp = pairs(good["body"])
    bad(
        "duplicate_key_body",
        cmap(replace(good, body=Pre(cmap([*bp, bp[-1]])))),
        "DecodeError",
        "not deterministic CBOR",
    )
    bad(
        "non_shortest_int_seq",
        cmap(replace(good, seq=Pre(b"\x18\x01"))),
        "DecodeError",
        "not deterministic CBOR",
    )
    bad(
        "non_shortest_int_size",
        cmap(
            replace(
                good,
                body=Pre(
                    cmap(replace(good["body"], media=Pre(cmap(replace(media, size=Pre(b"\x19\x00\x00"))))))
                ),
            )
        ),
        "DecodeError",
        "not deterministic CBOR",
    )
    bad(
        "non_shortest_text_length",
        cmap(replace(good, key=Pre(b"\x78\x0bnight-drive"))),
        "DecodeError",
        "not deterministic CBOR",
    )
    bad("indefinite_map", cmap(pairs(good), indefinite=True), "DecodeError", "not deterministic CBOR")
    bad(
        "indefinite_text",
        cmap(replace(good, key=Pre(b"\x7f\x65night\x66-drive\xff"))),
        "DecodeError",
        "not deterministic CBOR",
    )
    bad(
        "tag2_bignum_seq",
        cmap(replace(good, seq=Pre(b"\xc2\x41\x01"))),
        "DecodeError",
        "not deterministic CBOR",
    )
    bad(
        "tag55799_self_described_seq",
        cmap(replace(good, seq=Pre(b"\xd9\xd9\xf7\x01"))),
        "DecodeError",
        "not deterministic CBOR",
    )
    secs = signed(unsigned(ts=TS0 // 1000))
    bad(
        "tag1_datetime_ts",
        cmap(replace(secs, ts=Pre(b"\xc1" + canonical_bytes(TS0 // 1000)))),
        "SchemaError",
        "ts: must be an integer",
    )
    cid_link = Pre(b"\xd8\x2a" + canonical_bytes(b"\x00" + CID_MEDIA.encode()))
    bad(
        "tag42_cid_link",
        cmap(
            replace(
                good, body=Pre(cmap(replace(good["body"], media=Pre(cmap(replace(media, cid=cid_link))))))
            )
        ),
        "SchemaError",
        "body.media.cid: must be a CID",
    )
    bad("trailing_byte", raw + b"\x00", "DecodeError", "1 trailing bytes")
    bad("trailing_entry", raw + raw, "DecodeError", f"{len(raw)} trailing bytes")
    bad("truncated", raw[:-1], "DecodeError", "not valid CBOR")
    bad("empty", b"", "DecodeError", "input is empty")
    bad("not_a_map_array", canonical_bytes(list(good.values())), "DecodeError", "an entry is a CBOR map")
    bad("not_a_map_bytes", canonical_bytes(raw), "DecodeError", "an entry is a CBOR map")
    bad(
        "invalid_utf8", cmap(replace(good, kind=Pre(b"\x69asset.p\xc3\x28"))), "DecodeError", "not valid CBOR"
    )
    big = signed(unsigned(body=_sized_body(A, 16385), seq=4, prev=bytes(32), ts=TS0 + 4, key="big"))
    bad("oversize_16385_bytes", canonical_bytes(big), "DecodeError", "exceeds the 16384-byte limit")

    # -- fields and types (each correctly signed)
    def entry(signer: Signer = A, **over: Any) -> bytes:
        return canonical_bytes(signed(unsigned(signer, **over), signer))

    bad("unknown_top_level_field", entry(extra=1), "SchemaError", "unknown field 'extra'")
    int_key: dict[Any, Any] = unsigned()
    int_key[1] = 1
    bad("int_map_key", canonical_bytes(signed(int_key)), "SchemaError", "unknown field '1'")
    no_ts = unsigned()
    del no_ts["ts"]
    bad("missing_ts", canonical_bytes(signed(no_ts)), "SchemaError", "missing field 'ts'")
    bad("missing_sig", canonical_bytes(unsigned()), "SchemaError", "missing field 'sig'")
    bad("unknown_body_field", with_body(genre="synthwave"), "SchemaError", "body: unknown field 'genre'")
    bad("missing_body_media", with_body(media=None), "SchemaError", "body: missing field 'media'")
    bad(
        "unknown_media_field",
        with_body(media=dict(media, bitrate=320)),
        "SchemaError",
        "body.media: unknown field 'bitrate'",
    )
    bad("bool_as_seq", entry(seq=True), "SchemaError", "seq: must be an integer")
    bad(
        "text_as_size",
        with_body(media=dict(media, size="12")),
        "SchemaError",
        "body.media.size: must be an integer",
    )
    bad("float_ts", entry(ts=float(TS0)), "SchemaError", "ts: must be an integer")
    bad(
        "float_duration",
        with_body(media=dict(media, duration_ms=1.5)),
        "SchemaError",
        "body.media.duration_ms: must be an integer",
    )
    bad(
        "undefined_prev",
        cmap(replace(signed(unsigned(seq=2, prev=bytes(32))), prev=Pre(b"\xf7"))),
        "SchemaError",
        "prev: must be 32 bytes",
    )
    bad("version_2", entry(v=2), "SchemaError", "unsupported protocol version 2")
    bad("version_bool", entry(v=True), "SchemaError", "unsupported protocol version True")
    bad("seq_0", entry(seq=0), "SchemaError", "seq: must be an integer from 1")
    bad("seq_negative", entry(seq=-1, prev=bytes(32)), "SchemaError", "seq: must be an integer from 1")
    bad(
        "seq_over_2_63",
        entry(seq=2**63, prev=bytes(32)),
        "SchemaError",
        "seq: must be an integer from 1 to 2^63-1",
    )
    bad("ts_negative", entry(ts=-1), "SchemaError", "ts: must be an integer from 0")
    bad("prev_null_at_seq_2", entry(seq=2), "SchemaError", "prev: must be the hash of seq 1, not null")
    bad("prev_set_at_seq_1", entry(prev=bytes(32)), "SchemaError", "prev: must be null at seq 1")
    bad("prev_31_bytes", entry(seq=2, prev=bytes(31)), "SchemaError", "prev: must be 32 bytes")
    short_author = unsigned()
    short_author["author"] = A.public.raw[:31]
    bad("author_31_bytes", canonical_bytes(signed(short_author)), "SchemaError", "author: must be 32 bytes")
    bad(
        "sig_63_bytes",
        canonical_bytes(dict(good, sig=good["sig"][:63])),
        "SchemaError",
        "sig: must be 64 bytes",
    )
    bad("unknown_kind", entry(kind="asset.patch"), "SchemaError", "kind: must be one of")
    bad(
        "delete_with_body",
        entry(kind="asset.delete", body={"title": "x"}),
        "SchemaError",
        "asset.delete body must be an empty map",
    )

    # -- limits and patterns of the asset.put body
    bad(
        "title_too_long",
        with_body(title="t" * 201),
        "SchemaError",
        "body.title: must be 1..200 characters (is 201)",
    )
    bad("title_empty", with_body(title=""), "SchemaError", "body.title: must be 1..200 characters (is 0)")
    bad("title_blank", with_body(title=" \t "), "SchemaError", "body.title: must not be blank")
    nul = "body.{}: must not contain U+0000 (NUL)"
    bad("title_nul", with_body(title="Night\x00Drive"), "SchemaError", nul.format("title"))
    bad("description_nul", with_body(description="a\x00"), "SchemaError", nul.format("description"))
    bad("tag_nul", with_body(tags=["ok", "\x00"]), "SchemaError", nul.format("tags[1]"))
    bad(
        "description_too_long",
        with_body(description="d" * 5001),
        "SchemaError",
        "body.description: must be 0..5000",
    )
    bad("too_many_tags", with_body(tags=[f"t{i}" for i in range(21)]), "SchemaError", "at most 20 tags")
    bad("duplicate_tag", with_body(tags=["a", "b", "a"]), "SchemaError", "body.tags: must not repeat a tag")
    bad(
        "tag_too_long",
        with_body(tags=["t" * 33]),
        "SchemaError",
        "body.tags[0]: must be 1..32 characters (is 33)",
    )
    bad(
        "tag_empty",
        with_body(tags=["ok", ""]),
        "SchemaError",
        "body.tags[1]: must be 1..32 characters (is 0)",
    )
    bad("tags_not_a_list", with_body(tags="a,b"), "SchemaError", "body.tags: must be a list")
    for name, key in (
        ("space", "night drive"),
        ("slash", "a/b"),
        ("empty", ""),
        ("65_chars", "k" * 65),
        ("non_ascii", "naïve"),
    ):
        bad(f"key_{name}", entry(key=key), "SchemaError", "key: must be an asset key")
    bad(
        "bad_license_type",
        with_body(license={"type": "all-rights-reserved"}),
        "SchemaError",
        "body.license.type: must be one of",
    )
    for name, amount in (
        ("two_points", "12.5.0"),
        ("leading_zero", "012"),
        ("exponent", "1e3"),
        ("negative", "-1"),
        ("number", 12),
    ):
        lic = {"type": "commercial", "price": {"amount": amount, "currency": "USD"}}
        bad(
            f"bad_price_amount_{name}",
            with_body(license=lic),
            "SchemaError",
            "body.license.price.amount: must be a decimal string",
        )
    lic = {"type": "commercial", "price": {"amount": "1", "currency": "usd"}}
    bad("bad_price_currency", with_body(license=lic), "SchemaError", "body.license.price.currency")
    bad(
        "bad_evm_address",
        with_body(payout={"evm": EVM[:-1]}),
        "SchemaError",
        "body.payout.evm: must be a 0x-prefixed",
    )
    bad(
        "bad_stellar_account",
        with_body(payout={"stellar": "S" + STELLAR[1:]}),
        "SchemaError",
        "body.payout.stellar",
    )
    bad(
        "empty_payout",
        with_body(payout={}),
        "SchemaError",
        "body.payout: must name an evm or a stellar account",
    )
    bad("bad_mime", with_body(media=dict(media, mime="Audio/MPEG")), "SchemaError", "body.media.mime")
    bad(
        "bad_cid",
        with_body(media=dict(media, cid="not-a-cid")),
        "SchemaError",
        "body.media.cid: must be a CID",
    )

    # -- attest
    subject = AssetUri.of(A.public, "night-drive")
    att = {
        "subject": EntryHash.of(raw).raw,
        "asset": {"author": A.public.raw, "key": "night-drive"},
        "status": "verified",
        "chain": "eip155:31337",
        "onchain_id": "1",
        "tx": "0x01",
    }

    def attest(key: str = subject.id_b32, **body: Any) -> bytes:
        return entry(BRIDGE, kind="attest", key=key, body=dict(att, **body))

    bad(
        "attest_wrong_key",
        attest(AssetUri.of(A.public, "other").id_b32),
        "SchemaError",
        "attest entry's key must be",
    )
    bad("attest_key_is_asset_key", attest("night-drive"), "SchemaError", "attest entry's key must be")
    bad(
        "attest_bad_status",
        attest(status="pending"),
        "SchemaError",
        "body.status: must be verified or revoked",
    )
    bad("attest_bad_chain", attest(chain="ethereum"), "SchemaError", "body.chain: must be a CAIP-2")
    bad("attest_short_subject", attest(subject=bytes(31)), "SchemaError", "body.subject: must be 32 bytes")
    bad("attest_missing_tx", _attest_without(att, "tx", subject), "SchemaError", "body: missing field 'tx'")

    # -- signature
    flipped = bytearray(raw)
    flipped[raw.index(good["sig"])] ^= 0x01
    bad("sig_flipped_bit", bytes(flipped), "SignatureError", "signature does not verify")
    bad(
        "sig_by_other_key",
        canonical_bytes(dict(unsigned(), sig=B.sign(canonical_bytes(unsigned())))),
        "SignatureError",
        "does not verify",
    )
    tampered = unsigned()
    tampered["body"]["title"] = "S"
    bad(
        "body_changed_after_signing",
        canonical_bytes(dict(tampered, sig=good["sig"])),
        "SignatureError",
        "does not verify",
    )
    bad("sig_all_zero", canonical_bytes(dict(good, sig=bytes(64))), "SignatureError", "does not verify")
    bad("author_not_a_curve_point", _bad_point_author(), "SignatureError", "does not verify")

    # -- timestamp (the only clock-dependent vectors)
    ahead = entry(ts=TS0 + 11 * MINUTE)
    bad("ts_11_minutes_ahead", ahead, "TimestampError", "660 s ahead of this clock", now_ms=TS0)
    bad("ts_far_future", entry(ts=MAX_UINT), "TimestampError", "ahead of this clock")
    return out


def _attest_without(att: dict[str, Any], field: str, subject: AssetUri) -> bytes:
    body = {k: v for k, v in att.items() if k != field}
    return canonical_bytes(signed(unsigned(BRIDGE, kind="attest", key=subject.id_b32, body=body), BRIDGE))


def _bad_point_author() -> bytes:
    """An entry whose 32-byte author does not decode to a curve point."""
    m = unsigned()
    m["author"] = b"\xff" * 32  # y >= p: not a canonical point encoding
    return canonical_bytes(signed(m))


# --------------------------------------------------------------------------- identifiers


def build_identifiers(valid: list[tuple[str, Any]]) -> tuple[str, str]:
    """The texts of identifiers_valid.txt and identifiers_invalid.txt."""
    authors = list(dict.fromkeys(e.author for _, e in valid))
    uris = list(dict.fromkeys(e.uri for _, e in valid if e.kind != "attest"))
    good = [
        "# did:key (Ed25519, multicodec 0xed01, base58btc)",
        *(a.did for a in authors),
        "# the did:key spec's example and the key of the all-zero seed",
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
        "# entry hashes: CIDv1 (dag-cbor, sha2-256, base32) and 64 hex digits",
        *(e.hash.cid for _, e in valid),
        "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua",
        valid[0][1].hash.raw.hex(),
        "0" * 64,
        "# asset URIs",
        *(u.text for u in uris),
        f"empressa://{authors[0].did}/a.b_c~d-E9",
        f"empressa://{authors[0].did}/.",
    ]
    did = authors[0].did
    cid = valid[0][1].hash.cid
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    last = alphabet.index(cid[-1])
    assert last & 3 == 0, "the unused low bits of a canonical CID's last character are zero"
    bad = [
        "# did:key",
        "did:key:",
        "did:key:z",
        "did:key:" + did[len("did:key:z") :],
        did[:-1],
        did + "K",
        did[:-1] + "0",
        did[:-1] + "l",
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK=",
        "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
        "did:key:z6LSeu9HkTHSfLLeUs2nnzUSNedgDUevfNQgQjQC23ZCit6F",
        "did:key:z1" + did[len("did:key:z") :],
        "did:web:example.com",
        "DID:KEY:" + did[len("did:key:") :],
        "did:key:" + did,
        "# entry hashes",
        "b",
        cid[:-1],
        cid + "a",
        cid.upper(),
        "B" + cid[1:],
        cid[:-1] + alphabet[last | 1],
        cid[:-1] + alphabet[last | 2],
        "z" + cid[1:],
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq",
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",
        "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swu=",
        "0" * 63,
        "0" * 65,
        "A" * 64,
        "# asset URIs",
        f"empressa:/{did}/night-drive",
        f"empressa://{did}",
        f"empressa://{did}/",
        f"empressa://{did}/a/b",
        f"empressa://{did}/a b",
        f"empressa://{did}/naïve",
        f"empressa://{did}/" + "k" * 65,
        f"https://{did}/night-drive",
        f"EMPRESSA://{did}/night-drive",
        "empressa://did:web:example.com/night-drive",
        f"empressa://{did[:-1]}/night-drive",
        "empressa:///night-drive",
    ]
    for text in good:
        if not text.startswith("#"):
            _parse_identifier(text)  # raises if a "valid" one does not parse
    for text in bad:
        if not text.startswith("#") and _parses_as_any(text):
            raise SystemExit(f"invalid identifier {text!r} parses")
    header = "# One identifier per line; blank lines and lines starting with # are skipped.\n"
    return (
        header + "# Each must parse and format back to the same text.\n" + "\n".join(good) + "\n",
        header + "# None may parse as a did, an entry hash or an asset URI.\n" + "\n".join(bad) + "\n",
    )


def _parse_identifier(text: str) -> str:
    """Parse by prefix and format back; raises ``IdentifierError``."""
    if text.startswith("did:"):
        out = parse_did(text).did
    elif text.startswith("empressa:"):
        out = parse_asset_uri(text).text
    else:
        h = parse_entry_hash(text)
        out = h.raw.hex() if len(text) == 64 else h.cid
    if out != text:
        raise SystemExit(f"identifier {text!r} formats back as {out!r}")
    return out


def _parses_as_any(text: str) -> bool:
    for parse in (parse_did, parse_entry_hash, parse_asset_uri):
        try:
            parse(text)
        except IdentifierError:
            continue
        return True
    return False


# --------------------------------------------------------------------------- output


def _check_valid(name: str, entry: Any) -> dict[str, Any]:
    again = parse_and_verify(entry.raw, now_ms=None)
    assert again == entry, name
    return {
        "name": name,
        "hex": entry.raw.hex(),
        "hash_cid": entry.hash.cid,
        "author_did": entry.author.did,
        "seq": entry.seq,
        "prev_cid": entry.prev.cid if entry.prev else None,
        "ts": entry.ts,
        "kind": entry.kind,
        "key": entry.key,
        "uri": entry.uri.text,
    }


def _check_invalid(v: dict[str, Any]) -> dict[str, Any]:
    try:
        parse_and_verify(v["raw"], now_ms=v["now_ms"])
    except ProtocolError as exc:
        got = f"{type(exc).__name__}: {exc}"
        if type(exc).__name__ != v["error"] or v["reason_contains"] not in str(exc):
            raise SystemExit(
                f"invalid vector {v['name']}: expected {v['error']} ~ {v['reason_contains']!r}, got {got}"
            ) from None
    else:
        raise SystemExit(f"invalid vector {v['name']} was accepted")
    return {
        "name": v["name"],
        "hex": v["raw"].hex(),
        **{k: v[k] for k in ("error", "reason_contains", "now_ms")},
    }


def render() -> dict[str, str]:
    """Every vector file's text, keyed by file name."""
    valid = build_valid()
    invalid = build_invalid()
    names = [n for n, _ in valid] + [v["name"] for v in invalid]
    assert len(names) == len(set(names)), "vector names must be unique"
    assert len(dict(valid)["put_exactly_16_kib"].raw) == 16384
    ids_ok, ids_bad = build_identifiers(valid)

    def dump(items: list[dict[str, Any]]) -> str:
        return "[\n" + ",\n".join(json.dumps(i, ensure_ascii=False) for i in items) + "\n]\n"

    return {
        "valid.json": dump([_check_valid(n, e) for n, e in valid]),
        "invalid.json": dump([_check_invalid(v) for v in invalid]),
        "identifiers_valid.txt": ids_ok,
        "identifiers_invalid.txt": ids_bad,
    }


def main(argv: list[str] | None = None, *, write: Callable[[str], None] = print) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if a file would change")
    args = ap.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = HERE / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    verb = "out of date" if args.check else "written"
    write(f"{verb}: {', '.join(stale)}" if stale else "vectors up to date")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
