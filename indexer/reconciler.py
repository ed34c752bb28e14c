"""The reconciler: a singleton that follows chain sources and writes what it sees back onto assets.

This issue provides the slot the stack runs: the process, its singleton lock
and its loop over :class:`ChainSource` implementations. The EVM (web3.py) and
Stellar (stellar-sdk) sources arrive with the reconciliation issue; with none
configured the reconciler holds the lock, says so once, and idles.

Only one reconciler may act at a time across every machine: it holds a
session-level PostgreSQL advisory lock (:data:`RECONCILER_LOCK`) on a dedicated
connection for as long as it runs. A second instance waits as a hot standby and
takes over when the first one's connection ends (its process died).
"""

from __future__ import annotations

import logging
import threading

import psycopg

from .chains.base import ChainSource
from .db import libpq_url

log = logging.getLogger(__name__)

RECONCILER_LOCK = 0x7265636F  # pg_advisory_lock key of the single active reconciler


def run_reconciler(
    *, database_url: str, sources: list[ChainSource], stop: threading.Event, interval: float = 2.0
) -> None:
    """Block until ``stop`` is set: take the singleton lock, then poll every source each ``interval``."""
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
                    log.info("reconciler active; no chain sources are configured yet")
                else:
                    log.info("reconciler active sources=%s", ",".join(s.name for s in sources))
                while not stop.wait(interval):
                    conn.execute("SELECT 1")  # the lock lives as long as this connection: keep it healthy
                    for source in sources:
                        applied = source.poll()
                        if applied:
                            log.info("reconciled source=%s events=%d", source.name, applied)
        except psycopg.OperationalError as exc:
            log.warning("reconciler lost the database; retrying error=%s", str(exc).splitlines()[0])
            stop.wait(2.0)
