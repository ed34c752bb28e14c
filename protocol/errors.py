"""Errors raised by the protocol layer.

Every rejection carries a stable ``code`` (for logs, metrics and API
problem types) and a one-line, human-readable reason::

    ProtocolError
    ├── DecodeError          bytes are not one canonical CBOR entry
    ├── SchemaError          fields, types, limits or bodies are wrong
    ├── SignatureError       the Ed25519 signature does not verify
    ├── TimestampError       ``ts`` is too far ahead of the receiver's clock
    ├── IdentifierError      a did, entry hash, asset URI or CID text is malformed
    ├── FrameError           a sync-protocol frame is malformed or too large
    └── RegistryLogError     an EVM log is not a well-formed ``AssetRegistered`` event
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Root of every protocol error. ``str(err)`` is a one-line reason."""

    code: str = "protocol_error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DecodeError(ProtocolError):
    """The bytes are not exactly one deterministic-CBOR entry (RFC 8949 §4.2.1)."""

    code = "decode"


class SchemaError(ProtocolError):
    """A field is missing, unknown, of the wrong type or out of its limits."""

    code = "schema"


class SignatureError(ProtocolError):
    """The signature does not verify against the entry's author key."""

    code = "signature"


class TimestampError(ProtocolError):
    """The entry's ``ts`` lies further in the future than the allowed skew."""

    code = "timestamp"


class IdentifierError(ProtocolError):
    """A textual identifier (did:key, CID, asset URI) does not parse."""

    code = "identifier"


class FrameError(ProtocolError):
    """A sync frame is malformed, of an unknown type, or over its size cap."""

    code = "frame"


class RegistryLogError(ProtocolError):
    """An EVM log that is not a well-formed ``AssetRegistered`` event (:mod:`protocol.registry`)."""

    code = "registry_log"
