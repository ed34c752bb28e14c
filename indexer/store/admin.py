"""API keys, moderation labels, idempotency keys, the quarantine listing, authors behind.

All of it is :class:`Admin`, ``store.admin`` of a :class:`~.ingest.Store`.

API keys
    A key is shown once, at creation: ``ek_<id>_<secret>``. Only SHA-256 of the
    whole key text is stored (the secret holds 256 random bits, so a fast hash
    is enough); :meth:`Admin.authenticate` finds the row by the id inside the key and
    compares digests in constant time. Scopes: ``ingest`` (higher limits on
    ``POST /v1/entries``), ``moderate`` (labels), ``admin`` (keys, quarantine;
    implies the other two).

Authors behind
    :meth:`Admin.authors_behind` lists the logs whose mirror is not ``synced``:
    ``gap`` (entries parked in ``pending``, waiting for earlier ones) and
    ``forked`` (``authors.forked_seq`` set), in author-key order.

Moderation
    Any label on an asset sets ``assets.hidden`` (it leaves search, it is not
    deleted). Adding or removing a label follows the ordering rule of
    :mod:`indexer.models`: under the ingest advisory lock it bumps the asset's
    ``change_seq`` (so the search feeder re-reads it) and writes an
    ``activity`` row, and notifies both channels.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text, union, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from protocol import AssetUri, AuthorKey, EntryHash

from ..errors import BadRequest, Conflict, Forbidden, InProgress, NotFound, Unauthorized
from ..models import (
    ACTIVITY_CHANNEL,
    ASSETS_CHANNEL,
    INGEST_LOCK,
    Activity,
    ApiKey,
    Asset,
    Author,
    IdempotencyKey,
    ModerationLabel,
    Pending,
    Quarantine,
)
from .edge import Queries, translate
from .reads import decode_cursor, encode_cursor, sync_status

log = logging.getLogger(__name__)

SCOPES = ("ingest", "moderate", "admin")
_KEY_RE = re.compile(r"ek_([0-9a-f]{16})_[A-Za-z0-9_-]{43}")
LABEL_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_AUTHOR_HEX_RE = re.compile(r"[0-9a-f]{64}")


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- API keys --------------------------------------------------------------------------------


def _key_dict(k: Any) -> dict[str, Any]:
    return {
        "id": k.id,
        "name": k.name,
        "scopes": list(k.scopes),
        "created_at": _iso(k.created_at),
        "last_used_at": _iso(k.last_used_at),
        "revoked_at": _iso(k.revoked_at),
    }


# -- moderation ------------------------------------------------------------------------------


def _lock_and_touch(conn: Connection, uri: AssetUri, *, hidden: bool) -> None:
    """Under the ingest lock: set ``hidden``, bump ``change_seq``."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": INGEST_LOCK})
    conn.execute(
        update(Asset)
        .where(Asset.author == uri.author.raw, Asset.key == uri.key)
        .values(hidden=hidden, change_seq=func.nextval("asset_change_seq"))
    )


def _notify(conn: Connection, activity_id: int) -> None:
    conn.execute(
        text("SELECT pg_notify(:c1, currval('asset_change_seq')::text), pg_notify(:c2, :aid)"),
        {"c1": ASSETS_CHANNEL, "c2": ACTIVITY_CHANNEL, "aid": str(activity_id)},
    )


def _check_asset(conn: Connection, uri: AssetUri) -> None:
    exists = conn.execute(
        select(Asset.id).where(Asset.author == uri.author.raw, Asset.key == uri.key)
    ).scalar()
    if exists is None:
        raise NotFound(f"no asset {uri.text}")


# -- idempotency -----------------------------------------------------------------------------


