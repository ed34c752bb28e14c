"""The quarantine: every refused input with its reason, bounded in size and in time.

Everything refused goes through :func:`write` (``Store.quarantine`` for the
bridge's rejects and ``POST /v1/entries``; forks and entries after a fork from
inside an ingest transaction), so the rules below hold on every path:

* **Digest, not bytes, past the entry limit.** An input larger than
  :data:`protocol.MAX_ENTRY_BYTES` (16 KiB) cannot be an entry; its row keeps
  the code, the reason, its ``size`` and the SHA-256 ``digest``, and ``raw`` is
  NULL (the admin listing shows ``raw_kept: false``). Smaller inputs are kept
  byte for byte.
* **Once per distinct input.** A repeat (same digest) only bumps
  ``times_seen`` and ``last_seen``; it costs no space and is always recorded.
* **Bounded per source and in total.** A row costs its kept raw bytes plus its
  reason and source text plus :data:`ROW_OVERHEAD`; ``quarantine_usage``
  holds the running sum per source and in total (source ``*``), updated in
  the same transaction. A *new* row that would take its source past
  ``max_source_bytes`` or the table past ``max_total_bytes`` is dropped,
  counted (the return value; the API exports it as
  ``empressa_quarantine_dropped_total``) and logged. What is already held is
  evidence and is not evicted to make room: a flood from one source cannot
  erase what others left, and it ages out like everything else.
* **Ages out.** Rows not seen for ``retention`` are deleted as new ones are
  written (at most :data:`AGE_OUT_BATCH` per write, oldest first, through the
  ``last_seen`` index), the way expired idempotency keys are cleared: no
  separate job.

Writers serialise on the :data:`QUARANTINE_LOCK` advisory lock, so the bounds
are exact under concurrency. An ingest transaction takes it after the ingest
lock, and nothing takes the two the other way round.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field

from protocol import MAX_ENTRY_BYTES

log = logging.getLogger(__name__)

QUARANTINE_LOCK = 0x656D7071  # pg_advisory_xact_lock key held by every quarantine writer
ROW_OVERHEAD = 128  # bytes counted per row besides raw, reason and source (digest, author, ids, times)
AGE_OUT_BATCH = 1000
MAX_REASON = 1000
MAX_SOURCE = 200
TOTAL = "*"  # the quarantine_usage row that holds the whole table's sum (no source is named "*")


@dataclass(frozen=True)
class QuarantineLimits:
    """Bounds of the quarantine (the ``quarantine_*`` settings, :class:`QuarantineSettings`)."""

    max_source_bytes: int = 16 * 1024 * 1024
    max_total_bytes: int = 512 * 1024 * 1024
    retention: timedelta = timedelta(days=7)


class QuarantineSettings(BaseModel):
    """The quarantine's bounds as settings, shared by every process that writes it (the API, the bridge).

    Mixed into their pydantic-settings classes, so ``quarantine_max_source_bytes`` and the others are
    ``EMPRESSA_INDEXER_QUARANTINE_…`` for the one and ``EMPRESSA_BRIDGE_QUARANTINE_…`` for the other.
    """

    quarantine_max_source_bytes: int = Field(
        default=QuarantineLimits.max_source_bytes,
        ge=0,
        description="Most bytes the quarantine holds for one source (client address or peer); new rejects "
        "past it are counted and dropped.",
    )
    quarantine_max_total_bytes: int = Field(
        default=QuarantineLimits.max_total_bytes,
        ge=0,
        description="Most bytes the quarantine holds in all; new rejects past it are counted and dropped.",
    )
    quarantine_retention_hours: float = Field(
        default=QuarantineLimits.retention.total_seconds() / 3600,
        gt=0,
        description="Hours a quarantined input is kept after it was last seen.",
    )

    @property
    def quarantine_limits(self) -> QuarantineLimits:
        return QuarantineLimits(
            max_source_bytes=self.quarantine_max_source_bytes,
            max_total_bytes=self.quarantine_max_total_bytes,
            retention=timedelta(hours=self.quarantine_retention_hours),
        )


@dataclass(frozen=True)
class Rejected:
    """An input that failed :func:`protocol.parse_and_verify` (or a fork), for the quarantine table."""

    raw: bytes
    code: str
    reason: str
    source: str
    author: bytes | None = None
    seq: int | None = None


_COST_SQL = f"coalesce(octet_length(raw), 0) + octet_length(reason) + octet_length(source) + {ROW_OVERHEAD}"

_AGE_OUT = f"""
WITH gone AS (
    DELETE FROM quarantine WHERE id IN (
        SELECT id FROM quarantine WHERE last_seen < now() - make_interval(secs => %s)
        ORDER BY last_seen LIMIT {AGE_OUT_BATCH}
    )
    RETURNING source, {_COST_SQL} AS cost
), per AS (
    SELECT source, sum(cost) AS b, count(*) AS n FROM gone GROUP BY source
    UNION ALL
    SELECT '*', sum(cost), count(*) FROM gone HAVING count(*) > 0
)
UPDATE quarantine_usage u SET stored_bytes = u.stored_bytes - per.b, row_count = u.row_count - per.n
FROM per WHERE u.source = per.source
"""

_UPSERT = """
INSERT INTO quarantine (digest, author, seq, code, reason, source, raw, size)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (digest) DO UPDATE SET times_seen = quarantine.times_seen + 1, last_seen = now()
"""

_USAGE = """
INSERT INTO quarantine_usage (source, stored_bytes, row_count) VALUES (%s, %s, %s)
ON CONFLICT (source) DO UPDATE SET stored_bytes = quarantine_usage.stored_bytes + EXCLUDED.stored_bytes,
    row_count = quarantine_usage.row_count + EXCLUDED.row_count
