"""Test harness for anything that needs a real PostgreSQL (shipped, like node.testing).

One embedded server per test session; a template database migrated once; every
test gets a fresh database copied from the template (``CREATE DATABASE …
TEMPLATE``, a few tens of milliseconds)::

    server = PostgresForTests.start(tmp_dir)
    url = server.fresh_database()      # migrated, empty
    ...
    server.stop()

As in a stack, the tests' databases are owned by the services' role (not a
superuser) and migrated by it; :attr:`PostgresForTests.pg`'s ``admin_url()``
is the superuser's, for what only a superuser may do.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from .db import libpq_url, migrate
from .embedded import ROLE, EmbeddedPostgres

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
        with psycopg.connect(pg.admin_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(TEMPLATE)))
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(TEMPLATE), sql.Identifier(ROLE))
            )
        migrate(pg.role_url(TEMPLATE))
        return self

    def fresh_database(self) -> str:
        """A new, migrated, empty database owned by the services' role; returns its URL (that role's)."""
        name = f"t{os.getpid()}_{next(self._n)}"
        with psycopg.connect(self.pg.admin_url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(TEMPLATE), sql.Identifier(ROLE)
                )
            )
        return self.pg.role_url(name)

    def drop_database(self, url: str) -> None:
        name = conninfo_to_dict(libpq_url(url))["dbname"]
        with psycopg.connect(self.pg.admin_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name))))

    def stop(self) -> None:
        self.pg.destroy()
