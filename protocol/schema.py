"""Field-by-field validation of entries and their kind-specific bodies.

Everything here is strict: unknown fields, missing fields and wrong types are
rejected, ``bool`` is never accepted where an integer is expected, and every
limit from DESIGN.md is enforced. Free text never holds U+0000: no PostgreSQL
text or jsonb column can keep it, so one such entry would stall every indexer
that mirrors its author. Floats and CBOR tags never pass a type check,
so validation also guarantees the decoded value is plain data.

``asset.put`` body (required unless marked optional)::

    title        text, 1..200 chars, not blank
    description  text, ≤ 5,000 chars (may be empty)
    tags         list of ≤ 20 distinct texts, each 1..32 chars
    media        {cid, mime, size, duration_ms?}
    preview?     same shape as media
    artwork?     same shape as media
    license      {type, price? {amount, currency}, terms?}
    payout?      {evm?: 0x address, stellar?: G… account}, at least one

``asset.delete`` body: ``{}``.

``attest`` body: {subject, asset {author, key}, status, chain, onchain_id, tx}.
"""

from __future__ import annotations

import re
from typing import Any

from .canonical import in_canonical_order
from .errors import DecodeError, SchemaError
from .ids import KEY_RE, AssetUri, AuthorKey

VERSION = 1
MAX_ENTRY_BYTES = 16 * 1024
MAX_TITLE = 200
MAX_DESCRIPTION = 5000
MAX_TAGS = 20
MAX_TAG = 32
MAX_TERMS = 5000
MAX_SKEW_MS = 10 * 60 * 1000
MAX_UINT = 2**63 - 1

KINDS = ("asset.put", "asset.delete", "attest")
LICENSE_TYPES = frozenset(
    {
        "personal",
        "commercial",
        "exclusive",
        "cc0",
        "cc-by",
        "cc-by-sa",
        "cc-by-nc",
        "cc-by-nd",
        "cc-by-nc-sa",
        "cc-by-nc-nd",
    }
)
ATTEST_STATUSES = frozenset({"verified", "revoked"})

ENTRY_FIELDS = frozenset({"v", "author", "seq", "prev", "ts", "kind", "key", "body", "sig"})
_PUT_REQUIRED = frozenset({"title", "description", "tags", "media", "license"})
_PUT_ALLOWED = _PUT_REQUIRED | {"preview", "artwork", "payout"}
_MEDIA_REQUIRED = frozenset({"cid", "mime", "size"})
_MEDIA_ALLOWED = _MEDIA_REQUIRED | {"duration_ms"}
_ATTEST_FIELDS = frozenset({"subject", "asset", "status", "chain", "onchain_id", "tx"})

CID_RE = re.compile(r"Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{20,120}")
MIME_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
AMOUNT_RE = re.compile(r"(0|[1-9][0-9]{0,17})(\.[0-9]{1,18})?")
CURRENCY_RE = re.compile(r"[A-Z0-9]{2,12}")
EVM_RE = re.compile(r"0x[0-9a-fA-F]{40}")
STELLAR_RE = re.compile(r"G[A-Z2-7]{55}")
CAIP2_RE = re.compile(r"[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}")
CHAIN_REF_RE = re.compile(r"[\x21-\x7e]{1,128}")


def _fail(where: str, why: str) -> SchemaError:
    return SchemaError(f"{where}: {why}")


def _map(value: Any, where: str, required: frozenset[str], allowed: frozenset[str]) -> dict[str, Any]:
    if type(value) is not dict:
        raise _fail(where, "must be a map")
    keys = value.keys()
    if keys <= allowed and keys >= required:
        if not in_canonical_order(tuple(keys)):
            raise DecodeError(f"{where}: map keys are not in deterministic CBOR order")
        return value
    missing = required - keys
    if missing:
        raise _fail(where, f"missing field {sorted(missing)[0]!r}")
    raise _fail(where, f"unknown field {sorted(map(str, keys - allowed))[0]!r}")


def uint(value: Any, where: str, *, minimum: int = 0) -> int:
    if type(value) is not int or not minimum <= value <= MAX_UINT:
        raise _fail(where, f"must be an integer from {minimum} to 2^63-1")
    return value


def text(value: Any, where: str, *, max_len: int, min_len: int = 0) -> str:
    if type(value) is not str:
        raise _fail(where, "must be text")
    if not min_len <= len(value) <= max_len:
        raise _fail(where, f"must be {min_len}..{max_len} characters (is {len(value)})")
    if "\x00" in value:
        raise _fail(where, "must not contain U+0000 (NUL)")
    return value


def pattern(value: Any, where: str, regex: re.Pattern[str], what: str) -> str:
    if type(value) is not str or not regex.fullmatch(value):
        raise _fail(where, f"must be {what}")
    return value


def bytes32(value: Any, where: str) -> bytes:
    if type(value) is not bytes or len(value) != 32:
        raise _fail(where, "must be 32 bytes")
    return value


def _media(value: Any, where: str) -> None:
    m = _map(value, where, _MEDIA_REQUIRED, _MEDIA_ALLOWED)
    pattern(m["cid"], f"{where}.cid", CID_RE, "a CID (CIDv0 Qm… or base32 CIDv1 b…)")
    pattern(m["mime"], f"{where}.mime", MIME_RE, "a lowercase MIME type like audio/mpeg")
    uint(m["size"], f"{where}.size")
    if "duration_ms" in m:
        uint(m["duration_ms"], f"{where}.duration_ms")


