"""``empressa indexer …`` without a database URL: the embedded PostgreSQL under ``--data``, real processes.

A command that starts the embedded server stops it again when it ends (one-shot commands at
once, services when stopped); one that finds it running leaves it running. The search index
lives in ``DATA/search`` unless ``--index-dir`` or ``EMPRESSA_INDEXER_INDEX_DIR`` says otherwise.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexer.embedded import EmbeddedPostgres

from .conftest import EMPRESSA, child_env, cli, cli_json, free_port, one_line_error, stop_process, wait_for

pytestmark = pytest.mark.e2e

START_TIMEOUT = 90.0


def env(**extra: str | None) -> dict[str, str]:
    return child_env(DATABASE_URL=None, **extra)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One indexer data directory for the module (initdb once); its server stopped at the end."""
    d = tmp_path_factory.mktemp("indexer") / "data"
    yield d
    EmbeddedPostgres(d / "postgres").destroy()


def pg_running(data: Path) -> bool:
    return EmbeddedPostgres(data / "postgres").running()


class Service:
    """A long-running ``empressa indexer …`` child, logging to a file."""

    def __init__(self, log_path: Path, *args: str | Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [EMPRESSA, "indexer", *map(str, args)],
            env=env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"exited {self.proc.returncode} before logging {text!r}:\n{self.log()}")
            return text in self.log()

        wait_for(seen, what=repr(text), timeout=START_TIMEOUT)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        code = stop_process(self.proc, sig)
        self._log.close()
        return code


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    try:
        yield started
    finally:
        for s in started:
            s.stop(signal.SIGKILL)


def test_one_shot_commands_stop_the_embedded_postgresql_they_started(data: Path) -> None:
    assert cli_json("indexer", "migrate", "--data", data, env=env())["revision"]
    assert not pg_running(data)
    key = cli_json("indexer", "api-key", "create", "--data", data, "--scope", "admin", env=env())
    assert key["scopes"] == ["admin"]
    assert not pg_running(data)
    assert cli_json("indexer", "reindex", "--data", data, env=env()) == {"indexed": 0}
    assert not pg_running(data)


def test_one_shot_commands_leave_a_running_server_alone(data: Path) -> None:
    pg = EmbeddedPostgres(data / "postgres")
    pg.start()
    try:
        cli_json("indexer", "migrate", "--data", data, env=env())
        cli_json("indexer", "api-key", "create", "--data", data, "--scope", "moderate", env=env())
        assert pg_running(data)
    finally:
        pg.stop()


def test_the_search_index_defaults_to_data_search(data: Path, tmp_path: Path) -> None:
    out = cli("indexer", "reindex", "--data", data, env=env()).stdout.decode()
    assert out.strip().endswith(f"into {data / 'search'}")
    assert (data / "search").is_dir()

    flag = tmp_path / "flag-index"
    out = cli("indexer", "reindex", "--data", data, "--index-dir", flag, env=env()).stdout.decode()
    assert out.strip().endswith(f"into {flag}") and flag.is_dir()

    from_env = tmp_path / "env-index"
    out = cli(
        "indexer", "reindex", "--data", data, env=env(EMPRESSA_INDEXER_INDEX_DIR=str(from_env))
    ).stdout.decode()
    assert out.strip().endswith(f"into {from_env}") and from_env.is_dir()
    assert not pg_running(data)


@pytest.mark.parametrize(
    ("command", "sig"),
    [
        ("feed", signal.SIGTERM),
        ("run", signal.SIGTERM),
        ("run", signal.SIGINT),
        ("reconcile", signal.SIGTERM),
    ],
)
def test_services_stop_the_embedded_postgresql_they_started(
    data: Path, tmp_path: Path, services: list[Service], command: str, sig: int
) -> None:
    if command == "run":
        port = free_port()
        svc = Service(tmp_path / "svc.log", "run", "--data", data, "--port", str(port))
        services.append(svc)

        def ready() -> bool:
            if svc.proc.poll() is not None:
                pytest.fail(f"indexer run exited {svc.proc.returncode}:\n{svc.log()}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, what="indexer run's /readyz", timeout=START_TIMEOUT)
    else:
        svc = Service(tmp_path / "svc.log", command, "--data", data)
        services.append(svc)
        svc.wait_for_log("search feeder listening" if command == "feed" else "reconciler active")
    assert pg_running(data)
    assert svc.stop(sig) == 0, svc.log()
    assert not pg_running(data), svc.log()
    assert "Traceback" not in svc.log()


def test_reindex_while_a_feeder_holds_the_index_says_what_to_do(
    data: Path, tmp_path: Path, services: list[Service]
) -> None:
    feeder = Service(tmp_path / "feed.log", "feed", "--data", data)
    services.append(feeder)
    feeder.wait_for_log("search feeder listening")
    p = cli("indexer", "reindex", "--data", data, env=env(), ok=False)
    line = one_line_error(p)
    assert f"the search index at {data / 'search'} is held by a running feeder" in line
    assert "stop that process, run this again" in line
    assert pg_running(data)  # the feeder's server: the refused reindex did not stop it
    assert feeder.stop() == 0, feeder.log()
    assert not pg_running(data)


@pytest.mark.parametrize(
    "command",
    [
        ["indexer", "run"],
        ["indexer", "migrate"],
        ["indexer", "feed"],
        ["indexer", "reindex"],
        ["indexer", "reconcile"],
        ["bridge", "run"],
        ["up"],
    ],
)
def test_a_database_url_that_is_not_postgresql_is_one_line(command: list[str], tmp_path: Path) -> None:
    secret = "s3cret-in-the-url"
    p = cli(*command, "--data", tmp_path / "d", "--database-url", f"mysql://u:{secret}@127.0.0.1/x", ok=False)
    line = one_line_error(p)
    assert "must be a PostgreSQL URL" in line, line
    assert secret not in p.stderr.decode() + p.stdout.decode()
    assert not (tmp_path / "d" / "postgres").exists()
