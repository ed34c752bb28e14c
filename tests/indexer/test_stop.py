"""The services' stop cue (indexer.stop): a SIGTERM landing anywhere in a wait stops the loop.

The cue the indexer's services (feed, reconcile, pin) get from ``_stop_on_signals`` is
waited on between steps. A signal handler runs in the main thread between two
bytecodes, wherever the thread is; a cue whose ``set`` takes a lock that ``wait``
holds (``threading.Event``) deadlocks when the signal lands there. The test lands
SIGTERM at each bytecode of a ``wait`` in turn (a trace function counts them), in a
child process, so a deadlock is a child that never answers: it fails naming the
bytecode.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from indexer.stop import SignalStop

ROOT = Path(__file__).resolve().parents[2]
HUNG_S = 60.0

# For each n: a fresh cue from _stop_on_signals, then a wait() with SIGTERM sent at its n-th
# bytecode; "ok n" once the wait has returned with the cue set. Ends at the first n past the
# wait's last bytecode ("done").
CHILD = r"""
import os, signal, sys
from indexer.commands import _stop_on_signals

for n in range(1, 10_000):
    stop = _stop_on_signals()
    seen = [0]
    def tracer(frame, event, arg, stop=stop, n=n):
        frame.f_trace_opcodes = True
        if event == "opcode":
            seen[0] += 1
            if seen[0] == n:
                os.kill(os.getpid(), signal.SIGTERM)
        return tracer
    sys.settrace(tracer)
    stop.wait(0.05)
    sys.settrace(None)
    if seen[0] < n:
        print("done", n, flush=True)
        break
    if not stop.is_set():
        print("not set", n, flush=True)
        break
    print("ok", n, flush=True)
    getattr(stop, "close", lambda: None)()
"""


def test_a_sigterm_landing_at_any_bytecode_of_a_wait_stops_it() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    # Each line comes within milliseconds; a deadlocked child sends no more, so a watchdog ends it
    # (a guard against a hung suite, not a time limit on the code: the child is otherwise idle).
    watchdog = threading.Timer(HUNG_S, child.kill)
    watchdog.start()
    lines: list[str] = []
    try:
        assert child.stdout is not None
        lines = [line.strip() for line in child.stdout]
    finally:
        watchdog.cancel()
        child.wait()
    assert lines and lines[-1].startswith("done"), (
        f"a SIGTERM at the next bytecode hung the wait; last lines: {lines[-3:]}"
    )
    assert len(lines) > 10  # the signal landed at every bytecode of a real wait


def test_set_from_another_thread_ends_a_wait_and_every_later_one() -> None:
    stop = SignalStop()
    try:
        assert not stop.wait(0.01)
        threading.Timer(0.05, stop.set).start()
        assert stop.wait(30)  # returns when set, not after 30 s
        assert stop.is_set()
        assert stop.wait(30) and stop.wait(None)  # already set: at once, as often as asked
    finally:
        stop.close()
