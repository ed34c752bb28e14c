"""The ``empressa up`` supervisor's process plumbing: its children, its signals, its pid file.

- :class:`Child`: one supervised process. It dies with the supervisor: its
  parent-death signal (``PR_SET_PDEATHSIG``) is set in the child between
  ``fork`` and ``exec``, after CPython's ``setuid`` for ``user=`` (changing
  credentials clears it). The kernel sends it when the supervisor's *thread*
  that forked the child ends, so children are started from the main thread
  only. A child whose parent died before the ``prctl`` kills itself at once.
  Each child is watched through a pidfd, so a death wakes the supervisor.
- :class:`Signals`: SIGINT and SIGTERM set a counter, nothing else (a handler
  that takes a lock can deadlock when a second signal re-enters it); the
  interpreter writes a byte to a pipe (``signal.set_wakeup_fd``) that
  :meth:`Signals.wait` selects on, with the children's pidfds.
- :class:`PidFile`: ``DIR/stack.pid``, JSON ``{"pid", "started", "children":
  {name: {"pid", "started", "stop_signal"}}}``; a pid with its start time
  (``/proc/PID/stat`` field 22) names one process, never a later one that
  reuses the pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import pwd
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["STOP_GRACE", "Child", "PidFile", "Signals", "process_start", "same_process"]

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
STOP_GRACE = 10.0  # seconds a child has to stop before it is killed, unless it says otherwise
_libc = ctypes.CDLL(None, use_errno=True)


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot), or None if there is none."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def same_process(pid: int, started: int | None) -> bool:
    """Whether ``pid`` is still the process that started at ``started`` (and is not a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and started is not None and process_start(pid) == started


def _die_with(parent: int, sig: int) -> Callable[[], None]:
    def preexec() -> None:  # in the child, after setuid: async-signal-safe calls only
        _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before the prctl
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class Signals:
    """SIGINT/SIGTERM as a count and a wake-up pipe; ``install()`` in the main thread."""

    def __init__(self) -> None:
        self.count = 0
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def install(self) -> None:
        signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1  # no lock, no I/O: the interpreter has already written to the pipe

    @property
    def stop(self) -> bool:
        """A signal came: stop in order."""
        return self.count >= 1

    @property
    def now(self) -> bool:
        """A second signal came: stop now (children are killed)."""
        return self.count >= 2

    def wait(self, timeout: float, fds: Iterable[int] = ()) -> None:
        """Sleep until ``timeout`` s pass, a signal comes, or one of ``fds`` (pidfds) is readable."""
        ready, _, _ = select.select([self._r, *fds], [], [], max(0.0, timeout))
        if self._r in ready:
            try:
                while os.read(self._r, 512):
                    pass
            except BlockingIOError:
                pass


@dataclass
class Child:
    """One supervised process (see the module docstring for how it dies with the supervisor).

    Args:
        user: run as this OS user (PostgreSQL's, under root).
        stop_signal: asks it to stop (SIGINT is PostgreSQL's fast shutdown); also its death signal.
        grace: seconds it has to stop before it is killed.
    """

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    user: str | None = None
    stop_signal: int = signal.SIGTERM
    grace: float = STOP_GRACE
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    stopping: bool = False
    pidfd: int | None = field(default=None, repr=False)
    _log_file: Any = field(default=None, repr=False)
    _log_start: int = field(default=0, repr=False)

    def start(self) -> None:
        self._close()
        self._log_file = self.log_path.open("ab")
        self._log_start = self._log_file.tell()
        ids: dict[str, Any] = {}
        if self.user is not None:  # that user's own group, and none of ours
            entry = pwd.getpwnam(self.user)
            ids = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops children in order
            preexec_fn=_die_with(os.getpid(), self.stop_signal),
            **ids,
        )
        try:
            self.pidfd = os.pidfd_open(self.proc.pid)
        except OSError:  # exited and reaped already, or a kernel without pidfds: polled instead
            self.pidfd = None
        self.started_at = time.monotonic()
        log.info("started service=%s pid=%d log=%s", self.name, self.proc.pid, self.log_path)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exited(self) -> bool:
        """It ended without being asked to."""
        return self.proc is not None and self.proc.poll() is not None and not self.stopping

    def stop(self, signals: Signals) -> None:
        """Ask it to stop, wait up to ``grace`` s (less once a second signal came), then kill it."""
        self.stopping = True
        p = self.proc
        if p is not None and p.poll() is None:
            if not signals.now:
                p.send_signal(self.stop_signal)
            deadline = time.monotonic() + self.grace
            while p.poll() is None:
                if signals.now or time.monotonic() > deadline:
                    if not signals.now:
                        log.warning(
                            "service did not stop in time, killing service=%s pid=%d", self.name, p.pid
                        )
                    self.kill()
                    p.wait()
                    break
                signals.wait(min(0.5, deadline - time.monotonic()), self.fds())
            log.info("stopped service=%s exit=%s", self.name, p.returncode)
        self._close()

    def kill(self) -> None:
        """SIGKILL it and its process group (what it started itself, say the bridge's verify workers)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def fds(self) -> list[int]:
        return [self.pidfd] if self.pidfd is not None else []

    def _close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def last_words(self, limit: int = 300) -> str:
        """The last line this run of the service wrote to its log ("" if none)."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_start)
                tail = f.read()[-8192:]
        except OSError:
            return ""
        lines = [line.strip() for line in tail.decode(errors="replace").splitlines() if line.strip()]
        return lines[-1][:limit] if lines else ""


class PidFile:
    """``DIR/stack.pid``: which process supervises the stack of a data dir, and its children."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Any] | None:
        try:
            record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def live_supervisor(self) -> int | None:
        """The pid of the recorded supervisor if it still runs (and is not this process)."""
        record = self.read()
        if not record:
            return None
        pid = record.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and same_process(pid, record.get("started")):
            return pid
        return None

    def stop_leftovers(self, timeout: float = 60.0) -> None:
        """Stop the recorded children of a dead supervisor that still run (each its stop signal,
        then SIGKILL after ``timeout`` s)."""
        record = self.read()
        if not record:
            return
        left: dict[int, int | None] = {}
        for name, c in (record.get("children") or {}).items():
            pid, started = c.get("pid"), c.get("started")
            if isinstance(pid, int) and same_process(pid, started):
                log.warning("stopping a service left by a stack that was killed service=%s pid=%d", name, pid)
                os.kill(pid, int(c.get("stop_signal", signal.SIGTERM)))
                left[pid] = started
        deadline = time.monotonic() + timeout
        killed = False
        while left:
            left = {p: s for p, s in left.items() if same_process(p, s)}
            if left and time.monotonic() > deadline:
                if killed:
                    break  # SIGKILLed and still there (uninterruptible sleep): nothing more to do
                for p in left:
                    os.kill(p, signal.SIGKILL)
                killed, deadline = True, time.monotonic() + 10
            time.sleep(0.1)
        self.path.unlink(missing_ok=True)

    def write(self, children: Iterable[Child]) -> None:
        record = {
            "pid": os.getpid(),
            "started": process_start(os.getpid()),
            "children": {
                c.name: {
                    "pid": c.proc.pid,
                    "started": process_start(c.proc.pid),
                    "stop_signal": int(c.stop_signal),
                }
                for c in children
                if c.proc is not None
            },
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(record) + "\n")
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
