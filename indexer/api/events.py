"""One PostgreSQL LISTEN per process, fanned out to every SSE subscriber.

The listener holds a psycopg :class:`~psycopg.AsyncConnection` (the API runs
on asyncio) listening on :data:`indexer.models.ACTIVITY_CHANNEL`, and wakes
every subscriber on each notification. A notification carries only "there is
something newer"; each subscriber then reads the rows past the last id it sent
from PostgreSQL. The ordering rule of :mod:`indexer.models` (activity ids
become visible in order) makes that complete, and it is also why a lost
notification or a reconnect loses nothing: after (re)connecting, the listener
wakes everyone once so they re-read.

The listener starts with the first subscriber, reconnects with exponential
backoff (0.5 s … 30 s), and stops when the app shuts down.

:class:`StreamSlots` caps the streams one client address holds open at once
in this process (setting ``sse_max_per_client``); a slot is given back when
the response ends, however it ends (the client went away, the app stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import psycopg

from ..db import libpq_url
from ..models import ACTIVITY_CHANNEL
from .problem import ProblemError

log = logging.getLogger(__name__)


class Broadcaster:
    def __init__(self, database_url: str, *, max_backoff_s: float = 30.0) -> None:
        self._url = libpq_url(database_url)
        self._subscribers: set[asyncio.Event] = set()
        self._task: asyncio.Task[None] | None = None
        self._max_backoff = max_backoff_s
        self.connected = False

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Event]:
        """An event set whenever there may be newer activity (set once at start, too)."""
        wake = asyncio.Event()
        wake.set()
        self._subscribers.add(wake)
        self._ensure_running()
        try:
            yield wake
        finally:
            self._subscribers.discard(wake)

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="activity-listener")

    def _wake_all(self) -> None:
        for ev in self._subscribers:
            ev.set()

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                    await conn.execute(f'LISTEN "{ACTIVITY_CHANNEL}"')
                    self.connected = True
                    backoff = 0.5
                    log.info("activity listener connected")
                    self._wake_all()  # anything committed while we were away
                    async for _ in conn.notifies():
                        self._wake_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "activity listener lost its connection: %s; retry in %.1f s",
                    exc.__class__.__name__,
                    backoff,
                )
            finally:
                self.connected = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class StreamSlots:
    """Open event streams per client address, at most ``limit`` each (one event loop: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def held(self, client: str) -> int:
        return self._open.get(client, 0)

    def acquire(self, client: str) -> Callable[[], None]:
        """Take a slot for ``client`` or raise a 429 problem; returns the release (safe to call twice)."""
        n = self._open.get(client, 0)
        if n >= self.limit:
            raise ProblemError(
                429,
                f"at most {self.limit} event streams at once per client address; close one first",
                code="too-many-streams",
                headers={"Retry-After": "5"},
            )
        self._open[client] = n + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                left = self._open[client] - 1
                if left:
                    self._open[client] = left
                else:
                    del self._open[client]

        return release
