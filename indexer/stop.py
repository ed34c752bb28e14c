"""The services' cue to stop: set by SIGINT/SIGTERM or by any thread, waited on by the service loop.

``indexer feed``, ``indexer reconcile`` and ``indexer pin`` each loop until told
to stop. Their cue used to be a :class:`threading.Event` set by the signal
handler, but ``Event.set`` takes the event's lock, and a signal handler runs in
the main thread between two bytecodes, which may be inside ``Event.wait`` with
that lock held: the handler then waits forever for a lock its own thread holds
(the :mod:`signal` docs: "synchronization primitives such as threading.Lock
should not be used within signal handlers"). A worker told to stop would hang
instead. :class:`SignalStop` takes no lock: :meth:`~SignalStop.set` sets a flag
and writes a byte to a non-blocking pipe, and :meth:`~SignalStop.wait` sleeps in
``select`` on that pipe, so a signal ends a wait at once. The supervisor's
:class:`stack.children.Signals` follows the same rule.
"""

from __future__ import annotations

import os
import select
import signal
from contextlib import suppress
from typing import Protocol

__all__ = ["SignalStop", "StopCue"]


class StopCue(Protocol):
    """What a service loop needs of its stop cue (a :class:`threading.Event` has it too, for tests)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class SignalStop:
    """A stop cue that a signal handler may set (see the module docstring); the pipe is never drained,
    so once set, every wait returns at once."""

    def __init__(self) -> None:
        self._set = False
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def install(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> SignalStop:
        """Set this cue on each of ``signals`` (call in the main thread); returns self."""
        for sig in signals:
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.set()

    def set(self) -> None:
        """Stop: no lock, one non-blocking write (safe in a signal handler and from any thread)."""
        self._set = True
        with suppress(BlockingIOError):  # the pipe is full of earlier wake-ups: a waiter wakes anyway
            os.write(self._w, b"\0")

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until set or ``timeout`` seconds pass; whether it is set."""
        if not self._set:
            select.select([self._r], [], [], None if timeout is None else max(0.0, timeout))
        return self._set

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)
