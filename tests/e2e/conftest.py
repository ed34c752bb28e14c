"""Helpers for end-to-end tests: real ``empressa`` processes, each node in its own data dir.

Every child gets a clean environment (no inherited ``EMPRESSA_*``) with
``EMPRESSA_PASSPHRASE`` set, so nothing prompts; stdin is ``/dev/null``, so a
missing secret fails instead of waiting for a prompt. Daemons log to a file
next to their data dir; :class:`Daemon` reads ``node.json`` once it appears and
the ``daemons`` fixtures stop every child (SIGTERM, then SIGKILL) however a
test ends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

EMPRESSA = str(Path(sys.executable).with_name("empressa"))
PASSPHRASE = "correct horse battery staple"
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
CLI_TIMEOUT = 60.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, *, grace: float = 60) -> int:
    """Send ``sig`` (if it still runs), wait ``grace`` seconds, then kill; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def child_env(**extra: str | None) -> dict[str, str]:
    """The environment for a child: ours minus ``EMPRESSA_*``, plus the passphrase and ``extra``.

    An ``extra`` value of ``None`` removes that variable.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPRESSA")}
    env["EMPRESSA_PASSPHRASE"] = PASSPHRASE
    env["PYTHONUNBUFFERED"] = "1"
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def cli(
    *args: str | Path,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    ok: bool | None = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``empressa ARGS…`` to completion.

    Args:
        ok: ``True`` asserts exit 0, ``False`` asserts a non-zero exit, ``None`` checks nothing.
    """
    p = subprocess.run(
        [EMPRESSA, *map(str, args)],
        env=env or child_env(),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=CLI_TIMEOUT,
    )
    if ok is True:
        assert p.returncode == 0, (
            f"empressa {' '.join(map(str, args))} exited {p.returncode}: {p.stderr.decode()}"
        )
    elif ok is False:
        assert p.returncode != 0, (
            f"empressa {' '.join(map(str, args))} unexpectedly succeeded: {p.stdout.decode()}"
        )
    return p


def cli_json(*args: str | Path, env: dict[str, str] | None = None) -> Any:
    out = cli(*args, "--json", env=env).stdout.decode()
    lines = out.strip().splitlines()
    assert len(lines) == 1, f"--json should print one line, got {out!r}"
    return json.loads(lines[0])


def one_line_error(p: subprocess.CompletedProcess[bytes]) -> str:
    """The error a failed command printed: exactly one non-empty line on stderr, ``empressa: …``."""
    lines = [line for line in p.stderr.decode().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("empressa: "), lines[0]
    return lines[0]


def start_error(*args: str | Path, env: dict[str, str] | None = None) -> str:
    """Run ``empressa ARGS…``, a daemon that must refuse to start; its one-line error.

    A daemon that starts instead runs until START_TIMEOUT, is stopped, and the test fails.
    """
    proc = subprocess.Popen(
        [EMPRESSA, *map(str, args)], env=env or child_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        stop_process(proc)
        out, err = proc.communicate()
        pytest.fail(
            f"empressa {' '.join(map(str, args))} started instead of failing:\n{err.decode()[-2000:]}"
        )
    assert proc.returncode != 0, err.decode()
    return one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))


def init_node(data: Path, *, env: dict[str, str] | None = None) -> str:
    """``empressa node init``; returns the did."""
    return cli_json("node", "init", "--data", data, env=env)["did"]


