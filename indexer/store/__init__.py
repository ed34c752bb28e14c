"""The indexer's store: every SQL statement the indexer runs lives in this package.

* :mod:`.ingest`: the :class:`Store`, the one handle on the database; the one
  ingest path (bridge and ``POST /v1/entries``) and the replica interface the
  bridge's daemon uses; it lets :func:`protocol.plan` decide
  each entry, :mod:`.writer` reads what the plan needs and executes it, with the
  rows :mod:`.rows` builds (codecs, binary COPY); :mod:`.prepare` checks entries
  and builds their rows without the database, in any process;
* :mod:`.edge`: the package's one translation of SQLAlchemy/psycopg errors;
* :mod:`.reads`: what the HTTP API reads (``store.reads``); :mod:`.admin`: keys,
  moderation, idempotency (``store.admin``); :mod:`.changes`: what the search
  feeder follows (``store.changes``); :mod:`.payments`: what the Stellar source
  reads and writes (``store.payments``); :mod:`.chain`: cursors, registrations, matching,
  rollback, the sources' status (``store.chain``): query groups sharing the Store's engine;
* :mod:`.quarantine`: what was refused, bounded per source and in total, aged out.
"""

from protocol import IngestReport

from ..db import check_database_url
from ..errors import DatabaseError
from .ingest import IngestResult, ItemResult, Store
from .quarantine import QuarantineLimits, QuarantineSettings, Rejected

__all__ = [
    "DatabaseError",
    "IngestReport",
    "IngestResult",
    "ItemResult",
    "QuarantineLimits",
    "QuarantineSettings",
    "Rejected",
    "Store",
    "check_database_url",
]