def validate_put_body(body: Any) -> None:
    b = _map(body, "body", _PUT_REQUIRED, _PUT_ALLOWED)
    title = text(b["title"], "body.title", min_len=1, max_len=MAX_TITLE)
    if not title.strip():
        raise _fail("body.title", "must not be blank")
    text(b["description"], "body.description", max_len=MAX_DESCRIPTION)
    tags = b["tags"]
    if type(tags) is not list or len(tags) > MAX_TAGS:
        raise _fail("body.tags", f"must be a list of at most {MAX_TAGS} tags")
    for i, tag in enumerate(tags):
        text(tag, f"body.tags[{i}]", min_len=1, max_len=MAX_TAG)
    if len(set(tags)) != len(tags):
        raise _fail("body.tags", "must not repeat a tag")
    _media(b["media"], "body.media")
    for opt in ("preview", "artwork"):
        if opt in b:
            _media(b[opt], f"body.{opt}")
    lic = _map(b["license"], "body.license", frozenset({"type"}), frozenset({"type", "price", "terms"}))
    if type(lic["type"]) is not str or lic["type"] not in LICENSE_TYPES:
        raise _fail("body.license.type", f"must be one of {', '.join(sorted(LICENSE_TYPES))}")
    if "price" in lic:
        price = _map(
            lic["price"],
            "body.license.price",
            frozenset({"amount", "currency"}),
            frozenset({"amount", "currency"}),
        )
        pattern(price["amount"], "body.license.price.amount", AMOUNT_RE, "a decimal string like '12.50'")
        pattern(
            price["currency"],
            "body.license.price.currency",
            CURRENCY_RE,
            "an uppercase currency code like USD",
        )
    if "terms" in lic:
        text(lic["terms"], "body.license.terms", max_len=MAX_TERMS)
    if "payout" in b:
        payout = _map(b["payout"], "body.payout", frozenset(), frozenset({"evm", "stellar"}))
        if not payout:
            raise _fail("body.payout", "must name an evm or a stellar account")
        if "evm" in payout:
            pattern(payout["evm"], "body.payout.evm", EVM_RE, "a 0x-prefixed 20-byte hex address")
        if "stellar" in payout:
            pattern(payout["stellar"], "body.payout.stellar", STELLAR_RE, "a Stellar G… account id")


def validate_attest_body(body: Any, key: str) -> None:
    b = _map(body, "body", _ATTEST_FIELDS, _ATTEST_FIELDS)
    bytes32(b["subject"], "body.subject")
    asset = _map(b["asset"], "body.asset", frozenset({"author", "key"}), frozenset({"author", "key"}))
    author = AuthorKey(bytes32(asset["author"], "body.asset.author"))
    asset_key = pattern(asset["key"], "body.asset.key", KEY_RE, "an asset key [A-Za-z0-9._~-]{1,64}")
    if type(b["status"]) is not str or b["status"] not in ATTEST_STATUSES:
        raise _fail("body.status", "must be verified or revoked")
    pattern(b["chain"], "body.chain", CAIP2_RE, "a CAIP-2 chain id like eip155:1")
    pattern(b["onchain_id"], "body.onchain_id", CHAIN_REF_RE, "1..128 printable ASCII characters")
    pattern(b["tx"], "body.tx", CHAIN_REF_RE, "1..128 printable ASCII characters")
    expected = AssetUri(author, asset_key).id_b32
    if key != expected:
        raise _fail("key", "an attest entry's key must be the base32 asset id hash of body.asset")


def validate_fields(m: dict[str, Any]) -> None:
    """Validate a decoded entry map (with or without ``sig``) against v1."""
    v = m["v"]
    if type(v) is not int or v != VERSION:
        # A scalar is shown; anything else is the sender's, of any size or depth, and a bignum past
        # Python's 4,300 digits cannot even be printed.
        small = v is None or type(v) is bool or (type(v) is int and -(2**64) <= v < 2**64)
        shown = repr(v) if small else type(v).__name__
        raise SchemaError(f"unsupported protocol version {shown}; this node speaks v{VERSION}")
    bytes32(m["author"], "author")
    seq = uint(m["seq"], "seq", minimum=1)
    prev = m["prev"]
    if seq == 1:
        if prev is not None:
            raise _fail("prev", "must be null at seq 1")
    else:
        if prev is None:
            raise _fail("prev", f"must be the hash of seq {seq - 1}, not null")
        bytes32(prev, "prev")
    uint(m["ts"], "ts")
    kind = m["kind"]
    key = pattern(m["key"], "key", KEY_RE, "an asset key [A-Za-z0-9._~-]{1,64}")
    if kind == "asset.put":
        validate_put_body(m["body"])
    elif kind == "asset.delete":
        if type(m["body"]) is not dict or m["body"]:
            raise _fail("body", "an asset.delete body must be an empty map")
    elif kind == "attest":
        validate_attest_body(m["body"], key)
    else:
        raise _fail("kind", f"must be one of {', '.join(KINDS)}")
