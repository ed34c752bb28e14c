"""Errors raised by the creator's node, every one of them (the bridge raises these too).

::

    NodeError
    ├── KeystoreError     missing, corrupt or locked keystore; wrong passphrase or KEK
    ├── ConfigError       a config file, variable or flag is invalid (node.layered's messages)
    ├── StoreError        the local SQLite store refused an operation
    ├── NotFoundError     no such asset in this node's library
    ├── WritesRejected    some of a batch of local writes are invalid; nothing of it was stored
    ├── ListenError       a listen address cannot be bound (in use, not local, not permitted)
    ├── ChainError        an EVM chain cannot do what was asked (node.evm translates web3's errors)
    │   ├── ChainUnavailable  no RPC URL configured, the RPC cannot be reached, or a tx was not mined
    │   ├── NoRegistry        no AssetRegistry at the configured address (no code there)
    │   ├── NoFunds           the account cannot pay for gas
    │   ├── AlreadyRegistered the entry hash is registered already (a pre-check, or the revert)
    │   └── ChainRefused      any other refusal: a revert, an RPC error answer
    ├── IpfsError         the configured IPFS node cannot do what was asked (node.ipfs translates
    │   │                 ipfshttpclient's errors)
    │   ├── IpfsUnavailable   no ipfs_api configured, or the daemon cannot be reached / timed out
    │   ├── CidMismatch       the daemon named an added file by another CID than the one computed offline
    │   └── IpfsRefused       the daemon answered an error (a bad CID, a full repo, …)
    └── PeerError         a remote peer misbehaved (garbage, stall, over a limit)
        ├── BadEntryError     a range response held an entry that failed verification
        ├── PeerClosed        it closed a stream between frames (a server done with a reused stream)
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


class WritesRejected(NodeError):
    """Writes of a batch (a bulk request, a ``publish --from`` file) are invalid; none of the batch is stored.

    ``errors`` holds ``(index, reason)`` for each bad item (0-based index into the
    batch), in order; ``str(err)`` names the first and how many there are.
    """

    def __init__(self, errors: list[tuple[int, str]], *, cause: ProtocolError | None = None) -> None:
        self.errors = errors
        self.cause = cause  # the first item's error, when it was a protocol error
        first, why = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"item {first}: {why}{more}")


class ListenError(NodeError):
    """A listen address (the P2P host's or the local API's) cannot be bound at start."""


class ChainError(NodeError):
    """An EVM chain cannot do what was asked (``node register``, the dev chain of ``up``)."""


class ChainUnavailable(ChainError):
    """No RPC URL is configured, the RPC cannot be reached, or a transaction was not mined in time."""


class NoRegistry(ChainError):
    """There is no contract code at the registry address."""


class NoFunds(ChainError):
    """The sending account cannot pay for the transaction's gas."""


class AlreadyRegistered(ChainError):
    """The entry hash is already registered (``asset_id`` names the existing asset)."""

    def __init__(self, message: str, asset_id: int) -> None:
        super().__init__(message, asset_id)
        self.asset_id = asset_id

    def __str__(self) -> str:
        return str(self.args[0])


class ChainRefused(ChainError):
    """The chain refused a call or transaction (a revert, an RPC error answer)."""


class IpfsError(NodeError):
    """The configured IPFS node (the Kubo RPC API of ``ipfs_api``) cannot do what was asked."""


class IpfsUnavailable(IpfsError):
    """No ``ipfs_api`` is configured, or the daemon cannot be reached or did not answer in time."""


class CidMismatch(IpfsError):
    """The daemon named an added file by another CID than the one the node computed offline.

    Nothing is published then: the record would name a CID that the daemon does not hold.
    """


class IpfsRefused(IpfsError):
    """The daemon answered a call with an error."""


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


class PeerClosed(PeerError):
    """The peer closed the stream cleanly between two frames.

    Mid-request it is misbehaviour like any :class:`PeerError`; between requests
    it only ends a reused stream (the sync server is done with it, or is an old
    one that answers one request per stream), and the client asks again on a new one.
    """


class PeerUnavailable(PeerError):
    """The peer cannot be asked right now: no live connection, a stream that would not open, or
    an ``unavailable`` answer (its store is restarting).

    Not misbehaviour: callers drop the request and try again later (anti-entropy, or
    when the peer reconnects) instead of striking the peer.
    """


class PeerBusy(PeerUnavailable):
    """The peer answered ``unavailable``: its store cannot serve right now (a database restarting)."""