def request_digest(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.digest()


IDEMPOTENCY_TTL = timedelta(hours=24)  # how long a stored response is replayed
CLAIM_LEASE = timedelta(minutes=5)  # after this, an unfinished claim is taken to be a request that died
_EXPIRED = IdempotencyKey.created_at < func.now() - IDEMPOTENCY_TTL
_ABANDONED = IdempotencyKey.status.is_(None) & (IdempotencyKey.created_at < func.now() - CLAIM_LEASE)


class Admin(Queries):
    """Keys, moderation, the quarantine listing, authors behind, idempotency (``store.admin``)."""

    def create_api_key(self, *, name: str, scopes: Sequence[str]) -> tuple[str, str]:
        """Create a key with ``scopes``; returns ``(id, secret)``. The secret is not stored: show it once."""
        wanted = sorted(set(scopes))
        unknown = [s for s in wanted if s not in SCOPES]
        if not wanted or unknown:
            raise BadRequest(
                f"scopes must be some of {', '.join(SCOPES)} (got {', '.join(scopes) or 'none'})"
            )
        key_id = secrets.token_hex(8)
        secret = f"ek_{key_id}_{secrets.token_urlsafe(32)}"
        with translate(), self.engine.begin() as conn:
            conn.execute(
                insert(ApiKey).values(id=key_id, secret_hash=_digest(secret), name=name, scopes=wanted)
            )
        log.info("api key created id=%s scopes=%s", key_id, ",".join(wanted))
        return key_id, secret

    def list_api_keys(self) -> list[dict[str, Any]]:
        """Every key (never a secret), newest first, revoked ones included."""
        with translate(), self.engine.connect() as conn:
            rows = conn.execute(select(ApiKey.__table__).order_by(ApiKey.created_at.desc(), ApiKey.id)).all()
        return [_key_dict(k) for k in rows]

    def revoke_api_key(self, *, key_id: str) -> dict[str, Any]:
        """Revoke a key (idempotent: revoking twice keeps the first time)."""
        with translate(), self.engine.begin() as conn:
            k = conn.execute(select(ApiKey.__table__).where(ApiKey.id == key_id).with_for_update()).first()
            if k is None:
                raise NotFound(f"no API key {key_id}")
            if k.revoked_at is None:
                conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=func.now()))
            k = conn.execute(select(ApiKey.__table__).where(ApiKey.id == key_id)).one()
            out = _key_dict(k)
        log.info("api key revoked id=%s", key_id)
        return out

    def authenticate(self, *, secret: str, scope: str | None = None) -> dict[str, Any]:
        """The key row for a presented secret; raises Unauthorized (unknown/revoked) or Forbidden (scope)."""
        m = _KEY_RE.fullmatch(secret)
        if m is None:
            raise Unauthorized("the API key is not valid")
        with translate(), self.engine.begin() as conn:
            k = conn.execute(select(ApiKey.__table__).where(ApiKey.id == m.group(1))).first()
            if k is None or not hmac.compare_digest(bytes(k.secret_hash), _digest(secret)):
                raise Unauthorized("the API key is not valid")
            if k.revoked_at is not None:
                raise Unauthorized("the API key has been revoked")
            if scope is not None and scope not in k.scopes and "admin" not in k.scopes:
                raise Forbidden(f"this API key lacks the {scope!r} scope")
            conn.execute(update(ApiKey).where(ApiKey.id == k.id).values(last_used_at=func.now()))
            return _key_dict(k)

    def add_label(self, *, uri: AssetUri, label: str, reason: str, created_by: str) -> dict[str, Any]:
        """Label an asset (hiding it from search); labelling twice updates the reason."""
        if not LABEL_RE.fullmatch(label):
            raise BadRequest("a label is 1-64 of [a-z0-9._-], starting with a letter or digit")
        with translate(), self.engine.begin() as conn:
            _check_asset(conn, uri)
            _lock_and_touch(conn, uri, hidden=True)
            conn.execute(
                pg_insert(ModerationLabel)
                .values(uri=uri.text, label=label, reason=reason, created_by=created_by)
                .on_conflict_do_update(
                    index_elements=["uri", "label"], set_={"reason": reason, "created_by": created_by}
                )
            )
            aid = conn.execute(
                insert(Activity)
                .values(
                    kind="moderated", uri=uri.text, did=uri.author.did, data={"label": label, "hidden": True}
                )
                .returning(Activity.id)
            ).scalar_one()
            _notify(conn, aid)
            at = conn.execute(
                select(ModerationLabel.created_at).where(
                    ModerationLabel.uri == uri.text, ModerationLabel.label == label
                )
            ).scalar_one()
        log.info("moderation label added uri=%s label=%s by=%s", uri.text, label, created_by)
        return {"uri": uri.text, "label": label, "reason": reason, "created_at": _iso(at), "hidden": True}

    def remove_label(self, *, uri: AssetUri, label: str, removed_by: str) -> dict[str, Any]:
        """Remove a label; the asset is shown again once it has no labels left."""
        with translate(), self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": INGEST_LOCK})
            gone = conn.execute(
                delete(ModerationLabel)
                .where(ModerationLabel.uri == uri.text, ModerationLabel.label == label)
                .returning(ModerationLabel.label)
            ).scalar()
            if gone is None:
                raise NotFound(f"no label {label!r} on {uri.text}")
            left = conn.execute(
                select(func.count()).select_from(ModerationLabel).where(ModerationLabel.uri == uri.text)
            ).scalar_one()
            _lock_and_touch(conn, uri, hidden=left > 0)
            aid = conn.execute(
                insert(Activity)
                .values(
                    kind="unmoderated",
                    uri=uri.text,
                    did=uri.author.did,
                    data={"label": label, "hidden": left > 0},
                )
                .returning(Activity.id)
            ).scalar_one()
            _notify(conn, aid)
        log.info("moderation label removed uri=%s label=%s by=%s", uri.text, label, removed_by)
        return {"uri": uri.text, "label": label, "hidden": left > 0}

    def quarantine_page(self, *, limit: int, cursor: str | None = None) -> dict[str, Any]:
        """Refused inputs, most recently seen first (keyset on ``(last_seen, id)``)."""
        conds: list[Any] = []
        if cursor is not None:
            (before,) = decode_cursor(cursor, "quarantine", int)
            conds.append(Quarantine.id < before)
        with translate(), self.engine.connect() as conn:
            rows = conn.execute(
                select(Quarantine.__table__).where(*conds).order_by(Quarantine.id.desc()).limit(limit + 1)
            ).all()
        more = len(rows) > limit
        rows = rows[:limit]
        items = [
            {
                "id": q.id,
                "digest": q.digest.hex(),
                "code": q.code,
                "reason": q.reason,
                "source": q.source,
                "seq": q.seq,
                "author": q.author.hex() if q.author is not None else None,
                "times_seen": q.times_seen,
                "received_at": _iso(q.received_at),
                "last_seen": _iso(q.last_seen),
                "size": q.size,
                "raw_kept": q.raw is not None,
                "raw_base64": base64.b64encode(q.raw).decode("ascii") if q.raw is not None else None,
            }
            for q in rows
        ]
        return {"items": items, "next_cursor": encode_cursor("quarantine", rows[-1].id) if more else None}

    def authors_behind(
        self, *, limit: int, status: str | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """Authors whose mirror is not synced (``status``: ``gap``, ``forked``, or None for both), by author key.

        A forked author is ``forked`` even with entries parked too (as in
        :meth:`~indexer.store.reads.Reads.creator`); an author whose every entry so far
        is parked has no ``authors`` row yet, so no head.
        """
        if status not in (None, "gap", "forked"):
            raise BadRequest("status must be gap or forked")
        after = b""
        if cursor is not None:
            (position,) = decode_cursor(cursor, "authors-behind", str)
            if not _AUTHOR_HEX_RE.fullmatch(position):
                raise BadRequest("cursor is not one this API issued for this listing")
            after = bytes.fromhex(position)
        branches = []
        if status in (None, "forked"):
            branches.append(
                select(Author.author.label("author")).where(
                    Author.forked_seq.is_not(None), Author.author > after
                )
            )
        if status in (None, "gap"):
            branches.append(select(Pending.author.label("author")).where(Pending.author > after).distinct())
        cand = (union(*branches) if len(branches) > 1 else branches[0]).subquery("cand")
        first_pending = select(func.min(Pending.seq)).where(Pending.author == cand.c.author)
        held = select(func.count()).select_from(Pending).where(Pending.author == cand.c.author)
        stmt = (
            select(
                cand.c.author,
                Author.did,
                Author.head_seq,
                Author.head_hash,
                Author.forked_seq,
                Author.updated_at,
                first_pending.scalar_subquery().label("first_pending"),
                held.scalar_subquery().label("held"),
            )
            .select_from(cand.outerjoin(Author, Author.author == cand.c.author))
            .order_by(cand.c.author)
            .limit(limit + 1)
        )
        if status == "gap":
            stmt = stmt.where(Author.forked_seq.is_(None))
        with translate(), self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        more = len(rows) > limit
        rows = rows[:limit]
        items = [
            {
                "did": r.did or AuthorKey.from_bytes(bytes(r.author)).did,
                "head": {"seq": r.head_seq, "hash": EntryHash(bytes(r.head_hash)).cid}
                if r.head_seq is not None
                else None,
                "sync": sync_status(
                    head_seq=r.head_seq or 0, forked_seq=r.forked_seq, first_pending=r.first_pending
                ),
                "held": r.held,
                "updated_at": _iso(r.updated_at),
            }
            for r in rows
        ]
        next_cursor = encode_cursor("authors-behind", bytes(rows[-1].author).hex()) if more else None
        return {"items": items, "next_cursor": next_cursor}

    def idempotent_claim(self, *, key: str, request_hash: bytes) -> tuple[int, dict[str, Any]] | None:
        """Claim ``key`` for a request before doing its work; None when this caller now holds it.

        Otherwise: the stored ``(status, response)`` to replay (the same request
        was answered), :class:`Conflict` (the key was used for a different
        request), or :class:`InProgress` (the same request is still being
        processed: retry later). A claim is a row without a status; one older
        than :data:`CLAIM_LEASE` belongs to a request that died and is taken
        over, as is a record older than :data:`IDEMPOTENCY_TTL`. Both checks and
        the claim are one statement, so of two concurrent requests under a new
        key exactly one gets the claim (PostgreSQL's unique index orders them).
        """
        claim = pg_insert(IdempotencyKey).values(
            key=key, request_hash=request_hash, status=None, response=None
        )
        with translate(), self.engine.begin() as conn:
            claimed = conn.execute(
                claim.on_conflict_do_update(
                    index_elements=["key"],
                    set_={
                        "request_hash": claim.excluded.request_hash,
                        "status": None,
                        "response": None,
                        "created_at": func.now(),
                    },
                    where=_EXPIRED | _ABANDONED,
                ).returning(IdempotencyKey.key)
            ).first()
            if claimed is not None:
                stale = select(IdempotencyKey.key).where(_EXPIRED).limit(100).scalar_subquery()
                conn.execute(delete(IdempotencyKey).where(IdempotencyKey.key.in_(stale)))
                return None
            row = conn.execute(select(IdempotencyKey.__table__).where(IdempotencyKey.key == key)).one()
        if not hmac.compare_digest(bytes(row.request_hash), request_hash):
            raise Conflict("this Idempotency-Key was already used with a different request")
        if row.status is None:
            raise InProgress("a request with this Idempotency-Key is still in progress; retry it later")
        return row.status, row.response

    def idempotent_store(
        self, *, key: str, request_hash: bytes, status: int, response: dict[str, Any]
    ) -> None:
        """Record the response of the request that holds the claim on ``key``."""
        with translate(), self.engine.begin() as conn:
            conn.execute(
                update(IdempotencyKey)
                .where(
                    IdempotencyKey.key == key,
                    IdempotencyKey.request_hash == request_hash,
                    IdempotencyKey.status.is_(None),
                )
                .values(status=status, response=json.loads(json.dumps(response)))
            )

    def idempotent_release(self, *, key: str, request_hash: bytes) -> None:
        """Give up a claim whose request failed before it was answered (the key is free again)."""
        with translate(), self.engine.begin() as conn:
            conn.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.key == key,
                    IdempotencyKey.request_hash == request_hash,
                    IdempotencyKey.status.is_(None),
                )
            )


__all__ = ["LABEL_RE", "SCOPES", "Admin", "request_digest"]
