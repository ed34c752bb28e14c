"""The golden vectors in tests/vectors/, run against the parser and the signer."""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict
from typing import Any

import cbor2
import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from protocol import (
    EntryHash,
    ProtocolError,
    Signer,
    TimestampError,
    canonical_bytes,
    parse_and_verify,
    parse_did,
    sign_entry,
)
from tests.vectors import (
    AUTHOR2_SEED,
    AUTHOR_SEED,
    BRIDGE_SEED,
    EDGE_SEED,
    HERE,
    InvalidVector,
    ValidVector,
    by_name,
    generate,
    invalid_vectors,
    unsigned_fields,
    valid_vectors,
)

VALID = valid_vectors()
INVALID = invalid_vectors()
SIGNERS = {s.public.did: s for s in map(Signer, (AUTHOR_SEED, AUTHOR2_SEED, BRIDGE_SEED, EDGE_SEED))}


def test_vector_files_are_not_trivial() -> None:
    assert len(VALID) >= 10
    assert len(INVALID) >= 60
    assert {v.kind for v in VALID} == {"asset.put", "asset.delete", "attest"}
    assert {v.error for v in INVALID} == {"DecodeError", "SchemaError", "SignatureError", "TimestampError"}
    names = [v.name for v in VALID] + [v.name for v in INVALID]
    assert len(names) == len(set(names))


def test_generator_reproduces_the_checked_in_files() -> None:
    """Re-running the generator from its fixed seeds yields the files byte for byte."""
    for name, text in generate.render().items():
        assert (HERE / name).read_text(encoding="utf-8") == text, (
            f"{name} drifted; see tests/vectors/generate.py"
        )


@pytest.mark.parametrize("v", VALID, ids=lambda v: v.name)
def test_valid_vector_parses_with_exact_fields(v: ValidVector) -> None:
    e = parse_and_verify(v.raw, now_ms=None)
    assert e.raw == v.raw
    assert e.hash.raw == hashlib.sha256(v.raw).digest()
    assert e.hash.cid == v.hash_cid
    assert e.author.did == v.author_did
    assert (e.seq, e.ts, e.kind, e.key) == (v.seq, v.ts, v.kind, v.key)
    assert (e.prev.cid if e.prev else None) == v.prev_cid
    assert e.uri.text == v.uri
    assert e.v == 1


@pytest.mark.parametrize("v", VALID, ids=lambda v: v.name)
def test_valid_vector_reencodes_to_the_same_bytes(v: ValidVector) -> None:
    e = parse_and_verify(v.raw, now_ms=None)
    unsigned = unsigned_fields(e)
    assert canonical_bytes({**unsigned, "sig": e.sig}) == v.raw
    assert cbor2.dumps(cbor2.loads(v.raw), canonical=True) == v.raw
    # The fast path splices the signing bytes out of ``raw``; check against plain PyNaCl.
    VerifyKey(e.author.raw).verify(canonical_bytes(unsigned), e.sig)


@pytest.mark.parametrize("v", VALID, ids=lambda v: v.name)
def test_valid_vector_is_what_sign_entry_makes(v: ValidVector) -> None:
    e = parse_and_verify(v.raw, now_ms=None)
    again = sign_entry(
        SIGNERS[v.author_did], seq=e.seq, prev=e.prev, ts=e.ts, kind=e.kind, key=e.key, body=e.body
    )
    assert again.raw == v.raw
    assert again == e


def test_valid_vectors_form_hash_chained_logs() -> None:
    logs: dict[str, list[ValidVector]] = defaultdict(list)
    for v in VALID:
        logs[v.author_did].append(v)
    assert len(logs) == 4
    for did, log in logs.items():
        parse_did(did)
        assert log[0].seq == 1 and log[0].prev_cid is None
        for before, after in itertools.pairwise(log):
            if after.seq == before.seq + 1:
                assert after.prev_cid == before.hash_cid
            else:  # the edge author's second entry sits at seq 2^63-1
                assert after.name == "max_integers"


@pytest.mark.parametrize("v", INVALID, ids=lambda v: v.name)
def test_invalid_vector_is_rejected_with_its_error(v: InvalidVector) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_and_verify(v.raw, now_ms=v.now_ms)
    err = info.value
    assert type(err) is v.error_class, f"{type(err).__name__}: {err}"
    assert v.reason_contains in str(err)
    assert "\n" not in str(err) and str(err) == err.reason
    assert err.code == v.error_class.code


@pytest.mark.parametrize("v", INVALID, ids=lambda v: v.name)
def test_invalid_vector_has_only_its_clock_defect_or_none(v: InvalidVector) -> None:
    """Without a clock the timestamp vectors parse, and no other verdict changes."""
    if v.error_class is TimestampError:
        assert parse_and_verify(v.raw, now_ms=None).ts > v.now_ms  # type: ignore[operator]
    else:
        with pytest.raises(v.error_class):
            parse_and_verify(v.raw, now_ms=None)


def _plain(obj: Any) -> bool:
    if type(obj) is dict:
        return all(_plain(k) and _plain(x) for k, x in obj.items())
    if type(obj) is list:
        return all(map(_plain, obj))
    return obj is None or type(obj) in (int, str, bytes, bool, float)


def test_invalid_vectors_other_than_signature_ones_are_correctly_signed() -> None:
    """Each vector has one defect: where the content decodes to plain data, its signature is good."""
    checked = 0
    for v in INVALID:
        try:
            m = cbor2.loads(v.raw)
        except Exception:
            continue
        if type(m) is not dict or not _plain(m):
            continue
        author, sig = m.get("author"), m.pop("sig", None)
        if type(author) is not bytes or len(author) != 32 or type(sig) is not bytes or len(sig) != 64:
            continue
        checked += 1
        try:
            VerifyKey(author).verify(canonical_bytes(m), sig)
        except (BadSignatureError, ValueError):
            assert v.error == "SignatureError", f"{v.name} has a bad signature as well as its own defect"
        else:
            assert v.error != "SignatureError", f"{v.name} should not verify"
    assert checked >= 60


def test_oversize_vector_is_one_byte_over_and_the_limit_vector_exactly_at() -> None:
    at_limit = by_name("put_exactly_16_kib")
    over = next(v for v in INVALID if v.name == "oversize_16385_bytes")
    assert len(at_limit.raw) == 16384
    assert len(over.raw) == 16385


def test_vectors_hash_like_their_cids() -> None:
    for v in VALID:
        assert EntryHash.of(v.raw).cid == v.hash_cid
