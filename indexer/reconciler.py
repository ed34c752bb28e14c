"""The reconciler: a singleton that follows chain sources and writes what it sees back onto assets.

Only one reconciler may act at a time across every machine: it holds a
session-level PostgreSQL advisory lock (:data:`RECONCILER_LOCK`) on a dedicated
connection for as long as it runs. A second instance waits as a hot standby and
takes over when the first one's connection ends (its process died).

Each source (:class:`~indexer.chains.base.ChainSource`, built by
:func:`indexer.chains.build_sources`) goes through the same small state machine,
one :class:`_Runner` each, all in this one thread:

* ``check()`` until it passes. A :class:`~indexer.errors.ChainConfigError` (bad
  URL, wrong chain id, no contract) is recorded as the source's error and
  retried every interval: readiness fails, the process never crash-loops.
* ``poll()`` every interval, again at once while it reports ``more`` (the source
  is behind). :class:`~indexer.errors.ChainUnavailable` backs off (doubling, up
  to :data:`MAX_BACKOFF`); :class:`~indexer.errors.ReorgTooDeep` is recorded and
  stops that source (an operator decides; the others go on).

After every step the source's figures go into ``chain_cursors.data`` (head,
processed, lag_blocks, lag_seconds, reorgs and events in total, error, state,
updated_at) for the API's ``/readyz`` and ``/metrics``, and into structured log
lines. The reconciler reads chains and writes PostgreSQL: it never holds key
material (attestations are signed by the bridge, from the outbox).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from .chains.base import ChainSource, PollResult
from .db import libpq_url
from .errors import ChainConfigError, ChainError, ChainUnavailable, DatabaseError, ReorgTooDeep
from .stop import StopCue

log = logging.getLogger(__name__)

RECONCILER_LOCK = 0x7265636F  # pg_advisory_lock key of the single active reconciler
MAX_BACKOFF = 60.0  # seconds between retries of an unavailable chain, at most
MORE_SLICE = 5.0  # seconds one source may keep the loop while it catches up, before the others get a turn


@dataclass
class _Runner:
    """One source's state in the loop, and its running totals."""

    source: ChainSource
    store: Any
    checked: bool = False
    stopped: bool = False
    due: float = 0.0  # monotonic time of the next step
    failures: int = 0
    totals: dict[str, Any] = field(default_factory=dict)
    first_name: str = ""

    def __post_init__(self) -> None:
        self.first_name = self.source.name
        cursor = self.store.chain.cursor(self.source.name) if self.store is not None else None
        data = cursor.data if cursor is not None else {}
        self.totals = {"reorgs": int(data.get("reorgs", 0)), "events": int(data.get("events", 0))}

    def record(self, **figures: Any) -> None:
        if self.store is None:  # no store given: the figures go to the log lines only
            return
        status = {**self.totals, **figures, "updated_at": time.time()}
        self.store.chain.record_status(self.source.name, status, forget=self.first_name)

    def step(self, *, interval: float) -> None:
        """One check or a burst of polls; never raises a chain error (they become the recorded status)."""
        name = self.source.name
        try:
            if not self.checked:
                self.source.check()
                self.checked = True
                log.info("chain source ready source=%s", self.source.name)
            deadline = time.monotonic() + MORE_SLICE
            while True:
                result = self.source.poll()
                self._ok(result)
                if not result.more or time.monotonic() > deadline:
                    break
            self.due = time.monotonic() + (0.0 if result.more else interval)
        except ReorgTooDeep as exc:
            self.stopped = True
            log.error("chain source stopped source=%s error=%s", name, exc)
            self.record(error=f"{exc.code}: {exc}", state="stopped")
        except ChainConfigError as exc:
            self.checked = False
            self.due = time.monotonic() + interval
            log.error("chain source misconfigured source=%s error=%s", name, exc)
            self.record(error=f"{exc.code}: {exc}", state="config-error")
        except ChainUnavailable as exc:
            self._backoff(interval, f"{exc.code}: {exc}")
        except DatabaseError:
            raise
        except ChainError as exc:
            self._backoff(interval, f"{exc.code}: {exc}")
        except Exception as exc:  # a bug or an unexpected answer: recorded, retried, never a crash loop
            log.exception("chain source failed source=%s", name)
            self._backoff(
                interval, f"internal: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )

    def _backoff(self, interval: float, error: str) -> None:
        self.failures += 1
        delay = min(MAX_BACKOFF, interval * 2 ** min(self.failures, 10))
        self.due = time.monotonic() + delay
        log.warning(
            "chain source unavailable source=%s retry_in=%.1f error=%s", self.source.name, delay, error
        )
        self.record(error=error, state="unavailable", retry_in=delay)

    def _ok(self, r: PollResult) -> None:
        self.failures = 0
        self.totals["reorgs"] += r.reorgs
        self.totals["events"] += r.applied
        figures = {
            "head": r.head,
            "processed": r.processed,
            "lag_blocks": r.lag_blocks,
            "lag_seconds": r.lag_seconds,
            "error": None,
            "state": "ok",
            "ok_at": time.time(),
            **r.extra,
        }
        self.record(**figures)
        if r.applied or r.reorgs:
            log.info(
                "reconciled source=%s events=%d reorgs=%d head=%s processed=%s lag_blocks=%s",
                self.source.name,
                r.applied,
                r.reorgs,
                r.head,
                r.processed,
                r.lag_blocks,
            )


def run_reconciler(
    *,
    database_url: str,
    sources: list[ChainSource],
    stop: StopCue,
    interval: float = 2.0,
    store: Any = None,
) -> None:
    """Block until ``stop`` is set: take the singleton lock, then step every source (see the module docstring).

    ``store`` (an :class:`indexer.store.Store`) is where the sources' status is recorded for
    ``/readyz`` and ``/metrics``; without one it is only logged.
    """
    while not stop.is_set():
        try:
            with psycopg.connect(libpq_url(database_url), autocommit=True, connect_timeout=10) as conn:
                log.info("reconciler waiting for the singleton lock")
                while not stop.is_set():
                    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (RECONCILER_LOCK,)).fetchone()
                    if got and got[0]:
                        break
                    stop.wait(interval)
                if stop.is_set():
                    return
                if not sources:
                    log.info("reconciler active; no chain sources are configured")
                else:
                    log.info("reconciler active sources=%s", ",".join(s.name for s in sources))
                runners = [_Runner(s, store) for s in sources]
                while not stop.is_set():
                    conn.execute("SELECT 1")  # the lock lives as long as this connection: keep it healthy
                    for runner in runners:
                        if not runner.stopped and time.monotonic() >= runner.due and not stop.is_set():
                            runner.step(interval=interval)
                    live = [r.due for r in runners if not r.stopped]
                    wait = min([interval, *(max(0.0, d - time.monotonic()) for d in live)])
                    stop.wait(wait if live else interval)
        except (psycopg.OperationalError, DatabaseError) as exc:
            log.warning("reconciler lost the database; retrying error=%s", str(exc).splitlines()[0])
            stop.wait(2.0)
