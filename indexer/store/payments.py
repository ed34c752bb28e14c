"""What the Stellar source reads and writes (``store.payments``): payout accounts, cursors, judged pages.

The source (:mod:`indexer.chains.stellar`) asks :meth:`Payments.payout_accounts`
which accounts to follow (the ``payout.stellar`` of every indexed, not deleted
asset) and :meth:`Payments.cursor` where it stopped for each of them (one
``chain_cursors`` row per account, source ``stellar:<network>/<account>``,
``data.cursor`` the Horizon paging token). It judges a page of Horizon records
and hands the verdicts to :meth:`Payments.record_page`, which applies the page
in one transaction:

* one ``payments`` row per judged payment, keyed by (source, Horizon operation
  id) with ``ON CONFLICT DO NOTHING``: only rows new to the table count, so a
  replayed page or a restart from an older cursor changes nothing;
* for each new ``licensed`` row, under the ingest advisory lock (the ordering
  rule of :mod:`indexer.models`): a ``licensed`` activity row, the asset's
  ``licenses`` (recounted from ``payments``, never incremented blindly) and its
  ``onchain["stellar:<network>"]`` = ``{"licenses": n, "last": {...}}`` with a
  fresh ``change_seq``, and NOTIFY on the assets and activity channels;
* the account's cursor, moved past the page (skipped records included).

A crash at any point leaves either the whole page or none of it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

from protocol import IdentifierError, parse_asset_uri

from ..models import ACTIVITY_CHANNEL, ASSETS_CHANNEL, INGEST_LOCK
from .edge import Queries, translate

log = logging.getLogger(__name__)

PAYMENT_STATUSES = ("licensed", "underpaid", "wrong-asset", "wrong-memo", "failed")


@dataclass(frozen=True)
class PayoutAsset:
    """An indexed asset that names a Stellar payout account, with the terms a payment must meet."""

    uri: str
    did: str
    id_hash: bytes  # SHA-256 of the URI: the hash memo that names it
    amount: str | None  # the price as the creator signed it (decimal string), None when not for sale
    currency: str | None


@dataclass(frozen=True)
class JudgedPayment:
    """One payment record of Horizon and what it was judged to be."""

    payment_id: str  # Horizon operation id
    tx_hash: str
    from_account: str
    to_account: str
    asset: str  # "XLM" or "CODE:ISSUER"
    amount: Decimal
    memo: bytes | None  # a hash memo's 32 bytes
    uri: str | None  # the asset the memo names among the account's, when it names one
    status: str  # one of PAYMENT_STATUSES
    paid_at: datetime | None


def _payout_asset(uri: str, did: str, amount: str | None, currency: str | None) -> PayoutAsset | None:
    try:
        parsed = parse_asset_uri(uri)
    except IdentifierError:  # stored URIs were built from verified entries
        log.error("stored asset uri does not parse uri=%s", uri)
        return None
    return PayoutAsset(uri=uri, did=did, id_hash=parsed.id_hash, amount=amount, currency=currency)


class Payments(Queries):
    """The Stellar source's queries (``store.payments``); see the module docstring."""

    def payout_accounts(self) -> dict[str, list[PayoutAsset]]:
        """Every Stellar account an indexed (not deleted) asset pays out to, with those assets."""
        with translate(), self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT body->'payout'->>'stellar' AS account, uri, did, "
                    "body->'license'->'price'->>'amount' AS amount, "
                    "body->'license'->'price'->>'currency' AS currency "
                    "FROM assets WHERE NOT deleted AND body->'payout'->>'stellar' IS NOT NULL "
                    "ORDER BY account, uri"
                )
            ).all()
        out: dict[str, list[PayoutAsset]] = {}
        for account, uri, did, amount, currency in rows:
            asset = _payout_asset(uri, did, amount, currency)
            if asset is not None:
                out.setdefault(account, []).append(asset)
        return out

    def cursor(self, *, source: str) -> str | None:
        """The stored Horizon cursor of one account's row (``stellar:<net>/<account>``), or None."""
        with translate(), self.engine.connect() as conn:
            data = conn.execute(
                text("SELECT data FROM chain_cursors WHERE source = :s"), {"s": source}
            ).scalar()
        if not isinstance(data, dict) or not isinstance(data.get("cursor"), str):
            return None
        return str(data["cursor"])

    def record_page(
        self,
        *,
        chain: str,
        cursor_source: str,
        account: str,
        cursor: str,
        payments: Sequence[JudgedPayment],
    ) -> list[JudgedPayment]:
        """Apply one judged page and move the account's cursor to ``cursor``, in one transaction.

        Returns the payments new to the table (those seen before are left as they are).
        """
        for p in payments:
            if p.status not in PAYMENT_STATUSES:
                raise ValueError(f"payment status must be one of {PAYMENT_STATUSES}")
        with translate(), self.engine.begin() as conn:
            if any(p.status == "licensed" for p in payments):
                # Before anything that assigns change_seq or activity ids (indexer.models' rule).
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": INGEST_LOCK})
            new = _insert_payments(conn, chain, payments)
            licensed = [p for p in new if p.status == "licensed" and p.uri is not None]
            if licensed:
                _apply_licenses(conn, chain, licensed)
            conn.execute(
                text(
                    "INSERT INTO chain_cursors (source, position, data) VALUES (:s, :pos, CAST(:d AS jsonb)) "
                    "ON CONFLICT (source) DO UPDATE SET position = EXCLUDED.position, data = EXCLUDED.data, "
                    "updated_at = now()"
                ),
                {
                    "s": cursor_source,
                    "pos": _position(cursor),
                    "d": json.dumps({"cursor": cursor, "account": account, "chain": chain}),
                },
            )
        return new


