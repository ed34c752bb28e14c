"""Deterministic CBOR, checked against a deliberately simple reference encoder."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import DecodeError, canonical_bytes, is_map_item, split_chunks
from protocol.canonical import (
    NOT_CANONICAL,
    canonical_item_length,
    check_plain,
    loads_canonical,
    loads_strict,
    require_canonical,
)
from tests.protocol.strategies import plain_data


def _head(major: int, n: int, width: int | None = None) -> bytes:
    if width is None:
        width = 0 if n < 24 else 1 if n < 2**8 else 2 if n < 2**16 else 4 if n < 2**32 else 8
    info = {0: n, 1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes([major << 5 | info]) + (n.to_bytes(width, "big") if width else b"")


def ref_encode(obj: Any, *, int_width: int | None = None, reverse_keys: bool = False) -> bytes:
    """RFC 8949 §4.2.1 by the book; the keyword arguments break one rule on purpose."""

    def enc(o: Any) -> bytes:
        if o is None:
            return b"\xf6"
        if o is True or o is False:
            return b"\xf5" if o else b"\xf4"
        if type(o) is int:
            return _head(0, o, int_width) if o >= 0 else _head(1, -1 - o, int_width)
        if type(o) is bytes:
            return _head(2, len(o)) + o
        if type(o) is str:
            b = o.encode("utf-8")
            return _head(3, len(b)) + b
        if type(o) is list:
            return _head(4, len(o)) + b"".join(map(enc, o))
        if type(o) is dict:
            pairs = sorted(((enc(k), enc(v)) for k, v in o.items()), reverse=reverse_keys)
            return _head(5, len(pairs)) + b"".join(k + v for k, v in pairs)
        raise TypeError(type(o))

    return enc(obj)


def accept(raw: bytes) -> Any:
    """What the wire decoder does with a frame body, minus the frame schema."""
    obj = loads_strict(raw, max_size=1 << 20)
    check_plain(obj)
    require_canonical(obj, raw)
    return obj


@given(plain_data)
def test_canonical_bytes_match_the_reference(obj: Any) -> None:
    raw = ref_encode(obj)
    assert canonical_bytes(obj) == raw
    assert accept(raw) == obj


@given(plain_data)
def test_non_shortest_integers_are_rejected(obj: Any) -> None:
    wide = ref_encode(obj, int_width=8)
    if wide == ref_encode(obj):
        return
    with pytest.raises(DecodeError):
        accept(wide)


@given(plain_data)
def test_unsorted_keys_are_rejected(obj: Any) -> None:
    unsorted = ref_encode(obj, reverse_keys=True)
    if unsorted == ref_encode(obj):
        return
    with pytest.raises(DecodeError):
        accept(unsorted)


@given(plain_data, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_rejected(obj: Any, extra: bytes) -> None:
    with pytest.raises(DecodeError, match=f"{len(extra)} trailing bytes"):
        loads_strict(ref_encode(obj) + extra, max_size=1 << 20)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "input is empty"),
        (b"\xf9\x3c\x00", "floats are not allowed"),
        (b"\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00", "floats are not allowed"),
        (b"\xc1\x01", "tags and special values"),
        (b"\xd8\x2a\x41\x00", "tags and special values"),
        (b"\xf7", "tags and special values"),
        (b"\xf0", "tags and special values"),
        (b"\xa1\x01\x01", "map keys must be text"),
        (b"\xc3\x49\x01" + bytes(8), "outside the 64-bit range"),
        (b"\x81" * 17 + b"\x00", "nesting deeper than 16"),
        (b"\xbf\x61a\x01\xff", "not deterministic"),
        (b"\x9f\x01\xff", "not deterministic"),
        (b"\x5f\x41a\xff", "not deterministic"),
        (b"\xa2\x61a\x01\x61a\x02", "not deterministic"),
        (b"\xa2\x61b\x01\x61a\x02", "not deterministic"),
        (b"\x18\x05", "not deterministic"),
        (b"\xc2\x41\x05", "not deterministic"),
        (b"\x62\xc3\x28", "not valid CBOR"),
        (b"\x1c", "not valid CBOR"),
        (b"\xff", "not valid CBOR"),
        (b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff", "not valid CBOR"),
    ],
)
def test_non_canonical_or_non_plain_input_is_rejected(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        accept(raw)


# -- the one-pass decoder: what it accepts, the general path accepts as the same value ---------


def agrees(raw: bytes) -> None:
    """``loads_canonical`` accepts ``raw`` only as the value the general path accepts it as."""
    fast = loads_canonical(raw, max_size=1 << 20)
    if fast is NOT_CANONICAL:
        return
    try:
        check_plain(fast)
    except DecodeError:  # a 64-bit float, or nesting past check_plain's depth: refused either way
        with pytest.raises(DecodeError):
            accept(raw)
        return
    assert accept(raw) == fast


@given(plain_data)
def test_the_one_pass_decoder_accepts_every_canonical_encoding(obj: Any) -> None:
    # If it refused them, parse_and_verify would quietly take the slow path everywhere.
    assert loads_canonical(ref_encode(obj), max_size=1 << 20) == obj


@given(plain_data, st.booleans(), st.booleans(), st.binary(max_size=3))
def test_the_one_pass_decoder_refuses_what_the_reencoding_check_refuses(
    obj: Any, wide: bool, unsorted: bool, extra: bytes
) -> None:
    raw = ref_encode(obj, int_width=8 if wide else None, reverse_keys=unsorted) + extra
    agrees(raw)
    if raw != ref_encode(obj):
        assert loads_canonical(raw, max_size=1 << 20) is NOT_CANONICAL


@given(plain_data, st.data())
def test_the_one_pass_decoder_agrees_on_any_single_byte_change(obj: Any, data: st.DataObject) -> None:
    raw = bytearray(ref_encode(obj))
    i = data.draw(st.integers(0, len(raw) - 1), label="position")
    raw[i] = data.draw(st.integers(0, 255), label="value")
    agrees(bytes(raw))


@given(st.binary(max_size=64))
def test_the_one_pass_decoder_agrees_on_arbitrary_bytes(raw: bytes) -> None:
    agrees(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"\xbf\x61a\x01\xff",  # indefinite map
        b"\x9f\x01\xff",  # indefinite array
        b"\x5f\x41a\xff",  # indefinite bytes
        b"\xa2\x61a\x01\x61a\x02",  # duplicate key
        b"\xa2\x61b\x01\x61a\x02",  # unsorted keys
        b"\xa2\x62aa\x01\x61b\x02",  # longer key first
        b"\x18\x05",  # non-shortest integer
        b"\x78\x01a",  # non-shortest length
        b"\xd8\x2a\x41\x00",  # tag 42 (DAG-CBOR's link; no tag is plain data)
        b"\xc2\x41\x05",  # bignum
        b"\xa1\x01\x01",  # integer key
        b"\x63\xed\xa0\x80",  # a UTF-16 surrogate in UTF-8
        b"\x62\xc0\xaf",  # overlong UTF-8
        b"\xf7",  # undefined
        b"\xf9\x3c\x00",  # half float
        b"\x01\x00",  # trailing bytes
        b"",
    ],
)
def test_the_one_pass_decoder_leaves_non_canonical_input_to_the_general_path(raw: bytes) -> None:
    assert loads_canonical(raw, max_size=1 << 20) is NOT_CANONICAL
    with pytest.raises(DecodeError):
        accept(raw)


def test_the_one_pass_decoder_keeps_the_size_cap_and_survives_deep_nesting() -> None:
    assert loads_canonical(b"\x00" * 5, max_size=4) is NOT_CANONICAL
    deep = b"\x81" * 100_000 + b"\x00"  # decoded without recursion; refused by check_plain
    value, depth = loads_canonical(deep, max_size=1 << 20), 0
    while type(value) is list:
        (value,), depth = value, depth + 1
    assert (value, depth) == (0, 100_000)
    agrees(deep)


@given(plain_data, st.binary(max_size=8), st.booleans())
def test_canonical_item_length_measures_the_first_item_in_place(obj: Any, rest: bytes, wide: bool) -> None:
    item = ref_encode(obj, int_width=8 if wide else None)
    data = memoryview(item + rest)
    n = canonical_item_length(data)
    if item == ref_encode(obj):
        assert n == len(item)
        assert next(split_chunks([bytes(data)], max_item=1 << 20)) == item
    else:
        assert n is None
    assert canonical_item_length(data[: len(item) - 1]) is None  # not whole


def test_size_cap_applies_before_decoding() -> None:
    with pytest.raises(DecodeError, match="exceeds the 4-byte limit"):
        loads_strict(b"\x00" * 5, max_size=4)
    with pytest.raises(DecodeError, match="not bytes"):
        loads_strict("text", max_size=4)  # type: ignore[arg-type]


def test_cyclic_shared_references_are_rejected() -> None:
    # tag 28 (shareable) around a list holding tag 29 (reference 0): a list that contains itself.
    with pytest.raises(DecodeError):
        accept(b"\xd8\x1c\x81\xd8\x1d\x00")


# -- CBOR sequences read in chunks ---------------------------------------------------------


@given(st.lists(plain_data, max_size=8), st.lists(st.integers(1, 40), min_size=1, max_size=20))
def test_split_chunks_finds_the_same_items_whatever_the_chunk_boundaries(
    items: list[Any], cuts: list[int]
) -> None:
    data = b"".join(canonical_bytes(i) for i in items)
    chunks, at = [], 0
    for n in cuts * (len(data) // max(1, sum(cuts)) + 1):
        chunks.append(data[at : at + n])
        at += n
    assert b"".join(chunks) == data
    assert list(split_chunks(chunks)) == [canonical_bytes(i) for i in items]


def test_split_chunks_holds_one_partial_item_at_most() -> None:
    with pytest.raises(DecodeError, match="at byte 2 is larger than 100 bytes"):
        list(split_chunks([b"\x01\x02", b"\x59\x10\x00", bytes(50), bytes(50)], max_item=100))


def test_split_chunks_reports_where_the_input_stops_being_cbor() -> None:
    got: list[bytes] = []
    with pytest.raises(DecodeError, match="item at byte 2 is not valid CBOR"):
        got.extend(split_chunks([b"\x01\x02\xff\x00"]))
    assert got == [b"\x01", b"\x02"]  # the items before it were yielded
    with pytest.raises(DecodeError, match=r"item at byte 1 .* ends inside it"):
        list(split_chunks([b"\x01", b"\x62a"]))


def test_is_map_item() -> None:
    assert is_map_item(canonical_bytes({"a": 1})) and is_map_item(b"\xbf\xff")
    assert not any(is_map_item(b) for b in (b"", b"\x00", canonical_bytes([1]), canonical_bytes(b"x")))
