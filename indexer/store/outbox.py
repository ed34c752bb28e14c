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

from typing import Any

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
    if status not in ATTEST_STATUSES:
        raise ValueError(f"attestation status must be one of {ATTEST_STATUSES}")
    if len(subject) != 32:
        raise ValueError("an attestation's subject is a 32-byte entry hash")
    cur.execute(
        "INSERT INTO attest_outbox (uri, subject, status, body) VALUES (%s, %s, %s, %s)",
        (
            uri.text,
            subject,
            status,
            _json({"chain": chain, "onchain_id": onchain_id, "tx": tx}),
        ),
    )


def _json(value: dict[str, Any]) -> Any:
    from psycopg.types.json import Jsonb

    return Jsonb(value)
