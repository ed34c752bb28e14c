"""Engines, migrations and the readiness check: the indexer's one door to PostgreSQL.

``DATABASE_URL`` may be given as ``postgresql://…``; it is normalised to the
psycopg 3 driver. Connection errors from psycopg/SQLAlchemy are translated to
:class:`~indexer.errors.DatabaseError` here and in :mod:`indexer.store`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from .errors import DatabaseError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def check_database_url(value: str | None) -> str | None:
    """A settings validator: ``value`` must be a PostgreSQL URL (``None``: none given).

    Checked where settings are read, so a typo is a config error naming its source rather than a
    traceback from the driver; the message never echoes the value, which may hold a password.
    """
    if value is not None and urlsplit(value).scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError("must be a PostgreSQL URL, postgresql://user:password@host:port/database")
    return value


def sqlalchemy_url(url: str) -> str:
    """``postgresql://…`` → ``postgresql+psycopg://…`` (other forms pass through)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def libpq_url(url: str) -> str:
    """The plain libpq form of a URL (for psycopg.connect and LISTEN)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"connect_timeout": 10, "application_name": "empressa"},
    )


def _alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    heads = ScriptDirectory.from_config(_alembic_config("postgresql://")).get_heads()
    return heads[0]


def migrate(url: str) -> str:
    """Apply every migration (``alembic upgrade head``); returns the revision reached."""
    try:
        command.upgrade(_alembic_config(url), "head")
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"migration failed: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
        ) from exc
    rev = head_revision()
    log.info("database migrated revision=%s", rev)
    return rev


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def readiness(engine: Engine) -> dict[str, object]:
    """What ``/readyz`` reports: the database answers and its schema is at the head revision."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        return {"ready": False, "database": "unreachable", "error": exc.__class__.__name__}
    head = head_revision()
    return {"ready": current == head, "database": "ok", "revision": current, "expected": head}
