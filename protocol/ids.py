"""Identifiers as value types: authors (did:key), entry hashes (CIDv1), asset URIs.

Each type is built by a parse or ``from_*`` function that validates it; code
never assembles an identifier's text by hand.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from ._base58 import b58decode, b58encode
from .errors import IdentifierError

_ED25519_MULTICODEC = b"\xed\x01"
_DID_PREFIX = "did:key:z"
# CIDv1 header: version 1, codec dag-cbor (0x71), multihash sha2-256 (0x12), 32 bytes.
_CID_HEADER = b"\x01\x71\x12\x20"
KEY_RE = re.compile(r"[A-Za-z0-9._~-]{1,64}")
URI_SCHEME = "empressa://"


_B32_PAIRS = tuple(
    a + b for a in "abcdefghijklmnopqrstuvwxyz234567" for b in "abcdefghijklmnopqrstuvwxyz234567"
)


def b32(data: bytes) -> str:
    """RFC 4648 base32, lowercase, no padding.

    Ten bits (two characters) at a time from one integer: ~3 us for a CID's 36 bytes where
    ``base64.b32encode`` (a pure-Python loop in 3.11) takes ~4.5 us; the same text (tested).
    """
    n = len(data)
    pad = -n % 5
    value = int.from_bytes(data, "big") << (8 * pad)
    pairs = _B32_PAIRS
    text = "".join([pairs[(value >> shift) & 0x3FF] for shift in range(8 * (n + pad) - 10, -1, -10)])
    return text[: (8 * n + 4) // 5]


def b32decode(text: str) -> bytes:
    if text != text.lower():
        raise ValueError("base32 text must be lowercase")
    pad = "=" * (-len(text) % 8)
    return base64.b32decode(text.upper() + pad)


@dataclass(frozen=True, slots=True, order=True)
class AuthorKey:
    """An author's Ed25519 public key (32 bytes); its text form is a did:key."""

    raw: bytes

    @classmethod
    def from_bytes(cls, raw: bytes) -> AuthorKey:
        if not isinstance(raw, bytes) or len(raw) != 32:
            raise IdentifierError("an author key is exactly 32 bytes")
        return cls(raw)

    @property
    def did(self) -> str:
        raw = self.raw
        return _did_of(raw) if type(raw) is bytes else _DID_PREFIX + b58encode(_ED25519_MULTICODEC + raw)

    def __str__(self) -> str:
        return self.did

    def __repr__(self) -> str:
        return f"AuthorKey({self.did})"


@lru_cache(maxsize=16384)
def _did_of(raw: bytes) -> str:
    """A key's did:key text (cached: base58 is pure-Python division, and a batch of attestations or
    activity rows names few distinct authors, each several times)."""
    return _DID_PREFIX + b58encode(_ED25519_MULTICODEC + raw)


def parse_did(text: str) -> AuthorKey:
    """Parse ``did:key:z6Mk…`` (an Ed25519 did:key) into an :class:`AuthorKey`."""
    if not isinstance(text, str) or not text.startswith(_DID_PREFIX):
        raise IdentifierError(f"not an Ed25519 did:key: {text!r:.80}")
    try:
        decoded = b58decode(text[len(_DID_PREFIX) :])
    except ValueError as exc:
        raise IdentifierError(f"did:key is not base58btc: {exc}") from None
    if len(decoded) != 34 or decoded[:2] != _ED25519_MULTICODEC:
        raise IdentifierError("did:key does not hold an Ed25519 public key")
    return AuthorKey(decoded[2:])


def parse_dids(texts: Iterable[str]) -> list[AuthorKey]:
    """Parse a list of did:keys (a ``trusted_bridges`` setting); the first bad one raises, named."""
    out = []
    for text in texts:
        try:
            out.append(parse_did(text))
        except IdentifierError as exc:
            raise IdentifierError(f"{text!r:.80} is not an Ed25519 did:key ({exc})") from None
    return out


@dataclass(frozen=True, slots=True, order=True)
class EntryHash:
    """SHA-256 of a full canonical entry; text form is a CIDv1 (dag-cbor, base32)."""

    raw: bytes

    @classmethod
    def from_bytes(cls, raw: bytes) -> EntryHash:
        if not isinstance(raw, bytes) or len(raw) != 32:
            raise IdentifierError("an entry hash is exactly 32 bytes")
        return cls(raw)

    @classmethod
    def of(cls, canonical_entry: bytes) -> EntryHash:
        return cls(hashlib.sha256(canonical_entry).digest())

    @property
    def cid(self) -> str:
        return "b" + b32(_CID_HEADER + self.raw)

    def __str__(self) -> str:
        return self.cid

    def __repr__(self) -> str:
        return f"EntryHash({self.cid})"


def parse_entry_hash(text: str) -> EntryHash:
    """Parse an entry hash from its CIDv1 text (``bafyrei…``) or 64 hex digits."""
    if not isinstance(text, str):
        raise IdentifierError("an entry hash must be text")
    if len(text) == 64 and re.fullmatch(r"[0-9a-f]{64}", text):
        return EntryHash(bytes.fromhex(text))
    if not text.startswith("b"):
        raise IdentifierError(f"not a base32 CIDv1: {text!r:.80}")
    try:
        raw = b32decode(text[1:])
    except ValueError:
        raise IdentifierError(f"not a base32 CIDv1: {text!r:.80}") from None
    if len(raw) != 36 or raw[:4] != _CID_HEADER:
        raise IdentifierError("CID is not a dag-cbor sha2-256 CIDv1")
    if b32(raw) != text[1:]:  # the decoder ignores the last character's unused bits
        raise IdentifierError("CID is not in canonical base32 (nonzero padding bits)")
    return EntryHash(raw[4:])


@dataclass(frozen=True, slots=True, order=True)
class AssetUri:
    """``empressa://{did}/{key}``: an asset inside its author's namespace."""

    author: AuthorKey
    key: str

    @classmethod
    def of(cls, author: AuthorKey, key: str) -> AssetUri:
        if not isinstance(key, str) or not KEY_RE.fullmatch(key):
            raise IdentifierError(f"asset key must match [A-Za-z0-9._~-]{{1,64}}: {key!r:.80}")
        return cls(author, key)

    @property
    def text(self) -> str:
        return f"{URI_SCHEME}{self.author.did}/{self.key}"

    @property
    def id_hash(self) -> bytes:
        """SHA-256 of the URI in UTF-8: the asset's on-chain id and Stellar memo."""
        return hashlib.sha256(self.text.encode("utf-8")).digest()

    @property
    def id_b32(self) -> str:
        """The asset id hash in lowercase unpadded base32: an ``attest`` entry's key."""
        return _id_b32_of(self.text)

    def __str__(self) -> str:
        return self.text


@lru_cache(maxsize=16384)
def _id_b32_of(uri_text: str) -> str:
    """``AssetUri.id_b32`` by the URI's text (cached: building an attestation's body and checking it
    both ask, and base32 is a pure-Python loop, ~4 us)."""
    return b32(hashlib.sha256(uri_text.encode("utf-8")).digest())


def parse_asset_uri(text: str) -> AssetUri:
    """Parse ``empressa://did:key:z…/key``."""
    if not isinstance(text, str) or not text.startswith(URI_SCHEME):
        raise IdentifierError(f"an asset URI starts with {URI_SCHEME}: {text!r:.80}")
    did, sep, key = text[len(URI_SCHEME) :].partition("/")
    if not sep:
        raise IdentifierError("an asset URI is empressa://{did}/{key}")
    return AssetUri.of(parse_did(did), key)
