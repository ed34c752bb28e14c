"""The node's local store: every verified entry it holds, in SQLite (WAL).

One file, ``node.db``, shared by the daemon and by CLI commands run while the
daemon is down. Every write is one ``BEGIN IMMEDIATE`` transaction, so two
processes never interleave a read-head/append pair, and a crash leaves either
all of a batch or none of it.

What it keeps:

* ``entries``: each author's log, contiguous from seq 1 (raw signed bytes kept);
* ``authors``: the contiguous head per author, whether it is ours, and the seq
  of a fork if one was seen (nothing past a fork is applied);
* ``forks``: the second valid entry at a held seq, kept as proof;
* ``assets``: current state per (author, key), folded with :func:`protocol.apply`.

Bridges' ``attest`` entries are kept like any entry; what they say about an
asset is read on demand, from trusted keys only (:meth:`Store.verifications`).

What becomes of each incoming entry is decided by :func:`protocol.plan`, the
same rule the indexer's store executes. Entries that arrive ahead of the head
(a gap) are not stored: the caller gets the missing range back and pulls it;
the entry comes again inside that range.
The store is synchronous. Trio code calls it through ``trio.to_thread``, or,
for a short write on the hot path, right in the trio thread with
:meth:`Store.try_now`, which never waits: it gives up at once (:class:`StoreBusy`,
nothing done) when another thread or process holds the store, and the caller
goes through a worker thread instead. A daemon that writes that way takes the
WAL checkpoints off the hot path too (:meth:`Store.manual_checkpoints`,
:meth:`Store.checkpoint`), so a commit never copies the log into the database
while the event loop waits.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from protocol import (
    AssetUri,
    Attestation,
    AuthorKey,
    AuthorLog,
    Entry,
    EntryHash,
    Head,
    IngestReport,
    Outcome,
    ProtocolError,
    Signer,
    attestation_of,
    latest_attestations,
    lookups,
    now_ms,
    parse_and_verify,
    plan,
    sign_entry,
)
from protocol.media import cid_kind

from .errors import NotFoundError, StoreError, WritesRejected

__all__ = [
    "MAX_BATCH_ITEMS",
    "MAX_BODY_BYTES",
    "AssetRow",
    "AuthorRow",
    "LocalWrite",
    "Store",
    "StoreBusy",
    "WritesRejected",
]

MAX_BATCH_ITEMS = 1000  # local writes in one bulk request to the daemon (node.api; node.client splits)
MAX_BODY_BYTES = 4 * 1024 * 1024  # bytes of one write request's body (the same)


class LocalWrite(NamedTuple):
    """One write of the node's own log, before it is signed: what ``publish`` and the local API take."""

    kind: str
    key: str
    body: dict[str, Any]


SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    hash        BLOB PRIMARY KEY,
    author      BLOB NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    key         TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    raw         BLOB NOT NULL,
    received_ms INTEGER NOT NULL,
    UNIQUE (author, seq)
);
CREATE TABLE IF NOT EXISTS authors (
    author     BLOB PRIMARY KEY,
    head_seq   INTEGER NOT NULL,
    head_hash  BLOB NOT NULL,
    local      INTEGER NOT NULL DEFAULT 0,
    forked_seq INTEGER
);
CREATE TABLE IF NOT EXISTS forks (
    author  BLOB NOT NULL,
    seq     INTEGER NOT NULL,
    hash    BLOB NOT NULL,
    raw     BLOB NOT NULL,
    seen_ms INTEGER NOT NULL,
    PRIMARY KEY (author, seq, hash)
);
CREATE TABLE IF NOT EXISTS assets (
    author     BLOB NOT NULL,
    key        TEXT NOT NULL,
    last_hash  BLOB NOT NULL,
    put_hash   BLOB,
    deleted    INTEGER NOT NULL,
    versions   INTEGER NOT NULL,
    created_ts INTEGER NOT NULL,
    updated_ts INTEGER NOT NULL,
    PRIMARY KEY (author, key)
);
"""


@dataclass(frozen=True)
class AssetRow:
    """One asset's current state, with its latest ``asset.put`` entry (if any)."""

    uri: AssetUri
    put: Entry | None
    last_hash: EntryHash
    deleted: bool
    versions: int
    created_ts: int
    updated_ts: int
    local: bool

    def to_json(self, verification: Attestation | None = None) -> dict[str, Any]:
        """The asset as JSON-ready data (CLI ``--json`` and the local API share it), with the
        ``verified`` attestation that stands for it (:meth:`Store.verifications`), or null."""
        body = self.put.body if self.put is not None else {}
        media = body.get("media")
        return {
            "uri": self.uri.text,
            "did": self.uri.author.did,
            "key": self.uri.key,
            "title": body.get("title"),
            "description": body.get("description"),
            "tags": body.get("tags", []),
            "media": media,
            # What kind of CID names the media: ``unixfs`` (what IPFS gives), or ``raw-block`` for
            # a record made by the old single-block rule (protocol.media.cid_kind).
            "media_kind": cid_kind(media["cid"], media.get("size")) if media else None,
            "license": body.get("license"),
            "payout": body.get("payout"),
            "hash": self.last_hash.cid,
            "put_hash": self.put.hash.cid if self.put is not None else None,
            "deleted": self.deleted,
            "versions": self.versions,
            "created_ts": self.created_ts,
            "updated_ts": self.updated_ts,
            "mine": self.local,
            "verification": verification.to_json() if verification is not None else None,
        }


