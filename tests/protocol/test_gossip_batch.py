"""Gossip v2 messages (``empressa/entries/2``): encoding, packing within the caps, strict decoding."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from protocol import FrameError, canonical_bytes
from protocol.schema import MAX_ENTRY_BYTES
from protocol.wire import (
    GOSSIP_BATCH_MAX_BYTES,
    GOSSIP_BATCH_MAX_ENTRIES,
    MAX_SEQ,
    GossipBatch,
    decode_gossip_batch,
    encode_gossip_batch,
    pack_gossip_batches,
)
from tests.vectors import valid_vectors

RAWS = [v.raw for v in valid_vectors()]
AUTHOR = bytes(range(32))


def test_round_trip_is_canonical_cbor() -> None:
    batch = GossipBatch(AUTHOR, 7, RAWS[:3])
    data = encode_gossip_batch(batch)
    assert data == canonical_bytes({"author": AUTHOR, "from": 7, "entries": RAWS[:3]})
    back = decode_gossip_batch(data)
    assert back == batch and back.end == 9


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([400] * 1000, None),  # by count
        ([MAX_ENTRY_BYTES] * 10, None),  # by bytes
        ([30, MAX_ENTRY_BYTES, 5, 300] * 40, None),  # mixed
        ([200], [1]),
    ],
)
def test_packing_keeps_every_batch_within_the_caps(sizes: list[int], expected: list[int] | None) -> None:
    raws = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    batches = pack_gossip_batches(AUTHOR, 5, raws)
    assert [e for b in batches for e in b.entries] == raws
    start = 5
    for b in batches:
        assert b.start == start and b.author == AUTHOR
        start = b.end + 1
        data = encode_gossip_batch(b)  # raises if over a cap
        assert len(data) <= GOSSIP_BATCH_MAX_BYTES and len(b.entries) <= GOSSIP_BATCH_MAX_ENTRIES
        assert decode_gossip_batch(data) == b
    if expected is not None:
        assert [len(b.entries) for b in batches] == expected
    else:
        assert len(batches) > 1


def _msg(**changes: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"author": AUTHOR, "from": 1, "entries": RAWS[:2]}
    m.update(changes)
    return {k: v for k, v in m.items() if v is not _DROP}


_DROP = object()

MALFORMED: dict[str, bytes] = {
    "not_cbor": b"\xff\x00garbage",
    "empty": b"",
    "trailing_bytes": canonical_bytes(_msg()) + b"\x00",
    "not_a_map": canonical_bytes([AUTHOR, 1, RAWS[:1]]),
    "keys_out_of_order": cbor2.dumps(dict(reversed(list(_msg().items())))),
    "unknown_field": canonical_bytes(_msg(v=2)),
    "missing_entries": canonical_bytes(_msg(entries=_DROP)),
    "missing_from": canonical_bytes(_msg(**{"from": _DROP})),
    "short_author": canonical_bytes(_msg(author=AUTHOR[:31])),
    "text_author": canonical_bytes(_msg(author="did:key:z6Mk")),
    "from_zero": canonical_bytes(_msg(**{"from": 0})),
    "from_negative": canonical_bytes(_msg(**{"from": -1})),
    "seqs_past_the_largest": canonical_bytes(_msg(**{"from": MAX_SEQ})),
    "no_entries": canonical_bytes(_msg(entries=[])),
    "entries_not_a_list": canonical_bytes(_msg(entries=RAWS[0])),
    "entry_not_bytes": canonical_bytes(_msg(entries=["text"])),
    "empty_entry": canonical_bytes(_msg(entries=[b""])),
    "entry_over_16_kib": canonical_bytes(_msg(entries=[b"x" * (MAX_ENTRY_BYTES + 1)])),
    "too_many_entries": canonical_bytes(_msg(entries=[b"x"] * (GOSSIP_BATCH_MAX_ENTRIES + 1))),
    "over_the_byte_cap": canonical_bytes(_msg(entries=[b"x" * MAX_ENTRY_BYTES] * 4)),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_decode_refuses_malformed_messages(name: str) -> None:
    with pytest.raises(FrameError):
        decode_gossip_batch(MALFORMED[name])


@pytest.mark.parametrize(
    "batch",
    [
        GossipBatch(AUTHOR, 1, []),
        GossipBatch(AUTHOR[:5], 1, RAWS[:1]),
        GossipBatch(AUTHOR, 0, RAWS[:1]),
        GossipBatch(AUTHOR, 1, [b"x" * MAX_ENTRY_BYTES] * 4),
    ],
)
def test_encode_refuses_what_decode_would(batch: GossipBatch) -> None:
    with pytest.raises(FrameError):
        encode_gossip_batch(batch)
