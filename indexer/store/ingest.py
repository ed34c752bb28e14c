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
* the ``verification`` of the assets that ``attest`` entries of a trusted bridge
  (:attr:`Store.trusted_attesters`) name, or of new assets such entries named
  before they arrived (:func:`.writer._apply_attestations`);
* the per-author head, which is the bridge's durable cursor: it commits with
  the rows it covers, so a crash at any point loses nothing and doubles nothing;
* entries past a gap go to ``pending`` and are applied by a later call once the
  gap fills; forks go to ``forks`` and ``quarantine`` (within its bounds, see
  :mod:`.quarantine`) and flag the author;
* NOTIFY on the assets and activity channels (delivered at commit).

Resubmitting anything is harmless: a duplicate is counted and changes nothing.

The bridge's own log goes through the same path, inside a transaction of its
caller: :meth:`Store.append_local` (one entry) and
:meth:`Store.publish_attestations` (the outbox's rows as ``attest`` entries, and
the rows marked published, in one transaction: see :mod:`.outbox`).

This module holds the :class:`Store` and its per-input results; the SQL of the
transaction is in :mod:`.writer`, the rows it writes are built by :mod:`.rows`.

The Store is the one handle on the database: besides the ingest path and the
replica interface it carries the other query groups, each in its own module
and sharing its engine: ``store.reads`` (:class:`~.reads.Reads`, what the HTTP
API reads), ``store.admin`` (:class:`~.admin.Admin`: keys, moderation,
idempotency), ``store.changes`` (:class:`~.changes.Changes`, what the search
feeder follows) and ``store.payments`` (:class:`~.payments.Payments`, what the
Stellar source reads and writes).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text

from protocol import (
    AuthorKey,
    Entry,
    EntryHash,
    Head,
    IngestReport,
    ProtocolError,
    SchemaError,
    Signer,
    attest_body,
    now_ms,
    parse_asset_uri,
    plan,
    sign_entry,
)

from ..db import make_engine, readiness
from ..errors import DatabaseError
from ..models import INGEST_LOCK
from . import outbox as _outbox
from . import quarantine as _quarantine
from . import writer
from .admin import Admin
from .chain import Chain
from .changes import Changes
from .edge import Unstorable, translate
from .payments import Payments
from .prepare import Checked, check_raws
from .quarantine import QuarantineLimits, Rejected
from .reads import Reads
from .rows import Prepared, Rows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemResult:
    index: int
    hash: str | None
    status: str  # appended | duplicate | held | fork | refused | invalid
    code: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class CheckedReport:
    """What :meth:`Store.ingest_checked` did with one :class:`~.prepare.Checked`."""

    checked: Checked
    entries: list[Entry]  # its valid entries, in its order
    report: IngestReport
    dropped: int  # invalid inputs not recorded: the quarantine was at a bound


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


