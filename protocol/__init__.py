"""Empressa protocol v1: the single source of truth for entries and the wire.

Pure code: no I/O, no networking, no database, no clock read by its own functions. Everything a node,
a bridge or the indexer needs to agree on lives here and is re-exported:

* identifiers: :class:`AuthorKey` (did:key), :class:`EntryHash` (CIDv1),
  :class:`AssetUri`, and their parse functions;
* entries: :func:`sign_entry`, :func:`parse_and_verify`, :class:`Entry`, :class:`Signer`;
* log rules: :func:`classify`, :class:`Head`, :class:`Verdict`; the ingest plan both
  stores execute: :func:`plan`, :func:`lookups`, :class:`AuthorLog`, :class:`Plan`,
  :class:`Outcome`, :class:`IngestReport`; folding: :func:`fold`, :func:`apply`,
  :func:`latest_attestations`; ``attest`` bodies and their reading: :func:`attest_body`,
  :func:`attestation_of`, :class:`Attestation`; :func:`now_ms`, the one clock reading (used by the
  stores, never by ``protocol`` itself);
* CBOR sequences (RFC 8742, export files): :func:`split_sequence` (in memory),
  :func:`split_chunks` (as read, in bounded memory), :func:`is_map_item`, and
  :func:`canonical_item_length` (a canonical item measured in place);
* wire frames of the sync protocol: :mod:`protocol.wire`;
* the on-chain registry's interface (ABI, ``AssetRegistered`` and its log layout):
  :mod:`protocol.registry`;
* errors: :class:`ProtocolError` and its subclasses.
"""

from .attest import Attestation, attest_body, attestation_of
from .canonical import canonical_bytes, canonical_item_length, is_map_item, split_chunks, split_sequence
from .entry import Entry, Signer, check_write, parse_and_verify, sign_entry
from .errors import (
    DecodeError,
    FrameError,
    IdentifierError,
    ProtocolError,
    RegistryLogError,
    SchemaError,
    SignatureError,
    TimestampError,
)
from .ids import AssetUri, AuthorKey, EntryHash, b32, parse_asset_uri, parse_did, parse_dids, parse_entry_hash
from .log import (
    AssetState,
    AuthorLog,
    Classification,
    Gap,
    Head,
    IngestReport,
    Outcome,
    Plan,
    Step,
    Verdict,
    apply,
    classify,
    fold,
    latest_attestations,
    lookups,
    now_ms,
    plan,
)
from .schema import KINDS, LICENSE_TYPES, MAX_ENTRY_BYTES, MAX_SKEW_MS, VERSION

__all__ = [
    "KINDS",
    "LICENSE_TYPES",
    "MAX_ENTRY_BYTES",
    "MAX_SKEW_MS",
    "VERSION",
    "AssetState",
    "AssetUri",
    "Attestation",
    "AuthorKey",
    "AuthorLog",
    "Classification",
    "DecodeError",
    "Entry",
    "EntryHash",
    "FrameError",
    "Gap",
    "Head",
    "IdentifierError",
    "IngestReport",
    "Outcome",
    "Plan",
    "ProtocolError",
    "RegistryLogError",
    "SchemaError",
    "SignatureError",
    "Signer",
    "Step",
    "TimestampError",
    "Verdict",
    "apply",
    "attest_body",
    "attestation_of",
    "b32",
    "canonical_bytes",
    "canonical_item_length",
    "check_write",
    "classify",
    "fold",
    "is_map_item",
    "latest_attestations",
    "lookups",
    "now_ms",
    "parse_and_verify",
    "parse_asset_uri",
    "parse_did",
    "parse_dids",
    "parse_entry_hash",
    "plan",
    "sign_entry",
    "split_chunks",
    "split_sequence",
]
