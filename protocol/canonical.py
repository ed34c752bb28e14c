"""Deterministic CBOR (RFC 8949 §4.2.1): the only encoding Empressa signs or hashes.

cbor2's ``canonical=True`` emits shortest-form integers, definite lengths and
map keys sorted length-first then bytewise, which for the text keys used here
is exactly the §4.2.1 bytewise order of the encoded keys. (libipld's DAG-CBOR
encoder is not usable: it turns byte strings that parse as CIDs into tag-42
links.) Decoding is strict: the input must re-encode to itself.

Most input is already canonical, and :func:`loads_canonical` accepts that in
one pass: cbrrr's strict DAG-CBOR decoder refuses exactly the encodings the
re-encoding check would (non-shortest integers and lengths, indefinite
lengths, unsorted or duplicate keys, non-text keys, trailing bytes), so what
it accepts needs no second check; anything it refuses takes the general path
(:func:`loads_strict`, then :func:`require_canonical`), which gives the one
error message.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any

import cbor2
import cbrrr
from cbrrr import _cbrrr  # decode_dag_cbor with the length it read: the public one insists on all

from .errors import DecodeError

MAX_DEPTH = 16
MAX_SEQUENCE_ITEM = 1024 * 1024  # bytes: the largest item split_chunks buffers


def canonical_bytes(obj: Any) -> bytes:
    """The deterministic CBOR encoding of ``obj``."""
    return cbor2.dumps(obj, canonical=True)


def loads_strict(raw: bytes, *, max_size: int) -> Any:
    """Decode one CBOR item, rejecting oversize input and trailing bytes.

    The caller must still check types (floats and tags decode to Python
    objects) and call :func:`require_canonical` once the types are known good.
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise DecodeError("input is not bytes")
    if len(raw) > max_size:
        raise DecodeError(f"encoded size {len(raw)} bytes exceeds the {max_size}-byte limit")
    if not raw:
        raise DecodeError("input is empty")
    # cbor2.loads (6.x) silently ignores trailing data, so decode from a stream
    # and check that the one item used up every byte.
    fp = io.BytesIO(raw)
    try:
        obj = cbor2.CBORDecoder(fp).decode()
    except Exception as exc:  # cbor2 raises several types; all mean "not CBOR"
        raise DecodeError(f"not valid CBOR: {exc}") from None
    extra = len(raw) - fp.tell()
    if extra:
        raise DecodeError(f"{extra} trailing bytes after the CBOR item")
    return obj


NOT_CANONICAL: Any = object()
"""What :func:`loads_canonical` returns for input it does not accept (decode it the general way)."""


def _no_links(_cid: bytes) -> Any:
    raise ValueError("a CBOR tag")


def loads_canonical(raw: bytes, *, max_size: int) -> Any:
    """The one CBOR item ``raw`` holds, if ``raw`` is its canonical encoding; else :data:`NOT_CANONICAL`.

    The value is the one :func:`loads_strict` returns for the same bytes, and
    then :func:`require_canonical` would accept it (see the module docstring),
    with two exceptions that every caller refuses anyway (the entry schema,
    :func:`check_plain`): a float, which cbrrr takes only in 64-bit form, is not
    checked for shortest form, and nesting deeper than cbor2's 400 levels is
    decoded (without recursion) where cbor2 refuses it. Tags (cbrrr knows only
    tag 42) are refused here.
    ``NOT_CANONICAL`` says nothing about why: decode the general way to find out.
    """
    if len(raw) > max_size or not raw:
        return NOT_CANONICAL
    try:
        return cbrrr.decode_dag_cbor(raw, cid_ctor=_no_links)
    except Exception:  # cbrrr raises several types; all mean "not accepted here"
        return NOT_CANONICAL


def canonical_item_length(data: bytes | memoryview) -> int | None:
    """The length of the canonical CBOR item ``data`` starts with (bytes may follow it), or ``None``
    when that item is not canonical, not whole or not CBOR (find out the general way).

    For splitting a sequence of entries without a second decoder: a
    :class:`memoryview` window is read in place.
    """
    try:
        _obj, n = _cbrrr.decode_dag_cbor(data, _no_links, False)  # type: ignore[arg-type]  # any buffer
    except Exception:  # cbrrr raises several types; all mean "not accepted here"
        return None
    return int(n)


def _canonical_key(k: str) -> tuple[int, bytes]:
    kb = k.encode("utf-8")
    return (len(kb), kb)


# Key tuples already judged; entries only ever use a handful of shapes.
_ORDER_MEMO: dict[tuple[Any, ...], bool] = {}


def _keys_in_order(obj: Any) -> bool:
    """True when every map in ``obj`` has text keys in deterministic order."""
    if type(obj) is dict:
        if not in_canonical_order(tuple(obj)):
            return False
        values: Any = obj.values()
    elif type(obj) is list:
        values = obj
    else:
        return True
    for v in values:
        tv = type(v)
        if (tv is dict or tv is list) and not _keys_in_order(v):
            return False
    return True


