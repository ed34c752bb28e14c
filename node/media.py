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

Publishing with files (``node publish --file F [--preview F] [--artwork F]``,
and ``edit``): :func:`put_files` runs after the body is built and before the
entry is written. With ``ipfs_api`` set it adds each file to that IPFS node,
refuses (:class:`~node.errors.CidMismatch`, nothing published) if the daemon
names one by another CID than the offline one, and pins them; an unreachable
daemon is an error too, and ``--no-ipfs`` publishes offline instead. Either way
the files are remembered in ``DATA_DIR/media.db`` (:mod:`node.media_ledger`),
so :func:`push` (``node media push``) adds and pins later what was published
offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aleph_cid import CidHasher

from protocol.media import CHUNK_SIZE, CidKind, cid_kind  # noqa: F401  (re-exported: node.media is where the node looks)

from .errors import CidMismatch, IpfsError, IpfsUnavailable
from .media_ledger import MediaFile, MediaLedger

READ_SIZE = 1 << 20


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


def put_files(data_dir: Path, files: Sequence[MediaFile], *, ipfs_api: str | None) -> None:
    """Before a record naming ``files`` is written: add and pin them on ``ipfs_api`` (None: offline), remember them.

    Raises:
        CidMismatch: the daemon named a file by another CID (nothing is pinned; publish nothing).
        IpfsUnavailable, IpfsRefused: the daemon cannot be reached, or refused.
    """
    if not files:
        return
    if ipfs_api is not None:
        from .ipfs import IpfsClient

        with IpfsClient(ipfs_api) as ipfs:
            for f in files:
                _add_checked(ipfs, f.path, f.cid, then="nothing was published")
            for f in files:
                ipfs.pin(f.cid)
    with MediaLedger.open(data_dir) as ledger:
        ledger.record(files, pinned_on=ipfs_api)


@dataclass
class PushResult:
    """What :func:`push` did: the CIDs it ``pushed`` (added and pinned), how many were pinned there
    ``already``, and the ``problems`` ``(cid, path, reason)`` of those it could not push."""

    api: str
    pushed: list[str] = field(default_factory=list)
    already: int = 0
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Some file could not be pushed (the command exits 1)."""
        return bool(self.problems)

    def to_json(self) -> dict[str, Any]:
        return {
            "ipfs_api": self.api,
            "pushed": self.pushed,
            "already": self.already,
            "problems": [{"cid": c, "path": p, "reason": r} for c, p, r in self.problems],
        }

    def text(self) -> str:
        lines = [f"pushed {len(self.pushed)} file(s) to {self.api} ({self.already} pinned there already)"]
        lines += [f"not pushed: {path} ({cid}): {why}" for cid, path, why in self.problems]
        return "\n".join(lines)


def push(data_dir: Path, *, ipfs_api: str | None) -> PushResult:
    """``node media push``: add and pin on ``ipfs_api`` every remembered file not pinned there yet.

    Each file is added and its CID checked against the one it was published with; a file that
    is gone, unreadable or changed since is a problem of its own and the rest go on.

    Raises:
        IpfsUnavailable: no ``ipfs_api``, or the daemon cannot be reached.
    """
    if ipfs_api is None:
        raise IpfsUnavailable(
            "no IPFS node configured: set ipfs_api in DATA_DIR/config.toml (or EMPRESSA_NODE_IPFS_API) "
            "to its RPC API, e.g. /ip4/127.0.0.1/tcp/5001"
        )
    from .ipfs import IpfsClient

    result = PushResult(ipfs_api)
    with MediaLedger.open(data_dir) as ledger, IpfsClient(ipfs_api) as ipfs:
        result.already = len(ledger.rows()) - len(todo := ledger.unpinned(ipfs_api))
        for row in todo:
            if not row.path.is_file():
                result.problems.append((row.cid, str(row.path), "the file is gone"))
                continue
            try:
                _add_checked(ipfs, row.path, row.cid, then="not pinned")
                ipfs.pin(row.cid)
            except IpfsUnavailable:
                raise
            except IpfsError as exc:  # a mismatch or a refusal of this file; the rest go on
                result.problems.append((row.cid, str(row.path), str(exc)))
                continue
            ledger.mark_pinned(row.cid, ipfs_api)
            result.pushed.append(row.cid)
    return result


def _add_checked(ipfs: Any, path: Path, cid: str, *, then: str) -> None:
    got = ipfs.add_file(path)
    if got != cid:
        raise CidMismatch(
            f"the IPFS node at {ipfs.api} names {path} {got}, but its CID is {cid} (computed here; "
            f"the file changed, or that node does not add with --cid-version=1 --raw-leaves); {then}"
        )
