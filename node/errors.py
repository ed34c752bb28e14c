"""Errors raised by the creator's node.

::

    NodeError
    ├── KeystoreError     missing, corrupt or locked keystore; wrong passphrase or KEK
    ├── ConfigError       a config file or flag is invalid
    ├── StoreError        the local SQLite store refused an operation
    ├── NotFoundError     no such asset in this node's library
    ├── ListenError       a listen address cannot be bound (in use, not local, not permitted)
    └── PeerError         a remote peer misbehaved (garbage, stall, over a limit)
        └── PeerUnavailable   it cannot be asked now (no connection, busy); not held against it
"""

from __future__ import annotations


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


class PeerUnavailable(PeerError):
    """The peer cannot be asked right now: no live connection, a stream that would not open, or
    an ``unavailable`` answer (its store is restarting).

    Not misbehaviour: callers drop the request and try again later (anti-entropy, or
    when the peer reconnects) instead of striking the peer.
    """
