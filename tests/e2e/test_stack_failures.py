"""``empressa up`` when start-up goes wrong: one line on stderr, a non-zero exit, nothing left running.

Real processes through the CLI. The tests share one data directory (PostgreSQL is initialised
once); every ``up`` here ends before the next starts, and each must leave no service and no
PostgreSQL behind it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.embedded import EmbeddedPostgres

from .conftest import EMPRESSA, child_env, free_port, wait_for

pytestmark = pytest.mark.e2e

UP_TIMEOUT = 180.0


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("stack-failures") / "data"
    yield d
    EmbeddedPostgres(d / "postgres").destroy()


def up(data: Path, *, port: int | None = None, **env: str | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            EMPRESSA,
            "up",
            "--data",
            str(data),
            "--port",
            str(port or free_port()),
            "--p2p-port",
            str(free_port()),
        ],
        env=child_env(EMPRESSA_PASSPHRASE=None, DATABASE_URL=None, **env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(p: subprocess.Popen[bytes]) -> tuple[int, str]:
    try:
        _, err = p.communicate(timeout=UP_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        pytest.fail(f"empressa up did not end:\n{err.decode(errors='replace')}")
    return p.returncode, err.decode(errors="replace")


def the_error(stderr: str) -> str:
    """The one ``empressa: …`` line; it is the last line, and nothing on stderr is a traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("empressa: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    return errors[0]


def nothing_left(data: Path, stderr: str) -> None:
    assert not (data / "stack.json").exists()
    assert not EmbeddedPostgres(data / "postgres").running(), stderr
    for pid in map(int, re.findall(r"started service=\S+ pid=(\d+)", stderr)):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_busy_api_port_is_one_line_before_anything_starts(data: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, stderr = finish(up(data, port=port))
    assert code == 1
    line = the_error(stderr)
    assert line.startswith(f"empressa: port {port} is in use, the indexer API needs it")
    assert "--port" in line
    assert not (data / "postgres").exists()


def test_a_service_that_exits_during_start_up_is_named_with_its_log(data: Path) -> None:
    # EMPRESSA_BRIDGE_* reaches the bridge under `up` (it used to be dropped, and the stack came up).
    code, stderr = finish(up(data, EMPRESSA_BRIDGE_LOG_LEVEL="LOUD"))
    assert code == 1
    line = the_error(stderr)
    assert line.startswith("empressa: bridge exited with 1 during start-up (")
    assert "log_level" in line
    assert line.endswith(f"; see {data / 'logs' / 'bridge.log'}")
    nothing_left(data, stderr)


def test_ctrl_c_during_start_up_stops_what_was_started_quietly(data: Path) -> None:
    shutil.rmtree(data / "logs", ignore_errors=True)
    p = up(data)
    # The services start together once PostgreSQL is migrated; the API then takes seconds to be ready.
    wait_for(
        lambda: (data / "logs" / "reconciler.log").exists() or p.poll() is not None,
        what="the services to start",
        timeout=UP_TIMEOUT,
    )
    assert not (data / "stack.json").exists(), "the stack was ready before the test could interrupt it"
    p.send_signal(signal.SIGINT)
    code, stderr = finish(p)
    assert code == 130, stderr
    assert the_error(stderr) == "empressa: interrupted"
    assert "not ready" not in stderr
    nothing_left(data, stderr)