def publish(
    data: Path, key: str, title: str, *extra: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    return cli_json(
        "node",
        "publish",
        "--data",
        data,
        "--key",
        key,
        "--title",
        title,
        "--cid",
        CID,
        "--mime",
        "audio/mpeg",
        *extra,
        env=env,
    )


def library(data: Path, *, all: bool = True) -> dict[str, dict[str, Any]]:
    """``node list [--all] --json`` as ``{uri: item}``."""
    args = ["node", "list", "--data", data, *(["--all"] if all else [])]
    return {i["uri"]: i for i in cli_json(*args)["items"]}


def export(data: Path, *, all: bool = True) -> bytes:
    return cli("node", "export", "--data", data, *(["--all"] if all else [])).stdout


def wait_for(check: Callable[[], Any], *, what: str, timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Call ``check`` until it returns something truthy; fail naming ``what`` after ``timeout`` s.

    The deadline only bounds the wait; it is never the thing a test asserts.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Daemon:
    """One ``empressa node run`` child process."""

    def __init__(
        self, data: Path, *, bootstrap: Sequence[str] = (), env: dict[str, str] | None = None
    ) -> None:
        self.data = data
        self.log_path = data.with_name(data.name + ".log")
        self.env = env or child_env()
        args = [EMPRESSA, "node", "run", "--data", str(data), "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"]
        for addr in bootstrap:
            args += ["--bootstrap", addr]
        # A daemon killed without cleaning up leaves its node.json behind; wait for a new one.
        self._stale = self.node_json.read_bytes() if self.node_json.exists() else None
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            args, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )
        self.info: dict[str, Any] = {}

    @property
    def node_json(self) -> Path:
        return self.data / "node.json"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = START_TIMEOUT) -> Daemon:
        """Wait for ``node.json``; fail with the log if the process dies first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = self.node_json.read_bytes()
            except FileNotFoundError:
                text = None
            if text is not None and text != self._stale:
                self.info = json.loads(text)  # written atomically by the daemon
                return self
            if self.proc.poll() is not None:
                pytest.fail(f"node run exited {self.proc.returncode} before writing node.json:\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"node.json did not appear within {timeout:.0f}s:\n{self.log()}")
            time.sleep(0.05)

    @property
    def addr(self) -> str:
        return self.info["multiaddrs"][0]

    @property
    def api_url(self) -> str:
        return self.info["api_url"]

    def token(self) -> str:
        return (self.data / "api.token").read_text().strip()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig``; SIGKILL if the process is still there after STOP_TIMEOUT s. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class Daemons:
    """Starts daemons and remembers them, so a fixture can stop every one."""

    def __init__(self) -> None:
        self.started: list[Daemon] = []

    def spawn(
        self, data: Path, *, bootstrap: Sequence[str] = (), env: dict[str, str] | None = None
    ) -> Daemon:
        """Start a daemon without waiting for it (call :meth:`Daemon.wait_ready`)."""
        d = Daemon(data, bootstrap=bootstrap, env=env)
        self.started.append(d)
        return d

    def start(
        self, data: Path, *, bootstrap: Sequence[str] = (), env: dict[str, str] | None = None
    ) -> Daemon:
        return self.spawn(data, bootstrap=bootstrap, env=env).wait_ready()

    def stop_all(self) -> None:
        for d in self.started:
            d.stop()


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    ds = Daemons()
    try:
        yield ds
    finally:
        ds.stop_all()


@pytest.fixture(scope="module")
def module_daemons() -> Iterator[Daemons]:
    ds = Daemons()
    try:
        yield ds
    finally:
        ds.stop_all()


# -- a whole stack: ``empressa up`` --------------------------------------------------------------

STACK_TIMEOUT = 180.0


class RunningStack:
    """One ``empressa up --demo`` child on ``data``, with fresh ports; ``env`` adds to its environment.

    ``--demo`` runs the dev chain (anvil) too when anvil is installed; ``args`` adds flags
    (``--chain none``).
    """

    def __init__(self, data: Path, *args: str, **env: str | None) -> None:
        self.data = data
        self.log_path = data.with_name("up.log")  # its stderr: the supervisor's log lines
        self.out_path = data.with_name("up.out")  # its stdout: the first screen (stack.summary)
        self._log = self.log_path.open("ab")
        self._out = self.out_path.open("ab")
        # A supervisor that was killed leaves its stack.json behind; wait for a new one.
        stack_json = data / "stack.json"
        self._stale = stack_json.read_bytes() if stack_json.exists() else None
        self.proc = subprocess.Popen(
            [
                EMPRESSA,
                "up",
                "--data",
                str(data),
                "--port",
                str(free_port()),
                "--p2p-port",
                str(free_port()),
                "--chain-port",
                str(free_port()),
                "--demo",
                *args,
            ],
            env=child_env(EMPRESSA_PASSPHRASE=None, DATABASE_URL=None, **env),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._log,
        )
        self.info: dict[str, Any] = {}

    def logs(self) -> str:
        text = self.log_path.read_text(errors="replace")
        text += "\n--- stdout ---\n" + self.out_path.read_text(errors="replace")
        for child in sorted((self.data / "logs").glob("*.log")):
            text += f"\n--- {child.name} ---\n" + child.read_text(errors="replace")[-4000:]
        return text

    def wait_ready(self) -> RunningStack:
        def ready() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                pytest.fail(f"empressa up exited {self.proc.returncode}:\n{self.logs()}")
            try:
                text = (self.data / "stack.json").read_bytes()
                return json.loads(text) if text != self._stale else None  # type: ignore[no-any-return]
            except (OSError, ValueError):
                return None

        self.info = wait_for(ready, what="stack.json", timeout=STACK_TIMEOUT)
        return self

    def first_screen(self) -> str:
        """What ``up`` printed on stdout once ready (waits for it): the summary for a person, or
        with ``--json`` its one JSON line."""

        def printed() -> str | None:
            if self.proc.poll() is not None:
                pytest.fail(f"empressa up exited {self.proc.returncode}:\n{self.logs()}")
            text = self.out_path.read_text(errors="replace")
            return text if text.endswith("\n") and ("Stop" in text or text.startswith("{")) else None

        return str(wait_for(printed, what="up's first screen", timeout=STACK_TIMEOUT))

    @property
    def api_url(self) -> str:
        return str(self.info["api_url"])

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.api_url + path, params=params, timeout=10)

    def services(self) -> dict[str, int]:
        """The supervisor's live children by service name (see :func:`children_of`)."""
        return children_of(self.proc.pid)

    def stop(self, sig: int = signal.SIGINT) -> int:
        code = stop_process(self.proc, sig)
        self._log.close()
        self._out.close()
        return code


