"""The local API's writes and event stream, served for real (node/http.py on 127.0.0.1) by running nodes.

Nodes come from ``node.testing.spawn_network`` (real libp2p hosts); the API is
``serve_local_api`` on a real socket, asked with ``httpx.AsyncClient``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from node.api import MAX_EVENT_CLIENTS, bind_local_api, serve_local_api
from node.daemon import Node
from node.store import MAX_BATCH_ITEMS, MAX_BODY_BYTES, LocalWrite
from node.testing import spawn_network

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@asynccontextmanager
async def local_api(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with trio.open_nursery() as nursery:
        sock = bind_local_api("127.0.0.1", 0)
        binds = await nursery.start(
            lambda task_status: serve_local_api(node, sock=sock, token=TOKEN, task_status=task_status)
        )
        async with httpx.AsyncClient(base_url=binds[0], timeout=30) as client:
            yield client
        nursery.cancel_scope.cancel()


def write(put_body: Callable[..., dict[str, Any]], key: str, title: str | None = None) -> dict[str, Any]:
    return {"kind": "asset.put", "key": key, "body": put_body(f"Title {key}" if title is None else title)}


def head(node: Node) -> int:
    h = node.store.head(node.keys.author.public)
    return h.seq if h else 0


async def test_a_bulk_write_stores_every_item_in_order(put_body: Callable[..., dict[str, Any]]) -> None:
    async with spawn_network(1) as net, local_api(net.nodes[0]) as api:
        node = net.nodes[0]
        one = await api.post("/v1/local/entries", json=write(put_body, "solo"), headers=AUTH)
        assert one.status_code == 201 and one.json()["seq"] == 1
        r = await api.post(
            "/v1/local/entries", json=[write(put_body, f"k{i}") for i in range(50)], headers=AUTH
        )
        assert r.status_code == 201, r.text
        items = r.json()["items"]
        assert [i["seq"] for i in items] == list(range(2, 52))
        assert items[3]["uri"].endswith("/k3") and r.headers["x-request-id"]
        assert head(node) == 51
        assert [e.seq for e in map(_parse, node.store.range_raw(node.keys.author.public.raw, 1, 51))] == list(
            range(1, 52)
        )


def _parse(raw: bytes) -> Any:
    from protocol import parse_and_verify

    return parse_and_verify(raw, now_ms=None)


async def test_bad_items_are_each_named_and_nothing_is_stored(
    put_body: Callable[..., dict[str, Any]],
) -> None:
    async with spawn_network(1) as net, local_api(net.nodes[0]) as api:
        items = [write(put_body, f"k{i}") for i in range(10)]
        items[2] = write(put_body, "k2", title=" ")
        items[7] = {"kind": "asset.put", "key": "k 7", "body": put_body()}
        r = await api.post("/v1/local/entries", json=items, headers=AUTH)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        doc = r.json()
        assert [e["index"] for e in doc["errors"]] == [2, 7]
        assert "body.title" in doc["errors"][0]["detail"] and "key" in doc["errors"][1]["detail"]
        assert doc["request_id"] == r.headers["x-request-id"]
        shapes = [items[0], {"kind": "asset.put", "key": "x"}, "nope", {**items[1], "extra": 1}]
        r = await api.post("/v1/local/entries", json=shapes, headers=AUTH)
        assert r.status_code == 422 and [e["index"] for e in r.json()["errors"]] == [1, 2, 3]
        assert head(net.nodes[0]) == 0, "a rejected bulk write stores nothing"
        ok = await api.post("/v1/local/entries", json=items[:2], headers=AUTH)
        assert [i["seq"] for i in ok.json()["items"]] == [1, 2], "and the log goes on from where it was"


async def test_write_limits_and_auth_are_checked_before_anything_is_stored(
    put_body: Callable[..., dict[str, Any]],
) -> None:
    async with spawn_network(1) as net, local_api(net.nodes[0]) as api:
        url = "/v1/local/entries"
        assert (await api.post(url, json=[write(put_body, "a")])).status_code == 401
        assert (
            await api.post(url, json=[write(put_body, "a")], headers={"Authorization": "Bearer x"})
        ).status_code == 401
        too_many = [write(put_body, f"k{i}") for i in range(MAX_BATCH_ITEMS + 1)]
        r = await api.post(url, json=too_many, headers=AUTH)
        assert r.status_code == 413 and "at most" in r.json()["detail"]
        # Over the byte limit by Content-Length: refused before the body is read.
        big = b"[" + b" " * MAX_BODY_BYTES + b"]"
        r = await api.post(url, content=big, headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 413

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(MAX_BODY_BYTES // 65536 + 2):
                yield b" " * 65536

        r = await api.post(url, content=chunked(), headers=AUTH)
        assert r.status_code == 413
        r = await api.post(url, content=b"{not json", headers=AUTH)
        assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
        r = await api.post(url, json=[], headers=AUTH)
        assert r.status_code == 422
        assert head(net.nodes[0]) == 0


async def test_concurrent_writes_are_group_committed_in_one_log(
    put_body: Callable[..., dict[str, Any]],
) -> None:
    async with spawn_network(1) as net, local_api(net.nodes[0]) as api:
        node = net.nodes[0]
        groups: list[int] = []
        first_held, release = threading.Event(), threading.Event()
        original = node.store.append_local_many

        def counted(signer: Any, batches: Any, **kwargs: Any) -> Any:
            groups.append(len(batches))
            first_held.set()
            return original(signer, batches, **kwargs)

        def hold_the_store() -> None:  # another thread in the store: the first commit must wait
            with node.store._lock:
                holding.set()
                release.wait(30)

        holding = threading.Event()
        holder = threading.Thread(target=hold_the_store)
        holder.start()
        holding.wait(30)
        node.store.append_local_many = counted  # type: ignore[method-assign]
        seqs: list[int] = []
        statuses: list[int] = []

        async def one(key: str, title: str | None = None) -> None:
            r = await api.post("/v1/local/entries", json=write(put_body, key, title), headers=AUTH)
            statuses.append(r.status_code)
            if r.status_code == 201:
                seqs.append(r.json()["seq"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, "first")
            await trio.to_thread.run_sync(first_held.wait, 30)
            for i in range(8):
                nursery.start_soon(one, f"w{i}")
            nursery.start_soon(one, "bad", "")
            while node._local_send is None or node._local_send.statistics().current_buffer_used < 9:
                await trio.sleep(0.01)  # the nine writes are queued behind the held commit
            release.set()
        holder.join()
        assert groups == [1, 9], "the nine writes that waited were committed in one transaction"
        assert sorted(statuses) == [201] * 9 + [422], "the bad write failed alone"
        assert sorted(seqs) == list(range(1, 10)), "every good write got its own seq, no gaps"
        assert head(node) == 9


async def test_the_event_stream_reports_local_and_replicated_entries(
    put_body: Callable[..., dict[str, Any]],
) -> None:
    async with spawn_network(2) as net, local_api(net.nodes[1]) as api:
        a, b = net.nodes
        async with api.stream("GET", "/v1/events") as resp:
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.aiter_lines()
            assert (await lines.__anext__()).startswith(":")  # the stream is open: subscribed
            await b.publish(**write(put_body, "mine"))
            await a.publish(**write(put_body, "theirs"))
            events = []
            async for line in lines:
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if len(events) == 2:
                        break
        mine, theirs = events
        assert (
            mine["did"] == b.did and mine["key"] == "mine" and mine["origin"] == "local" and mine["seq"] == 1
        )
        assert theirs["did"] == a.did and theirs["key"] == "theirs" and theirs["origin"] == "replicated"
        assert theirs["kind"] == "asset.put" and theirs["hash"].startswith("b")
        assert isinstance(theirs["received_ns"], int) and theirs["received_ns"] >= mine["received_ns"]


async def test_event_streams_are_bounded_in_number() -> None:
    async with spawn_network(1) as net, local_api(net.nodes[0]) as api, trio.open_nursery() as nursery:
        opened = trio.Semaphore(0)
        release = trio.Event()

        async def hold() -> None:
            async with api.stream("GET", "/v1/events") as resp:
                assert resp.status_code == 200
                lines = resp.aiter_lines()  # held: a dropped iterator would close the stream
                await lines.__anext__()
                opened.release()
                await release.wait()

        for _ in range(MAX_EVENT_CLIENTS):
            nursery.start_soon(hold)
        for _ in range(MAX_EVENT_CLIENTS):
            await opened.acquire()
        r = await api.get("/v1/events")
        assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
        release.set()


async def test_a_request_id_is_taken_only_when_it_is_a_plain_token(
    put_body: Callable[..., dict[str, Any]], caplog: Any
) -> None:
    """An X-Request-ID that could forge a log field (a space, ``=``, a quote) is replaced, as the
    indexer does (one rule: :func:`node.logctx.request_id`); a plain one is kept and logged."""
    async with spawn_network(1) as net, local_api(net.nodes[0]) as api:
        caplog.set_level("INFO", logger="node.api")
        ok = await api.get("/v1/status", headers={"X-Request-ID": "trace-42.a:b_c"})
        assert ok.headers["x-request-id"] == "trace-42.a:b_c"
        for bad in ("x level=error", 'a"b', "x" * 129, "é"):
            r = await api.get("/v1/status", headers={"X-Request-ID": bad.encode("utf-8")})
            rid = r.headers["x-request-id"]
            assert rid != bad and len(rid) == 16 and int(rid, 16) >= 0, rid
        lines = [rec.getMessage() for rec in caplog.records if rec.name == "node.api"]
        assert any("request_id=trace-42.a:b_c GET /v1/status -> 200" in m for m in lines), lines
        assert not any("level=error" in m for m in lines), lines


async def test_a_lone_write_commits_at_once_and_later_ones_queue_behind_a_group_commit(
    put_body: Callable[..., dict[str, Any]],
) -> None:
    """A write with nothing else to do commits in its caller's task (no hand-over to the local
    writer); writes made while a bulk commit is in a worker thread wait behind it, so entries are
    stored, and reach the listeners, in the order of their seqs."""
    async with spawn_network(1) as net:
        node = net.nodes[0]
        seen: list[int] = []
        node.append_listeners.append(lambda entries: seen.extend(e.seq for e in entries))
        lone = await node.publish(**write(put_body, "lone"))
        assert lone.seq == 1 and node._local_send is None, "committed without the local writer"
        bulk = [LocalWrite(**write(put_body, f"b{i}")) for i in range(300)]  # over INLINE_MAX: a thread
        singles: list[int] = []

        async def single(i: int) -> None:
            singles.append((await node.publish(**write(put_body, f"s{i}"))).seq)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(node.publish_many, bulk)
            await trio.sleep(0)
            for i in range(5):
                nursery.start_soon(single, i)
        assert seen == list(range(1, 307)), "stored and announced in seq order"
        assert sorted(singles) == list(range(302, 307)), "the singles waited for the bulk commit"
        assert (await node.publish(**write(put_body, "after"))).seq == 307


async def test_a_publish_loop_lets_other_tasks_run(put_body: Callable[..., dict[str, Any]]) -> None:
    """Every publish is a checkpoint, even one committed at once: a caller publishing in a loop
    does not starve the announcer, the network or a timer in the node's trio loop (tasks woken by
    I/O or a deadline only run once the loop gets to look)."""
    async with spawn_network(1) as net:
        node = net.nodes[0]
        ticks = 0

        async def timer() -> None:
            nonlocal ticks
            while True:
                await trio.sleep(0.001)
                ticks += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(timer)
            await trio.sleep(0.01)
            start, t0 = ticks, trio.current_time()
            for i in range(300):
                await node.publish(**write(put_body, f"k{i}"))
            ran, elapsed = ticks - start, trio.current_time() - t0
            nursery.cancel_scope.cancel()
        assert elapsed < 0.01 or ran >= 3, (
            f"a 1 ms timer fired {ran} times in {elapsed * 1000:.0f} ms of publishing"
        )
