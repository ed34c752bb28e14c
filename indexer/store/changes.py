"""What the search feeder reads: ``assets`` in ``change_seq`` order, snapshots for a reindex, LISTEN.

Every write to ``assets`` gives the row a fresh ``change_seq`` under the
ingest advisory lock (see :mod:`indexer.models`), so sequence numbers become
visible in the order they were assigned. A reader that has seen ``change_seq
= n`` has therefore seen every committed change up to ``n``: following
``WHERE change_seq > :pos ORDER BY change_seq`` never skips a row committed
late, and a row changed twice simply shows up once, at its newest position,
with its newest state.

Reads are :class:`Changes` (``store.changes`` of a :class:`~.ingest.Store`),
SQLAlchemy Core against the ``assets`` table only. The one
non-SQLAlchemy piece is :class:`ChangeListener` (:meth:`Changes.listener`), a dedicated psycopg
connection in ``LISTEN`` mode (a pooled connection must not be parked in
LISTEN). Errors become :class:`~indexer.errors.DatabaseError` through the
package's one translation, :func:`.edge.translate`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, func, select

from ..db import libpq_url
from ..models import Asset
from .edge import Queries, translate

log = logging.getLogger(__name__)

_assets = Asset.__table__


@dataclass(frozen=True, slots=True)
class AssetRow:
    """The part of an ``assets`` row that search needs (and nothing that it does not)."""

    id: int
    uri: str
    did: str
    key: str
    title: str
    description: str
    tags: tuple[str, ...]
    license: str | None
    price: Decimal | None
    currency: str | None
    media_type: str | None
    media_mime: str | None
    media_cid: str | None
    created_ts: int
    updated_ts: int
    chain_status: str
    deleted: bool
    hidden: bool
    change_seq: int
    licenses: int = 0  # payments that licensed it (status=licensed)

    @property
    def searchable(self) -> bool:
        return not self.deleted and not self.hidden


_COLUMNS = [_assets.c[name] for name in AssetRow.__slots__]  # type: ignore[attr-defined]


def _row(r: Any) -> AssetRow:
    values = dict(r._mapping)
    values["tags"] = tuple(values["tags"] or ())
    return AssetRow(**values)


class Snapshot:
    """A consistent, read-only view of ``assets`` for a full rebuild (REPEATABLE READ)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def count_searchable(self) -> int:
        stmt = select(func.count()).select_from(_assets).where(~_assets.c.deleted, ~_assets.c.hidden)
        with translate():
            return int(self._conn.execute(stmt).scalar_one())

    def max_change_seq(self) -> int:
        """Every change up to this one is in the snapshot (the ordering rule), none after it."""
        with translate():
            stmt = select(func.coalesce(func.max(_assets.c.change_seq), 0))
            return int(self._conn.execute(stmt).scalar_one())

    def searchable_rows(self, *, batch: int = 5000) -> Iterator[AssetRow]:
        """Every row that belongs in the index, streamed through a server-side cursor."""
        stmt = select(*_COLUMNS).where(~_assets.c.deleted, ~_assets.c.hidden)
        with translate():
            result = self._conn.execution_options(stream_results=True, yield_per=batch).execute(stmt)
            for r in result:
                yield _row(r)


class ChangeListener:
    """A dedicated psycopg connection LISTENing on a channel; wakes the feeder at once.

    NOTIFY is only the fast path: a missed notification costs one poll
    interval, never a change (the feeder always reads by position).
    """

    def __init__(self, engine: Engine, channel: str) -> None:
        url = libpq_url(engine.url.render_as_string(hide_password=False))
        with translate():
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
            self._conn.execute(f'LISTEN "{channel}"')

    def wait(self, timeout: float) -> bool:
        """Block until a notification arrives (True) or ``timeout`` seconds pass (False); drains the queue."""
        with translate():
            got = False
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                got = True
            if got:  # drain whatever else is queued, without waiting
                for _ in self._conn.notifies(timeout=0):
                    pass
            return got

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self._conn.close()


class Changes(Queries):
    """What the search feeder follows (``store.changes``); shares the :class:`~.ingest.Store`'s engine."""

    def changes_after(self, *, after: int, limit: int) -> list[AssetRow]:
        """Rows whose ``change_seq`` is past ``after``, oldest change first (deleted and hidden included)."""
        stmt = (
            select(*_COLUMNS).where(_assets.c.change_seq > after).order_by(_assets.c.change_seq).limit(limit)
        )
        with translate(), self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(stmt)]

    def latest_change_seq(self) -> int:
        """The newest ``change_seq`` in ``assets`` (0 if empty): how far behind a feeder is."""
        with translate(), self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(_assets.c.change_seq), 0))).scalar_one())

    def assets_by_id(self, *, ids: Sequence[int]) -> list[AssetRow]:
        """Rows by primary key, in the order of ``ids`` (missing ones left out)."""
        if not ids:
            return []
        stmt = select(*_COLUMNS).where(_assets.c.id.in_(list(ids)))
        with translate(), self.engine.connect() as conn:
            found = {r.id: r for r in map(_row, conn.execute(stmt))}
        return [found[i] for i in ids if i in found]

    def assets_by_uri(self, *, uris: Sequence[str]) -> list[AssetRow]:
        """Rows by URI (unique index), in the order of ``uris`` (missing ones left out)."""
        if not uris:
            return []
        stmt = select(*_COLUMNS).where(_assets.c.uri.in_(list(uris)))
        with translate(), self.engine.connect() as conn:
            found = {r.uri: r for r in map(_row, conn.execute(stmt))}
        return [found[u] for u in uris if u in found]

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """``with store.changes.snapshot() as snap:`` one REPEATABLE READ, READ ONLY transaction."""
        with translate(), self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield Snapshot(conn)

    def listener(self, channel: str) -> ChangeListener:
        """A new :class:`ChangeListener` on ``channel`` (its own connection: close it)."""
        return ChangeListener(self.engine, channel)


__all__ = ["AssetRow", "ChangeListener", "Changes", "Snapshot"]
