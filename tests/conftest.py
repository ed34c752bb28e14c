"""Fixtures shared by every test package: one real PostgreSQL per session (started only if asked for)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from indexer.testing import PostgresForTests


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresForTests]:
    """The embedded PostgreSQL 18 of this test session, with a migrated template database."""
    server = PostgresForTests.start(tmp_path_factory.mktemp("pg") / "cluster")
    yield server
    server.stop()


@pytest.fixture
def db_url(pg_server: PostgresForTests) -> Iterator[str]:
    """A fresh, migrated, empty database for one test."""
    url = pg_server.fresh_database()
    yield url
    pg_server.drop_database(url)
