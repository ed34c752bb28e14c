"""The one ingest path: verified entries into PostgreSQL, shared by the bridge and ``POST /v1/entries``.

One call of :meth:`Store.ingest` is one transaction. It takes the ingest
advisory lock (see :mod:`indexer.models`), reads what :func:`protocol.plan`
needs (the heads and fork marks of the batch's authors, their parked entries,
the hashes held at the seqs in question), lets it decide every entry (append,
duplicate, held past a gap, fork, refused after a fork: the same rule the
node's store executes), and then writes, together:

* the new rows of ``entries`` (COPY: classification under the lock has already
  ruled out duplicates, so no conflict handling is needed);
* each touched asset's new current state (one upsert per asset, however many
  versions the batch holds), with a fresh ``change_seq`` for the search feeder;
* one ``activity`` row per applied entry (published, updated, deleted, attested);
* the per-author head, which is the bridge's durable cursor: it commits with
  the rows it covers, so a crash at any point loses nothing and doubles nothing;
* entries past a gap go to ``pending`` and are applied by a later call once the
  gap fills; forks go to ``forks`` and ``quarantine`` (within its bounds, see
  :mod:`.quarantine`) and flag the author;
* NOTIFY on the assets and activity channels (delivered at commit).

Resubmitting anything is harmless: a duplicate is counted and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from psycopg.types.json import set_json_dumps
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from protocol import (
    AuthorKey,
    AuthorLog,
    Entry,
    EntryHash,
    Head,
    IngestReport,
    Outcome,
    ProtocolError,
    Signer,
    Step,
    lookups,
    now_ms,
    parse_and_verify,
    plan,
    sign_entry,
)
from protocol.schema import MAX_SKEW_MS

from ..db import make_engine
from ..errors import DatabaseError
from ..models import ACTIVITY_CHANNEL, ASSETS_CHANNEL, INGEST_LOCK
from . import quarantine as _quarantine
from .quarantine import QuarantineLimits, Rejected

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemResult:
    index: int
    hash: str | None
    status: str  # appended | duplicate | held | fork | refused | invalid
    code: str | None = None
    reason: str | None = None


@dataclass
class IngestResult:
    """Per-input outcome of :meth:`Store.ingest_raw`, in input order."""

    results: list[ItemResult]
    quarantine_dropped: int = 0  # invalid inputs not recorded: the quarantine was at a bound

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def invalid(self) -> int:
        return self.count("invalid")


class _Unstorable(Exception):
    """PostgreSQL refused a value of the batch (SQLSTATE class 22, "data exception")."""


@contextmanager
def _translate() -> Iterator[None]:
    """SQLAlchemy/psycopg errors → :class:`DatabaseError` (this module is the edge).

    A data exception (a value PostgreSQL cannot store) becomes :class:`_Unstorable`,
    which :meth:`Store.ingest` handles by isolating the entries that cause it.
    """
    try:
        yield
    except (DBAPIError, psycopg.Error) as exc:
        # Through SQLAlchemy the driver's error is ``exc.orig``; the COPYs use psycopg directly.
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        why = str(orig).strip().splitlines()[0] if str(orig).strip() else orig.__class__.__name__
        if getattr(exc, "connection_invalidated", False) or isinstance(
            orig, psycopg.OperationalError | psycopg.InterfaceError
        ):
            raise DatabaseError(f"database unavailable: {why}") from exc
        if isinstance(orig, psycopg.DataError):
            raise _Unstorable(why) from exc
        raise
    except SQLAlchemyError as exc:
        raise DatabaseError(f"database error: {exc.__class__.__name__}") from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _dumps(value: Any) -> bytes:
    """JSON for a jsonb column, encoded once (bytes values as hex)."""
    return orjson.dumps(value, default=_json_default)


def _encoded(data: bytes) -> bytes:
    """The jsonb dumper's ``dumps`` for rows whose JSON :func:`_dumps` already encoded."""
    return data


