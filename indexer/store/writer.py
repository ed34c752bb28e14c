"""One ingest transaction's SQL: read what :func:`protocol.plan` needs, then execute the plan.

Array parameters are sent in binary (``%b``): psycopg dumps a list in text
format in pure Python, escaping each element (hex for bytea), which for a
batch's 1,000 authors and keys cost more than the rest of its Python work.

Both functions take the psycopg cursor of a transaction that holds the ingest
advisory lock (:meth:`.ingest.Store.ingest` takes it); the plan itself is
decided in ``protocol``, the same rule the node's store executes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from protocol import (
    AssetUri,
    AuthorKey,
    AuthorLog,
    Entry,
    EntryHash,
    Head,
    Outcome,
    Plan,
    ProtocolError,
    Step,
    attestation_of,
    latest_attestations,
    lookups,
    parse_and_verify,
)

from ..models import ACTIVITY_CHANNEL, ASSETS_CHANNEL
from . import quarantine as _quarantine
from .quarantine import QuarantineLimits, Rejected
from .rows import ACTIVITY_COLUMNS, ASSET_COLUMNS, ENTRY_COLUMNS, Rows, copy_rows, dumps

# Per-connection staging table (assets are COPYed in, then upserted in one statement).
_ASSET_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS asset_stage ON COMMIT DELETE ROWS AS
SELECT {ASSET_COLUMNS} FROM assets WITH NO DATA
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
INSERT INTO assets ({ASSET_COLUMNS}) SELECT {ASSET_COLUMNS} FROM asset_stage
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


@dataclass
class Replica:
    """What the replica holds for a batch's authors, as :func:`protocol.plan` takes it."""

    candidates: list[Entry]  # the batch (each entry once) and the authors' parked entries
    logs: dict[bytes, AuthorLog]
    held: dict[tuple[bytes, int], EntryHash]
    pending: set[bytes]  # hashes of the candidates that are parked in ``pending``


def read_for_plan(cur: Any, entries: Sequence[Entry]) -> Replica:
    """Heads and fork marks of the batch's authors, their parked entries, the hashes at the seqs in question."""
    by_author: dict[bytes, dict[bytes, Entry]] = {}
    for e in entries:
        by_author.setdefault(e.author.raw, {})[e.hash.raw] = e
    authors = list(by_author)
    logs: dict[bytes, AuthorLog] = {}
    cur.execute(
        "SELECT author, head_seq, head_hash, forked_seq FROM authors WHERE author = ANY(%b)", (authors,)
    )
    for a, seq, h, forked in cur.fetchall():
        logs[bytes(a)] = AuthorLog(Head(seq, EntryHash(bytes(h))), forked)
    # Entries parked past a gap rejoin their author's candidates.
    pending: set[bytes] = set()
    cur.execute("SELECT raw FROM pending WHERE author = ANY(%b) ORDER BY author, seq, hash", (authors,))
    for (raw,) in cur.fetchall():
        try:
            e = parse_and_verify(bytes(raw), now_ms=None)
        except ProtocolError:  # cannot happen for rows we verified; never apply it if it does
            continue
        pending.add(e.hash.raw)
        by_author[e.author.raw].setdefault(e.hash.raw, e)
    candidates = [e for es in by_author.values() for e in es.values()]
    wanted = lookups(candidates, logs)
    held: dict[tuple[bytes, int], EntryHash] = {}
    if wanted:
        cur.execute(
            "SELECT e.author, e.seq, e.hash FROM entries e "
            "JOIN unnest(%b::bytea[], %b::bigint[]) AS w(author, seq) ON e.author = w.author AND e.seq = w.seq",
            ([a for a, _ in wanted], [s for _, s in wanted]),
        )
        for a, s, h in cur.fetchall():
            held[(bytes(a), s)] = EntryHash(bytes(h))
    return Replica(candidates, logs, held, pending)


def execute(
    cur: Any,
    p: Plan,
    *,
    rows: Rows,
    pending: set[bytes],
    source: str,
    limits: QuarantineLimits,
    trusted: Collection[AuthorKey] = (),
) -> None:
    """Write what plan ``p`` decided: heads, entries, assets and activity, ``pending``, forks, refusals,
    and the verification that ``trusted`` bridges' attestations give (:func:`_apply_attestations`)."""
    appended = p.appends
    # Parked entries leave ``pending`` once placed, except refused ones (they stay parked).
    to_pending = [s.entry for s in p.of(Outcome.HELD) if s.entry.hash.raw not in pending]
    done_pending = [
        s.entry.hash.raw
        for s in p.steps
        if s.entry.hash.raw in pending and s.outcome not in (Outcome.HELD, Outcome.REFUSED)
    ]
    forks = p.of(Outcome.FORK)
    refused = p.of(Outcome.REFUSED)
    if p.heads:
        cur.executemany(_AUTHOR_UPSERT, [(a, rows.dids[a], e.seq, e.hash.raw) for a, e in p.heads.items()])
    if appended:
        copy_rows(cur, f"COPY entries ({ENTRY_COLUMNS})", [rows.entry(e) for e in appended])
        created = _write_assets_and_activity(cur, appended, rows)
        if trusted:
            _apply_attestations(cur, appended, created, trusted)
    if to_pending:
        cur.executemany(
            "INSERT INTO pending (hash, author, seq, raw) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(e.hash.raw, e.author.raw, e.seq, e.raw) for e in to_pending],
        )
    if done_pending:
        cur.execute("DELETE FROM pending WHERE hash = ANY(%b)", (done_pending,))
    if forks:
        _write_forks(cur, forks, p.forked, source, limits)
    if refused:
        _quarantine.write(
            cur,
            [
                Rejected(s.entry.raw, "after-fork", s.reason, source, s.entry.author.raw, s.entry.seq)
                for s in refused
            ],
            limits,
        )