# -- processes, from /proc -----------------------------------------------------------------------

SERVICES = {
    ("indexer", "feed"): "feeder",
    ("indexer", "run"): "api",
    ("bridge", "run"): "bridge",
    ("indexer", "reconcile"): "reconciler",
    ("indexer", "pin"): "pin",
    ("node", "run"): "demo-node",
}


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (state is [0], ppid [1], start time [19])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def parents() -> dict[int, int]:
    """Every process's parent pid."""
    found: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                found[int(proc.name)] = int(_stat(int(proc.name))[1])
            except (OSError, ValueError, IndexError):
                continue
    return found


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, theirs, …)."""
    parent = parents()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - found
        found |= frontier
    return found


def children_of(pid: int) -> dict[str, int]:
    """The direct children of ``pid`` by service name (``postgres`` for the server, ``anvil`` for the chain)."""
    found: dict[str, int] = {}
    for child, ppid in parents().items():
        if ppid != pid:
            continue
        try:
            argv = cmdline(child)
        except OSError:
            continue
        if argv and Path(argv[0]).name in ("postgres", "anvil"):
            found[Path(argv[0]).name] = child
        for (a, b), name in SERVICES.items():
            if argv[2:4] == [a, b] or argv[3:5] == [a, b]:  # python + the script, or python -m cli
                found[name] = child
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead, only not yet reaped by its parent
        return _stat(pid)[0] != "Z"
    except OSError:
        return False


def process_start(pid: int) -> int:
    """A process's start time (clock ticks since boot): with the pid, its identity."""
    return int(_stat(pid)[19])


def postmaster_pid(data: Path) -> int:
    """The pid of the PostgreSQL server of the stack in ``data``."""
    return int((data / "postgres" / "pgdata" / "postmaster.pid").read_text().split("\n", 1)[0])
