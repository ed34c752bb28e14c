"""The signed entry: building, signing, and the one strict parser.

``parse_and_verify(raw)`` is the only way bytes become an :class:`Entry`;
``sign_entry`` is the only way a new one is made. Code past either point can
rely on every field being valid and the signature checked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import cbor2
import cbrrr
from nacl.bindings import crypto_sign, crypto_sign_BYTES, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError, CryptoError

from . import schema
from .canonical import (
    NOT_CANONICAL,
    canonical_bytes,
    in_canonical_order,
    loads_canonical,
    loads_strict,
    require_canonical,
)
from .errors import DecodeError, SchemaError, SignatureError, TimestampError
from .ids import AssetUri, AuthorKey, EntryHash

# Encoded map header for 9 and 8 pairs, and the encoded ``"sig": bytes(64)`` head.
_MAP9 = 0xA9
_MAP8 = b"\xa8"
_SIG_HEAD = b"\x63sig\x58\x40"
_UNSIGNED_FIELDS = frozenset({"v", "author", "seq", "prev", "ts", "kind", "key", "body"})


class Entry(NamedTuple):
    """A verified v1 entry. Construct only via :func:`parse_and_verify` or :func:`sign_entry`.

    A named tuple rather than a frozen dataclass: it is built once per entry
    received, and this halves the construction cost on the validation hot path.
    """

    author: AuthorKey
    seq: int
    prev: EntryHash | None
    ts: int
    kind: str
    key: str
    body: dict[str, Any]
    sig: bytes
    raw: bytes
    hash: EntryHash

    @property
    def v(self) -> int:
        return schema.VERSION

    @property
    def uri(self) -> AssetUri:
        """The asset this entry is about (for ``attest``: the attestation's own slot)."""
        return AssetUri(self.author, self.key)

    def __repr__(self) -> str:
        return f"Entry({self.author.did} #{self.seq} {self.kind} {self.key!r} {self.hash.cid})"


def _uint_len(n: int) -> int:
    return 1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5 if n < 0x100000000 else 9


def _sig_offset(m: dict[str, Any]) -> int:
    """Where the ``sig`` pair starts in the canonical encoding of entry map ``m``.

    In canonical key order (length-first) the pairs before ``sig`` are ``v``,
    ``ts``, ``key``, ``seq``; their encoded sizes follow from the values.
    """
    key_len = len(m["key"])  # ASCII by KEY_RE, so characters == bytes
    return (
        1
        + 2
        + _uint_len(m["v"])
        + 3
        + _uint_len(m["ts"])
        + 4
        + (1 if key_len < 24 else 2)
        + key_len
        + 4
        + _uint_len(m["seq"])
    )


def _signing_bytes(raw: bytes, m: dict[str, Any]) -> bytes:
    """The canonical encoding of the entry without ``sig``, spliced out of ``raw``.

    Removing the 70-byte ``sig`` pair and turning the 9-pair map header into an
    8-pair one yields exactly ``canonical_bytes`` of the unsigned map, without a
    second encode on the hot path.
    """
    off = _sig_offset(m)
    if raw[0] != _MAP9 or raw[off : off + 6] != _SIG_HEAD:  # pragma: no cover - guaranteed by canonical check
        raise DecodeError("internal: signature field not where canonical order puts it")
    return _MAP8 + raw[1:off] + raw[off + 70 :]


def _with_sig(unsigned: bytes, m: dict[str, Any], sig: bytes) -> bytes:
    """The inverse of :func:`_signing_bytes`: the signed entry's canonical bytes, ``sig`` spliced in."""
    off = _sig_offset(m)
    return bytes((_MAP9,)) + unsigned[1:off] + _SIG_HEAD + sig + unsigned[off:]


def parse_and_verify(raw: bytes, *, now_ms: int | None, max_skew_ms: int = schema.MAX_SKEW_MS) -> Entry:
    """Decode, validate and verify one encoded entry.

    Args:
        raw: the exact bytes as received.
        now_ms: the receiver's clock in unix milliseconds; ``None`` skips the
            future-timestamp check (for re-verifying stored history).
        max_skew_ms: how far ahead of ``now_ms`` ``ts`` may be.

    Raises:
        DecodeError, SchemaError, SignatureError, TimestampError: with a one-line reason.
    """
    if type(raw) is not bytes:
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            raise DecodeError(f"an entry is bytes, not {type(raw).__name__}")
        raw = bytes(raw)
    m = loads_canonical(raw, max_size=schema.MAX_ENTRY_BYTES)
    checked = m is not NOT_CANONICAL  # canonical already: require_canonical below would pass
    if not checked:
        m = loads_strict(raw, max_size=schema.MAX_ENTRY_BYTES)
    if type(m) is not dict:
        raise DecodeError("an entry is a CBOR map")
    keys = m.keys()
    if keys == schema.ENTRY_FIELDS:
        if not in_canonical_order(tuple(keys)):
            raise DecodeError("entry map keys are not in deterministic CBOR order")
    else:
        missing = schema.ENTRY_FIELDS - keys
        if missing:
            raise SchemaError(f"missing field {sorted(missing)[0]!r}")
        raise SchemaError(f"unknown field {sorted(map(str, keys - schema.ENTRY_FIELDS))[0]!r}")
    schema.validate_fields(m)
    sig = m["sig"]
    if type(sig) is not bytes or len(sig) != crypto_sign_BYTES:
        raise SchemaError("sig: must be 64 bytes")
    if not checked:
        require_canonical(m, raw, key_order_checked=True)
    if now_ms is not None and m["ts"] > now_ms + max_skew_ms:
        ahead = (m["ts"] - now_ms) / 1000
        raise TimestampError(f"ts is {ahead:.0f} s ahead of this clock (limit {max_skew_ms // 1000} s)")
    try:
        crypto_sign_open(sig + _signing_bytes(raw, m), m["author"])
    except (BadSignatureError, CryptoError, ValueError):
        raise SignatureError("signature does not verify for this author") from None
    return _entry(m, AuthorKey(m["author"]), sig, raw)


def _entry(m: dict[str, Any], author: AuthorKey, sig: bytes, raw: bytes) -> Entry:
    """The :class:`Entry` of a validated map ``m`` whose canonical signed bytes are ``raw``."""
    prev = m["prev"]
    return Entry(
        author=author,
        seq=m["seq"],
        prev=EntryHash(prev) if prev is not None else None,
        ts=m["ts"],
        kind=m["kind"],
        key=m["key"],
        body=m["body"],
        sig=sig,
        raw=raw,
        hash=EntryHash(hashlib.sha256(raw).digest()),
    )


@dataclass(frozen=True, slots=True)
class Signer:
    """An Ed25519 signing key held in memory. Its ``repr`` never shows the seed."""

    seed: bytes = field(repr=False)
    public: AuthorKey = field(init=False)
    _secret: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if type(self.seed) is not bytes or len(self.seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        pk, sk = crypto_sign_seed_keypair(self.seed)
        object.__setattr__(self, "public", AuthorKey(pk))
        object.__setattr__(self, "_secret", sk)

    def sign(self, message: bytes) -> bytes:
        return crypto_sign(message, self._secret)[:crypto_sign_BYTES]


def check_write(*, kind: str, key: str, body: dict[str, Any]) -> None:
    """Validate a write's fields as :func:`sign_entry` will, without a key (a client's check before sending).

    The position fields take their smallest values (seq 1, no prev), so an entry
    within a few bytes of the size limit may pass here and still be refused
    when it is signed at a later seq.

    Raises:
        SchemaError, DecodeError: with the same one-line reason ``sign_entry`` gives.
    """
    m: dict[str, Any] = {
        "v": schema.VERSION,
        "author": bytes(32),
        "seq": 1,
        "prev": None,
        "ts": 0,
        "kind": kind,
        "key": key,
        "body": body,
    }
    unsigned, m = _plain(m)
    schema.validate_fields(m)
    if len(unsigned) + 70 > schema.MAX_ENTRY_BYTES:
        raise SchemaError(f"entry would be over {schema.MAX_ENTRY_BYTES} bytes")


def _plain(m: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """``m``'s canonical encoding and ``m`` decoded back from it: every map in canonical order, plain data.

    cbrrr's encoder takes only the exact plain types (dict, list, str, bytes,
    int, bool, None, and floats) and writes them as canonical CBOR, floats
    aside (always 64-bit, where canonical is shortest): a float is refused by
    the schema check that follows, before anything is signed, with the same
    reason either way. Anything else it refuses (a tuple, a subclass, a
    bignum) is encoded by cbor2, as before, and usually refused by that check.
    """
    try:
        unsigned = cbrrr.encode_dag_cbor(m)
        back = loads_canonical(unsigned, max_size=len(unsigned))
    except Exception:  # not exactly plain data: the general path below says what it is
        back = NOT_CANONICAL
    if back is NOT_CANONICAL:
        try:
            unsigned = canonical_bytes(m)
            back = cbor2.loads(unsigned)
        except Exception as exc:
            raise SchemaError(f"entry fields cannot be encoded as CBOR: {exc}") from None
    if type(back) is not dict or back.keys() != _UNSIGNED_FIELDS:  # pragma: no cover - built by the caller
        raise SchemaError("entry fields do not round-trip through CBOR")
    return unsigned, back


def sign_entry(
    signer: Signer,
    *,
    seq: int,
    prev: EntryHash | None,
    ts: int,
    kind: str,
    key: str,
    body: dict[str, Any],
) -> Entry:
    """Validate the fields, sign them, and return the entry (raising ``SchemaError`` first).

    The fields are validated once (the same :func:`schema.validate_fields` that
    :func:`parse_and_verify` runs) and the signature is not checked again: the
    entry is built from the canonical bytes that were signed, with ``sig``
    spliced in where canonical order puts it, so it equals what
    ``parse_and_verify`` would return for its ``raw`` (the tests hold the two
    paths to that).
    """
    m: dict[str, Any] = {
        "v": schema.VERSION,
        "author": signer.public.raw,
        "seq": seq,
        "prev": prev.raw if prev is not None else None,
        "ts": ts,
        "kind": kind,
        "key": key,
        "body": body,
    }
    # Round-trip through canonical CBOR so every map is in canonical order
    # and only encodable plain data reaches the schema.
    unsigned, m = _plain(m)
    schema.validate_fields(m)
    # Validation proved every value plain (no floats, tags or bignums), so the
    # bytes just encoded are the canonical encoding of the validated map.
    sig = signer.sign(unsigned)
    raw = _with_sig(unsigned, m, sig)
    if len(raw) > schema.MAX_ENTRY_BYTES:
        raise SchemaError(f"entry would be {len(raw)} bytes; the limit is {schema.MAX_ENTRY_BYTES}")
    return _entry(m, signer.public, sig, raw)
