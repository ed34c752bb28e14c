"""Errors raised by the creator's node, every one of them (the bridge raises these too).

::

    NodeError
    ├── KeystoreError     missing, corrupt or locked keystore; wrong passphrase or KEK
    ├── ConfigError       a config file, variable or flag is invalid (node.layered's messages)
    ├── StoreError        the local SQLite store refused an operation
    ├── NotFoundError     no such asset in this node's library
    ├── ListenError       a listen address cannot be bound (in use, not local, not permitted)
    └── PeerError         a remote peer misbehaved (garbage, stall, over a limit)
        ├── BadEntryError     a range response held an entry that failed verification
        └── PeerUnavailable   it cannot be asked now (no connection, busy); not held against it
            └── PeerBusy          it answered ``unavailable``: its store cannot serve right now

``str(err)`` is one line a user can act on; ``cli.py`` prints it and exits non-zero.
Errors of a peer's bytes (decode, schema, signature) are :class:`protocol.ProtocolError`;
a :class:`BadEntryError` carries the one it failed with.
"""

from __future__ import annotations

from protocol import ProtocolError


class NodeError(Exception):
    """Root of the node's errors; ``str(err)`` is a one-line message a user can act on."""


class KeystoreError(NodeError):
    """The keystore cannot be created or unlocked."""


class ConfigError(NodeError):
    """Configuration is invalid."""


class StoreError(NodeError):
    """The local store refused an operation."""


class NotFoundError(NodeError):
    """The named asset does not exist here."""


class ListenError(NodeError):
    """A listen address (the P2P host's or the local API's) cannot be bound at start."""


class PeerError(NodeError):
    """A remote peer sent something invalid, too much, or too slowly."""


class BadEntryError(PeerError):
    """A range response held an entry that failed verification; the whole response is discarded.

    Attributes:
        raw: the offending entry's bytes as received (for a quarantine).
        cause: the :class:`~protocol.ProtocolError` it failed with.
    """

    def __init__(self, message: str, raw: bytes, cause: ProtocolError) -> None:
        super().__init__(message, raw, cause)  # all in args, so it pickles (process-pool verifiers)
        self.raw = raw
        self.cause = cause

    def __str__(self) -> str:
        return str(self.args[0])


class PeerUnavailable(PeerError):
    """The peer cannot be asked right now: no live connection, a stream that would not open, or
    an ``unavailable`` answer (its store is restarting).

    Not misbehaviour: callers drop the request and try again later (anti-entropy, or
    when the peer reconnects) instead of striking the peer.
    """


class PeerBusy(PeerUnavailable):
    """The peer answered ``unavailable``: its store cannot serve right now (a database restarting)."""