@dataclass(frozen=True)
class AuthorRow:
    author: AuthorKey
    head: Head
    local: bool
    forked_seq: int | None


class StoreBusy(Exception):
    """:meth:`Store.try_now` found the store in use (another thread, or another process's write) and did nothing."""


BUSY_TIMEOUT_MS = 30_000  # how long a write waits for another process's (CLI commands while the daemon runs)


class Store:
    """Thread-safe access to ``node.db``. Open with :meth:`open`; close with :meth:`close`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        # Re-entrant: try_now holds it around a whole call whose reads and _Tx take it again.
        self._lock = threading.RLock()
        self._trying = False  # inside try_now: a busy database is StoreBusy, not a wait
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from None
        return cls(conn, path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def try_now(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` (a method of this store) in this thread, if it can run without waiting.

        Raises:
            StoreBusy: another thread holds the store, or another process holds
                the database's write lock; nothing was done, so the caller can
                make the same call from a worker thread (where it waits).
        """
        if not self._lock.acquire(blocking=False):
            raise StoreBusy
        try:
            self._trying = True
            self._conn.execute("PRAGMA busy_timeout=0")
            try:
                return fn(*args, **kwargs)
            finally:
                self._trying = False
                self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:  # the PRAGMAs themselves
            raise StoreError(f"store is unusable: {exc}") from None
        finally:
            self._lock.release()

    def manual_checkpoints(self) -> None:
        """Stop committing transactions from copying the WAL into the database; the owner calls
        :meth:`checkpoint` from a worker thread instead (else the WAL grows without bound)."""
        with self._lock:
            self._conn.execute("PRAGMA wal_autocheckpoint=0")

    def checkpoint(self) -> tuple[int, int]:
        """Copy the WAL into the database as far as readers allow (``PRAGMA wal_checkpoint(PASSIVE)``);
        the next commits then reuse the WAL from its start. Returns (frames in the WAL, frames copied)."""
        with self._lock:
            try:
                _busy, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                return frames, copied
            except sqlite3.Error as exc:
                raise StoreError(f"store checkpoint failed: {exc}") from None

    # -- writing ---------------------------------------------------------------

    def _tx(self) -> _Tx:
        return _Tx(self)

    def ingest(self, entries: Iterable[Entry], *, local: bool = False) -> IngestReport:
        """Apply verified entries in one transaction; see :class:`protocol.IngestReport`.

        Entries may come in any order and from many authors; :func:`protocol.plan`
        decides what becomes of each (this store refuses everything at or past a
        fork mark and does not keep entries past a gap), and this method reads
        what the plan needs and executes it.
        """
        batch = sorted(entries, key=lambda e: (e.author.raw, e.seq))
        if not batch:
            return IngestReport()
        with self._tx() as cur:
            logs: dict[bytes, AuthorLog] = {}
            for e in batch:
                a = e.author.raw
                if a not in logs:
                    head, forked = _head_row(cur, a)
                    logs[a] = AuthorLog(head, forked)
            held = _held_hashes(cur, lookups(batch, logs))
            p = plan(batch, logs, held, refuse_held_after_fork=True)
            stamp = now_ms()
            for e in p.appends:
                _append(cur, e, local=local, received_ms=stamp)
            forks = p.of(Outcome.FORK)
            if forks:
                cur.executemany(
                    "INSERT OR IGNORE INTO forks (author, seq, hash, raw, seen_ms) VALUES (?,?,?,?,?)",
                    [(s.entry.author.raw, s.entry.seq, s.entry.hash.raw, s.entry.raw, stamp) for s in forks],
                )
                cur.executemany(
                    "UPDATE authors SET forked_seq = MIN(COALESCE(forked_seq, ?), ?) WHERE author=?",
                    [(seq, seq, a) for a, seq in p.forked.items()],
                )
        return p.report(parks_held=False)

    def append_local(
        self, signer: Signer, *, kind: str, key: str, body: dict[str, Any], ts: int | None = None
    ) -> Entry:
        """Sign and append the next entry of ``signer``'s own log, atomically.

        Raises:
            protocol.SchemaError: if the fields are invalid (nothing is written).
        """
        [outcome] = self.append_local_many(signer, [[LocalWrite(kind, key, body)]], ts=ts)
        if isinstance(outcome, WritesRejected):
            raise outcome.cause or outcome
        return outcome[0]

    def append_local_many(
        self, signer: Signer, batches: Sequence[Sequence[LocalWrite]], *, ts: int | None = None
    ) -> list[list[Entry] | WritesRejected]:
        """Sign and append many writes of ``signer``'s own log in one transaction (a group commit).

        Each batch is all or nothing: the entries of a batch whose every write is
        valid are signed in order, chained after the previous good batch; a batch
        with an invalid write is left out whole and reported as a
        :class:`WritesRejected` naming each bad item's index, so one bad request
        never fails the others committed with it. The result has one item per
        batch, in order.

        Raises:
            StoreError: the log has a fork, or the store cannot be written (nothing is).
        """
        a = signer.public.raw
        out: list[list[Entry] | WritesRejected] = []
        with self._tx() as cur:
            head, forked = _head_row(cur, a)
            if forked is not None:
                raise StoreError(f"your log has a fork at seq {forked}; refusing to extend it")
            seq, prev = (head.seq, head.hash) if head else (0, None)
            stamp = now_ms() if ts is None else ts
            for batch in batches:
                signed: list[Entry] = []
                bad: list[tuple[int, ProtocolError]] = []
                s, p = seq, prev
                for i, w in enumerate(batch):
                    try:
                        e = sign_entry(
                            signer, seq=s + 1, prev=p, ts=stamp, kind=w.kind, key=w.key, body=w.body
                        )
                    except ProtocolError as exc:
                        bad.append((i, exc))
                        continue
                    signed.append(e)
                    s, p = e.seq, e.hash
                if bad:
                    out.append(WritesRejected([(i, str(exc)) for i, exc in bad], cause=bad[0][1]))
                    continue
                for e in signed:
                    _append(cur, e, local=True, received_ms=stamp)
                seq, prev = s, p
                out.append(signed)
        return out

    # -- reading ---------------------------------------------------------------

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"store read failed: {exc}") from None

    def head(self, author: AuthorKey) -> Head | None:
        rows = self._read("SELECT head_seq, head_hash FROM authors WHERE author=?", (author.raw,))
        return Head(rows[0][0], EntryHash(rows[0][1])) if rows else None

    def heads(self, *, after: bytes | None = None, limit: int = 1000) -> list[tuple[bytes, int, bytes]]:
        """Every author's head, ordered by author key, paged by ``after``."""
        rows = self._read(
            "SELECT author, head_seq, head_hash FROM authors WHERE author > ? ORDER BY author LIMIT ?",
            (after or b"", limit),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def heads_between(self, lo: bytes, hi: bytes) -> dict[bytes, tuple[int, bytes]]:
        """Heads of the authors with ``lo <= author <= hi`` (to compare with a peer's page)."""
        rows = self._read(
            "SELECT author, head_seq, head_hash FROM authors WHERE author BETWEEN ? AND ?", (lo, hi)
        )
        return {r[0]: (r[1], r[2]) for r in rows}

    def authors(self) -> list[AuthorRow]:
        rows = self._read(
            "SELECT author, head_seq, head_hash, local, forked_seq FROM authors ORDER BY author"
        )
        return [AuthorRow(AuthorKey(r[0]), Head(r[1], EntryHash(r[2])), bool(r[3]), r[4]) for r in rows]

    def range_raw(self, author: bytes, start: int, end: int) -> list[bytes]:
        rows = self._read(
            "SELECT raw FROM entries WHERE author=? AND seq BETWEEN ? AND ? ORDER BY seq",
            (author, start, end),
        )
        return [r[0] for r in rows]

    def get_raw(self, h: EntryHash) -> bytes | None:
        rows = self._read("SELECT raw FROM entries WHERE hash=?", (h.raw,))
        return rows[0][0] if rows else None

    def count_entries(self) -> int:
        return int(self._read("SELECT count(*) FROM entries")[0][0])

    def export_raw(self, *, local_only: bool) -> Iterator[bytes]:
        """Raw entries in (author, seq) order, read in pages."""
        where = "WHERE author IN (SELECT author FROM authors WHERE local=1)" if local_only else ""
        last = (b"", 0)
        while True:
            rows = self._read(
                f"SELECT author, seq, raw FROM entries {where} {'AND' if where else 'WHERE'} "
                "(author, seq) > (?, ?) ORDER BY author, seq LIMIT 1000",
                last,
            )
            if not rows:
                return
            for r in rows:
                yield r[2]
            last = (rows[-1][0], rows[-1][1])

    def assets(self, *, local_only: bool, include_deleted: bool = False) -> list[AssetRow]:
        sql = (
            "SELECT a.author, a.key, a.last_hash, a.deleted, a.versions, a.created_ts, a.updated_ts, "
            "e.raw, au.local FROM assets a JOIN authors au ON au.author = a.author "
            "LEFT JOIN entries e ON e.hash = a.put_hash WHERE 1=1"
        )
        if local_only:
            sql += " AND au.local = 1"
        if not include_deleted:
            sql += " AND a.deleted = 0"
        sql += " ORDER BY a.updated_ts DESC, a.key"
        return [_asset_row(r) for r in self._read(sql)]

    def asset(self, uri: AssetUri) -> AssetRow:
        rows = self._read(
            "SELECT a.author, a.key, a.last_hash, a.deleted, a.versions, a.created_ts, a.updated_ts, "
            "e.raw, au.local FROM assets a JOIN authors au ON au.author = a.author "
            "LEFT JOIN entries e ON e.hash = a.put_hash WHERE a.author=? AND a.key=?",
            (uri.author.raw, uri.key),
        )
        if not rows:
            raise NotFoundError(f"no asset {uri}")
        return _asset_row(rows[0])

    def verifications(
        self, assets: Iterable[AssetUri], *, trusted: Collection[AuthorKey]
    ) -> dict[AssetUri, Attestation]:
        """The standing ``verified`` attestation of each of ``assets``, from ``trusted`` bridge keys only.

        The node holds every author's entries, bridges' ``attest`` entries
        included; the latest one per asset from a trusted key
        (:func:`protocol.latest_attestations`) stands. After a ``revoked`` one
        the asset has none; attestations from other keys are ignored.
        """
        if not trusted:
            return {}
        wanted = {u.id_b32 for u in assets}
        if not wanted:
            return {}
        held = []
        for key in trusted:
            rows = self._read(
                "SELECT key, raw FROM entries WHERE author=? AND kind='attest' ORDER BY seq", (key.raw,)
            )
            held += [parse_and_verify(raw, now_ms=None) for k, raw in rows if k in wanted]
        out: dict[AssetUri, Attestation] = {}
        for uri, e in latest_attestations(held, trusted=trusted).items():
            a = attestation_of(e)
            if a.status == "verified":
                out[uri] = a
        return out

    def library(
        self, *, local_only: bool, include_deleted: bool = False, trusted: Collection[AuthorKey] = ()
    ) -> list[dict[str, Any]]:
        """The assets as JSON-ready items, each with its ``verification`` (``node list``, the local API)."""
        rows = self.assets(local_only=local_only, include_deleted=include_deleted)
        verified = self.verifications([r.uri for r in rows], trusted=trusted)
        return [r.to_json(verified.get(r.uri)) for r in rows]

    def forks(self) -> list[tuple[AuthorKey, int, EntryHash]]:
        rows = self._read("SELECT author, seq, hash FROM forks ORDER BY author, seq")
        return [(AuthorKey(r[0]), r[1], EntryHash(r[2])) for r in rows]


class _Tx:
    """``with store._tx() as cur``: BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> sqlite3.Cursor:
        self._store._lock.acquire()
        try:
            self._cur = self._store._conn.cursor()
            self._cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._store._lock.release()
            if self._store._trying and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY:
                raise StoreBusy from None
            raise StoreError(f"store is busy or unwritable: {exc}") from None
        return self._cur

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self._cur.execute("COMMIT")
            else:
                self._cur.execute("ROLLBACK")
        except sqlite3.Error as err:
            raise StoreError(f"store commit failed: {err}") from None
        finally:
            self._store._lock.release()


def _head_row(cur: sqlite3.Cursor, author: bytes) -> tuple[Head | None, int | None]:
    row = cur.execute(
        "SELECT head_seq, head_hash, forked_seq FROM authors WHERE author=?", (author,)
    ).fetchone()
    if row is None:
        return None, None
    return Head(row[0], EntryHash(row[1])), row[2]


def _held_hashes(cur: sqlite3.Cursor, wanted: set[tuple[bytes, int]]) -> dict[tuple[bytes, int], EntryHash]:
    """The hashes held at the (author, seq) pairs a plan needs (see :func:`protocol.lookups`)."""
    held: dict[tuple[bytes, int], EntryHash] = {}
    for a, seq in wanted:
        row = cur.execute("SELECT hash FROM entries WHERE author=? AND seq=?", (a, seq)).fetchone()
        if row is not None:
            held[(a, seq)] = EntryHash(row[0])
    return held


def _append(cur: sqlite3.Cursor, e: Entry, *, local: bool, received_ms: int | None = None) -> None:
    a = e.author.raw
    cur.execute(
        "INSERT INTO entries (hash, author, seq, kind, key, ts, raw, received_ms) VALUES (?,?,?,?,?,?,?,?)",
        (e.hash.raw, a, e.seq, e.kind, e.key, e.ts, e.raw, now_ms() if received_ms is None else received_ms),
    )
    cur.execute(
        "INSERT INTO authors (author, head_seq, head_hash, local) VALUES (?,?,?,?) "
        "ON CONFLICT (author) DO UPDATE SET head_seq=excluded.head_seq, head_hash=excluded.head_hash, "
        "local=MAX(authors.local, excluded.local)",
        (a, e.seq, e.hash.raw, int(local)),
    )
    if e.kind == "asset.put":
        cur.execute(
            "INSERT INTO assets (author, key, last_hash, put_hash, deleted, versions, created_ts, updated_ts) "
            "VALUES (?,?,?,?,0,1,?,?) ON CONFLICT (author, key) DO UPDATE SET last_hash=excluded.last_hash, "
            "put_hash=excluded.put_hash, deleted=0, versions=assets.versions+1, updated_ts=excluded.updated_ts",
            (a, e.key, e.hash.raw, e.hash.raw, e.ts, e.ts),
        )
    elif e.kind == "asset.delete":
        cur.execute(
            "INSERT INTO assets (author, key, last_hash, put_hash, deleted, versions, created_ts, updated_ts) "
            "VALUES (?,?,?,NULL,1,1,?,?) ON CONFLICT (author, key) DO UPDATE SET last_hash=excluded.last_hash, "
            "deleted=1, versions=assets.versions+1, updated_ts=excluded.updated_ts",
            (a, e.key, e.hash.raw, e.ts, e.ts),
        )


def _asset_row(r: tuple[Any, ...]) -> AssetRow:
    put = parse_and_verify(r[7], now_ms=None) if r[7] is not None else None
    return AssetRow(
        uri=AssetUri(AuthorKey(r[0]), r[1]),
        put=put,
        last_hash=EntryHash(r[2]),
        deleted=bool(r[3]),
        versions=r[4],
        created_ts=r[5],
        updated_ts=r[6],
        local=bool(r[8]),
    )
