"""The attestation outbox: what the reconciler queues and the bridge signs and publishes, each exactly once.

A chain source queues an attestation (``verified`` or ``revoked``) in the
same transaction as the state change it attests (:func:`queue_attestation`,
or :func:`queue_attestations` for many, given that transaction's cursor), so an attestation exists if and only if
its change committed; it NOTIFYs :data:`OUTBOX_CHANNEL` (delivered at commit)
so a waiting publisher wakes at once.

The bridge's publisher (:meth:`indexer.store.Store.publish_attestations`) takes
unpublished rows in ``id`` order (:func:`take_unpublished`, ``FOR UPDATE SKIP
LOCKED``) and, in one transaction, appends the signed ``attest`` entries to its
own log through the one ingest path and marks the rows published with their
entry hash (:func:`mark_published`): a row is published if and only if its
entry is in the bridge's log, so a bridge killed at any point publishes each
row once. A row that cannot become an ``attest`` entry (only possible when
written by hand, as :func:`queue_attestation` checks every value) is set aside
with its reason in ``data.error`` (:func:`set_aside`) instead of blocking the
rows behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from protocol import AssetUri, attest_body

ATTEST_STATUSES = ("verified", "revoked")
OUTBOX_CHANNEL = "empressa_outbox"  # NOTIFY (empty payload): rows were queued


def queue_attestation(
    cur: Any, *, uri: AssetUri, subject: bytes, status: str, chain: str, onchain_id: str, tx: str
) -> None:
    """Queue one attestation on ``cur`` (a psycopg cursor inside the caller's transaction).

    ``subject`` is the attested entry hash (32 bytes); ``chain`` a CAIP-2 id;
    ``onchain_id`` and ``tx`` printable text (the asset id in decimal, the
    transaction hash in ``0x`` hex), as the ``attest`` body carries them.
    Many at once: :func:`queue_attestations` (one round trip for them all).

    Raises:
        ValueError: a value the ``attest`` entry could not carry (one line; nothing is queued).
    """
    queue_attestations(
        cur, [Queued(uri=uri, subject=subject, status=status, chain=chain, onchain_id=onchain_id, tx=tx)]
    )


@dataclass(frozen=True)
class Queued:
    """One attestation to queue (the keyword arguments of :func:`queue_attestation`)."""

    uri: AssetUri
    subject: bytes
    status: str
    chain: str
    onchain_id: str
    tx: str


def queue_attestations(cur: Any, items: Sequence[Queued]) -> None:
    """Queue many attestations on ``cur``, in order, checked first: one bad item queues none.

    Raises:
        ValueError: an item the ``attest`` entry could not carry (one line naming the field).
    """
    rows = []
    for a in items:
        if a.status not in ATTEST_STATUSES:
            raise ValueError(f"attestation status must be one of {ATTEST_STATUSES}")
        if not isinstance(a.subject, bytes) or len(a.subject) != 32:
            raise ValueError("an attestation's subject is a 32-byte entry hash")
        try:
            attest_body(
                a.uri, subject=a.subject, status=a.status, chain=a.chain, onchain_id=a.onchain_id, tx=a.tx
            )
        except Exception as exc:  # SchemaError: the entry the bridge would sign is invalid
            raise ValueError(f"attestation cannot be published: {exc}") from None
        body = orjson.dumps({"chain": a.chain, "onchain_id": a.onchain_id, "tx": a.tx}).decode()
        rows.append((a.uri.text, a.subject, a.status, body))
    if not rows:
        return
    # One statement for the lot (binary arrays, in order): 10,000 rows in ~0.1 s here, where
    # executemany's statement per row took ~0.4 s inside the EVM source's batches.
    uris, subjects, statuses, bodies = (list(c) for c in zip(*rows, strict=True))
    cur.execute(
        "INSERT INTO attest_outbox (uri, subject, status, body) "
        "SELECT u, s, st, b::jsonb FROM unnest(%b::text[], %b::bytea[], %b::text[], %b::text[]) "
        "WITH ORDINALITY AS x(u, s, st, b, n) ORDER BY n",
        (uris, subjects, statuses, bodies),
    )
    # Delivered at commit; PostgreSQL folds a transaction's identical notifications into one.
    cur.execute("SELECT pg_notify(%s, '')", (OUTBOX_CHANNEL,))


@dataclass(frozen=True)
class OutboxRow:
    """One unpublished attestation, as :func:`take_unpublished` read it."""

    id: int
    uri: str
    subject: bytes | None
    status: str | None
    body: dict[str, Any]


_UNPUBLISHED = "published_hash IS NULL AND NOT (data ? 'error')"


def take_unpublished(cur: Any, limit: int) -> list[OutboxRow]:
    """Lock up to ``limit`` unpublished rows in ``id`` order (rows another transaction holds are skipped)."""
    cur.execute(
        f"SELECT id, uri, subject, status, body FROM attest_outbox WHERE {_UNPUBLISHED} "
        "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
        (limit,),
    )
    return [
        OutboxRow(i, u, bytes(s) if s is not None else None, st, b or {}) for i, u, s, st, b in cur.fetchall()
    ]


def mark_published(cur: Any, published: list[tuple[int, bytes]]) -> None:
    """Mark rows published: ``(id, entry hash)`` each, at the transaction's time."""
    if published:
        cur.execute(
            "UPDATE attest_outbox o SET published_hash = p.hash, published_at = now() "
            "FROM unnest(%s::bigint[], %s::bytea[]) AS p(id, hash) WHERE o.id = p.id",
            ([i for i, _ in published], [h for _, h in published]),
        )


def set_aside(cur: Any, row_id: int, reason: str) -> None:
    """Keep a row that cannot be published out of the queue, with its reason (it is not deleted)."""
    cur.execute(
        "UPDATE attest_outbox SET data = data || jsonb_build_object('error', %s::text) WHERE id = %s",
        (reason, row_id),
    )


def depth(cur: Any) -> int:
    """How many rows wait to be published."""
    cur.execute(f"SELECT count(*) FROM attest_outbox WHERE {_UNPUBLISHED}")
    return int(cur.fetchone()[0])
