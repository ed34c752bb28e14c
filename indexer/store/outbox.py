"""The attestation outbox: what the reconciler queues and the bridge signs and publishes, each exactly once.

A chain source queues an attestation (``verified`` or ``revoked``) in the
same transaction as the state change it attests (:func:`queue_attestation`,
given that transaction's cursor), so an attestation exists if and only if
its change committed. The bridge's publisher takes unpublished rows in ``id``
order and, in one transaction, appends the signed ``attest`` entries to its
own log and marks the rows published with their entry hash: a bridge killed
at any point publishes each row once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from protocol import AssetUri

ATTEST_STATUSES = ("verified", "revoked")


def queue_attestation(
    cur: Any, *, uri: AssetUri, subject: bytes, status: str, chain: str, onchain_id: str, tx: str
) -> None:
    """Queue one attestation on ``cur`` (a psycopg cursor inside the caller's transaction).

    ``subject`` is the attested entry hash (32 bytes); ``chain`` a CAIP-2 id;
    ``onchain_id`` and ``tx`` printable text (the asset id in decimal, the
    transaction hash in ``0x`` hex), as the ``attest`` body carries them.
    """
    queue_attestations(
        cur,
        [
            Attestation(
                uri=uri.text, subject=subject, status=status, chain=chain, onchain_id=onchain_id, tx=tx
            )
        ],
    )


@dataclass(frozen=True, slots=True)
class Attestation:
    """One attestation to queue (:func:`queue_attestations`); ``uri`` is the asset URI's text."""

    uri: str
    subject: bytes
    status: str
    chain: str
    onchain_id: str
    tx: str


def queue_attestations(cur: Any, items: Sequence[Attestation]) -> None:
    """Queue many attestations with one statement (a source applying a batch of chain events)."""
    for a in items:
        if a.status not in ATTEST_STATUSES:
            raise ValueError(f"attestation status must be one of {ATTEST_STATUSES}")
        if len(a.subject) != 32:
            raise ValueError("an attestation's subject is a 32-byte entry hash")
    if not items:
        return
    cur.execute(
        "INSERT INTO attest_outbox (uri, subject, status, body) "
        "SELECT u, s, st, b::jsonb FROM unnest(%b::text[], %b::bytea[], %b::text[], %b::text[]) "
        "WITH ORDINALITY AS x(u, s, st, b, n) ORDER BY n",
        (
            [a.uri for a in items],
            [a.subject for a in items],
            [a.status for a in items],
            [
                orjson.dumps({"chain": a.chain, "onchain_id": a.onchain_id, "tx": a.tx}).decode()
                for a in items
            ],
        ),
    )
