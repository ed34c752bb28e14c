"""Sync-protocol frames: encoding, the incremental decoder, caps, and entry packing."""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import FrameError, canonical_bytes
from protocol.wire import (
    ENTRIES_PER_FRAME,
    ENTRY_BYTES_PER_FRAME,
    MAX_FRAME,
    MAX_HEADS_PAGE,
    EndFrame,
    EntriesFrame,
    ErrorFrame,
    Frame,
    FrameDecoder,
    HeadsPage,
    HeadsRequest,
    RangeRequest,
    decode_frame_body,
    encode_frame,
    pack_entries,
)
from tests.vectors import valid_vectors

RAWS = [v.raw for v in valid_vectors()]
AUTHOR = bytes(range(32))
HASH = bytes(range(32, 64))

FRAMES: list[Frame] = [
    HeadsRequest(),
    HeadsRequest(after=AUTHOR, limit=1),
    HeadsPage(heads=[(AUTHOR, 1, HASH), (HASH, 2**63 - 1, AUTHOR)], next=HASH),
    HeadsPage(heads=[], next=None),
    RangeRequest(author=AUTHOR, start=1, end=1),
    RangeRequest(author=AUTHOR, start=7, end=5006),
    EntriesFrame(entries=RAWS),
    EntriesFrame(entries=[]),
    EndFrame(),
    ErrorFrame(code="bad_request", message="range.to must be an integer in 7..2^63-1 ✗"),
]


def leb128(n: int) -> bytes:
    """Unsigned LEB128, written independently of protocol.wire."""
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def framed(m: Any) -> bytes:
    raw = canonical_bytes(m)
    return leb128(len(raw)) + raw


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_every_frame_type_round_trips(frame: Frame) -> None:
    wire = encode_frame(frame)
    dec = FrameDecoder()
    assert dec.feed(wire) == [frame]
    assert dec.pending == 0
    assert encode_frame(FrameDecoder().feed(wire)[0]) == wire


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_frame_is_a_length_prefix_and_canonical_cbor(frame: Frame) -> None:
    wire = encode_frame(frame)
    n, i = 0, 0
    while True:
        n |= (wire[i] & 0x7F) << (7 * i)
        i += 1
        if not wire[i - 1] & 0x80:
            break
    body = wire[i:]
    assert n == len(body)
    m = cbor2.loads(body)
    assert canonical_bytes(m) == body
    assert decode_frame_body(body) == frame
    assert isinstance(m["t"], str)


def test_range_request_uses_from_and_to_on_the_wire() -> None:
    m = cbor2.loads(encode_frame(RangeRequest(AUTHOR, 3, 9))[1:])
    assert m == {"t": "range", "author": AUTHOR, "from": 3, "to": 9}


def stream() -> bytes:
    return b"".join(encode_frame(f) for f in FRAMES)


def test_decoder_fed_one_byte_at_a_time() -> None:
    dec = FrameDecoder()
    out: list[Frame] = []
    data = stream()
    for i in range(len(data)):
        out += dec.feed(data[i : i + 1])
    assert out == FRAMES
    assert dec.pending == 0


@pytest.mark.parametrize("chunk", [2, 7, 100, 4096, 1 << 20])
def test_decoder_fed_in_chunks(chunk: int) -> None:
    dec = FrameDecoder()
    data = stream() * 3
    out: list[Frame] = []
    for i in range(0, len(data), chunk):
        out += dec.feed(data[i : i + chunk])
    assert out == FRAMES * 3
    assert dec.pending == 0


def test_decoder_holds_a_partial_frame() -> None:
    wire = encode_frame(EntriesFrame(RAWS))
    dec = FrameDecoder()
    assert dec.feed(wire[:-1]) == []
    assert dec.pending == len(wire) - 1
    assert dec.feed(wire[-1:]) == [EntriesFrame(RAWS)]


