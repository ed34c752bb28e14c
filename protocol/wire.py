"""Frames of the sync protocol ``/empressa/sync/1.x``.

Each frame is a deterministic CBOR map with a type tag ``t``, prefixed by its
length as an unsigned LEB128 varint::

    client → server   {t: "heads", after: bytes(32)|null, limit}
    server → client   {t: "heads_page", heads: [[author, seq, hash], …], next: bytes(32)|null}

    client → server   {t: "range", author, from, to}
    server → client   {t: "entries", entries: [raw entry, …]} … then {t: "end"}

    either way        {t: "error", code, message}

Entries travel many to a frame (a stream write costs about 230 µs whatever its
size). Every frame has a size cap; requests are capped too (``MAX_HEADS_PAGE``,
``MAX_RANGE``).

Two versions, negotiated by multistream-select (a client offers
:data:`SYNC_PROTOCOLS`, the newest first):

* ``/empressa/sync/1.0.0`` (:data:`PROTOCOL_ID`): one request per stream; the
  server closes the stream after its answer, so a client written against
  DESIGN.md's one-request streams may read to the end of the stream;
* ``/empressa/sync/1.1.0`` (:data:`PROTOCOL_ID_STREAMING`): the same frames, many
  requests one after another on one stream; the server answers each and waits
  for the next until the client closes the stream (or it stays idle past the
  server's timeout). A client that sees a stream closed before an answer, on a
  stream that already carried one, asks again on a new stream.

Gossip, two topics:

* ``empressa/entries/1`` (:data:`GOSSIP_TOPIC`): a message is one raw signed entry;
* ``empressa/entries/2`` (:data:`GOSSIP_TOPIC_V2`): a message is a
  :class:`GossipBatch`, consecutive entries of one author, as the canonical CBOR
  map ``{author: bytes(32), from: uint, entries: [raw entry, …]}`` of at most
  :data:`GOSSIP_BATCH_MAX_ENTRIES` entries and :data:`GOSSIP_BATCH_MAX_BYTES`
  bytes (:func:`encode_gossip_batch`, :func:`decode_gossip_batch`,
  :func:`pack_gossip_batches`). Each entry inside is still verified on its own.

This module only encodes and decodes: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .canonical import (
    NOT_CANONICAL,
    canonical_bytes,
    check_plain,
    loads_canonical,
    loads_strict,
    require_canonical,
)
from .errors import DecodeError, FrameError
from .schema import MAX_ENTRY_BYTES

PROTOCOL_ID = "/empressa/sync/1.0.0"  # one request per stream
PROTOCOL_ID_STREAMING = "/empressa/sync/1.1.0"  # many requests per stream
SYNC_PROTOCOLS = (PROTOCOL_ID_STREAMING, PROTOCOL_ID)  # what a client offers, newest first
GOSSIP_TOPIC = "empressa/entries/1"
GOSSIP_TOPIC_V2 = "empressa/entries/2"
GOSSIP_BATCH_MAX_ENTRIES = 256
# The whole message. py-libp2p's pubsub takes RPCs of up to 1 MiB, but its yamux (0.8.1) locks a
# stream per 64 KiB frame, not per write: a larger RPC goes out in several frames, and another
# writer of the same pubsub stream can slip a frame in between (measured: the receiver's protobuf
# decode fails and its host stops). 60 KiB leaves the RPC's own fields room inside one frame.
GOSSIP_BATCH_MAX_BYTES = 60 * 1024
MAX_FRAME = 1024 * 1024
MAX_HEADS_PAGE = 2000
MAX_RANGE = 5000
ENTRIES_PER_FRAME = 256
ENTRY_BYTES_PER_FRAME = 512 * 1024


@dataclass(frozen=True, slots=True)
class HeadsRequest:
    after: bytes | None = None
    limit: int = MAX_HEADS_PAGE


@dataclass(frozen=True, slots=True)
class HeadsPage:
    heads: list[tuple[bytes, int, bytes]]
    next: bytes | None


@dataclass(frozen=True, slots=True)
class RangeRequest:
    author: bytes
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class EntriesFrame:
    entries: list[bytes]


@dataclass(frozen=True, slots=True)
class EndFrame:
    pass


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    code: str
    message: str


Frame = HeadsRequest | HeadsPage | RangeRequest | EntriesFrame | EndFrame | ErrorFrame


def _author(v: Any, what: str) -> bytes:
    if type(v) is not bytes or len(v) != 32:
        raise FrameError(f"{what} must be 32 bytes")
    return v


def _count(v: Any, what: str, lo: int, hi: int) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise FrameError(f"{what} must be an integer in {lo}..{hi}")
    return v


def _to_map(frame: Frame) -> dict[str, Any]:
    if isinstance(frame, HeadsRequest):
        return {"t": "heads", "after": frame.after, "limit": frame.limit}
    if isinstance(frame, HeadsPage):
        return {"t": "heads_page", "heads": [list(h) for h in frame.heads], "next": frame.next}
    if isinstance(frame, RangeRequest):
        return {"t": "range", "author": frame.author, "from": frame.start, "to": frame.end}
    if isinstance(frame, EntriesFrame):
        return {"t": "entries", "entries": list(frame.entries)}
    if isinstance(frame, EndFrame):
        return {"t": "end"}
    if isinstance(frame, ErrorFrame):
        return {"t": "error", "code": frame.code, "message": frame.message[:500]}
    raise TypeError(f"not a frame: {frame!r}")


def _expect(m: dict[str, Any], keys: set[str]) -> None:
    if m.keys() != keys:
        raise FrameError(f"frame {m.get('t')!r} must have exactly the fields {sorted(keys)}")


def _from_map(m: Any) -> Frame:
    if type(m) is not dict:
        raise FrameError("a frame is a CBOR map")
    t = m.get("t")
    if t == "heads":
        _expect(m, {"t", "after", "limit"})
        after = None if m["after"] is None else _author(m["after"], "heads.after")
        return HeadsRequest(after, _count(m["limit"], "heads.limit", 1, MAX_HEADS_PAGE))
    if t == "heads_page":
        _expect(m, {"t", "heads", "next"})
        heads = m["heads"]
        if type(heads) is not list or len(heads) > MAX_HEADS_PAGE:
            raise FrameError(f"heads_page.heads must be a list of at most {MAX_HEADS_PAGE}")
        out = []
        for h in heads:
            if type(h) is not list or len(h) != 3:
                raise FrameError("a head is [author, seq, hash]")
            out.append(
                (
                    _author(h[0], "head author"),
                    _count(h[1], "head seq", 1, 2**63 - 1),
                    _author(h[2], "head hash"),
                )
            )
        nxt = None if m["next"] is None else _author(m["next"], "heads_page.next")
        return HeadsPage(out, nxt)
    if t == "range":
        _expect(m, {"t", "author", "from", "to"})
        start = _count(m["from"], "range.from", 1, 2**63 - 1)
        end = _count(m["to"], "range.to", start, 2**63 - 1)
        return RangeRequest(_author(m["author"], "range.author"), start, end)
    if t == "entries":
        _expect(m, {"t", "entries"})
        entries = m["entries"]
        if type(entries) is not list or len(entries) > ENTRIES_PER_FRAME:
            raise FrameError(f"entries must be a list of at most {ENTRIES_PER_FRAME}")
        for e in entries:
            if type(e) is not bytes or len(e) > MAX_ENTRY_BYTES:
                raise FrameError("each entry must be bytes of at most 16 KiB")
        return EntriesFrame(entries)
    if t == "end":
        _expect(m, {"t"})
        return EndFrame()
    if t == "error":
        _expect(m, {"t", "code", "message"})
        if type(m["code"]) is not str or type(m["message"]) is not str:
            raise FrameError("error code and message must be text")
        return ErrorFrame(m["code"][:64], m["message"][:500])
    raise FrameError(f"unknown frame type {t!r:.40}")


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_frame(frame: Frame) -> bytes:
    """Length-prefixed canonical CBOR for one frame."""
    body = canonical_bytes(_to_map(frame))
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return _uvarint(len(body)) + body


def _load_canonical(data: bytes, *, max_size: int, what: str) -> Any:
    """One canonical, plain CBOR item (no floats, no tags), or a :class:`FrameError` naming ``what``."""
    # bytes-like as bytes; anything else is refused by loads_strict, with its reason
    raw = bytes(data) if isinstance(data, (bytearray, memoryview)) else data
    try:
        m = loads_canonical(raw, max_size=max_size)
        if m is NOT_CANONICAL:
            m = loads_strict(raw, max_size=max_size)
            check_plain(m)
            require_canonical(m, raw)
        else:
            check_plain(m)
    except DecodeError as exc:
        raise FrameError(f"bad {what}: {exc.reason}") from None
    return m


def decode_frame_body(body: bytes) -> Frame:
    """Decode one frame body (without its length prefix)."""
    return _from_map(_load_canonical(body, max_size=MAX_FRAME, what="frame"))


class FrameDecoder:
    """Incremental decoder: ``feed()`` bytes as they arrive, get whole frames back."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while True:
            n, shift, i = 0, 0, 0
            while True:
                if i >= len(self._buf):
                    return frames
                b = self._buf[i]
                n |= (b & 0x7F) << shift
                i += 1
                if not b & 0x80:
                    break
                shift += 7
                if shift > 35:
                    raise FrameError("frame length prefix is too long")
            if n > self._max:
                raise FrameError(f"frame of {n} bytes exceeds the {self._max}-byte cap")
            if len(self._buf) < i + n:
                return frames
            body = bytes(self._buf[i : i + n])
            del self._buf[: i + n]
            frames.append(decode_frame_body(body))

    @property
    def pending(self) -> int:
        return len(self._buf)


