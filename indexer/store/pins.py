"""The durable pin queue in PostgreSQL: which CIDs current assets name, and a pin job for each (``Pins``).

Built on the store's engine (``Pins(store.engine)``); every statement runs inside
the package's one translation (:func:`.edge.translate`). The pin worker
(:mod:`indexer.pins`) is its one user apart from the API's reads.

Reconciling (:meth:`Pins.reconcile`)
    Follows ``assets.change_seq`` from ``pin_cursors`` (the search feeder's rule:
    a reader that has seen ``n`` has seen every committed change up to ``n``), in
    batches, each one transaction: the batch's rows of ``asset_media`` are replaced
    by the CIDs (``media``, ``preview``, ``artwork`` of ``assets.body``) of those of
    its assets that are current (not deleted, not moderated); each new CID gets a
    ``pending`` job (one per CID, however many assets name it); a CID no current
    asset names any more gets ``unwanted_since`` (and loses it when one names it
    again). It never touches ingest: it only reads ``assets``. The cursor row is
    taken ``FOR UPDATE SKIP LOCKED``, so of several workers one reconciles at a time
    and the others go on pinning. Jobs that never got pinned and have been unwanted
    for the grace period are dropped.

Claiming (:meth:`Pins.claim`)
    ``SELECT … FOR UPDATE SKIP LOCKED`` of due jobs (pending ones that are wanted,
    and pinned ones unwanted for longer than the grace period: unpins) whose lease
    is free or over, in one ``UPDATE`` that gives them this claim's token, a lease
    until ``now() + lease`` and one more attempt (a claim that crashes counts: a job
    that kills its worker every time ends ``failed``). Two workers never hold the
    same job; a killed worker's jobs become claimable when their lease ends.

Retrying (:meth:`Pins.retry_failed`)
    An operator's ``POST /v1/admin/pins/retry`` puts ``failed`` jobs back to
    ``pending`` with a fresh count of attempts, once the cause is fixed.

Finishing (:meth:`Pins.pinned`, :meth:`Pins.unpinned`, :meth:`Pins.failed`)
    Only under the claim's token: a worker whose lease ran out (and whose job was
    claimed again) records nothing, so each job is done once. A failure records its
    reason and, below the most attempts, the time of the next one (exponential
    backoff); at the most it is ``failed``. A failed unpin stays pinned and is
    retried with the same backoff.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text

from .edge import Queries, translate

__all__ = ["MEDIA_ROLES", "Job", "Pins", "backoff_delay"]

MEDIA_ROLES = ("media", "preview", "artwork")  # the put body's fields that name a file by CID
RECONCILE_BATCH = 1000


def backoff_delay(attempts: int, *, base: float, most: float) -> float:
    """Seconds before the next attempt after ``attempts`` of them: ``base`` doubled per attempt, at most ``most``."""
    return float(min(most, base * 2.0 ** max(0, min(attempts - 1, 30))))


@dataclass(frozen=True)
class Job:
    """A claimed job: pin ``cid`` (``op == "pin"``) or unpin it, under ``token`` until the lease ends."""

    cid: str
    op: str  # pin | unpin
    attempts: int  # this one included
    token: str


def media_cids(body: Any) -> dict[str, str]:
    """``{role: cid}`` of the files an ``asset.put`` body names (a verified body: the shape is the schema's)."""
    if isinstance(body, str | bytes):
        body = orjson.loads(body)
    out: dict[str, str] = {}
    if isinstance(body, dict):
        for role in MEDIA_ROLES:
            m = body.get(role)
            if isinstance(m, dict) and isinstance(m.get("cid"), str):
                out[role] = m["cid"]
    return out


class Pins(Queries):
    """The pin queue's statements (see the module docstring)."""

    def reconcile(self, *, grace_s: float, batch: int = RECONCILE_BATCH) -> int:
        """One batch of asset changes onto ``asset_media`` and the jobs; how many assets it read.

        0 when caught up, or when another worker holds the cursor.
        """
        with translate(), self.engine.begin() as conn:
            pos = conn.execute(
                text("SELECT position FROM pin_cursors WHERE name = 'assets' FOR UPDATE SKIP LOCKED")
            ).scalar()
            if pos is None:
                return 0
            rows = conn.execute(
                text(
                    "SELECT id, body, deleted, hidden, change_seq FROM assets "
                    "WHERE change_seq > :pos ORDER BY change_seq LIMIT :n"
                ),
                {"pos": pos, "n": batch},
            ).all()
            if rows:
                self._apply(conn, rows)
                conn.execute(
                    text("UPDATE pin_cursors SET position = :p, updated_at = now() WHERE name = 'assets'"),
                    {"p": rows[-1].change_seq},
                )
            conn.execute(
                text(
                    "DELETE FROM pins WHERE status <> 'pinned' AND unwanted_since IS NOT NULL "
                    "AND unwanted_since <= now() - make_interval(secs => :g) "
                    "AND (lease_until IS NULL OR lease_until < now())"
                ),
                {"g": grace_s},
            )
            return len(rows)

    @staticmethod
    def _apply(conn: Any, rows: Sequence[Any]) -> None:
        ids = [r.id for r in rows]
        old = set(
            conn.execute(
                text("SELECT cid FROM asset_media WHERE asset_id = ANY(:ids)"), {"ids": ids}
            ).scalars()
        )
        conn.execute(text("DELETE FROM asset_media WHERE asset_id = ANY(:ids)"), {"ids": ids})
        new: list[dict[str, Any]] = []
        for r in rows:
            if r.deleted or r.hidden:
                continue
            new.extend({"a": r.id, "r": role, "c": cid} for role, cid in media_cids(r.body).items())
        if new:
            conn.execute(text("INSERT INTO asset_media (asset_id, role, cid) VALUES (:a, :r, :c)"), new)
            cids = sorted({n["c"] for n in new})
            conn.execute(
                text(
                    "INSERT INTO pins (cid) SELECT unnest(CAST(:cids AS text[])) "
                    "ON CONFLICT (cid) DO UPDATE SET unwanted_since = NULL, updated_at = now() "
                    "WHERE pins.unwanted_since IS NOT NULL"
                ),
                {"cids": cids},
            )
        gone = sorted(old - {n["c"] for n in new})
        if gone:
            conn.execute(
                text(
                    "UPDATE pins SET unwanted_since = now(), updated_at = now() "
                    "WHERE cid = ANY(:gone) AND unwanted_since IS NULL "
                    "AND NOT EXISTS (SELECT 1 FROM asset_media m WHERE m.cid = pins.cid)"
                ),
                {"gone": gone},
            )

    def claim(self, *, n: int, lease_s: float, grace_s: float) -> list[Job]:
        """Up to ``n`` due jobs, leased to this claim for ``lease_s`` seconds (see the module docstring)."""
        token = secrets.token_hex(8)
        with translate(), self.engine.begin() as conn:
            rows = conn.execute(
                text(
                    "UPDATE pins SET lease_token = :tok, lease_until = now() + make_interval(secs => :lease), "
                    "attempts = attempts + 1, updated_at = now() "
                    "WHERE cid IN (SELECT cid FROM pins WHERE next_attempt_at <= now() "
                    "  AND (lease_until IS NULL OR lease_until < now()) "
                    "  AND ((status = 'pending' AND unwanted_since IS NULL) "
                    "    OR (status = 'pinned' AND unwanted_since <= now() - make_interval(secs => :grace))) "
                    "  ORDER BY next_attempt_at LIMIT :n FOR UPDATE SKIP LOCKED) "
                    "RETURNING cid, status, attempts"
                ),
                {"tok": token, "lease": lease_s, "grace": grace_s, "n": n},
            ).all()
        return [
            Job(r.cid, "unpin" if r.status == "pinned" else "pin", r.attempts, token)
            for r in sorted(rows, key=lambda r: r.cid)
        ]

    def pinned(self, job: Job) -> bool:
        """Record ``job``'s pin; False (nothing recorded) if its lease was lost to another claim."""
        return self._finish(
            job,
            "UPDATE pins SET status = 'pinned', pinned_at = now(), last_error = NULL, "
            "lease_token = NULL, lease_until = NULL, updated_at = now() WHERE cid = :cid AND lease_token = :tok",
        )

    def unpinned(self, job: Job) -> bool:
        """Record ``job``'s unpin (the row goes); False if its lease was lost, or a current asset names it again."""
        return self._finish(
            job, "DELETE FROM pins WHERE cid = :cid AND lease_token = :tok AND unwanted_since IS NOT NULL"
        )

    def failed(
        self, job: Job, reason: str, *, max_attempts: int, backoff_s: float, backoff_max_s: float
    ) -> str | None:
        """Record a failed attempt; the job's status after it (``pending``/``pinned``: retried; ``failed``),
        or None if the lease was lost."""
        give_up = job.op == "pin" and job.attempts >= max_attempts
        delay = backoff_delay(job.attempts, base=backoff_s, most=backoff_max_s)
        with translate(), self.engine.begin() as conn:
            status = conn.execute(
                text(
                    "UPDATE pins SET failures = failures + 1, last_error = :why, "
                    "status = CASE WHEN :give_up THEN 'failed' ELSE status END, "
                    "next_attempt_at = now() + make_interval(secs => :delay), "
                    "lease_token = NULL, lease_until = NULL, updated_at = now() "
                    "WHERE cid = :cid AND lease_token = :tok RETURNING status"
                ),
                {"why": reason[:2000], "give_up": give_up, "delay": delay, "cid": job.cid, "tok": job.token},
            ).scalar()
        return status

    def retry_failed(self, cids: Iterable[str] | None = None) -> list[str]:
        """Give ``failed`` pin jobs (all of them, or those of ``cids``) a fresh start: ``pending``,
        due now, attempts back to 0 (so each gets the full number again); their failure count and
        last error stay, as history. An operator calls this once the cause is fixed (the IPFS node
        back, its disk freed). Returns the CIDs put back, sorted."""
        wanted = None if cids is None else sorted(set(cids))
        with translate(), self.engine.begin() as conn:
            rows = conn.execute(
                text(
                    "UPDATE pins SET status = 'pending', attempts = 0, next_attempt_at = now(), "
                    "lease_token = NULL, lease_until = NULL, updated_at = now() "
                    "WHERE status = 'failed' AND (CAST(:all AS boolean) OR cid = ANY(:cids)) RETURNING cid"
                ),
                {"all": wanted is None, "cids": wanted or []},
            ).all()
        return sorted(r.cid for r in rows)

    def _finish(self, job: Job, sql: str) -> bool:
        with translate(), self.engine.begin() as conn:
            return conn.execute(text(sql), {"cid": job.cid, "tok": job.token}).rowcount == 1

    # -- what the API reads ------------------------------------------------------------------------

    def statuses(self, cids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``{cid: {status, attempts, failures, error, pinned_at, unwanted_since}}`` of those that have a job."""
        cids = sorted(set(cids))
        if not cids:
            return {}
        with translate(), self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT cid, status, attempts, failures, last_error, pinned_at, unwanted_since "
                    "FROM pins WHERE cid = ANY(:cids)"
                ),
                {"cids": cids},
            ).all()
        return {
            r.cid: {
                "status": _queue_status(r.status, r.unwanted_since),
                "attempts": r.attempts,
                "failures": r.failures,
                "error": r.last_error,
                "pinned_at": _iso(r.pinned_at),
            }
            for r in rows
        }

    def depth(self) -> dict[str, Any]:
        """The queue by status (``pending``, ``pinned``, ``failed``, ``unpinning``) and its failed attempts."""
        with translate(), self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT CASE WHEN status = 'pinned' AND unwanted_since IS NOT NULL THEN 'unpinning' "
                    "ELSE status END AS s, count(*) AS n, coalesce(sum(failures), 0) AS f "
                    "FROM pins GROUP BY 1"
                )
            ).all()
        by_status = {s: 0 for s in ("pending", "pinned", "failed", "unpinning")}
        by_status.update({r.s: int(r.n) for r in rows})
        return {"by_status": by_status, "failures": sum(int(r.f) for r in rows)}


def _queue_status(status: str, unwanted_since: datetime | None) -> str:
    return "unpinning" if status == "pinned" and unwanted_since is not None else status


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None