def test_oversize_length_prefix_is_rejected_before_the_body_arrives() -> None:
    dec = FrameDecoder()
    with pytest.raises(FrameError, match="exceeds"):
        dec.feed(leb128(MAX_FRAME + 1))
    small = FrameDecoder(max_frame=100)
    wire = encode_frame(EntriesFrame(RAWS[:1]))
    assert len(wire) > 100
    with pytest.raises(FrameError, match="100-byte cap"):
        small.feed(wire[:3])  # just the prefix and a byte: no need to wait for the rest


def test_frame_at_exactly_the_cap_is_accepted() -> None:
    wire = encode_frame(EndFrame())
    assert FrameDecoder(max_frame=len(wire) - 1).feed(wire) == [EndFrame()]


def test_endless_length_prefix_is_rejected() -> None:
    with pytest.raises(FrameError, match="length prefix is too long"):
        FrameDecoder().feed(b"\xff" * 6)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"\x00", "bad frame: input is empty"),
        (b"\x05hello", "bad frame"),
        (b"\x02\xff\xff", "bad frame"),
        (framed(["t", "end"]), "a frame is a CBOR map"),
        (framed({"t": "gossip"}), "unknown frame type 'gossip'"),
        (framed({"x": 1}), "unknown frame type None"),
        (framed({"t": 1}), "unknown frame type 1"),
        (framed({"t": "end", "x": 1}), "must have exactly the fields"),
        (framed({"t": "range", "author": AUTHOR, "from": 1}), "must have exactly the fields"),
        (framed({"t": "heads", "after": None, "limit": 1.0}), "floats are not allowed"),
        (framed({"t": "heads", "after": None, "limit": True}), "heads.limit must be an integer"),
        (framed({"t": "heads", "after": None, "limit": 0}), "heads.limit must be an integer in 1..2000"),
        (framed({"t": "heads", "after": None, "limit": MAX_HEADS_PAGE + 1}), "heads.limit"),
        (framed({"t": "heads", "after": b"x", "limit": 5}), "heads.after must be 32 bytes"),
        (framed({"t": "heads_page", "heads": [[AUTHOR, 1]], "next": None}), "a head is [author, seq, hash]"),
        (framed({"t": "heads_page", "heads": [[AUTHOR, 0, HASH]], "next": None}), "head seq"),
        (framed({"t": "heads_page", "heads": "x", "next": None}), "heads_page.heads must be a list"),
        (framed({"t": "range", "author": AUTHOR, "from": 5, "to": 4}), "range.to must be an integer in 5.."),
        (framed({"t": "range", "author": AUTHOR, "from": 0, "to": 4}), "range.from"),
        (framed({"t": "entries", "entries": ["text"]}), "each entry must be bytes"),
        (framed({"t": "entries", "entries": [bytes(16 * 1024 + 1)]}), "at most 16 KiB"),
        (framed({"t": "entries", "entries": [b"x"] * (ENTRIES_PER_FRAME + 1)}), "at most 256"),
        (framed({"t": "error", "code": 1, "message": "m"}), "must be text"),
    ],
)
def test_malformed_frames_are_rejected(wire: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as info:
        FrameDecoder().feed(wire)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "body",
    [
        b"\xa1\x61t\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00",  # float
        b"\xa1\x61t\xc1\x00",  # tag 1
        b"\xa1\x61t\xc2\x41\x01",  # bignum that fits an ordinary integer
        b"\xbf\x61t\x63end\xff",  # indefinite-length map
        b"\xa1\x61t\x78\x03end",  # non-shortest text length
        b"\xa2\x61t\x63end\x61t\x63end",  # duplicate key
        b"\xa1\x61t\x63end\x00",  # trailing byte
    ],
)
def test_non_canonical_frame_bodies_are_frame_errors(body: bytes) -> None:
    with pytest.raises(FrameError):
        decode_frame_body(body)


def test_long_error_texts_are_cut_by_the_decoder() -> None:
    wire = framed({"t": "error", "code": "c" * 100, "message": "m" * 1000})
    assert FrameDecoder().feed(wire) == [ErrorFrame(code="c" * 64, message="m" * 500)]