"""


def _row(r: Rejected) -> tuple[Any, ...]:
    raw = bytes(r.raw)
    kept = raw if len(raw) <= MAX_ENTRY_BYTES else None
    reason, source = r.reason[:MAX_REASON], r.source[:MAX_SOURCE]
    return (hashlib.sha256(raw).digest(), r.author, r.seq, r.code, reason, source, kept, len(raw))


def _cost(row: tuple[Any, ...]) -> int:
    _, _, _, _, reason, source, kept, _ = row
    return (len(kept) if kept is not None else 0) + len(reason.encode()) + len(source.encode()) + ROW_OVERHEAD


def write(cur: Any, items: Sequence[Rejected], limits: QuarantineLimits) -> int:
    """Record ``items`` within ``limits`` on psycopg cursor ``cur`` (inside the caller's transaction).

    Returns how many new inputs were dropped because a bound was reached.
    """
    if not items:
        return 0
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (QUARANTINE_LOCK,))
    cur.execute(_AGE_OUT, (limits.retention.total_seconds(),))
    cur.execute("DELETE FROM quarantine_usage WHERE row_count <= 0 AND source <> %s", (TOTAL,))
    rows = [_row(r) for r in items]
    cur.execute("SELECT digest FROM quarantine WHERE digest = ANY(%s)", ([r[0] for r in rows],))
    held = {bytes(d) for (d,) in cur.fetchall()}
    sources = list({r[5] for r in rows} | {TOTAL})
    cur.execute("SELECT source, stored_bytes FROM quarantine_usage WHERE source = ANY(%s)", (sources,))
    used: dict[str, int] = dict.fromkeys(sources, 0)
    used.update({s: int(b) for s, b in cur.fetchall()})
    added: dict[str, list[int]] = {}
    keep: list[tuple[Any, ...]] = []
    dropped: dict[str, int] = {}
    for row in rows:
        digest, source = row[0], row[5]
        if digest in held:  # a repeat: counted on the row it already has, whatever the bounds
            keep.append(row)
            continue
        cost = _cost(row)
        if used[source] + cost > limits.max_source_bytes or used[TOTAL] + cost > limits.max_total_bytes:
            dropped[source] = dropped.get(source, 0) + 1
            continue
        held.add(digest)
        keep.append(row)
        for s in (source, TOTAL):
            used[s] += cost
            a = added.setdefault(s, [0, 0])
            a[0] += cost
            a[1] += 1
    if keep:
        cur.executemany(_UPSERT, keep)
    if added:
        cur.executemany(_USAGE, [(s, b, n) for s, (b, n) in added.items()])
    for source, n in dropped.items():
        log.warning(
            "quarantine full; new rejects dropped source=%s count=%d source_bytes=%d total_bytes=%d",
            source,
            n,
            used[source],
            used[TOTAL],
        )
    return sum(dropped.values())


__all__ = ["QUARANTINE_LOCK", "QuarantineLimits", "Rejected", "write"]
