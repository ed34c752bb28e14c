"""What kind of name a record's media CID is: pure, so the node and the indexer tell them apart by one rule.

A record names its media (``media``, ``preview``, ``artwork``) by the UnixFS
CIDv1 that ``ipfs add --cid-version=1 --raw-leaves`` gives the file (256 KiB
chunks, raw leaves, balanced DAG, base32; ``node.media`` computes it offline).
Records published before that rule named the file by a single raw block over all
its bytes: the same CID for a file of at most one chunk, a CID IPFS does not
give past it. :func:`cid_kind` tells them apart.
"""

from __future__ import annotations

from typing import Literal

from .ids import b32decode

__all__ = ["CHUNK_SIZE", "CidKind", "cid_kind"]

CHUNK_SIZE = 256 * 1024  # the chunk of `ipfs add` (size-262144), so the largest file that is one raw leaf

_RAW = 0x55
_DAG_PB = 0x70

CidKind = Literal["unixfs", "raw-block", "unknown"]


def cid_kind(cid: str, size: int | None = None) -> CidKind:
    """What kind of media CID a record holds.

    - ``"unixfs"``: what ``ipfs add`` gives, so it resolves on IPFS once the file is
      added: a dag-pb root (CIDv1, or a CIDv0 ``Qm…``), or a ``raw`` CID of a file of at
      most 256 KiB (its single leaf: both rules give the same CID).
    - ``"raw-block"``: a ``raw`` CID of a larger file (or of unknown ``size``): the old
      rule's single block over all the bytes; it names them, but IPFS does not give it.
    - ``"unknown"``: any other codec, or text that is not a CID.
    """
    if cid.startswith("Qm"):
        return "unixfs"  # CIDv0 is always dag-pb
    if not cid.startswith("b"):
        return "unknown"
    try:
        raw = b32decode(cid[1:])
    except ValueError:
        return "unknown"
    version, rest = _varint(raw)
    codec, _ = _varint(rest)
    if version != 1:
        return "unknown"
    if codec == _DAG_PB:
        return "unixfs"
    if codec == _RAW:
        return "unixfs" if size is not None and size <= CHUNK_SIZE else "raw-block"
    return "unknown"


def _varint(data: bytes) -> tuple[int, bytes]:
    """An unsigned LEB128 varint off the front of ``data``, and the rest (``(-1, b"")`` if cut short)."""
    value = 0
    for i, byte in enumerate(data[:9]):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, data[i + 1 :]
    return -1, b""
