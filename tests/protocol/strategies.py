"""Hypothesis strategies for v1 entries, written from DESIGN.md rather than from the schema's regexes.

Every value drawn here is valid, and the sizes are bounded so that any
combination stays under the 16 KiB entry limit (worst case about 13 KiB).
"""

from __future__ import annotations

import string
from typing import Any

from hypothesis import strategies as st

from protocol import LICENSE_TYPES, AssetUri, AuthorKey, Entry, EntryHash, Signer, sign_entry

MAX_UINT = 2**63 - 1
B32 = "abcdefghijklmnopqrstuvwxyz234567"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
KEY_CHARS = string.ascii_letters + string.digits + "._~-"
MIME_FIRST = string.ascii_lowercase + string.digits
MIME_REST = MIME_FIRST + "!#$&^_.+-"

uints = st.integers(0, MAX_UINT)
seeds = st.binary(min_size=32, max_size=32)
signers = seeds.map(Signer)
hashes = st.binary(min_size=32, max_size=32).map(EntryHash)
asset_keys = st.text(KEY_CHARS, min_size=1, max_size=64)

cids = st.one_of(
    st.text(B58, min_size=44, max_size=44).map("Qm".__add__),
    st.text(B32, min_size=20, max_size=120).map("b".__add__),
)
_mime_token = st.builds(str.__add__, st.sampled_from(MIME_FIRST), st.text(MIME_REST, max_size=63))
mimes = st.builds(lambda a, b: f"{a}/{b}", _mime_token, _mime_token)
media = st.fixed_dictionaries({"cid": cids, "mime": mimes, "size": uints}, optional={"duration_ms": uints})

# Free text: any Unicode but U+0000, which v1 refuses.
prose = st.characters(codec="utf-8", exclude_characters="\x00")
titles = st.text(prose, min_size=1, max_size=200).filter(lambda s: bool(s.strip()))
descriptions = st.text(prose, max_size=1500)
tags = st.lists(st.text(prose, min_size=1, max_size=32), max_size=20, unique=True)

amounts = st.builds(
    lambda whole, frac: f"{whole}.{frac}" if frac else str(whole),
    st.integers(0, 10**18 - 1),
    st.one_of(st.just(""), st.text(string.digits, min_size=1, max_size=18)),
)
currencies = st.text(string.ascii_uppercase + string.digits, min_size=2, max_size=12)
licenses = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(LICENSE_TYPES))},
    optional={
        "price": st.fixed_dictionaries({"amount": amounts, "currency": currencies}),
        "terms": st.text(prose, max_size=500),
    },
)
evm_addresses = st.text(string.hexdigits, min_size=40, max_size=40).map("0x".__add__)
stellar_accounts = st.text(string.ascii_uppercase + "234567", min_size=55, max_size=55).map("G".__add__)
payouts = st.fixed_dictionaries({}, optional={"evm": evm_addresses, "stellar": stellar_accounts}).filter(bool)

put_bodies: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {"title": titles, "description": descriptions, "tags": tags, "media": media, "license": licenses},
    optional={"preview": media, "artwork": media, "payout": payouts},
)


@st.composite
def positions(draw: st.DrawFn) -> tuple[int, EntryHash | None]:
    """A log position: seq ≥ 1 and a ``prev`` that is null exactly at seq 1."""
    seq = draw(st.one_of(st.just(1), st.integers(2, 1000), st.integers(1, MAX_UINT)))
    return seq, (None if seq == 1 else draw(hashes))


@st.composite
def attest_bodies(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """An attestation body and the entry key it requires (the asset's base32 id hash)."""
    author = AuthorKey(draw(st.binary(min_size=32, max_size=32)))
    key = draw(asset_keys)
    printable = st.text(string.printable[:94], min_size=1, max_size=128)
    body = {
        "subject": draw(st.binary(min_size=32, max_size=32)),
        "asset": {"author": author.raw, "key": key},
        "status": draw(st.sampled_from(["verified", "revoked"])),
        "chain": draw(st.sampled_from(["eip155:1", "eip155:31337", "stellar:testnet", "stellar:pubnet"])),
        "onchain_id": draw(printable),
        "tx": draw(printable),
    }
    return AssetUri.of(author, key).id_b32, body


@st.composite
def entries(draw: st.DrawFn, kinds: tuple[str, ...] = ("asset.put", "asset.delete", "attest")) -> Entry:
    """A signed entry of any kind, by a random author, anywhere in its log."""
    signer = draw(signers)
    seq, prev = draw(positions())
    kind = draw(st.sampled_from(kinds))
    if kind == "attest":
        key, body = draw(attest_bodies())
    else:
        key = draw(asset_keys)
        body = draw(put_bodies) if kind == "asset.put" else {}
    return sign_entry(signer, seq=seq, prev=prev, ts=draw(uints), kind=kind, key=key, body=body)


plain_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64 - 1),
    st.binary(max_size=40),
    st.text(max_size=40),
)
plain_data = st.recursive(
    plain_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6), st.dictionaries(st.text(max_size=30), children, max_size=6)
    ),
    max_leaves=30,
)
"""Any value deterministic CBOR may carry here: no floats, no tags, text map keys."""