def test_encoder_refuses_frames_over_the_cap_and_non_frames() -> None:
    with pytest.raises(FrameError, match="exceeds"):
        encode_frame(EntriesFrame([bytes(16 * 1024)] * 65))
    with pytest.raises(TypeError):
        encode_frame("end")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- packing


def check_packing(raws: list[bytes], frames: list[EntriesFrame]) -> None:
    assert [r for f in frames for r in f.entries] == raws
    for f in frames:
        assert 1 <= len(f.entries) <= ENTRIES_PER_FRAME
        assert sum(map(len, f.entries)) <= ENTRY_BYTES_PER_FRAME or len(f.entries) == 1
        wire = encode_frame(f)
        assert len(wire) <= MAX_FRAME
        assert FrameDecoder().feed(wire) == [f]
    for f, g in itertools.pairwise(frames):  # greedy: the next entry did not fit
        full = len(f.entries) == ENTRIES_PER_FRAME
        assert full or sum(map(len, f.entries)) + len(g.entries[0]) > ENTRY_BYTES_PER_FRAME


def test_pack_respects_the_count_budget() -> None:
    raws = [bytes([i % 256]) * 40 for i in range(600)]
    frames = pack_entries(raws)
    assert [len(f.entries) for f in frames] == [256, 256, 88]
    check_packing(raws, frames)


def test_pack_respects_the_byte_budget() -> None:
    raws = [bytes([i]) * (16 * 1024) for i in range(100)]
    frames = pack_entries(raws)
    assert [len(f.entries) for f in frames] == [32, 32, 32, 4]
    check_packing(raws, frames)


def test_pack_nothing_and_the_golden_vectors() -> None:
    assert pack_entries([]) == []
    frames = pack_entries(RAWS)
    assert frames == [EntriesFrame(RAWS)]
    check_packing(RAWS, frames)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 16 * 1024), max_size=400))
def test_pack_any_sizes(sizes: list[int]) -> None:
    raws = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    check_packing(raws, pack_entries(raws))


# --------------------------------------------------------------------------- properties

raw32 = st.binary(min_size=32, max_size=32)
frames = st.one_of(
    st.builds(HeadsRequest, st.none() | raw32, st.integers(1, MAX_HEADS_PAGE)),
    st.builds(
        HeadsPage,
        st.lists(st.tuples(raw32, st.integers(1, 2**63 - 1), raw32), max_size=20),
        st.none() | raw32,
    ),
    st.integers(1, 2**63 - 1).flatmap(
        lambda a: st.builds(RangeRequest, raw32, st.just(a), st.integers(a, 2**63 - 1))
    ),
    st.builds(EntriesFrame, st.lists(st.binary(max_size=300), max_size=20)),
    st.just(EndFrame()),
    st.builds(ErrorFrame, st.text(max_size=64), st.text(max_size=500)),
)


@given(st.lists(frames, max_size=8), st.integers(1, 64))
def test_any_frames_round_trip_through_any_chunking(fs: list[Frame], chunk: int) -> None:
    data = b"".join(map(encode_frame, fs))
    dec = FrameDecoder()
    out: list[Frame] = []
    for i in range(0, len(data), chunk):
        out += dec.feed(data[i : i + chunk])
    assert out == fs
    assert dec.pending == 0


@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_frame_errors(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        FrameDecoder().feed(data)
    with contextlib.suppress(FrameError):
        decode_frame_body(data)


@given(frames, st.data())
def test_single_byte_changes_in_a_frame_only_raise_frame_errors(frame: Frame, data: st.DataObject) -> None:
    """A corrupted frame fails with FrameError or decodes to some well-formed frame, nothing else."""
    wire = bytearray(encode_frame(frame))
    i = data.draw(st.integers(0, len(wire) - 1))
    wire[i] = data.draw(st.integers(0, 255).filter(lambda b: b != wire[i]))
    with contextlib.suppress(FrameError):
        FrameDecoder().feed(bytes(wire))
