"""``attest`` entries as values: building one's body, and reading one back.

An ``attest`` entry is an operator's bridge saying "this asset's record is
registered on chain" (``verified``) or "no longer" (``revoked``). Its key is
the attested asset's id hash in base32 (:attr:`AssetUri.id_b32`), so within one
bridge's log the latest word on an asset supersedes the earlier ones
(:func:`protocol.latest_attestations`).

* :func:`attest_body` builds a body from values and checks it with the same
  rule :func:`parse_and_verify` applies (``schema.validate_attest_body``), so a
  bad one is a :class:`SchemaError` before anything is signed or queued;
* :func:`attestation_of` reads a verified ``attest`` entry into an
  :class:`Attestation`, for the node's and the indexer's views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .entry import Entry
from .errors import SchemaError
from .ids import AssetUri, AuthorKey, EntryHash
from .schema import validate_attest_body


def attest_body(
    asset: AssetUri, *, subject: bytes, status: str, chain: str, onchain_id: str, tx: str
) -> dict[str, Any]:
    """The body of an ``attest`` entry about ``asset`` (its entry key is ``asset.id_b32``).

    Args:
        asset: the attested asset.
        subject: the attested entry's hash (32 bytes: the registered ``asset.put``).
        status: ``verified`` or ``revoked``.
        chain: a CAIP-2 chain id (``eip155:31337``, ``stellar:testnet``).
        onchain_id: the asset's id on that chain (printable ASCII, 1..128).
        tx: the transaction that registered (or whose loss revoked) it (printable ASCII, 1..128).

    Raises:
        SchemaError: a value the ``attest`` schema refuses (one line, naming the field).
    """
    if not isinstance(asset, AssetUri):
        raise SchemaError("body.asset: must be an asset URI")
    body = {  # in deterministic CBOR key order (shorter keys first), as the schema checks
        "tx": tx,
        "asset": {"key": asset.key, "author": asset.author.raw},
        "chain": chain,
        "status": status,
        "subject": subject,
        "onchain_id": onchain_id,
    }
    validate_attest_body(body, asset.id_b32)
    return body


@dataclass(frozen=True, slots=True)
class Attestation:
    """What one ``attest`` entry says, read from a verified entry."""

    by: AuthorKey  # the bridge key that signed it
    asset: AssetUri
    subject: EntryHash
    status: str  # verified | revoked
    chain: str
    onchain_id: str
    tx: str
    entry: EntryHash  # the attest entry itself
    seq: int  # its place in the bridge's log

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: the fields the node shows (``by`` as a did, hashes as CIDs)."""
        return {
            "status": self.status,
            "chain": self.chain,
            "onchain_id": self.onchain_id,
            "tx": self.tx,
            "by": self.by.did,
            "subject": self.subject.cid,
            "attestation": self.entry.cid,
        }


def attestation_of(entry: Entry) -> Attestation:
    """The :class:`Attestation` a verified ``attest`` entry carries.

    Raises:
        SchemaError: ``entry`` is not an ``attest`` entry.
    """
    if entry.kind != "attest":
        raise SchemaError(f"kind: an attestation is an attest entry, not {entry.kind}")
    b = entry.body
    return Attestation(
        by=entry.author,
        asset=AssetUri(AuthorKey(b["asset"]["author"]), b["asset"]["key"]),
        subject=EntryHash(b["subject"]),
        status=b["status"],
        chain=b["chain"],
        onchain_id=b["onchain_id"],
        tx=b["tx"],
        entry=entry.hash,
        seq=entry.seq,
    )
