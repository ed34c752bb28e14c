"""The indexer's errors: one root, translated into problem+json by the API.

::

    IndexerError
    ├── DatabaseError      PostgreSQL unreachable, or a migration/embedded server failure
    ├── NotFound           no such asset, creator, entry, key
    ├── BadRequest         a parameter or body that cannot be used (bad cursor, bad filter)
    ├── Conflict           an Idempotency-Key reused with a different request
    │   └── InProgress     … or with the same request while that one is still being processed
    ├── Unauthorized       no API key, or an unknown or revoked one
    └── Forbidden          a valid key without the scope the call needs
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