def _position(cursor: str) -> int:
    """The cursor as a number for ``chain_cursors.position`` (Horizon's paging tokens are int64 TOIDs)."""
    try:
        value = int(cursor)
    except ValueError:
        return 0
    return value if 0 <= value < 2**63 else 0


def _insert_payments(conn: Connection, chain: str, payments: Sequence[JudgedPayment]) -> list[JudgedPayment]:
    if not payments:
        return []
    rows = conn.execute(
        text(
            "INSERT INTO payments (source, payment_id, tx_hash, from_account, to_account, asset, amount, "
            "memo, uri, status, paid_at) "
            "SELECT :source, * FROM unnest(CAST(:ids AS text[]), CAST(:txs AS text[]), "
            "CAST(:froms AS text[]), CAST(:tos AS text[]), CAST(:assets AS text[]), "
            "CAST(:amounts AS numeric[]), CAST(:memos AS bytea[]), CAST(:uris AS text[]), "
            "CAST(:statuses AS text[]), CAST(:paid AS timestamptz[])) "
            "ON CONFLICT (source, payment_id) DO NOTHING RETURNING payment_id"
        ),
        {
            "source": chain,
            "ids": [p.payment_id for p in payments],
            "txs": [p.tx_hash for p in payments],
            "froms": [p.from_account for p in payments],
            "tos": [p.to_account for p in payments],
            "assets": [p.asset for p in payments],
            "amounts": [p.amount for p in payments],
            "memos": [p.memo for p in payments],
            "uris": [p.uri for p in payments],
            "statuses": [p.status for p in payments],
            "paid": [p.paid_at for p in payments],
        },
    ).all()
    fresh = {r[0] for r in rows}
    return [p for p in payments if p.payment_id in fresh]


def _apply_licenses(conn: Connection, chain: str, licensed: list[JudgedPayment]) -> None:
    """Activity per new licensing payment; each licensed asset's counts and ``onchain[chain]``."""
    last: dict[str, JudgedPayment] = {}
    activity_id: int | None = None
    for p in licensed:  # in page order (Horizon's ascending order), so the last one is the newest
        assert p.uri is not None
        aid = conn.execute(
            text(
                "INSERT INTO activity (kind, uri, did, entry_hash, seq, data) "
                "SELECT 'licensed', uri, did, put_hash, seq, CAST(:d AS jsonb) FROM assets WHERE uri = :u "
                "RETURNING id"
            ),
            {"u": p.uri, "d": json.dumps({"chain": chain, **_last(p), "payment": p.payment_id})},
        ).scalar()
        if aid is None:  # the asset left the table since the page was judged: the row still records it
            log.warning(
                "licensed payment for an asset no longer indexed uri=%s payment=%s", p.uri, p.payment_id
            )
            continue
        activity_id = aid
        last[p.uri] = p
    change_seq: int | None = None
    for uri, p in last.items():
        change_seq = conn.execute(
            text(
                "UPDATE assets SET "
                "licenses = (SELECT count(*) FROM payments WHERE uri = :u AND status = 'licensed'), "
                "onchain = jsonb_set(onchain, ARRAY[CAST(:chain AS text)], jsonb_build_object("
                "'licenses', (SELECT count(*) FROM payments "
                "WHERE source = :chain AND uri = :u AND status = 'licensed'), "
                "'last', CAST(:last AS jsonb))), "
                "change_seq = nextval('asset_change_seq') WHERE uri = :u RETURNING change_seq"
            ),
            {"u": uri, "chain": chain, "last": json.dumps(_last(p))},
        ).scalar()
    if activity_id is not None and change_seq is not None:
        conn.execute(
            text("SELECT pg_notify(:c1, :seq), pg_notify(:c2, :aid)"),
            {"c1": ASSETS_CHANNEL, "seq": str(change_seq), "c2": ACTIVITY_CHANNEL, "aid": str(activity_id)},
        )


def _last(p: JudgedPayment) -> dict[str, Any]:
    return {
        "tx": p.tx_hash,
        "buyer": p.from_account,
        "amount": _amount(p.amount),
        "asset": p.asset,
        "at": p.paid_at.isoformat() if p.paid_at is not None else None,
    }


def _amount(value: Decimal) -> str:
    """A Stellar amount as Horizon writes it: seven decimals."""
    return f"{value:.7f}"


def asset_payments(conn: Connection, *, uri: str, limit: int = 20) -> list[dict[str, Any]]:
    """The newest payments whose memo named the asset (any status), for ``GET /v1/assets/{did}/{key}``."""
    rows = conn.execute(
        text(
            "SELECT source, status, from_account, amount, asset, tx_hash, paid_at FROM payments "
            "WHERE uri = :u ORDER BY paid_at DESC NULLS LAST, created_at DESC, payment_id DESC LIMIT :n"
        ),
        {"u": uri, "n": limit},
    ).all()
    return [
        {
            "chain": source,
            "status": status,
            "buyer": buyer,
            "amount": _amount(amount),
            "asset": asset,
            "tx": tx,
            "at": at.isoformat() if at is not None else None,
        }
        for source, status, buyer, amount, asset, tx, at in rows
    ]


__all__ = ["PAYMENT_STATUSES", "JudgedPayment", "Payments", "PayoutAsset", "asset_payments"]