def _write_assets_and_activity(cur: Any, appended: list[Entry], rows: Rows) -> dict[str, AssetUri]:
    """The assets the appended entries change (one upsert each) and one activity row per entry.

    Returns the assets this batch created, by asset id (for attestations that arrived before them)."""
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
            "JOIN unnest(%b::bytea[], %b::text[]) AS w(author, key) ON a.author = w.author AND a.key = w.key",
            ([k[0] for k in keys], [k[1] for k in keys]),
        )
        existing = {(bytes(a), k): d for a, k, d in cur.fetchall()}
        cur.execute(_ASSET_STAGE)
        copy_rows(
            cur,
            f"COPY asset_stage ({ASSET_COLUMNS})",
            [
                rows.asset_row(
                    (
                        ch.author.raw,
                        rows.dids[ch.author.raw],
                        ch.key,
                        rows.uri(ch.last),
                        ch.last.hash.raw,
                        ch.put.hash.raw if ch.put is not None else None,
                        ch.last.seq,
                        ch.last.kind == "asset.delete",
                    ),
                    ch.put,
                    (ch.versions, ch.first_ts, ch.last.ts),
                )
                for ch in changes.values()
            ],
        )
        cur.execute(_ASSET_UPSERT)
        cur.execute("SELECT pg_notify(%s, currval('asset_change_seq')::text)", (ASSETS_CHANNEL,))
    # One activity row per applied entry, in log order.
    live = {k: not d for k, d in existing.items()}
    activity: list[bytes] = []
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
        activity.append(rows.activity(e, kind))
    copy_rows(cur, f"COPY activity ({ACTIVITY_COLUMNS})", activity)
    cur.execute(
        "SELECT pg_notify(%s, currval(pg_get_serial_sequence('activity', 'id'))::text)",
        (ACTIVITY_CHANNEL,),
    )
    return {
        rows.asset_id(ch.last): AssetUri(ch.author, ch.key) for k, ch in changes.items() if k not in existing
    }


def _apply_attestations(
    cur: Any, appended: list[Entry], created: dict[str, AssetUri], trusted: Collection[AuthorKey]
) -> None:
    """Set ``assets.verification`` from the latest trusted attestation of each asset the batch touches.

    The assets touched are those a trusted ``attest`` entry of the batch names,
    and those the batch created (an attestation may have arrived first: it is
    applied when its asset does). For each, every trusted ``attest`` entry held
    for it (the batch's are already in ``entries``) is folded by
    :func:`protocol.latest_attestations`, the one rule for attestations, so a
    later entry of a bridge supersedes its earlier ones and a ``revoked`` one
    replaces a ``verified``. Untrusted authors' entries change no asset. The
    caller holds the ingest lock; a changed row gets a fresh ``change_seq``.
    """
    keys = dict(created)  # asset id -> asset: an attest entry's key names its asset
    batch: dict[bytes, Entry] = {}
    for e in appended:
        if e.kind == "attest" and e.author in trusted:
            if e.key not in keys:
                keys[e.key] = attestation_of(e).asset
            batch[e.hash.raw] = e
    if not keys:
        return
    touched = set(keys.values())
    cur.execute(
        "SELECT hash, raw FROM entries WHERE kind = 'attest' AND author = ANY(%b) AND key = ANY(%b)",
        ([a.raw for a in trusted], list(keys)),
    )
    held: list[Entry] = []
    for h, raw in cur.fetchall():
        known = batch.get(bytes(h))
        if known is None:
            try:
                known = parse_and_verify(bytes(raw), now_ms=None)
            except ProtocolError:  # cannot happen for rows we verified; never apply it if it does
                continue
        held.append(known)
    latest = latest_attestations(held, trusted=trusted)
    updates = []
    for uri, e in latest.items():
        if uri in touched:
            # {status, by, chain, onchain_id, tx, subject, attestation}: the shape nodes show too
            verification = attestation_of(e).to_json()
            updates.append((uri.author.raw, uri.key, dumps(verification).decode()))
    if not updates:
        return
    cur.execute(
        "UPDATE assets a SET verification = v.verification::jsonb, change_seq = nextval('asset_change_seq') "
        "FROM unnest(%b::bytea[], %b::text[], %b::text[]) AS v(author, key, verification) "
        "WHERE a.author = v.author AND a.key = v.key AND a.verification IS DISTINCT FROM v.verification::jsonb",
        ([u[0] for u in updates], [u[1] for u in updates], [u[2] for u in updates]),
    )
    if cur.rowcount:
        cur.execute("SELECT pg_notify(%s, currval('asset_change_seq')::text)", (ASSETS_CHANNEL,))


def _write_forks(
    cur: Any, forks: list[Step], marks: dict[bytes, int], source: str, limits: QuarantineLimits
) -> None:
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
        limits,
    )
    # A fork needs a held entry, so the author's row exists (it may have been written above).
    cur.executemany(
        "UPDATE authors SET forked_seq = LEAST(COALESCE(forked_seq, %s), %s), updated_at = now() "
        "WHERE author = %s",
        [(seq, seq, a) for a, seq in marks.items()],
    )
