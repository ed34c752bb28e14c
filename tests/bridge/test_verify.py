"""The bridge's range verifiers: without workers, one range is verified at a time, each in full."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

import bridge.verify
from bridge.verify import ThreadVerifier
from node.sync import verify_range
from protocol import Entry
from tests.node.conftest import LogBuilder


async def test_ranges_are_verified_in_one_thread_at_a_time(
    monkeypatch: pytest.MonkeyPatch, new_log: Callable[..., LogBuilder]
) -> None:
    """The daemon's pullers call the verifier at once; the ranges wait their turn for one thread."""
    entries = new_log().extend(6)
    gate = threading.Event()
    inside: list[int] = []

    def held(raws: list[bytes], **kw: Any) -> list[Entry]:
        inside.append(kw["start"])
        gate.wait(30)  # a safety bound: the test sets it as soon as it has looked
        return verify_range(raws, **kw)

    monkeypatch.setattr(bridge.verify, "verify_range", held)
    verifier = ThreadVerifier()
    results: dict[int, list[Entry]] = {}

    async def verify(i: int) -> None:
        part = entries[2 * i : 2 * i + 2]
        results[i] = await verifier(
            [e.raw for e in part], author=part[0].author.raw, start=2 * i + 1, max_skew_ms=600_000
        )

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(verify, i)
        await trio.testing.wait_all_tasks_blocked()
        stats = verifier.limiter.statistics()
        assert (stats.borrowed_tokens, stats.tasks_waiting) == (1, 2)
        gate.set()
    assert len(inside) == 3
    assert [results[i] for i in range(3)] == [entries[0:2], entries[2:4], entries[4:6]]
