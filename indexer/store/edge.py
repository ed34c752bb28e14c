"""The store's edge: SQLAlchemy and psycopg errors become the indexer's, in one place.

Every module of :mod:`indexer.store` runs its statements inside :func:`translate`,
on the one engine of a :class:`~.ingest.Store`: the query groups
(``store.reads``, ``store.admin``, ``store.changes``) are :class:`Queries` that
share it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ..errors import DatabaseError

__all__ = ["Queries", "Unstorable", "translate"]


class Unstorable(Exception):
    """PostgreSQL refused a value of the batch (SQLSTATE class 22, "data exception")."""


@contextmanager
def translate() -> Iterator[None]:
    """SQLAlchemy/psycopg errors → :class:`DatabaseError`: the store package's one translation.

    A data exception (a value PostgreSQL cannot store) becomes :class:`Unstorable`,
    which :meth:`~.ingest.Store.ingest` handles by isolating the entries that cause it.
    """
    try:
        yield
    except (DBAPIError, psycopg.Error) as exc:
        # Through SQLAlchemy the driver's error is ``exc.orig``; the COPYs use psycopg directly.
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        why = str(orig).strip().splitlines()[0] if str(orig).strip() else orig.__class__.__name__
        if getattr(exc, "connection_invalidated", False) or isinstance(
            orig, psycopg.OperationalError | psycopg.InterfaceError
        ):
            raise DatabaseError(f"database unavailable: {why}") from exc
        if isinstance(orig, psycopg.DataError):
            raise Unstorable(why) from exc
        raise
    except SQLAlchemyError as exc:
        raise DatabaseError(f"database error: {exc.__class__.__name__}") from exc


class Queries:
    """A group of the store's queries, one domain to a module; built by the :class:`~.ingest.Store`
    on its engine, so that the Store stays the one handle on the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
