"""Whether the configured indexer has our latest write: ``GET /v1/local/indexer``.

The node asks the indexer (``indexer_url``), never the browser: the page loads
nothing from outside. The answer is reused for :data:`INDEXER_CACHE` seconds
while our head stays the same.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import httpx
import trio

if TYPE_CHECKING:
    from .daemon import Node

log = logging.getLogger(__name__)

INDEXER_TIMEOUT = 2.0  # seconds the indexer may take to say what it holds of us
INDEXER_CACHE = 2.0  # seconds its answer is reused


class IndexerProbe:
    """What the configured indexer holds of one node's log, asked at most every ``INDEXER_CACHE``."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._indexer: tuple[float, dict[str, Any]] | None = None

    async def state(self) -> dict[str, Any]:
        """What the configured indexer holds of our log: ``state`` is ``searchable``, ``behind`` (by
        ``behind`` entries), ``indexing`` (stored there, not yet in its search), ``unreachable`` or
        ``unconfigured``."""
        url = self.node.settings.indexer_url
        head = await trio.to_thread.run_sync(self.node.store.head, self.node.keys.author.public)
        mine = head.seq if head is not None else 0
        if url is None:
            return {"state": "unconfigured", "head": mine}
        now = time.monotonic()
        if (
            self._indexer is not None
            and now - self._indexer[0] < INDEXER_CACHE
            and self._indexer[1]["head"] == mine
        ):
            return self._indexer[1]
        theirs, searchable = 0, None
        try:
            async with httpx.AsyncClient(timeout=INDEXER_TIMEOUT) as client:
                r = await client.get(f"{url.rstrip('/')}/v1/creators/{self.node.did}")
            if r.status_code == 200:
                doc = r.json()
                theirs = int((doc.get("head") or {}).get("seq") or 0)
                searchable = doc.get("searchable")
            elif r.status_code != 404:
                raise ValueError(f"status {r.status_code}")
        except (httpx.HTTPError, ValueError, TypeError, AttributeError) as exc:
            log.info("indexer unreachable url=%s err=%s", url, exc)
            state = {"state": "unreachable", "head": mine, "indexer_url": url}
        else:
            behind = max(0, mine - theirs)
            label = "behind" if behind else ("indexing" if searchable is False else "searchable")
            state = {
                "state": label,
                "behind": behind,
                "head": mine,
                "indexer_head": theirs,
                "indexer_url": url,
            }
        self._indexer = (now, state)
        return state
