"""Empressa protocol v1: the single source of truth for entries and the wire.

Pure code: no I/O, no clocks, no networking, no database. Everything a node,
a bridge or the indexer needs to agree on lives here and is re-exported:

* identifiers: :class:`AuthorKey` (did:key), :class:`EntryHash` (CIDv1),
  :class:`AssetUri`, and their parse functions;
* entries: :func:`sign_entry`, :func:`parse_and_verify`, :class:`Entry`, :class:`Signer`;
* log rules: :func:`classify`, :class:`Head`, :class:`Verdict`, :func:`fold`, :func:`apply`;
* CBOR sequences (RFC 8742, export files): :func:`split_sequence` (in memory),
  :func:`split_chunks` (as read, in bounded memory), :func:`is_map_item`;
* wire frames of the sync protocol: :mod:`protocol.wire`;
* errors: :class:`ProtocolError` and its subclasses.
"""

from .canonical import canonical_bytes, is_map_item, split_chunks, split_sequence
from .entry import Entry, Signer, parse_and_verify, sign_entry
from .errors import (
    DecodeError,
    FrameError,
    IdentifierError,
    ProtocolError,
    SchemaError,
    SignatureError,
    TimestampError,
)
from .ids import AssetUri, AuthorKey, EntryHash, b32, parse_asset_uri, parse_did, parse_entry_hash
from .log import AssetState, Classification, Head, Verdict, apply, classify, fold, latest_attestations
from .schema import KINDS, LICENSE_TYPES, MAX_ENTRY_BYTES, MAX_SKEW_MS, VERSION

__all__ = [
    "KINDS",
    "LICENSE_TYPES",
    "MAX_ENTRY_BYTES",
    "MAX_SKEW_MS",
    "VERSION",
    "AssetState",
    "AssetUri",
    "AuthorKey",
    "Classification",
    "DecodeError",
    "Entry",
    "EntryHash",
    "FrameError",
    "Head",
    "IdentifierError",
    "ProtocolError",
    "SchemaError",
    "SignatureError",
    "Signer",
    "TimestampError",
    "Verdict",
    "apply",
    "b32",
    "canonical_bytes",
    "classify",
    "fold",
    "is_map_item",
    "latest_attestations",
    "parse_and_verify",
    "parse_asset_uri",
    "parse_did",
    "parse_entry_hash",
    "sign_entry",
    "split_chunks",
    "split_sequence",
]