def pack_entries(raws: list[bytes]) -> list[EntriesFrame]:
    """Split raw entries into frames within the per-frame count and byte budgets."""
    frames: list[EntriesFrame] = []
    batch: list[bytes] = []
    size = 0
    for raw in raws:
        if batch and (len(batch) >= ENTRIES_PER_FRAME or size + len(raw) > ENTRY_BYTES_PER_FRAME):
            frames.append(EntriesFrame(batch))
            batch, size = [], 0
        batch.append(raw)
        size += len(raw)
    if batch:
        frames.append(EntriesFrame(batch))
    return frames


# -- gossip v2: batches of consecutive entries of one author ------------------------------------

MAX_SEQ = 2**63 - 1
_BATCH_OVERHEAD = (
    80  # map header, the three keys, the author, ``from`` (up to 9 bytes), the array header: 67, rounded up
)


@dataclass(frozen=True, slots=True)
class GossipBatch:
    """Entries ``start``, ``start + 1``, … of ``author`` (raw, not yet verified)."""

    author: bytes
    start: int
    entries: list[bytes]

    @property
    def end(self) -> int:
        return self.start + len(self.entries) - 1


def _entry_cost(raw: bytes) -> int:
    return len(raw) + (3 if len(raw) > 0xFF else 2 if len(raw) > 23 else 1)