def in_canonical_order(keys: tuple[Any, ...]) -> bool:
    """True when a map's keys (as decoded, in wire order) are text in deterministic order."""
    ok = _ORDER_MEMO.get(keys)
    if ok is None:
        ok = all(type(k) is str for k in keys) and list(keys) == sorted(keys, key=_canonical_key)
        if len(_ORDER_MEMO) < 4096:
            _ORDER_MEMO[keys] = ok
    return ok


def require_canonical(obj: Any, raw: bytes, *, key_order_checked: bool = False) -> None:
    """Reject ``raw`` unless it is exactly the canonical encoding of ``obj``.

    cbor2's plain encoder already writes shortest integers and definite
    lengths and keeps the decoded key order; so ``raw`` is canonical exactly
    when that re-encoding matches byte for byte and every map's keys were in
    deterministic order (a duplicate key collapses and changes the length).
    This is about 2.5x cheaper than ``canonical=True`` re-encoding, which sorts.
    ``obj`` must hold only plain data (ints, text, bytes, bools, null, lists,
    text-keyed maps), as the entry schema and :func:`check_plain` guarantee.
    The entry schema checks key order as it visits each map
    (``key_order_checked=True``), saving a second walk on the hot path.
    """
    try:
        again = cbor2.dumps(obj)
    except Exception as exc:
        raise DecodeError(f"cannot re-encode: {exc}") from None
    if again != raw or not (key_order_checked or _keys_in_order(obj)):
        raise DecodeError(
            "not deterministic CBOR (RFC 8949 §4.2.1): re-encoding differs "
            "(unsorted or duplicate keys, non-shortest integers, indefinite lengths or tags)"
        )


def check_plain(obj: Any, depth: int = 0) -> None:
    """Accept only ints, text, bytes, bools, null, lists and text-keyed maps.

    Floats, tags, undefined and simple values are rejected. Used for wire
    frames, whose contents are not covered by an entry schema.
    """
    if depth > MAX_DEPTH:
        raise DecodeError(f"nesting deeper than {MAX_DEPTH}")
    t = type(obj)
    if t is int:
        if not -(2**64) <= obj < 2**64:
            raise DecodeError("integer outside the 64-bit range")
    elif t in (str, bytes, bool) or obj is None:
        return
    elif t is list:
        for item in obj:
            check_plain(item, depth + 1)
    elif t is dict:
        for k, v in obj.items():
            if type(k) is not str:
                raise DecodeError("map keys must be text")
            check_plain(v, depth + 1)
    elif t is float:
        raise DecodeError("floats are not allowed")
    else:
        raise DecodeError(f"CBOR tags and special values are not allowed ({t.__name__})")


def split_sequence(data: bytes, *, max_item: int = MAX_SEQUENCE_ITEM) -> Iterator[bytes]:
    """Split a CBOR sequence (RFC 8742) held in memory into the exact bytes of each item.

    Raises:
        DecodeError: when the remaining bytes do not start with a whole CBOR item.
    """
    return split_chunks([data], max_item=max_item)


def split_chunks(chunks: Iterable[bytes], *, max_item: int = MAX_SEQUENCE_ITEM) -> Iterator[bytes]:
    """Split a CBOR sequence that arrives in chunks (a file read piece by piece) into its items.

    Items are yielded as soon as they are whole, so memory holds one chunk and
    at most one partial item (``max_item`` bytes), whatever the length of the
    sequence. The caller does the reading: this only consumes the iterable.

    Raises:
        DecodeError: the bytes at some offset are not a CBOR item, an item is
            larger than ``max_item``, or the input ends inside an item. Items
            before that point have been yielded.
    """
    buf = bytearray()
    offset = 0  # bytes of the sequence before buf
    for chunk in chunks:
        buf += chunk
        fp = io.BytesIO(buf)
        decoder = cbor2.CBORDecoder(fp)
        start = 0
        while start < len(buf):
            try:
                decoder.decode()
            except cbor2.CBORDecodeEOF:
                break  # the item continues in the next chunk
            except Exception as exc:
                raise DecodeError(f"item at byte {offset + start} is not valid CBOR: {exc}") from None
            end = fp.tell()
            if end - start > max_item:
                raise DecodeError(f"item at byte {offset + start} is larger than {max_item} bytes")
            yield bytes(buf[start:end])
            start = end
        if len(buf) - start > max_item:
            raise DecodeError(f"item at byte {offset + start} is larger than {max_item} bytes")
        del buf[:start]
        offset += start
    if buf:
        raise DecodeError(f"item at byte {offset} is not valid CBOR: the input ends inside it")


def is_map_item(raw: bytes) -> bool:
    """True when the CBOR item ``raw`` is a map (major type 5), as every entry is; no decoding."""
    return bool(raw) and raw[0] >> 5 == 5
