"""What the HTTP API reads from PostgreSQL: assets, history, creators, activity, raw entries.

The queries are :class:`Reads` (``store.reads`` of a :class:`~.ingest.Store`):
each method takes keyword-only arguments, returns plain
data (dicts of JSON-ready values, ``bytes`` only for raw entries) and raises
:class:`~indexer.errors.NotFound` / :class:`~indexer.errors.BadRequest` /
:class:`~indexer.errors.DatabaseError`. Identifiers arrive parsed
(:class:`protocol.AssetUri`, :class:`protocol.AuthorKey`,
:class:`protocol.EntryHash`); text forms go out through the same types.

Keyset cursors are opaque to clients: URL-safe base64 of a small JSON array
naming the page kind and the position, so a cursor from one listing is refused
by another.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from protocol import AssetUri, AuthorKey, EntryHash, ProtocolError, parse_and_verify

from ..errors import BadRequest, NotFound
from ..models import Activity, Asset, Author, EntryRow, Fork, ModerationLabel, Pending
from .edge import Queries, translate
from .payments import asset_payments

log = logging.getLogger(__name__)

ASSET_KINDS = ("asset.put", "asset.delete")


# -- cursors ---------------------------------------------------------------------------------


def encode_cursor(kind: str, *position: Any) -> str:
    raw = json.dumps([kind, *position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, *types: type) -> tuple[Any, ...]:
    """The position inside ``cursor``, checked against the listing ``kind`` and field ``types``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadRequest("cursor is not one this API issued") from None
    if (
        not isinstance(value, list)
        or len(value) != len(types) + 1
        or value[0] != kind
        or not all(type(v) is t for v, t in zip(value[1:], types, strict=True))
    ):
        raise BadRequest("cursor is not one this API issued for this listing")
    return tuple(value[1:])


# -- helpers ---------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """CBOR-decoded data as JSON: bytes become lowercase hex (entry hashes inside bodies, as CIDs)."""
    if isinstance(value, bytes):
        return EntryHash(value).cid if len(value) == 32 else value.hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def _cid(raw: bytes | None) -> str | None:
    return EntryHash(bytes(raw)).cid if raw is not None else None


def _decimal(value: Decimal | None) -> str | None:
    if value is None:
        return None
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _asset_dict(
    a: Any, labels: list[dict[str, Any]], payments: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body = a.body or {}
    lic = body.get("license")
    cid = _cid(a.entry_hash)
    return {
        "uri": a.uri,
        "did": a.did,
        "key": a.key,
        "deleted": a.deleted,
        "hidden": a.hidden,
        "labels": labels,
        "title": a.title,
        "description": a.description,
        "tags": list(a.tags or []),
        "license": lic,
        "price": _decimal(a.price),
        "currency": a.currency,
        "media": body.get("media"),
        "preview": body.get("preview"),
        "artwork": body.get("artwork"),
        "payout": body.get("payout"),
        "media_type": a.media_type,
        "seq": a.seq,
        "versions": a.versions,
        "created_ts": a.created_ts,
        "updated_ts": a.updated_ts,
        "entry_hash": cid,
        "put_hash": _cid(a.put_hash),
        "raw_url": f"/v1/entries/{cid}",
        "chain_status": a.chain_status,
        "onchain": a.onchain or {},
        "verification": a.verification or {},
        "licenses": a.licenses,
        "payments": payments or [],
    }


def _summary(a: Any) -> dict[str, Any]:
    """The listing shape; the same fields as a search result item (``indexer.search.index.item_of``)."""
    return {
        "uri": a.uri,
        "did": a.did,
        "key": a.key,
        "title": a.title,
        "description": a.description,
        "tags": list(a.tags or []),
        "license": a.license,
        "price": _decimal(a.price),
        "currency": a.currency,
        "media_type": a.media_type,
        "media_mime": a.media_mime,
        "media_cid": a.media_cid,
        "created_ts": a.created_ts,
        "updated_ts": a.updated_ts,
        "chain_status": a.chain_status,
        "deleted": a.deleted,
    }


# -- creators --------------------------------------------------------------------------------


def sync_status(*, head_seq: int, forked_seq: int | None, first_pending: int | None) -> dict[str, Any]:
    """How complete the mirror of one log is: ``forked`` wins over ``gap``, which wins over ``synced``."""
    if forked_seq is not None:
        return {"status": "forked", "missing": None, "forked_seq": forked_seq}
    if first_pending is not None:
        return {
            "status": "gap",
            "missing": {"from": head_seq + 1, "to": first_pending - 1},
            "forked_seq": None,
        }
    return {"status": "synced", "missing": None, "forked_seq": None}


# -- activity --------------------------------------------------------------------------------


def activity_row(a: Any) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind,
        "uri": a.uri,
        "did": a.did,
        "entry_hash": _cid(a.entry_hash),
        "seq": a.seq,
        "data": a.data or {},
        "created_at": _iso(a.created_at),
    }