def encode_gossip_batch(batch: GossipBatch) -> bytes:
    """The canonical CBOR of one ``empressa/entries/2`` message.

    Raises:
        FrameError: the batch is empty, over a cap, or its fields are out of range.
    """
    data = canonical_bytes({"author": batch.author, "from": batch.start, "entries": list(batch.entries)})
    _check_batch(batch, len(data))
    return data


def _check_batch(batch: GossipBatch, size: int) -> None:
    _author(batch.author, "batch.author")
    _count(batch.start, "batch.from", 1, MAX_SEQ)
    n = len(batch.entries)
    if not 1 <= n <= GOSSIP_BATCH_MAX_ENTRIES:
        raise FrameError(f"a gossip batch holds 1..{GOSSIP_BATCH_MAX_ENTRIES} entries, not {n}")
    if batch.start + n - 1 > MAX_SEQ:
        raise FrameError("gossip batch seqs run past the largest seq")
    for e in batch.entries:
        if type(e) is not bytes or not 0 < len(e) <= MAX_ENTRY_BYTES:
            raise FrameError("each batched entry must be bytes of at most 16 KiB")
    if size > GOSSIP_BATCH_MAX_BYTES:
        raise FrameError(f"gossip batch of {size} bytes exceeds {GOSSIP_BATCH_MAX_BYTES}")


def decode_gossip_batch(data: bytes) -> GossipBatch:
    """Decode one ``empressa/entries/2`` message; anything malformed is refused.

    Checks the message's shape only (canonical CBOR, exactly the three fields,
    caps, seqs in range); the entries are verified by the caller
    (``parse_and_verify`` on each, and that entry ``i`` is ``author``'s seq
    ``start + i``).

    Raises:
        FrameError: the message is not a well-formed batch.
    """
    if len(data) > GOSSIP_BATCH_MAX_BYTES:
        raise FrameError(f"gossip batch of {len(data)} bytes exceeds {GOSSIP_BATCH_MAX_BYTES}")
    m = _load_canonical(data, max_size=GOSSIP_BATCH_MAX_BYTES, what="gossip batch")
    if type(m) is not dict or m.keys() != {"author", "from", "entries"}:
        raise FrameError("a gossip batch is a map of exactly author, from and entries")
    entries = m["entries"]
    if type(entries) is not list:
        raise FrameError("gossip batch entries must be a list")
    batch = GossipBatch(m["author"], m["from"], entries)
    _check_batch(batch, len(data))
    return batch


def pack_gossip_batches(author: bytes, start: int, raws: list[bytes]) -> list[GossipBatch]:
    """Split consecutive raw entries of ``author`` from seq ``start`` into batches within the caps."""
    out: list[GossipBatch] = []
    batch: list[bytes] = []
    size = _BATCH_OVERHEAD
    for raw in raws:
        cost = _entry_cost(raw)
        if batch and (len(batch) >= GOSSIP_BATCH_MAX_ENTRIES or size + cost > GOSSIP_BATCH_MAX_BYTES):
            out.append(GossipBatch(author, start, batch))
            start += len(batch)
            batch, size = [], _BATCH_OVERHEAD
        batch.append(raw)
        size += cost
    if batch:
        out.append(GossipBatch(author, start, batch))
    return out
