"""Media in the API: an asset's files (``media_files``: the record's fields, the CID kind, the pin) and the
pin queue's ``/metrics`` (:class:`PinCollector`)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from protocol.media import cid_kind

from ..store.pins import MEDIA_ROLES, Pins


def media_files(asset: dict[str, Any], store: Any, *, gateway: str) -> list[dict[str, Any]]:
    """``media_files`` of an asset as :meth:`~indexer.store.reads.Reads.asset` gives it.

    The pin status is shown only while the asset is current (not deleted, not hidden): the
    operator pins what current assets name, so another asset's pin of the same CID is not
    this one's.
    """
    files = [(role, asset[role]) for role in MEDIA_ROLES if isinstance(asset.get(role), dict)]
    current = not asset.get("deleted") and not asset.get("hidden")
    statuses = Pins(store.engine).statuses(m["cid"] for _, m in files) if current and files else {}
    out = []
    for role, m in files:
        pin = statuses.get(m["cid"], {})
        out.append(
            {
                "role": role,
                "cid": m["cid"],
                "size": m.get("size", 0),
                "mime": m.get("mime", ""),
                "cid_kind": cid_kind(m["cid"], m.get("size")),
                "pin_status": pin.get("status"),
                "pin_attempts": pin.get("attempts", 0),
                "pin_error": pin.get("error"),
                "pinned_at": pin.get("pinned_at"),
                "gateway_url": f"{gateway}/ipfs/{m['cid']}",
            }
        )
    return out


class PinCollector(Collector):
    """``empressa_pin_queue{status}`` (jobs by status) and ``empressa_pin_failures`` (failed attempts
    recorded on the current jobs), read from ``pins`` at most once per ``ttl`` seconds."""

    def __init__(self, fetch: Callable[[], dict[str, Any] | None], *, ttl: float = 1.0) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._lock = threading.Lock()
        self._at = 0.0
        self._cached: dict[str, Any] | None = None

    def describe(self) -> list[Any]:
        return []  # registering must not read the database

    def collect(self) -> Iterator[Any]:
        with self._lock:
            if time.monotonic() - self._at > self._ttl:
                with contextlib.suppress(Exception):  # the database down: keep the last figures
                    self._cached = self._fetch()
                self._at = time.monotonic()
            figures = self._cached
        queue = GaugeMetricFamily(
            "empressa_pin_queue",
            "Pin jobs by status (pending, pinned, failed, unpinning).",
            labels=["status"],
        )
        failures = GaugeMetricFamily(
            "empressa_pin_failures",
            "Failed pin/unpin attempts recorded on the current jobs (each with its reason in the API).",
        )
        if figures is not None:
            for status, n in sorted(figures["by_status"].items()):
                queue.add_metric([status], float(n))
            failures.add_metric([], float(figures["failures"]))
        yield queue
        yield failures
