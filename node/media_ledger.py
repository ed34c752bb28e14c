"""``DATA_DIR/media.db``: the files this node published media from, and where each is pinned.

A record names its media by CID only; to add a file to IPFS later
(``empressa node media push``) the node must remember which file on disk has
that CID. Each ``publish`` / ``edit`` with ``--file``, ``--preview`` or
``--artwork`` records the file here before the entry is written (so a crash in
between leaves at most a row that no record names, which a push adds
harmlessly), with ``pinned_on`` the IPFS API it was pinned on, or null when it
was published offline. One table, SQLite in WAL mode, written only by the
one-shot commands.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import StoreError
from .paths import MEDIA_DB

_SCHEMA = """
CREATE TABLE IF NOT EXISTS media_files (
    cid        TEXT PRIMARY KEY,
    path       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    added_ms   INTEGER NOT NULL,
    pinned_on  TEXT,
    pinned_ms  INTEGER
)
"""


@dataclass(frozen=True)
class MediaFile:
    """A file published as a record's ``media``, ``preview`` or ``artwork`` (``role``), by its offline CID."""

    role: str
    path: Path
    cid: str
    size: int


@dataclass(frozen=True)
class LedgerRow:
    cid: str
    path: Path
    size: int
    pinned_on: str | None


class MediaLedger:
    """The ledger of one data directory; open with :meth:`open`, close with :meth:`close` (or ``with``)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    def open(cls, data_dir: Path) -> MediaLedger:
        try:
            conn = sqlite3.connect(data_dir / MEDIA_DB, isolation_level=None, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {data_dir / MEDIA_DB}: {exc}") from None
        return cls(conn)

    def __enter__(self) -> MediaLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    def record(self, files: Sequence[MediaFile], *, pinned_on: str | None) -> None:
        """Remember ``files`` (one transaction); ``pinned_on`` the API they were pinned on, or None (offline).

        A CID recorded before keeps its pin unless this one pins it (the same bytes, maybe at a new path).
        """
        now = time.time_ns() // 1_000_000
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            for f in files:
                self._conn.execute(
                    "INSERT INTO media_files (cid, path, size, added_ms, pinned_on, pinned_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (cid) DO UPDATE SET path = excluded.path, "
                    "pinned_on = coalesce(excluded.pinned_on, pinned_on), "
                    "pinned_ms = coalesce(excluded.pinned_ms, pinned_ms)",
                    (f.cid, str(f.path.resolve()), f.size, now, pinned_on, now if pinned_on else None),
                )

    def unpinned(self, api: str) -> list[LedgerRow]:
        """The files not pinned on ``api`` (published offline, or pinned on another IPFS node), oldest first."""
        rows = self._conn.execute(
            "SELECT cid, path, size, pinned_on FROM media_files "
            "WHERE pinned_on IS NULL OR pinned_on != ? ORDER BY added_ms, cid",
            (api,),
        ).fetchall()
        return [LedgerRow(cid, Path(path), size, pinned_on) for cid, path, size, pinned_on in rows]

    def rows(self) -> list[LedgerRow]:
        rows = self._conn.execute(
            "SELECT cid, path, size, pinned_on FROM media_files ORDER BY added_ms, cid"
        ).fetchall()
        return [LedgerRow(cid, Path(path), size, pinned_on) for cid, path, size, pinned_on in rows]

    def mark_pinned(self, cid: str, api: str) -> None:
        self._conn.execute(
            "UPDATE media_files SET pinned_on = ?, pinned_ms = ? WHERE cid = ?",
            (api, time.time_ns() // 1_000_000, cid),
        )
