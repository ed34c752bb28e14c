"""Identifiers: did:key authors, CIDv1 entry hashes and asset URIs."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    AssetUri,
    AuthorKey,
    EntryHash,
    IdentifierError,
    Signer,
    b32,
    parse_asset_uri,
    parse_did,
    parse_entry_hash,
)
from protocol._base58 import b58decode, b58encode
from tests.protocol.strategies import asset_keys
from tests.vectors import invalid_identifiers, valid_identifiers

PARSERS = (parse_did, parse_entry_hash, parse_asset_uri)
raw32 = st.binary(min_size=32, max_size=32)


@pytest.mark.parametrize("text", valid_identifiers())
def test_valid_identifier_parses_and_formats_back(text: str) -> None:
    if text.startswith("did:"):
        assert parse_did(text).did == text
    elif text.startswith("empressa:"):
        uri = parse_asset_uri(text)
        assert uri.text == text == str(uri)
        assert parse_did(uri.author.did) == uri.author
    elif len(text) == 64:
        assert parse_entry_hash(text).raw.hex() == text
    else:
        h = parse_entry_hash(text)
        assert h.cid == text == str(h)


@pytest.mark.parametrize("text", invalid_identifiers())
def test_invalid_identifier_is_rejected_by_every_parser(text: str) -> None:
    for parse in PARSERS:
        with pytest.raises(IdentifierError):
            parse(text)


def test_identifier_files_cover_each_kind() -> None:
    good, bad = valid_identifiers(), invalid_identifiers()
    for prefix in ("did:key:", "bafyrei", "empressa://"):
        assert sum(t.startswith(prefix) for t in good) >= 3
    assert len(bad) >= 30


def test_known_keys_and_cids() -> None:
    """Fixed points from outside this code base, so an encoding bug cannot hide in both halves."""
    # RFC 8032 §7.1, TEST 1.
    rfc = Signer(bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
    assert rfc.public.raw.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert rfc.sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    # The well-known did:key of the all-zero Ed25519 seed.
    assert Signer(bytes(32)).public.did == "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
    # The dag-cbor CID of the empty map (0xa0), as IPFS tooling prints it.
    assert EntryHash.of(b"\xa0").cid == "bafyreigbtj4x7ip5legnfznufuopl4sg4knzc2cof6duas4b3q2fy6swua"


@given(raw32)
def test_did_round_trip(raw: bytes) -> None:
    key = AuthorKey.from_bytes(raw)
    assert key.did.startswith("did:key:z6Mk")
    assert parse_did(key.did) == key
    assert str(key) == key.did and key.did in repr(key)


@given(raw32)
def test_entry_hash_round_trip(raw: bytes) -> None:
    h = EntryHash.from_bytes(raw)
    assert h.cid.startswith("bafyrei") and len(h.cid) == 59
    assert parse_entry_hash(h.cid) == h
    assert parse_entry_hash(raw.hex()) == h
    # An independent CIDv1 rendering: multibase "b" + base32(version, dag-cbor, sha2-256, length, digest).
    assert h.cid == "b" + base64.b32encode(b"\x01\x71\x12\x20" + raw).decode().lower().rstrip("=")


@given(raw32, st.integers(1, 3))
def test_cid_with_nonzero_padding_bits_is_rejected(raw: bytes, bits: int) -> None:
    cid = EntryHash(raw).cid
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    mangled = cid[:-1] + alphabet[alphabet.index(cid[-1]) | bits]
    with pytest.raises(IdentifierError):
        parse_entry_hash(mangled)


@given(raw32, asset_keys)
def test_asset_uri_round_trip_and_id_hash(raw: bytes, key: str) -> None:
    uri = AssetUri.of(AuthorKey(raw), key)
    text = f"empressa://{uri.author.did}/{key}"
    assert uri.text == text
    assert parse_asset_uri(text) == uri
    assert uri.id_hash == hashlib.sha256(text.encode("utf-8")).digest()
    assert uri.id_b32 == base64.b32encode(uri.id_hash).decode().lower().rstrip("=")
    assert len(uri.id_b32) == 52


@given(st.text(max_size=120))
def test_parsers_raise_only_identifier_errors_on_any_text(text: str) -> None:
    for parse in PARSERS:
        with contextlib.suppress(IdentifierError):
            parse(text)


@given(st.text(string.ascii_letters + string.digits + ":/._~-", max_size=80))
def test_parsers_raise_only_identifier_errors_on_near_misses(text: str) -> None:
    for prefix in ("did:key:z", "b", "empressa://did:key:z6Mk"):
        for parse in PARSERS:
            with contextlib.suppress(IdentifierError):
                parse(prefix + text)


@pytest.mark.parametrize("value", [None, 7, b"did:key:z6Mk", ["did:key:z6Mk"]])
def test_non_text_is_rejected(value: object) -> None:
    for parse in PARSERS:
        with pytest.raises(IdentifierError):
            parse(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", [b"", bytes(31), bytes(33), "a" * 32, bytearray(32)])
def test_from_bytes_wants_exactly_32_bytes(raw: object) -> None:
    with pytest.raises(IdentifierError):
        AuthorKey.from_bytes(raw)  # type: ignore[arg-type]
    with pytest.raises(IdentifierError):
        EntryHash.from_bytes(raw)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["", "a b", "a/b", "k" * 65, "naïve", "a\n", None])
def test_asset_uri_rejects_bad_keys(key: object) -> None:
    with pytest.raises(IdentifierError):
        AssetUri.of(AuthorKey(bytes(32)), key)  # type: ignore[arg-type]


def test_whitespace_around_identifiers_is_rejected() -> None:
    did = Signer(bytes(32)).public.did
    cid = EntryHash.of(b"").cid
    for text in (f" {did}", f"{did} ", f"{did}\n", f" {cid}", f"{cid}\n", f"empressa://{did}/k\n"):
        for parse in PARSERS:
            with pytest.raises(IdentifierError):
                parse(text)


def test_b32_is_lowercase_unpadded_rfc4648() -> None:
    assert b32(b"") == ""
    assert b32(b"f") == "my"  # RFC 4648 §10: BASE32("f") = "MY======"
    assert b32(b"foobar") == "mzxw6ytboi"


@given(st.binary(max_size=100))
def test_b32_is_the_standard_librarys_base32(data: bytes) -> None:
    assert b32(data) == base64.b32encode(data).decode("ascii").rstrip("=").lower()


@given(st.binary(max_size=64))
def test_base58_round_trip(data: bytes) -> None:
    text = b58encode(data)
    assert set(text) <= set("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
    assert b58decode(text) == data


def test_base58_known_values() -> None:
    # From the base58btc draft (draft-msporny-base58) test vectors.
    assert b58encode(b"Hello World!") == "2NEpo7TZRRrLZSi2U"
    assert b58encode(bytes.fromhex("0000287fb4cd")) == "11233QC4"
    with pytest.raises(ValueError):
        b58decode("0OIl")
