"""The migrations create exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from indexer.db import current_revision, head_revision, make_engine, readiness
from indexer.models import Base


def test_models_match_migrations(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_database_is_at_head_and_ready(db_url: str) -> None:
    engine = make_engine(db_url)
    assert current_revision(engine) == head_revision()
    assert readiness(engine)["ready"] is True
    engine.dispose()


def test_extensions_and_accent_folding(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        exts = set(conn.execute(text("SELECT extname FROM pg_extension")).scalars())
        folded = conn.execute(text("SELECT empressa_unaccent('Café Déjà Vu')")).scalar()
    engine.dispose()
    assert {"pg_trgm", "unaccent"} <= exts
    assert folded == "Cafe Deja Vu"


def test_readiness_reports_an_unmigrated_database(pg_server) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    with psycopg.connect(pg_server.pg.admin_url(), autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "unmigrated"')
        conn.execute('CREATE DATABASE "unmigrated"')
    engine = make_engine(pg_server.pg.admin_url("unmigrated"))
    report = readiness(engine)
    engine.dispose()
    assert report["ready"] is False and report["revision"] is None