@contextmanager
def binary_copy(cur: Any, sql: str, types: Sequence[str]) -> Iterator[Any]:
    """``COPY … FROM STDIN`` in PostgreSQL's binary format: bytea as is (not hex), jsonb as
    :func:`_dumps` encoded it. Rows are written with ``copy.write_row``."""
    set_json_dumps(_encoded, context=cur)
    with cur.copy(f"{sql} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        yield copy


_EMPTY_PUT = ("", "", [], None, None, None, None, None, None, b"{}")


def _asset_fields(body: dict[str, Any]) -> tuple[Any, ...]:
    lic = body.get("license") or {}
    price = lic.get("price")
    media = body.get("media") or {}
    mime = media.get("mime")
    return (
        body.get("title", ""),
        body.get("description", ""),
        list(body.get("tags", [])),
        lic.get("type"),
        Decimal(price["amount"]) if price else None,
        price["currency"] if price else None,
        media.get("cid"),
        mime,
        mime.split("/", 1)[0] if mime else None,
        _dumps(body),
    )


class _Dids(dict[bytes, str]):
    """did:key text per author key, computed once per batch (base58 is the costly part)."""

    def __missing__(self, author: bytes) -> str:
        did = self[author] = AuthorKey(author).did
        return did


class _Rows:
    """The COPY rows of a batch's entries, built before the ingest lock is taken.

    Building rows (did text, asset fields, JSON) is most of ingest's Python work.
    Done before the lock, it overlaps the PostgreSQL work of whichever transaction
    holds it: the bridge's pullers and writer call ingest from several threads.
    Entries first met under the lock (parked in ``pending``) are built on demand.
    """

    def __init__(self, received: dict[bytes, int]) -> None:
        self.dids = _Dids()
        self._received = received
        self._times: dict[int, datetime] = {}
        self._entry: dict[bytes, tuple[Any, ...]] = {}
        self._put: dict[bytes, tuple[Any, ...]] = {}
        self._activity: dict[bytes, bytes] = {}

    def build(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            self.entry(e)
            self.activity_data(e)
            if e.kind == "asset.put":
                self.put_fields(e)

    def entry(self, e: Entry) -> tuple[Any, ...]:
        """``entries`` row (:data:`ENTRY_COLUMNS`)."""
        row = self._entry.get(e.hash.raw)
        if row is None:
            ms = self._received.get(e.hash.raw) or now_ms()
            at = self._times.get(ms)
            if at is None:
                at = self._times[ms] = datetime.fromtimestamp(ms / 1000, tz=UTC)
            row = self._entry[e.hash.raw] = (e.hash.raw, e.author.raw, e.seq, e.ts, e.kind, e.key, e.raw, at)
        return row

    def put_fields(self, e: Entry) -> tuple[Any, ...]:
        """The asset columns an ``asset.put`` sets, title to body (see :func:`_asset_fields`)."""
        fields = self._put.get(e.hash.raw)
        if fields is None:
            fields = self._put[e.hash.raw] = _asset_fields(e.body)
        return fields

    def activity_data(self, e: Entry) -> bytes:
        """The ``activity.data`` JSON of the entry's activity row."""
        data = self._activity.get(e.hash.raw)
        if data is None:
            if e.kind == "asset.put":
                value: dict[str, Any] = {"title": e.body.get("title", "")}
            elif e.kind == "attest":
                subject = e.body.get("subject")
                value = {
                    "subject": EntryHash(subject).cid if isinstance(subject, bytes) else None,
                    "status": e.body.get("status"),
                }
            else:
                value = {}
            data = self._activity[e.hash.raw] = _dumps(value)
        return data

    def uri(self, e: Entry) -> str:
        return f"empressa://{self.dids[e.author.raw]}/{e.key}"


_ASSET_COLUMNS = (
    "author, did, key, uri, entry_hash, put_hash, seq, deleted, title, description, tags, license, price, "
    "currency, media_cid, media_mime, media_type, body, versions, created_ts, updated_ts"
)
ASSET_TYPES = (
    "bytea", "text", "text", "text", "bytea", "bytea", "int8", "bool", "text", "text", "text[]", "text",
    "numeric", "text", "text", "text", "text", "jsonb", "int4", "int8", "int8",
)  # fmt: skip
ENTRY_COLUMNS = "hash, author, seq, ts, kind, key, raw, received_at"
ENTRY_TYPES = ("bytea", "bytea", "int8", "int8", "text", "text", "bytea", "timestamptz")
_ACTIVITY_COLUMNS = "kind, uri, did, entry_hash, seq, data"
_ACTIVITY_TYPES = ("text", "text", "text", "bytea", "int8", "jsonb")

# Per-connection staging table (assets are COPYed in, then upserted in one statement).
_ASSET_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS asset_stage ON COMMIT DELETE ROWS AS
SELECT {_ASSET_COLUMNS} FROM assets WITH NO DATA
"""

_PUT_FIELDS = (
    "title",
    "description",
    "tags",
    "license",
    "price",
    "currency",
    "media_cid",
    "media_mime",
    "media_type",
    "body",
)

_ASSET_UPSERT = f"""
INSERT INTO assets ({_ASSET_COLUMNS}) SELECT {_ASSET_COLUMNS} FROM asset_stage
ON CONFLICT (author, key) DO UPDATE SET
    entry_hash = EXCLUDED.entry_hash,
    put_hash = COALESCE(EXCLUDED.put_hash, assets.put_hash),
    seq = EXCLUDED.seq,
    deleted = EXCLUDED.deleted,
    {", ".join(f"{c} = CASE WHEN EXCLUDED.put_hash IS NULL THEN assets.{c} ELSE EXCLUDED.{c} END" for c in _PUT_FIELDS)},
    versions = assets.versions + EXCLUDED.versions,
    updated_ts = EXCLUDED.updated_ts,
    change_seq = nextval('asset_change_seq')
"""

_AUTHOR_UPSERT = """
INSERT INTO authors (author, did, head_seq, head_hash) VALUES (%s, %s, %s, %s)
ON CONFLICT (author) DO UPDATE SET head_seq = EXCLUDED.head_seq, head_hash = EXCLUDED.head_hash,
    updated_at = now()
"""


@dataclass
class _AssetChange:
    """The net effect of a batch on one asset."""

    author: AuthorKey
    key: str
    last: Entry
    put: Entry | None = None
    versions: int = 0
    first_ts: int = 0


class Store:
    """The indexer's PostgreSQL store: the ingest path plus the replica interface the bridge's daemon uses.

    Synchronous (psycopg 3 through SQLAlchemy); call it from trio with
    ``trio.to_thread.run_sync`` and from FastAPI through the threadpool.
    """

    def __init__(self, engine: Engine, *, quarantine_limits: QuarantineLimits | None = None) -> None:
        self.engine = engine
        self.quarantine_limits = quarantine_limits or QuarantineLimits()

    @classmethod
    def connect(
        cls, url: str, *, pool_size: int = 5, quarantine_limits: QuarantineLimits | None = None
    ) -> Store:
        return cls(make_engine(url, pool_size=pool_size), quarantine_limits=quarantine_limits)

    def close(self) -> None:
        self.engine.dispose()

    # -- the ingest path -------------------------------------------------------------------

    def ingest_raw(self, raws: Sequence[bytes], *, source: str, now: int | None = None) -> IngestResult:
        """Parse, verify and ingest encoded entries; quarantine the invalid ones (``POST /v1/entries``)."""
        now = now_ms() if now is None else now
        verified: list[tuple[int, Entry]] = []
        rejected: list[Rejected] = []
        results: list[ItemResult | None] = [None] * len(raws)
        for i, raw in enumerate(raws):
            try:
                verified.append((i, parse_and_verify(raw, now_ms=now, max_skew_ms=MAX_SKEW_MS)))
            except ProtocolError as exc:
                rejected.append(Rejected(raw, exc.code, exc.reason, source))
                results[i] = ItemResult(i, None, "invalid", exc.code, exc.reason)
        dropped = self.quarantine(rejected) if rejected else 0
        report = self.ingest([e for _, e in verified], source=source)
        reasons = {e.hash.raw: why for e, why in report.refused}
        for i, e in verified:
            status = report.status.get(e.hash.raw, "duplicate")
            reason = reasons.get(e.hash.raw)
            if status == "fork":
                reason = f"a different entry is held at seq {e.seq} of this author"
            elif status == "held":
                lo, hi = report.gaps.get(e.author, (0, 0))
                reason = f"held until seq {lo}..{hi} of this author arrive"
            results[i] = ItemResult(i, e.hash.cid, status, None if reason is None else status, reason)
        return IngestResult([r for r in results if r is not None], quarantine_dropped=dropped)

    def ingest(
        self, entries: Sequence[Entry], *, source: str = "", received_ms: Sequence[int] | None = None
    ) -> IngestReport:
        """Apply verified entries in one transaction; see the module docstring."""
        report = IngestReport()
        if not entries:
            return report
        received = dict(zip((e.hash.raw for e in entries), received_ms, strict=False)) if received_ms else {}
        rows = _Rows(received)
        rows.build(entries)
        try:
            with _translate(), self.engine.begin() as conn:
                self._ingest(conn, entries, source, rows, report)
        except _Unstorable as exc:
            return self._ingest_around(entries, source, received, str(exc))
        if report.forks:
            log.warning("forks quarantined count=%d source=%s", len(report.forks), source)
        return report

    def _ingest_around(
        self, entries: Sequence[Entry], source: str, received: dict[bytes, int], why: str
    ) -> IngestReport:
        """Ingest a batch that PostgreSQL refused, without the entries it cannot store.

        Verified entries should always be storable (``protocol`` refuses what
        PostgreSQL cannot keep, such as U+0000); if one is not, the batch is
        halved until each refused entry stands alone, that entry is quarantined
        (``unstorable``, with PostgreSQL's reason) and the rest is applied. Its
        author's later entries wait in ``pending`` as after any gap, so nothing
        is lost and the writer never retries the same batch forever.
        """
        if len(entries) == 1:
            e = entries[0]
            log.error("entry refused by postgresql author=%s seq=%d reason=%s", e.author.did, e.seq, why)
            self.quarantine([Rejected(e.raw, "unstorable", why, source, e.author.raw, e.seq)])
            report = IngestReport()
            report.refused.append((e, f"the database cannot store it: {why}"))
            report.status[e.hash.raw] = "refused"
            return report
        mid = len(entries) // 2
        merged = IngestReport()
        for half in (entries[:mid], entries[mid:]):
            merged.merge(
                self.ingest(half, source=source, received_ms=[received.get(e.hash.raw, 0) for e in half])
            )
        return merged

    def _ingest(
        self,
        conn: Connection,
        entries: Sequence[Entry],
        source: str,
        rows: _Rows,
        report: IngestReport,
    ) -> None:
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (INGEST_LOCK,))
        dids = rows.dids
        by_author: dict[bytes, dict[bytes, Entry]] = {}
        for e in entries:
            by_author.setdefault(e.author.raw, {})[e.hash.raw] = e
        authors = list(by_author)
        logs: dict[bytes, AuthorLog] = {}
        cur.execute(
            "SELECT author, head_seq, head_hash, forked_seq FROM authors WHERE author = ANY(%s)", (authors,)
        )
        for a, seq, h, forked in cur.fetchall():
            logs[bytes(a)] = AuthorLog(Head(seq, EntryHash(bytes(h))), forked)
        # Entries parked past a gap rejoin their author's candidates.
        pending_hashes: set[bytes] = set()
        cur.execute("SELECT raw FROM pending WHERE author = ANY(%s) ORDER BY author, seq, hash", (authors,))
        for (raw,) in cur.fetchall():
            try:
                e = parse_and_verify(bytes(raw), now_ms=None)
            except ProtocolError:  # cannot happen for rows we verified; never apply it if it does
                continue
            pending_hashes.add(e.hash.raw)
            by_author[e.author.raw].setdefault(e.hash.raw, e)
        candidates = [e for es in by_author.values() for e in es.values()]
        wanted = lookups(candidates, logs)
        held: dict[tuple[bytes, int], EntryHash] = {}
        if wanted:
            cur.execute(
                "SELECT e.author, e.seq, e.hash FROM entries e "
                "JOIN unnest(%s::bytea[], %s::bigint[]) AS w(author, seq) ON e.author = w.author AND e.seq = w.seq",
                ([a for a, _ in wanted], [s for _, s in wanted]),
            )
            for a, s, h in cur.fetchall():
                held[(bytes(a), s)] = EntryHash(bytes(h))

        p = plan(candidates, logs, held)
        appended = p.appends
        # Parked entries leave ``pending`` once placed, except refused ones (kept, as before).
        to_pending = [s.entry for s in p.of(Outcome.HELD) if s.entry.hash.raw not in pending_hashes]
        done_pending = [
            s.entry.hash.raw
            for s in p.steps
            if s.entry.hash.raw in pending_hashes and s.outcome not in (Outcome.HELD, Outcome.REFUSED)
        ]
        forks = p.of(Outcome.FORK)
        refused = [(s.entry, s.reason) for s in p.of(Outcome.REFUSED)]

        if p.heads:
            cur.executemany(
                _AUTHOR_UPSERT,
                [(a, dids[a], e.seq, e.hash.raw) for a, e in p.heads.items()],
            )
        if appended:
            with binary_copy(cur, f"COPY entries ({ENTRY_COLUMNS})", ENTRY_TYPES) as copy:
                for e in appended:
                    copy.write_row(rows.entry(e))
            self._write_assets_and_activity(cur, appended, rows)
        if to_pending:
            cur.executemany(
                "INSERT INTO pending (hash, author, seq, raw) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(e.hash.raw, e.author.raw, e.seq, e.raw) for e in to_pending],
            )
        if done_pending:
            cur.execute("DELETE FROM pending WHERE hash = ANY(%s)", (done_pending,))
        if forks:
            self._write_forks(cur, forks, p.forked, source)
        if refused:
            _quarantine.write(
                cur,
                [Rejected(e.raw, "after-fork", why, source, e.author.raw, e.seq) for e, why in refused],
                self.quarantine_limits,
            )
        report.merge(p.report(parks_held=True))

    def _write_assets_and_activity(self, cur: Any, appended: list[Entry], rows: _Rows) -> None:
        changes: dict[tuple[bytes, str], _AssetChange] = {}
        for e in appended:  # appended is in (author, seq) order
            if e.kind not in ("asset.put", "asset.delete"):
                continue
            ch = changes.get((e.author.raw, e.key))
            if ch is None:
                ch = changes[(e.author.raw, e.key)] = _AssetChange(e.author, e.key, e, first_ts=e.ts)
            ch.last = e
            ch.versions += 1
            if e.kind == "asset.put":
                ch.put = e
        existing: dict[tuple[bytes, str], bool] = {}  # → deleted
        if changes:
            keys = list(changes)
            cur.execute(
                "SELECT a.author, a.key, a.deleted FROM assets a "
                "JOIN unnest(%s::bytea[], %s::text[]) AS w(author, key) ON a.author = w.author AND a.key = w.key",
                ([k[0] for k in keys], [k[1] for k in keys]),
            )
            existing = {(bytes(a), k): d for a, k, d in cur.fetchall()}
            cur.execute(_ASSET_STAGE)
            with binary_copy(cur, f"COPY asset_stage ({_ASSET_COLUMNS})", ASSET_TYPES) as copy:
                for ch in changes.values():
                    put = ch.put
                    copy.write_row(
                        (
                            ch.author.raw,
                            rows.dids[ch.author.raw],
                            ch.key,
                            rows.uri(ch.last),
                            ch.last.hash.raw,
                            put.hash.raw if put is not None else None,
                            ch.last.seq,
                            ch.last.kind == "asset.delete",
                            *(rows.put_fields(put) if put is not None else _EMPTY_PUT),
                            ch.versions,
                            ch.first_ts,
                            ch.last.ts,
                        )
                    )
            cur.execute(_ASSET_UPSERT)
            cur.execute("SELECT pg_notify(%s, currval('asset_change_seq')::text)", (ASSETS_CHANNEL,))
        # One activity row per applied entry, in log order.
        live = {k: not d for k, d in existing.items()}
        with binary_copy(cur, f"COPY activity ({_ACTIVITY_COLUMNS})", _ACTIVITY_TYPES) as copy:
            for e in appended:
                k = (e.author.raw, e.key)
                if e.kind == "asset.put":
                    kind = "updated" if live.get(k) else "published"
                    live[k] = True
                elif e.kind == "asset.delete":
                    kind = "deleted"
                    live[k] = False
                else:
                    kind = "attested"
                did = rows.dids[e.author.raw]
                copy.write_row((kind, rows.uri(e), did, e.hash.raw, e.seq, rows.activity_data(e)))
        cur.execute(
            "SELECT pg_notify(%s, currval(pg_get_serial_sequence('activity', 'id'))::text)",
            (ACTIVITY_CHANNEL,),
        )

    def _write_forks(self, cur: Any, forks: list[Step], marks: dict[bytes, int], source: str) -> None:
        cur.executemany(
            "INSERT INTO forks (hash, author, seq, conflicts_with, raw) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            [
                (
                    s.entry.hash.raw,
                    s.entry.author.raw,
                    s.entry.seq,
                    c.raw if (c := s.conflicting) else None,
                    s.entry.raw,
                )
                for s in forks
            ],
        )
        _quarantine.write(
            cur,
            [
                Rejected(
                    s.entry.raw,
                    "fork",
                    f"a different entry ({s.conflicting.cid if s.conflicting else 'unknown'}) "
                    f"is held at or before seq {s.entry.seq}",
                    source,
                    s.entry.author.raw,
                    s.entry.seq,
                )
                for s in forks
            ],
            self.quarantine_limits,
        )
        # A fork needs a held entry, so the author's row exists (it may have been written above).
        cur.executemany(
            "UPDATE authors SET forked_seq = LEAST(COALESCE(forked_seq, %s), %s), updated_at = now() "
            "WHERE author = %s",
            [(seq, seq, a) for a, seq in marks.items()],
        )

    def quarantine(self, items: Sequence[Rejected]) -> int:
        """Record inputs that failed verification, within :attr:`quarantine_limits` (see
        :mod:`.quarantine`: deduplicated by digest, no raw bytes past 16 KiB, bounded, aged out).

        Returns how many new inputs were dropped because a bound was reached.
        """
        if not items:
            return 0
        with _translate(), self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            return _quarantine.write(cur, items, self.quarantine_limits)

    # -- the replica interface (node.daemon / node.sync) -------------------------------------

    def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        with _translate(), self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def head(self, author: AuthorKey) -> Head | None:
        rows = self._rows("SELECT head_seq, head_hash FROM authors WHERE author = :a", {"a": author.raw})
        return Head(rows[0][0], EntryHash(bytes(rows[0][1]))) if rows else None

    def heads(self, *, after: bytes | None = None, limit: int = 1000) -> list[tuple[bytes, int, bytes]]:
        """Every author's head, ordered by author key, paged by ``after``."""
        rows = self._rows(
            "SELECT author, head_seq, head_hash FROM authors WHERE author > :after ORDER BY author LIMIT :n",
            {"after": after or b"", "n": limit},
        )
        return [(bytes(a), s, bytes(h)) for a, s, h in rows]

    def heads_between(self, lo: bytes, hi: bytes) -> dict[bytes, tuple[int, bytes]]:
        rows = self._rows(
            "SELECT author, head_seq, head_hash FROM authors WHERE author BETWEEN :lo AND :hi",
            {"lo": lo, "hi": hi},
        )
        return {bytes(a): (s, bytes(h)) for a, s, h in rows}

    def range_raw(self, author: bytes, start: int, end: int) -> list[bytes]:
        rows = self._rows(
            "SELECT raw FROM entries WHERE author = :a AND seq BETWEEN :s AND :e ORDER BY seq",
            {"a": author, "s": start, "e": end},
        )
        return [bytes(r[0]) for r in rows]

    def get_raw(self, h: EntryHash) -> bytes | None:
        rows = self._rows("SELECT raw FROM entries WHERE hash = :h", {"h": h.raw})
        return bytes(rows[0][0]) if rows else None

    def count_authors(self) -> int:
        return int(self._rows("SELECT count(*) FROM authors", {})[0][0])

    def count_entries(self) -> int:
        return int(self._rows("SELECT count(*) FROM entries", {})[0][0])

    def append_local(self, signer: Signer, *, kind: str, key: str, body: dict[str, Any]) -> Entry:
        """Sign and ingest the next entry of ``signer``'s own log (the bridge's attest log)."""
        head = self.head(signer.public)
        entry = sign_entry(
            signer,
            seq=(head.seq if head else 0) + 1,
            prev=head.hash if head else None,
            ts=now_ms(),
            kind=kind,
            key=key,
            body=body,
        )
        report = self.ingest([entry], source="local")
        if report.status.get(entry.hash.raw) != "appended":
            raise DatabaseError(f"own entry was not appended: {report.status.get(entry.hash.raw)}")
        return entry
