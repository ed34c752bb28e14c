"""``empressa up`` when start-up goes wrong: one line on stderr, a non-zero exit, nothing left running.

Real processes through the CLI. The tests share one data directory (PostgreSQL is initialised
once); every ``up`` here ends before the next starts, and each must leave no service and no
PostgreSQL behind it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.embedded import EmbeddedPostgres

from .conftest import EMPRESSA, alive, child_env, descendants, free_port, process_start, wait_for

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


def up_logged(data: Path, log: Path) -> subprocess.Popen[bytes]:
    """``empressa up`` with stderr to ``log`` (read while it runs)."""
    with log.open("wb") as f:
        return subprocess.Popen(
            [EMPRESSA, "up", "--data", str(data), "--port", str(free_port()), "--p2p-port", str(free_port())],
            env=child_env(EMPRESSA_PASSPHRASE=None, DATABASE_URL=None),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=f,
        )


def send_signals(p: subprocess.Popen[bytes], n: int | None) -> None:
    """SIGTERM and SIGINT alternately, microseconds apart: ``n`` of them, or (``None``) a flood
    until ``p`` exits (a user pressing Ctrl-C again and again, ``timeout`` and ``uv`` forwarding)."""
    deadline = time.monotonic() + 20
    k = 0
    while (k < n) if n is not None else (p.poll() is None and time.monotonic() < deadline):
        try:
            os.kill(p.pid, (signal.SIGTERM, signal.SIGINT)[k % 2])
        except ProcessLookupError:
            return
        k += 1
        spin = time.perf_counter() + 0.00002 * (k % 5)
        while time.perf_counter() < spin:
            pass


def test_signals_in_quick_succession_always_stop_up(data: Path, tmp_path: Path) -> None:
    # Each round interrupts a new `up` at a stage of its life (a ready stack last) with two
    # signals, or a flood of them; the second means "stop now", so each must exit soon with
    # nothing left behind. (A handler that took a lock deadlocked here in most flooded rounds.)
    rounds = [
        ("embedded postgresql ready", 2),
        ("database migrated", None),
        ("started service=reconciler", 2),
        ("started service=reconciler", None),
        ("stack ready", None),
        ("stack ready", 2),
    ]
    for n, (stage, count) in enumerate(rounds):
        log = tmp_path / f"up-{n}.log"
        p = up_logged(data, log)
        wait_for(
            lambda log=log, p=p, stage=stage: (
                stage in log.read_text(errors="replace") or p.poll() is not None
            ),
            what=f"`up` to reach {stage!r}",
            timeout=UP_TIMEOUT,
        )
        assert p.poll() is None, log.read_text(errors="replace")
        send_signals(p, count)
        try:
            code = p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            pytest.fail(
                f"round {n}: empressa up did not exit after signals ({count or 'a flood'}) at {stage!r}"
            )
        stderr = log.read_text(errors="replace")
        if count == 2:  # (a flood may outlast the interpreter's own handlers and end it by a signal)
            assert code == (0 if stage == "stack ready" else 130), stderr
            assert "Traceback" not in stderr, stderr
        wait_for(
            lambda: not EmbeddedPostgres(data / "postgres").running(), what="postgres to stop", timeout=60
        )
        nothing_left(data, stderr)


def test_sigkill_of_up_takes_its_children_with_it_and_the_next_up_cleans_a_stale_stack(
    data: Path, tmp_path: Path
) -> None:
    log = tmp_path / "up-killed.log"
    p = up_logged(data, log)
    wait_for(
        lambda: "stack ready" in log.read_text(errors="replace") or p.poll() is not None,
        what="the stack to be ready",
        timeout=UP_TIMEOUT,
    )
    assert p.poll() is None, log.read_text(errors="replace")
    kids = descendants(p.pid)
    postgres = int((data / "postgres" / "pgdata" / "postmaster.pid").read_text().split("\n", 1)[0])
    p.kill()
    p.wait()
    assert len(kids) >= 4, kids
    wait_for(
        lambda: not any(alive(k) for k in kids | {postgres}),
        what="every child of the killed `up` (postgres included) to end",
        timeout=UP_TIMEOUT,
    )

    # A leftover that outlived its supervisor (say one that ignored the death signal), recorded in
    # the stack's pid file: the next `up` stops it before it starts anything.
    record = json.loads((data / "stack.pid").read_text())
    assert record["pid"] == p.pid
    leftover = subprocess.Popen(["sleep", "600"])
    try:
        record["children"]["straggler"] = {"pid": leftover.pid, "started": process_start(leftover.pid)}
        (data / "stack.pid").write_text(json.dumps(record))
        log2 = tmp_path / "up-next.log"
        q = up_logged(data, log2)
        wait_for(
            lambda: "stack ready" in log2.read_text(errors="replace") or q.poll() is not None,
            what="the next stack to be ready",
            timeout=UP_TIMEOUT,
        )
        assert q.poll() is None, log2.read_text(errors="replace")
        assert leftover.wait(30) is not None
        q.send_signal(signal.SIGINT)
        assert q.wait(120) == 0, log2.read_text(errors="replace")
        nothing_left(data, log2.read_text(errors="replace"))
        assert not (data / "stack.pid").exists()
    finally:
        leftover.kill()
        leftover.wait()
