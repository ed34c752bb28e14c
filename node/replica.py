"""What the daemon and the sync server need from a store: the :class:`Replica` interface.

Two stores implement it: the creator's SQLite store (:class:`node.store.Store`)
and the indexer's PostgreSQL store (``indexer.store.Store``), which the bridge
runs the same :class:`node.daemon.Node` on. Both are synchronous; trio code
calls them through ``trio.to_thread``.

Only verified entries (:func:`protocol.parse_and_verify`) are ever passed to
:meth:`Replica.ingest`; classifying them (append, duplicate, gap, fork) and
recording forks is the store's job, and it reports what it did in an
:class:`IngestOutcome`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from protocol import AuthorKey, Entry, EntryHash, Head, Signer

__all__ = ["IngestOutcome", "Replica"]


class IngestOutcome(Protocol):
    """The fields of an ingest report the daemon reads (``node.store.IngestReport`` and the indexer's)."""

    @property
    def appended(self) -> list[Entry]: ...

    @property
    def duplicates(self) -> int: ...

    @property
    def gaps(self) -> Mapping[AuthorKey, tuple[int, int]]: ...

    @property
    def forks(self) -> list[Entry]: ...

    @property
    def refused(self) -> list[tuple[Entry, str]]: ...


class Replica(Protocol):
    """A store of verified entries that the node daemon and the sync server run on."""

    def ingest(self, entries: Sequence[Entry]) -> IngestOutcome:
        """Apply verified entries in one transaction and report what happened to each."""
        ...

    def append_local(self, signer: Signer, *, kind: str, key: str, body: dict[str, Any]) -> Entry:
        """Sign and store the next entry of ``signer``'s own log."""
        ...

    def head(self, author: AuthorKey) -> Head | None: ...

    def heads(self, *, after: bytes | None = None, limit: int = 1000) -> list[tuple[bytes, int, bytes]]:
        """Every author's (author, seq, hash) head, ordered by author key, paged by ``after``."""
        ...

    def heads_between(self, lo: bytes, hi: bytes) -> dict[bytes, tuple[int, bytes]]:
        """Heads of the authors with ``lo <= author <= hi``."""
        ...

    def range_raw(self, author: bytes, start: int, end: int) -> list[bytes]:
        """Raw entries ``start..end`` of ``author`` in seq order (as many as are held)."""
        ...

    def get_raw(self, h: EntryHash) -> bytes | None: ...
