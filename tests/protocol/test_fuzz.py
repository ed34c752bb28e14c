"""Corrupted and random input: the parser rejects it with a ProtocolError, and nothing else."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import DecodeError, Entry, ProtocolError, canonical_bytes, parse_and_verify
from tests.protocol.strategies import entries, plain_data
from tests.vectors import NOW_MS, valid_vectors

VALID = valid_vectors()
SMALL = [v for v in VALID if len(v.raw) < 1000]


def rejected(raw: bytes, now_ms: int | None = None) -> ProtocolError:
    """The error ``raw`` is rejected with; fails the test if it is accepted or raises anything else."""
    try:
        e = parse_and_verify(raw, now_ms=now_ms)
    except ProtocolError as err:
        return err
    raise AssertionError(f"accepted a corrupted entry: {e!r}")


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_any_single_byte_change_to_a_vector_is_rejected(v: Any, data: st.DataObject) -> None:
    raw = bytearray(v.raw)
    i = data.draw(st.integers(0, len(raw) - 1), label="position")
    raw[i] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]), label="value")
    rejected(bytes(raw))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries(), st.data())
def test_any_single_byte_change_to_any_entry_is_rejected(e: Entry, data: st.DataObject) -> None:
    raw = bytearray(e.raw)
    i = data.draw(st.integers(0, len(raw) - 1), label="position")
    raw[i] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]), label="value")
    rejected(bytes(raw))


@pytest.mark.parametrize("v", SMALL, ids=lambda v: v.name)
def test_every_single_bit_flip_is_rejected(v: Any) -> None:
    for i in range(len(v.raw)):
        for bit in range(8):
            raw = bytearray(v.raw)
            raw[i] ^= 1 << bit
            rejected(bytes(raw))


@pytest.mark.parametrize("v", VALID, ids=lambda v: v.name)
def test_every_truncation_and_extension_is_a_decode_error(v: Any) -> None:
    step = max(1, len(v.raw) // 400)
    for n in range(0, len(v.raw), step):
        assert isinstance(rejected(v.raw[:n]), DecodeError)
    for extra in (b"\x00", b"\xff", v.raw):
        assert isinstance(rejected(v.raw + extra), DecodeError)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_protocol_errors(data: bytes) -> None:
    rejected(data, NOW_MS)


FIELDS = ["v", "author", "seq", "prev", "ts", "kind", "key", "body", "sig", "title", "media"]
entry_like = st.dictionaries(st.sampled_from(FIELDS), plain_data, max_size=10)


@settings(max_examples=150, deadline=None)
@given(entry_like, st.booleans())
def test_random_entry_shaped_maps_only_raise_protocol_errors(m: dict[str, Any], canonical: bool) -> None:
    raw = canonical_bytes(m) if canonical else cbor2.dumps(m)
    rejected(raw, NOW_MS)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(VALID), st.sampled_from(FIELDS[:9]), plain_data)
def test_any_field_replaced_by_any_value_is_rejected(v: Any, field: str, value: Any) -> None:
    """Swap one field of a valid entry for arbitrary data, keeping the signature: never accepted."""
    m = cbor2.loads(v.raw)
    if m[field] == value and type(m[field]) is type(value):
        return
    m[field] = value
    rejected(canonical_bytes(m), NOW_MS)
