"""GET /v1/events: Server-Sent Events replayed from Last-Event-ID, then live through LISTEN/NOTIFY.

The stream needs asyncio (psycopg's async LISTEN), so the app runs in a real
uvicorn server on a thread and the test reads it over a socket.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import uvicorn

from indexer.api import create_app
from indexer.store import Store
from tests.indexer.apiclient import settings_for
from tests.node.conftest import LogBuilder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


async def read_events(lines: AsyncIterator[str], n: int, seen: list[str]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async for line in lines:
        seen.append(line)
        if not line:
            if "id" in current:
                events.append(current)
                if len(events) == n:
                    return events
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            current[field] = value.strip()
    return events


async def test_replay_then_live_with_heartbeats(
    store: Store, tmp_path: Path, new_log: Callable[..., LogBuilder]
) -> None:
    log = new_log()
    for i in range(3):
        log.next(key=f"k{i}")
    store.ingest(log.entries)
    ids = [r[0] for r in store.engine.connect().exec_driver_sql("SELECT id FROM activity ORDER BY id").all()]
    app = create_app(settings_for(tmp_path, sse_heartbeat_s=0.3), store=store)
    lines: list[str] = []
    with serving(app) as base, trio.fail_after(20):
        async with (
            httpx.AsyncClient(base_url=base, timeout=10) as c,
            c.stream("GET", "/v1/events", headers={"Last-Event-ID": str(ids[0])}) as resp,
        ):
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
            assert resp.headers["x-request-id"]
            it = resp.aiter_lines()
            replay = await read_events(it, 2, lines)
            assert [int(e["id"]) for e in replay] == ids[1:]
            assert [e["event"] for e in replay] == ["published", "published"]
            assert json.loads(replay[0]["data"])["uri"] == f"empressa://{log.signer.public.did}/k1"
            live = log.next(key="k0")
            await trio.to_thread.run_sync(lambda: store.ingest([live]))
            (event,) = await read_events(it, 1, lines)
            assert event["event"] == "updated" and int(event["id"]) > ids[-1]
            assert json.loads(event["data"])["entry_hash"] == live.hash.cid
            await trio.sleep(0.7)
            more = log.next(key="k9")
            await trio.to_thread.run_sync(lambda: store.ingest([more]))
            (event,) = await read_events(it, 1, lines)
            assert event["event"] == "published"
        assert any(line.startswith(":") for line in lines), lines  # heartbeat comments

        # without Last-Event-ID the stream starts now; a filter narrows it
        async with (
            httpx.AsyncClient(base_url=base, timeout=10) as c,
            c.stream("GET", "/v1/events", params={"kind": "deleted"}) as resp,
        ):
            gone = log.next(kind="asset.delete", key="k1")
            await trio.to_thread.run_sync(lambda: store.ingest([log.next(key="k5"), gone]))
            (event,) = await read_events(resp.aiter_lines(), 1, [])
            assert event["event"] == "deleted"
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            r = await c.get("/v1/events", headers={"Last-Event-ID": "nope"})
            assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


async def test_the_lifespan_builds_what_it_is_not_given(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexer.api import deps
    from indexer.search import Feeder, open_index

    monkeypatch.setattr(deps, "INDEX_RETRY_S", 0.0)
    app = create_app(settings_for(tmp_path, database_url=db_url))
    with serving(app) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            assert (await c.get("/readyz")).json()["ready"] is True
            r = await c.get("/v1/activity")
            assert r.status_code == 200 and r.json()["items"] == []
            r = await c.get("/v1/assets")  # no index directory yet: the feeder has not run
            assert r.status_code == 503 and r.json()["code"] == "search-unavailable"
            store = Store.connect(db_url)
            index = open_index(tmp_path / "index", writer=True)  # the feeder starts later
            Feeder(store, index).catch_up()
            store.close()
            r = await c.get("/v1/assets")
            assert r.status_code == 200 and r.json()["total"] == 0


async def test_a_last_event_id_beyond_the_newest_is_a_400(
    store: Store, tmp_path: Path, new_log: Callable[..., LogBuilder]
) -> None:
    """Issue 7: it was a silent stream forever. The newest id itself is a valid resume point."""
    log = new_log()
    log.extend(2)
    store.ingest(log.entries)
    newest = store.engine.connect().exec_driver_sql("SELECT max(id) FROM activity").scalar_one()
    app = create_app(settings_for(tmp_path), store=store)
    with serving(app) as base, trio.fail_after(20):
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            for ask in ({"headers": {"Last-Event-ID": str(newest + 1)}}, {"params": {"after": newest + 50}}):
                r = await c.get("/v1/events", **ask)  # type: ignore[arg-type]
                assert r.status_code == 400, r.text
                assert r.headers["content-type"] == "application/problem+json"
                p = r.json()
                assert p["code"] == "event-id-ahead" and str(newest) in p["detail"], p
            async with c.stream("GET", "/v1/events", headers={"Last-Event-ID": str(newest)}) as resp:
                assert resp.status_code == 200
                more = log.next(key="late")
                await trio.to_thread.run_sync(lambda: store.ingest([more]))
                (event,) = await read_events(resp.aiter_lines(), 1, [])
                assert int(event["id"]) == newest + 1


async def test_concurrent_streams_per_client_are_capped_and_released(store: Store, tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path, sse_max_per_client=2, sse_heartbeat_s=0.2), store=store)
    with serving(app) as base, trio.fail_after(30):
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            async with c.stream("GET", "/v1/events") as first, c.stream("GET", "/v1/events") as second:
                assert first.status_code == second.status_code == 200
                r = await c.get("/v1/events")
                assert r.status_code == 429, r.text
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["code"] == "too-many-streams" and "2" in r.json()["detail"]
                assert (await c.get("/v1/activity")).status_code == 200  # other reads are not affected
            # Both clients went away: their slots come back (once the server has seen them go).
            for _ in range(200):
                async with c.stream("GET", "/v1/events") as a, c.stream("GET", "/v1/events") as b:
                    if a.status_code == b.status_code == 200:
                        break
                    assert {a.status_code, b.status_code} <= {200, 429}
                await trio.sleep(0.05)
            else:
                raise AssertionError("the slots were never released")
