"""Media CIDs: the name IPFS gives a file, computed offline, and what kind of name a record holds.

A file's CID is the UnixFS CIDv1 that ``ipfs add --cid-version=1 --raw-leaves``
gives: the bytes cut into 256 KiB chunks, each a raw leaf (codec ``raw``,
sha2-256), joined by a balanced DAG of dag-pb nodes of up to 174 links, the root
printed in base32. A file of at most one chunk is its single raw leaf. The node
computes it streaming, with no daemon, through ``aleph-cid``'s
``CidHasher.for_ipfs_v1_raw_leaves`` (a small Rust extension, young: the golden
vectors of ``tests/vectors/media_cids.json``, made by a real js-ipfs, are what
it is trusted on; measured here at ~0.15 s for 50 MiB).

Records published before this rule named their media by a single raw block over
the whole file (``raw``, sha2-256 of all the bytes). They stay valid: such a CID
names the exact bytes. It is the same CID IPFS gives when the file fits one chunk;
past 256 KiB it does not resolve on IPFS as an added file. :func:`cid_kind` tells
the two apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from aleph_cid import CidHasher

from protocol.ids import b32decode

CHUNK_SIZE = 256 * 1024  # the chunk of `ipfs add` (size-262144), so the largest file that is one raw leaf
READ_SIZE = 1 << 20

_RAW = 0x55
_DAG_PB = 0x70

CidKind = Literal["unixfs", "raw-block", "unknown"]


def file_cid(path: Path) -> tuple[str, int]:
    """The UnixFS CIDv1 (raw leaves, base32) of a file's bytes, read in 1 MiB pieces, and its size.

    Raises:
        OSError: the file cannot be read.
    """
    hasher = CidHasher.for_ipfs_v1_raw_leaves()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(READ_SIZE):
            hasher.update(chunk)
            size += len(chunk)
    return hasher.finalize(), size


def bytes_cid(data: bytes) -> str:
    """:func:`file_cid` of bytes in memory."""
    hasher = CidHasher.for_ipfs_v1_raw_leaves()
    hasher.update(data)
    return hasher.finalize()


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
