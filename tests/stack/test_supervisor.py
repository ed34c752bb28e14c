"""The ``empressa up`` supervisor's pieces, without starting a stack: what children inherit,
their log files, and the errors start-up ends with (real child processes, no PostgreSQL)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import stack.supervisor as stack_mod
from cli import one_line_errors
from stack import Child, Signals, Stack, StackError, load_stack_settings
from stack.services import dev_secrets


def make_stack(tmp_path: Path, environ: dict[str, str] | None = None, **kw: int) -> Stack:
    environ = environ or {}
    flags = {
        "port": kw.get("port", 0),
        "p2p_port": kw.get("p2p_port", 0),
        "database_url": "postgresql://x@127.0.0.1:1/x",
        "demo": False,
    }
    return Stack(load_stack_settings(tmp_path / "stack", flags, environ), environ=environ)


def python_child(tmp_path: Path, name: str, code: str) -> Child:
    return Child(
        name,
        [sys.executable, "-c", code],
        {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
        tmp_path / f"{name}.log",
    )


def test_child_env_passes_service_settings_and_withholds_the_callers_own(tmp_path: Path) -> None:
    caller = {
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "DATABASE_URL": "postgresql://caller/elsewhere",
        "EMPRESSA_INDEXER_RATE_LIMIT_READ": "5/minute",
        "EMPRESSA_INDEXER_LOG_LEVEL": "DEBUG",
        "EMPRESSA_BRIDGE_VERIFY_WORKERS": "2",
        "EMPRESSA_BRIDGE_LOG_LEVEL": "WARNING",
        "EMPRESSA_LOG_JSON": "1",
        # Where data lives is the stack's choice, not the caller's.
        "EMPRESSA_BRIDGE_DATA_DIR": "/home/me/bridge",
        "EMPRESSA_BRIDGE_DATABASE_URL": "postgresql://caller/bridge",
        "EMPRESSA_INDEXER_DATABASE_URL": "postgresql://caller/indexer",
        "EMPRESSA_INDEXER_INDEX_DIR": "/home/me/search",
        "EMPRESSA_INDEXER_DATA_DIR": "/home/me/indexer",
        # The caller's own node is not the demo creator's.
        "EMPRESSA_NODE_DATA_DIR": "/home/me/node",
        "EMPRESSA_NODE_API_PORT": "5000",
        # The caller's secret, when the stack seals with its own development key.
        "EMPRESSA_PASSPHRASE": "the caller's",
        "EMPRESSA_SOMETHING_ELSE": "x",
    }
    s = make_stack(tmp_path, caller)
    s.data_dir.mkdir(parents=True)
    env = s._child_env("postgresql://stack/db", {"EMPRESSA_KEK": "00" * 32}, signer=True)
    assert env["DATABASE_URL"] == "postgresql://stack/db"
    assert env["EMPRESSA_KEK"] == "00" * 32
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/home/me"
    passed = {k: v for k, v in env.items() if k.startswith("EMPRESSA_") and k != "EMPRESSA_KEK"}
    assert passed == {
        "EMPRESSA_INDEXER_RATE_LIMIT_READ": "5/minute",
        "EMPRESSA_INDEXER_LOG_LEVEL": "DEBUG",
        "EMPRESSA_BRIDGE_VERIFY_WORKERS": "2",
        "EMPRESSA_BRIDGE_LOG_LEVEL": "WARNING",
        "EMPRESSA_LOG_JSON": "1",
    }


def test_child_env_keeps_the_callers_secret_when_it_is_the_stacks(tmp_path: Path) -> None:
    s = make_stack(tmp_path, {"EMPRESSA_PASSPHRASE": "pw", "EMPRESSA_KEK": "11" * 32})
    s.data_dir.mkdir(parents=True)
    kek = dev_secrets(s.data_dir, s.environ)
    env = s._child_env("postgresql://stack/db", kek, signer=True)
    # Only the secret the stack seals with: a child holding both might unlock with the other.
    assert env["EMPRESSA_KEK"] == "11" * 32 and "EMPRESSA_PASSPHRASE" not in env
    # And only for a child that unlocks a keystore: the API, feeder and reconciler get neither.
    env = s._child_env("postgresql://stack/db", kek)
    assert not {"EMPRESSA_KEK", "EMPRESSA_PASSPHRASE"} & set(env)


def test_child_restart_closes_the_previous_log_handle(tmp_path: Path) -> None:
    child = python_child(tmp_path, "svc", "print('hello')")
    child.start()
    first = child._log_file
    assert child.proc is not None
    child.proc.wait(30)
    child.start()
    assert first.closed and not child._log_file.closed
    child.proc.wait(30)
    child.stop(Signals())  # already exited: still closes its log
    assert child._log_file is None
    assert child.log_path.read_text().count("hello") == 2


def test_a_child_exiting_during_start_up_is_a_stack_error_naming_it_and_its_log(tmp_path: Path) -> None:
    s = make_stack(tmp_path)
    old = python_child(tmp_path, "bridge", "print('an old run')")
    old.start()
    assert old.proc is not None
    old.proc.wait(30)
    slow = python_child(tmp_path, "api", "import time; time.sleep(60)")
    dying = python_child(
        tmp_path, "bridge", "import sys; print('noise'); sys.exit('bad bridge setting log_level')"
    )
    s.children += [slow, dying]
    try:
        slow.start()
        dying.start()
        with pytest.raises(StackError) as e:
            s._wait_for(slow, "the indexer API", lambda: False)
    finally:
        s.shutdown()
    msg = str(e.value)
    assert isinstance(e.value, one_line_errors())  # printed as one line by cli.main
    assert "\n" not in msg
    assert msg.startswith("bridge exited with 1 during start-up")
    assert "(bad bridge setting log_level)" in msg and "an old run" not in msg
    assert msg.endswith(f"see {dying.log_path}")


def test_not_ready_in_time_names_the_service_and_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stack_mod, "READY_TIMEOUT", 0.3)
    s = make_stack(tmp_path)
    api = python_child(tmp_path, "api", "import time; time.sleep(60)")
    s.children.append(api)
    try:
        api.start()
        with pytest.raises(StackError, match=r"the indexer API was not ready in 0 s; see .*api\.log$"):
            s._wait_for(api, "the indexer API", lambda: False)
    finally:
        s.shutdown()


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """The test installs the supervisor's SIGINT/SIGTERM handlers in this process: put pytest's back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        signal.set_wakeup_fd(-1)
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@pytest.mark.usefixtures("restore_signals")
def test_a_stop_during_start_up_interrupts_the_wait_and_nothing_goes_on(tmp_path: Path) -> None:
    s = make_stack(tmp_path)
    api = python_child(tmp_path, "api", "import time; time.sleep(60)")
    s.children.append(api)
    s.signals.install()
    try:
        api.start()
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        with pytest.raises(KeyboardInterrupt):
            s._wait_for(api, "the bridge", lambda: None)
    finally:
        s.shutdown()
    assert api.proc is not None and api.proc.returncode is not None


@pytest.mark.parametrize("which", ["port", "p2p_port"])
def test_a_busy_port_is_refused_before_anything_starts(tmp_path: Path, which: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        s = make_stack(tmp_path, **{which: port})
        with pytest.raises(StackError, match=f"port {port} is in use") as e:
            s._check_ports()
    assert ("--p2p-port" if which == "p2p_port" else "--port ") in str(e.value) + " "
    assert not s.data_dir.exists()
