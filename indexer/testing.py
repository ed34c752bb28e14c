"""Test harness for anything that needs a real PostgreSQL (shipped, like node.testing).

One embedded server per test session; a template database migrated once; every
test gets a fresh database copied from the template (``CREATE DATABASE …
TEMPLATE``, a few tens of milliseconds)::

    server = PostgresForTests.start(tmp_dir)
    url = server.fresh_database()      # migrated, empty
    ...
    server.stop()
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import psycopg

from .db import libpq_url, migrate
from .embedded import EmbeddedPostgres

TEMPLATE = "empressa_template"


class PostgresForTests:
    def __init__(self, pg: EmbeddedPostgres) -> None:
        self.pg = pg
        self._n = itertools.count(1)

    @classmethod
    def start(cls, data_dir: Path) -> PostgresForTests:
        pg = EmbeddedPostgres(data_dir)
        pg.start()
        self = cls(pg)
        url = pg.admin_url(TEMPLATE)
        with psycopg.connect(pg.admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
            conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
        migrate(url)
        return self

    def fresh_database(self) -> str:
        """A new, migrated, empty database; returns its URL."""
        name = f"t{os.getpid()}_{next(self._n)}"
        with psycopg.connect(self.pg.admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        return self.pg.admin_url(name)

    def drop_database(self, url: str) -> None:
        name = libpq_url(url).rsplit("/", 1)[1]
        with psycopg.connect(self.pg.admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        self.pg.destroy()
