"""Fixtures for the bridge tests: a real PostgreSQL (indexer.testing) and helpers to read it back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg
import trio

from indexer.db import libpq_url

# Authors, bodies and signed logs, shared with the node tests.
from tests.node.conftest import new_log, new_signer, put_body  # noqa: F401


@dataclass(frozen=True)
class Snapshot:
    """What the indexer holds, read straight from PostgreSQL."""

    entries: dict[bytes, bytes]  # hash -> raw
    heads: dict[bytes, tuple[int, bytes, int | None]]  # author -> (head_seq, head_hash, forked_seq)
    assets: dict[
        tuple[bytes, str], tuple[bytes, bool, int]
    ]  # (author, key) -> (entry_hash, deleted, versions)
    activity: int
    quarantine: list[tuple[str, str, str, bytes]]  # (code, reason, source, raw or, over 16 KiB, its digest)
    forks: set[bytes]
    pending: int


def snapshot(url: str) -> Snapshot:
    with psycopg.connect(libpq_url(url)) as conn:
        entries = {bytes(h): bytes(r) for h, r in conn.execute("SELECT hash, raw FROM entries")}
        heads = {
            bytes(a): (s, bytes(h), f)
            for a, s, h, f in conn.execute("SELECT author, head_seq, head_hash, forked_seq FROM authors")
        }
        assets = {
            (bytes(a), k): (bytes(h), d, v)
            for a, k, h, d, v in conn.execute("SELECT author, key, entry_hash, deleted, versions FROM assets")
        }
        (activity,) = conn.execute("SELECT count(*) FROM activity").fetchone()  # type: ignore[misc]
        quarantine = [
            (c, r, s, bytes(raw))
            for c, r, s, raw in conn.execute(
                "SELECT code, reason, source, coalesce(raw, digest) FROM quarantine ORDER BY id"
            )
        ]
        forks = {bytes(h) for (h,) in conn.execute("SELECT hash FROM forks")}
        (pending,) = conn.execute("SELECT count(*) FROM pending").fetchone()  # type: ignore[misc]
    return Snapshot(entries, heads, assets, activity, quarantine, forks, pending)


async def wait_for(
    pred: Callable[[], Awaitable[bool]] | Callable[[], bool], *, timeout: float, what: str, poll: float = 0.1
) -> None:
    """Poll ``pred`` (sync or async) until it holds; fail with ``what`` after ``timeout`` seconds."""

    async def check() -> bool:
        value = pred()
        if isinstance(value, Awaitable):
            value = await value
        return bool(value)

    with trio.move_on_after(timeout):
        while not await check():
            await trio.sleep(poll)
    assert await check(), f"gave up waiting after {timeout}s: {what}"


async def read(url: str) -> Snapshot:
    return await trio.to_thread.run_sync(snapshot, url)