class Store:
    """The indexer's PostgreSQL store: the ingest path, the replica interface the bridge's daemon uses,
    and the query groups :attr:`reads`, :attr:`admin`, :attr:`changes`, :attr:`payments` and
    :attr:`chain` (see the module docstring).

    Synchronous (psycopg 3 through SQLAlchemy); call it from trio with
    ``trio.to_thread.run_sync`` and from FastAPI through the threadpool.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        quarantine_limits: QuarantineLimits | None = None,
        trusted_attesters: Collection[AuthorKey] = (),
    ) -> None:
        self.engine = engine
        self.quarantine_limits = quarantine_limits or QuarantineLimits()
        # Bridge keys whose ``attest`` entries set ``assets.verification`` (see :mod:`.writer`).
        self.trusted_attesters: frozenset[AuthorKey] = frozenset(trusted_attesters)
        self.reads = Reads(engine)
        self.admin = Admin(engine)
        self.changes = Changes(engine)
        self.chain = Chain(engine)
        self.payments = Payments(engine)

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        pool_size: int = 5,
        quarantine_limits: QuarantineLimits | None = None,
        trusted_attesters: Collection[AuthorKey] = (),
    ) -> Store:
        return cls(
            make_engine(url, pool_size=pool_size),
            quarantine_limits=quarantine_limits,
            trusted_attesters=trusted_attesters,
        )

    def close(self) -> None:
        self.engine.dispose()

    @property
    def url(self) -> str:
        """The database URL, password included (for the processes' own LISTEN connections)."""
        return self.engine.url.render_as_string(hide_password=False)

    def readiness(self) -> dict[str, object]:
        """What ``/readyz`` reports (:func:`indexer.db.readiness`)."""
        return readiness(self.engine)

    # -- the ingest path -------------------------------------------------------------------

    def ingest_raw(self, raws: Sequence[bytes], *, source: str, now: int | None = None) -> IngestResult:
        """Parse, verify and ingest encoded entries; quarantine the invalid ones (``POST /v1/entries``)."""
        return self.results([self.ingest_checked(check_raws(raws, now=now, in_process=True), source=source)])

    def ingest_checked(self, checked: Checked, *, source: str) -> CheckedReport:
        """Ingest what :func:`.prepare.check_raws` checked (here or in a worker process), with the
        rows it built, in one transaction; quarantine its invalid inputs."""
        rejected = [Rejected(raw, code, reason, source) for _, raw, code, reason in checked.invalid]
        dropped = self.quarantine(rejected) if rejected else 0
        entries = checked.entries()
        report = self.ingest(entries, source=source, prepared=checked.rows)
        return CheckedReport(checked, entries, report, dropped)

    @staticmethod
    def results(parts: Sequence[CheckedReport]) -> IngestResult:
        """Per-input results of one request ingested in ``parts`` (in input order, one transaction
        each): as if in one transaction, an entry held by one part and applied by a later one is
        ``appended``."""
        report = IngestReport()
        for part in parts:
            report.merge(part.report)
        reasons = {e.hash.raw: why for e, why in report.refused}
        results: list[ItemResult] = []
        for part in parts:
            for i, _raw, code, reason in part.checked.invalid:
                results.append(ItemResult(i, None, "invalid", code, reason))
            for (i, _), e in zip(part.checked.valid, part.entries, strict=True):
                status = report.status.get(e.hash.raw, "duplicate")
                why = reasons.get(e.hash.raw)
                if status == "fork":
                    why = f"a different entry is held at seq {e.seq} of this author"
                elif status == "held":
                    lo, hi = report.gaps.get(e.author, (0, 0))
                    why = f"held until seq {lo}..{hi} of this author arrive"
                results.append(ItemResult(i, e.hash.cid, status, None if why is None else status, why))
        results.sort(key=lambda r: r.index)
        return IngestResult(results, quarantine_dropped=sum(p.dropped for p in parts))

    def ingest(
        self,
        entries: Sequence[Entry],
        *,
        source: str = "",
        received_ms: Sequence[int] | None = None,
        prepared: Prepared | None = None,
    ) -> IngestReport:
        """Apply verified entries in one transaction; see the module docstring.

        Args:
            entries: verified entries (any order, many authors).
            source: where they came from (``quarantine.source`` of forks and refusals).
            received_ms: each entry's receipt time (unix ms), for ``entries.received_at``.
            prepared: rows another process already built for some of the entries
                (:meth:`.rows.Rows.export`, by entry hash); the rest are built here.
        """
        report = IngestReport()
        if not entries:
            return report
        received = dict(zip((e.hash.raw for e in entries), received_ms, strict=False)) if received_ms else {}
        rows = Rows(received)
        if prepared:
            rows.adopt(prepared)
        rows.build(entries)
        try:
            with translate(), self.engine.begin() as conn:
                self._ingest(conn, entries, source, rows, report)
        except Unstorable as exc:
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
        rows: Rows,
        report: IngestReport,
    ) -> None:
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (INGEST_LOCK,))
        replica = writer.read_for_plan(cur, entries)
        p = plan(replica.candidates, replica.logs, replica.held)
        writer.execute(
            cur,
            p,
            rows=rows,
            pending=replica.pending,
            source=source,
            limits=self.quarantine_limits,
            trusted=self.trusted_attesters,
        )
        report.merge(p.report(parks_held=True))

    def quarantine(self, items: Sequence[Rejected]) -> int:
        """Record inputs that failed verification, within :attr:`quarantine_limits` (see
        :mod:`.quarantine`: deduplicated by digest, no raw bytes past 16 KiB, bounded, aged out).

        Returns how many new inputs were dropped because a bound was reached.
        """
        if not items:
            return 0
        with translate(), self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            return _quarantine.write(cur, items, self.quarantine_limits)

    # -- the replica interface (node.daemon / node.sync) -------------------------------------

    def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        with translate(), self.engine.connect() as conn:
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

    # -- our own log (the bridge's attest log) ------------------------------------------------

    def append_local(self, signer: Signer, *, kind: str, key: str, body: dict[str, Any]) -> Entry:
        """Sign and ingest the next entry of ``signer``'s own log, in one transaction.

        Raises:
            protocol.SchemaError: the fields are invalid (nothing is written).
            DatabaseError: the database is unavailable, or the log cannot be extended (a fork).
        """
        with translate(), self.engine.begin() as conn:
            return self._append_own(conn, signer, [(kind, key, body)])[0]

    def publish_attestations(self, signer: Signer, *, limit: int) -> Published:
        """Publish up to ``limit`` outbox rows as ``attest`` entries of ``signer``'s log: one transaction.

        The unpublished rows are taken in ``id`` order (``FOR UPDATE SKIP LOCKED``),
        one ``attest`` entry is signed per row, chained on the log's head, the
        entries go through the one ingest path (:meth:`_ingest`: entries, heads,
        activity, and the verification of the assets they attest when ``signer``
        is trusted) and the rows are marked published with their entry hashes,
        all committed together: a row is published if and only if its entry is
        in the log. A row no entry can be made of is set aside (``data.error``).

        Raises:
            DatabaseError: the database is unavailable (nothing is published; call again).
        """
        with translate(), self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            # The ingest lock first, as every writer takes it, then the rows.
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (INGEST_LOCK,))
            rows = _outbox.take_unpublished(cur, limit)
            drafts: list[tuple[str, str, dict[str, Any]]] = []
            ids: list[int] = []
            set_aside: list[tuple[int, str]] = []
            for r in rows:
                try:
                    uri = parse_asset_uri(r.uri)
                    if r.subject is None or r.status is None:
                        raise SchemaError("subject and status are not set")
                    body = attest_body(
                        uri,
                        subject=r.subject,
                        status=r.status,
                        chain=r.body.get("chain"),  # type: ignore[arg-type]
                        onchain_id=r.body.get("onchain_id"),  # type: ignore[arg-type]
                        tx=r.body.get("tx"),  # type: ignore[arg-type]
                    )
                except ProtocolError as exc:
                    set_aside.append((r.id, f"cannot be published: {exc}"))
                    continue
                drafts.append(("attest", uri.id_b32, body))
                ids.append(r.id)
            for row_id, why in set_aside:
                log.error("outbox row set aside id=%d reason=%s", row_id, why)
                _outbox.set_aside(cur, row_id, why)
            entries = self._append_own(conn, signer, drafts) if drafts else []
            _outbox.mark_published(cur, [(i, e.hash.raw) for i, e in zip(ids, entries, strict=True)])
        return Published(entries, [i for i, _ in set_aside])

    def outbox_depth(self) -> int:
        """Outbox rows waiting to be published (for the bridge's gauge)."""
        with translate(), self.engine.connect() as conn:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            return _outbox.depth(cur)

    def _append_own(
        self, conn: Connection, signer: Signer, drafts: Sequence[tuple[str, str, dict[str, Any]]]
    ) -> list[Entry]:
        """Sign ``drafts`` (kind, key, body) as the next entries of ``signer``'s log and ingest them,
        inside the caller's transaction, through the one ingest path.

        The ingest lock is taken before the head is read, so no other writer can
        extend the log in between (only this key's holder signs for it anyway).
        """
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (INGEST_LOCK,))
        cur.execute(
            "SELECT head_seq, head_hash, forked_seq FROM authors WHERE author = %s", (signer.public.raw,)
        )
        row = cur.fetchone()
        if row is not None and row[2] is not None:
            raise DatabaseError(f"own log has a fork at seq {row[2]}; refusing to extend it")
        seq, prev = (row[0], EntryHash(bytes(row[1]))) if row is not None else (0, None)
        entries: list[Entry] = []
        for kind, key, body in drafts:
            e = sign_entry(signer, seq=seq + 1, prev=prev, ts=now_ms(), kind=kind, key=key, body=body)
            entries.append(e)
            seq, prev = e.seq, e.hash
        rows = Rows({})
        rows.build(entries)
        report = IngestReport()
        try:
            self._ingest(conn, entries, "local", rows, report)
        except Unstorable as exc:  # cannot happen for entries protocol accepted
            raise DatabaseError(f"own entries refused by the database: {exc}") from exc
        missing = [e for e in entries if report.status.get(e.hash.raw) != "appended"]
        if missing:
            raise DatabaseError(f"own entry was not appended: {report.status.get(missing[0].hash.raw)}")
        return entries


@dataclass(frozen=True)
class Published:
    """What one :meth:`Store.publish_attestations` call did."""

    entries: list[Entry]  # the attest entries appended, in log order (one per published row)
    set_aside: list[int]  # outbox ids that could not be published (kept with data.error)