def _activity_filters(kind: str | None, did: str | None, uri: str | None) -> list[Any]:
    conds: list[Any] = []
    if kind is not None:
        conds.append(Activity.kind == kind)
    if did is not None:
        conds.append(Activity.did == did)
    if uri is not None:
        conds.append(Activity.uri == uri)
    return conds


class Reads(Queries):
    """What the HTTP API reads (``store.reads``)."""

    def asset(self, *, uri: AssetUri) -> dict[str, Any]:
        """The current state of one asset (deleted ones too), with labels, on-chain ids, verification, and
        its license count and newest payments (those whose memo named it)."""
        with translate(), self.engine.connect() as conn:
            row = conn.execute(
                select(Asset.__table__).where(Asset.author == uri.author.raw, Asset.key == uri.key)
            ).first()
            if row is None:
                raise NotFound(f"no asset {uri.text}")
            labels = conn.execute(
                select(ModerationLabel.label, ModerationLabel.reason, ModerationLabel.created_at)
                .where(ModerationLabel.uri == uri.text)
                .order_by(ModerationLabel.label)
            ).all()
            payments = asset_payments(conn, uri=uri.text)
        return _asset_dict(
            row, [{"label": lb, "reason": r, "created_at": _iso(at)} for lb, r, at in labels], payments
        )

    def history(self, *, uri: AssetUri) -> list[dict[str, Any]]:
        """Every version of an asset (puts and deletes), oldest first, bodies decoded by the protocol's parser."""
        with translate(), self.engine.connect() as conn:
            rows = conn.execute(
                select(EntryRow.raw, EntryRow.received_at)
                .where(
                    EntryRow.author == uri.author.raw,
                    EntryRow.key == uri.key,
                    EntryRow.kind.in_(ASSET_KINDS),
                )
                .order_by(EntryRow.seq)
            ).all()
        if not rows:
            raise NotFound(f"no asset {uri.text}")
        versions = []
        for n, (raw, received_at) in enumerate(rows, start=1):
            try:
                e = parse_and_verify(bytes(raw), now_ms=None)
            except ProtocolError as exc:  # stored rows were verified on the way in
                log.error("stored entry failed to re-verify uri=%s reason=%s", uri.text, exc)
                continue
            versions.append(
                {
                    "version": n,
                    "seq": e.seq,
                    "kind": e.kind,
                    "ts": e.ts,
                    "hash": e.hash.cid,
                    "prev": e.prev.cid if e.prev else None,
                    "body": jsonable(e.body),
                    "raw_url": f"/v1/entries/{e.hash.cid}",
                    "received_at": _iso(received_at),
                }
            )
        return versions

    def creator(self, *, author: AuthorKey, indexed_through: int | None = None) -> dict[str, Any]:
        """A creator with asset counts, their head, and whether the mirror of their log is complete.

        ``indexed_through`` is the ``assets.change_seq`` a search index has
        reached (None: no index). ``searchable`` says whether every change to the
        creator's assets committed so far is in that index: their highest
        ``change_seq`` is read after their head (each statement sees every commit
        before it), so it covers at least every entry up to ``head``.
        """
        with translate(), self.engine.connect() as conn:
            a = conn.execute(select(Author.__table__).where(Author.author == author.raw)).first()
            first_pending = conn.execute(
                select(func.min(Pending.seq)).where(Pending.author == author.raw)
            ).scalar()
            if a is None and first_pending is None:
                raise NotFound(f"no creator {author.did}")
            live, deleted, last_change = conn.execute(
                select(
                    func.count().filter(Asset.deleted.is_(False)),
                    func.count().filter(Asset.deleted.is_(True)),
                    func.coalesce(func.max(Asset.change_seq), 0),
                ).where(Asset.author == author.raw)
            ).one()
        row = a
        sync = sync_status(
            head_seq=row.head_seq if row is not None else 0,
            forked_seq=row.forked_seq if row is not None else None,
            first_pending=first_pending,
        )
        return {
            "did": author.did,
            "head": {"seq": row.head_seq, "hash": _cid(row.head_hash)} if row is not None else None,
            "sync": sync,
            "searchable": None if indexed_through is None else last_change <= indexed_through,
            "counts": {"assets": live, "deleted": deleted},
            "first_seen": _iso(row.first_seen) if row is not None else None,
            "updated_at": _iso(row.updated_at) if row is not None else None,
        }

    def creator_assets(
        self,
        *,
        author: AuthorKey,
        limit: int,
        cursor: str | None = None,
        include_deleted: bool = False,
    ) -> dict[str, Any]:
        """A creator's assets, newest first (by first appearance), keyset-paginated; hidden ones left out."""
        conds = [Asset.author == author.raw, Asset.hidden.is_(False)]
        if not include_deleted:
            conds.append(Asset.deleted.is_(False))
        if cursor is not None:
            (before,) = decode_cursor(cursor, "creator-assets", int)
            conds.append(Asset.id < before)
        with translate(), self.engine.connect() as conn:
            rows = conn.execute(
                select(Asset.__table__).where(*conds).order_by(Asset.id.desc()).limit(limit + 1)
            ).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "items": [_summary(a) for a in rows],
            "next_cursor": encode_cursor("creator-assets", rows[-1].id) if more else None,
        }

    def activity_page(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        after: int | None = None,
        kind: str | None = None,
        did: str | None = None,
        uri: str | None = None,
    ) -> dict[str, Any]:
        """One page of activity: newest first, or oldest first from ``after`` (an activity id).

        ``next_cursor`` continues in the same direction; in forward mode it is
        returned even on a short page, so a client can poll it for what comes next.
        """
        conds = _activity_filters(kind, did, uri)
        forward = after is not None
        if cursor is not None:
            direction, position = decode_cursor(cursor, "activity", str, int)
            if direction not in ("older", "newer"):
                raise BadRequest("cursor is not one this API issued for this listing")
            forward = direction == "newer"
            after = position
        if forward:
            conds.append(Activity.id > (after or 0))
            order = Activity.id.asc()
        else:
            if cursor is not None:
                conds.append(Activity.id < position)
            order = Activity.id.desc()
        with translate(), self.engine.connect() as conn:
            rows = conn.execute(
                select(Activity.__table__).where(*conds).order_by(order).limit(limit + 1)
            ).all()
        more = len(rows) > limit
        rows = rows[:limit]
        if forward:
            last = rows[-1].id if rows else (after or 0)
            next_cursor: str | None = encode_cursor("activity", "newer", last)
        else:
            next_cursor = encode_cursor("activity", "older", rows[-1].id) if more else None
        return {"items": [activity_row(a) for a in rows], "next_cursor": next_cursor}

    def activity_after(
        self,
        *,
        after: int,
        limit: int = 500,
        kind: str | None = None,
        did: str | None = None,
        uri: str | None = None,
    ) -> list[dict[str, Any]]:
        """Activity rows with id > ``after``, oldest first (the SSE stream's replay and live reads)."""
        conds = [Activity.id > after, *_activity_filters(kind, did, uri)]
        with translate(), self.engine.connect() as conn:
            rows = conn.execute(
                select(Activity.__table__).where(*conds).order_by(Activity.id).limit(limit)
            ).all()
        return [activity_row(a) for a in rows]

    def latest_activity_id(self) -> int:
        with translate(), self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(Activity.id), 0))).scalar_one())

    def raw_entry(self, *, entry_hash: EntryHash) -> bytes:
        """The exact signed bytes of an applied entry (or of a fork's proof)."""
        with translate(), self.engine.connect() as conn:
            raw = conn.execute(select(EntryRow.raw).where(EntryRow.hash == entry_hash.raw)).scalar()
            if raw is None:
                raw = conn.execute(select(Fork.raw).where(Fork.hash == entry_hash.raw)).scalar()
        if raw is None:
            raise NotFound(f"no entry {entry_hash.cid}")
        return bytes(raw)


__all__ = [
    "ASSET_KINDS",
    "Reads",
    "activity_row",
    "decode_cursor",
    "encode_cursor",
    "jsonable",
    "sync_status",
]
