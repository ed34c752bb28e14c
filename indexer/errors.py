"""The indexer's errors, every one of them: one root, translated into problem+json by the API.

::

    IndexerError                    500 internal
    ├── DatabaseError               503 PostgreSQL unreachable, or a migration/embedded server failure
    ├── SearchUnavailable           503 the search index cannot be opened or read (missing, locked, corrupt)
    ├── NotFound                    404 no such asset, creator, entry, key
    ├── BadRequest                  400 a parameter or body that cannot be used (bad cursor, bad filter)
    │   ├── NoSearchTerms               a non-blank ``q`` from which the analyzer keeps no term
    │   ├── EventIdAhead                a ``Last-Event-ID`` beyond the newest activity
    │   └── CursorExpired           410 a relevance cursor whose point in time is gone
    ├── Conflict                    409 an Idempotency-Key reused with a different request
    │   └── InProgress                  … or with the same request while that one is still being processed
    ├── Unauthorized                401 no API key, or an unknown or revoked one
    ├── Forbidden                   403 a valid key without the scope the call needs
    ├── SettingsFileError           500 DATA_DIR/indexer.env cannot be read or written, or holds a bad line
    ├── ChainError                  503 a chain source cannot go on (the reconciler's; never an HTTP answer)
    │   ├── ChainConfigError            bad chain config: unreachable RPC, wrong chain id, no contract at
    │   │                               the address, a bad Stellar account; retried, readiness fails
    │   ├── ChainUnavailable            a transient RPC/Horizon failure (timeout, 5xx); retried with backoff
    │   └── ReorgTooDeep                a reorg deeper than the configured limit: the source stops
    └── IpfsError                   503 the operator's IPFS node cannot do what the pin worker asked
        │                               (ipfsrpc's errors, translated in indexer.pins; never an HTTP answer)
        ├── IpfsUnavailable             the daemon cannot be reached or timed out; retried with backoff
        └── IpfsRefused                 the daemon answered an error (a bad CID, …); retried, then failed

Each class's ``status``, ``code`` and ``title`` are what the API's one handler
(:mod:`indexer.api.problem`) puts in the problem; for a 5xx the detail is replaced by
"… unavailable; retry later" and the message is logged, as it may name hosts or files.

Outside the tree: :class:`indexer.api.problem.ProblemError` is the API layer's own,
for HTTP-level answers no service raises (413 body too large, 415 media type, 429 rate
limit or too many streams, with their headers).
"""

from __future__ import annotations


class IndexerError(Exception):
    """Root of every error the indexer raises on purpose."""

    status = 500
    code = "internal"
    title = "Internal error"


class DatabaseError(IndexerError):
    status = 503
    code = "database-unavailable"
    title = "Database unavailable"


class NotFound(IndexerError):
    status = 404
    code = "not-found"
    title = "Not found"


class BadRequest(IndexerError):
    status = 400
    code = "bad-request"
    title = "Bad request"


class Conflict(IndexerError):
    status = 409
    code = "conflict"
    title = "Conflict"


class InProgress(Conflict):
    code = "in-progress"
    title = "In progress"


class Unauthorized(IndexerError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(IndexerError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class SettingsFileError(IndexerError):
    """``DATA_DIR/indexer.env`` cannot be read or written, or a line of it is not a setting (never an HTTP answer)."""

    code = "settings-file"
    title = "Bad settings file"


class NoSearchTerms(BadRequest):
    """A non-blank ``q`` from which the analyzer keeps no term (only punctuation, or words over 64 characters).

    Searching for nothing would match everything; rather than return the
    unfiltered listing as if it matched, the request is refused and says why.
    A missing or blank ``q`` is not this: it means "no text search".
    """

    code = "no-search-terms"
    title = "No searchable term"


class EventIdAhead(BadRequest):
    """A ``Last-Event-ID`` (or ``after``) beyond the newest activity id: the database was reset, or it is made up."""

    code = "event-id-ahead"
    title = "Event id ahead"


class CursorExpired(BadRequest):
    """A relevance cursor whose point in time is gone (expired, evicted, or from another process)."""

    status = 410
    code = "cursor-expired"
    title = "Cursor expired"


class SearchUnavailable(IndexerError):
    """The index cannot be opened or read: missing, locked by another writer, corrupt, or from an old schema."""

    status = 503
    code = "search-unavailable"
    title = "Search unavailable"


class ChainError(IndexerError):
    """A chain source cannot go on; the reconciler records it as that source's status (readiness fails)."""

    status = 503
    code = "chain-unavailable"
    title = "Chain unavailable"


class ChainConfigError(ChainError):
    """The configuration does not fit the chain: unreachable RPC, wrong chain id, no contract, bad account."""

    code = "chain-config"
    title = "Chain misconfigured"


class ChainUnavailable(ChainError):
    """A transient failure of the chain's RPC or Horizon: retried with backoff, the cursor unchanged."""


class ReorgTooDeep(ChainError):
    """A reorg deeper than ``evm_max_reorg_depth``: the source stops rather than guess."""

    code = "reorg-too-deep"
    title = "Reorg too deep"


class IpfsError(IndexerError):
    """The operator's IPFS node cannot do what the pin worker asked; recorded on the pin job."""

    status = 503
    code = "ipfs-unavailable"
    title = "IPFS unavailable"


class IpfsUnavailable(IpfsError):
    """The IPFS RPC API cannot be reached, or did not answer in time."""


class IpfsRefused(IpfsError):
    """The IPFS node answered the call with an error (a bad CID, a full repo, …)."""

    code = "ipfs-refused"
    title = "IPFS refused"
