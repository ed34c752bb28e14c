"""The pin worker against a real js-ipfs (``jsipfs`` fixture, or a daemon of the test's own that it stops
and starts) and a real PostgreSQL; the crash test kills a real ``empressa indexer pin`` process.

Skips without js-ipfs (see tests/conftest.py). Waits are for a condition, with a generous
deadline; nothing asserts how long anything took.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from sqlalchemy import text

from indexer.pins import PinClient, PinWorker
from indexer.store import Store
from indexer.store.pins import Pins, backoff_delay
from node.ipfs import IpfsClient
from node.ipfs_testing import JsIpfs, find_jsipfs, restart_jsipfs, start_jsipfs
from stack.services import empressa_argv
from tests.indexer.apiclient import client_for, settings_for
from tests.node.conftest import LogBuilder

DEADLINE_S = 180.0


def eventually(predicate: Callable[[], Any], *, what: str, step: Callable[[], Any] | None = None) -> Any:
    """Poll (running ``step`` first, if given) until ``predicate()`` is truthy; fail naming ``what``."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        if step is not None:
            step()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.05)


async def metrics_show(client: httpx.AsyncClient, line: str) -> None:
    """Poll ``/metrics`` until it has ``line`` (its pin figures are read at most once a second)."""
    deadline = time.monotonic() + DEADLINE_S
    while line not in (await client.get("/metrics")).text:
        if time.monotonic() > deadline:
            pytest.fail(f"/metrics never showed {line}")
        await trio.sleep(0.1)


def pin_rows(store: Store) -> dict[str, Any]:
    with store.engine.connect() as conn:
        return {r.cid: r for r in conn.execute(text("SELECT * FROM pins")).all()}


def add_files(api: str, tmp_path: Path, n: int, *, tag: str) -> list[tuple[str, int]]:
    """``n`` small distinct files added (not pinned) to the daemon: ``[(cid, size)]``."""
    out = []
    with IpfsClient(api) as ipfs:
        for i in range(n):
            path = tmp_path / f"{tag}-{i}.bin"
            path.write_bytes(f"{tag} file {i} {os.urandom(8).hex()}\n".encode() * 50)
            out.append((ipfs.add_file(path), path.stat().st_size))
            path.unlink()
    return out


def publish(
    store: Store, log: LogBuilder, put_body: Callable[..., dict[str, Any]], key: str, **files: Any
) -> None:
    body = put_body(
        key, **{role: {"cid": cid, "mime": "audio/wav", "size": size} for role, (cid, size) in files.items()}
    )
    store.ingest([log.next(key=key, body=body)], source="test")


def worker(store: Store, api: str, **kw: Any) -> PinWorker:
    kw = {"interval": 0.05, "backoff_s": 0.05, "backoff_max_s": 1.0, "lease_s": 60.0, "grace_s": 3600.0} | kw
    return PinWorker(pins=Pins(store.engine), ipfs=PinClient(api, timeout=20), **kw)


@pytest.fixture
def own_daemon(tmp_path: Path) -> Iterator[list[JsIpfs]]:
    """A js-ipfs of this test's own (``[daemon]``: the test may replace it with a restarted one)."""
    try:
        tool = find_jsipfs()
    except Exception as exc:
        pytest.skip(str(exc))
    box = [start_jsipfs(tmp_path / "ipfs-repo", tool)]
    yield box
    box[0].process.send_signal(signal.SIGCONT)
    box[0].stop()


async def test_pins_what_assets_name_shows_it_and_unpins_after_the_grace_period(
    jsipfs: Any,
    store: Store,
    tmp_path: Path,
    new_log: Callable[..., LogBuilder],
    put_body: Callable[..., Any],
) -> None:
    (song, art) = add_files(jsipfs.api, tmp_path, 2, tag="show")
    log = new_log()
    publish(store, log, put_body, "song", media=song, artwork=art)
    w = worker(store, jsipfs.api)
    rows = eventually(
        lambda: (r := pin_rows(store)) and all(x.status == "pinned" for x in r.values()) and r,
        step=w.step,
        what="both files pinned",
    )
    assert set(rows) == {song[0], art[0]} and all(r.attempts == 1 for r in rows.values())
    with IpfsClient(jsipfs.api) as ipfs:
        assert ipfs.pinned(song[0]) and ipfs.pinned(art[0])

    app_settings = {"ipfs_gateway": jsipfs.gateway_url}
    from indexer.api import create_app

    async with client_for(create_app(settings_for(tmp_path, **app_settings), store=store)) as client:
        did = log.signer.public.did
        r = await client.get(f"/v1/assets/{did}/song")
        assert r.status_code == 200, r.text
        files = r.json()["media_files"]
        assert [(f["role"], f["cid"], f["size"], f["pin_status"], f["cid_kind"]) for f in files] == [
            ("media", song[0], song[1], "pinned", "unixfs"),
            ("artwork", art[0], art[1], "pinned", "unixfs"),
        ]
        assert r.json()["media"]["cid"] == song[0]  # the existing field is as it was
        got = httpx.get(files[0]["gateway_url"], timeout=60)
        assert got.status_code == 200 and len(got.content) == song[1]
        await metrics_show(client, 'empressa_pin_queue{status="pinned"} 2.0')

        # The artwork is dropped: it waits out the grace period pinned, then is unpinned.
        publish(store, log, put_body, "song", media=song)
        w.step()
        assert pin_rows(store)[art[0]].status == "pinned"
        assert (await client.get(f"/v1/assets/{did}/song")).json()["media_files"][0]["pin_status"] == "pinned"
        await metrics_show(client, 'empressa_pin_queue{status="unpinning"} 1.0')
        with IpfsClient(jsipfs.api) as ipfs:
            assert ipfs.pinned(art[0])
        after_grace = worker(store, jsipfs.api, grace_s=0)
        eventually(lambda: art[0] not in pin_rows(store), step=after_grace.step, what="artwork unpinned")
        with IpfsClient(jsipfs.api) as ipfs:
            assert not ipfs.pinned(art[0])
            assert ipfs.pinned(song[0])
        assert after_grace.figures.unpinned == 1


async def test_a_bad_cid_is_a_recorded_failure_with_its_reason(
    jsipfs: Any,
    store: Store,
    tmp_path: Path,
    new_log: Callable[..., LogBuilder],
    put_body: Callable[..., Any],
) -> None:
    bad = "b" + "a" * 40  # what the schema takes for a CID; no daemon does
    log = new_log()
    publish(store, log, put_body, "odd", media=(bad, 10))
    w = worker(store, jsipfs.api, max_attempts=2)
    row = eventually(
        lambda: (r := pin_rows(store).get(bad)) is not None and r.status == "failed" and r,
        step=w.step,
        what="failed",
    )
    assert (row.attempts, row.failures) == (2, 2)
    assert row.last_error.startswith("ipfs-refused: the IPFS node at") and "refused pin" in row.last_error
    from indexer.api import create_app

    async with client_for(create_app(settings_for(tmp_path), store=store)) as client:
        (f,) = (await client.get(f"/v1/assets/{log.signer.public.did}/odd")).json()["media_files"]
        assert (f["pin_status"], f["pin_attempts"], f["cid_kind"]) == ("failed", 2, "unknown")
        assert f["pin_error"] == row.last_error
        await metrics_show(client, 'empressa_pin_queue{status="failed"} 1.0')
        await metrics_show(client, "empressa_pin_failures 2.0")


def test_a_stopped_daemon_is_retried_with_backoff_and_pinned_once_it_is_back(
    own_daemon: list[JsIpfs],
    store: Store,
    tmp_path: Path,
    new_log: Callable[..., LogBuilder],
    put_body: Callable[..., Any],
) -> None:
    daemon = own_daemon[0]
    (song,) = add_files(daemon.api, tmp_path, 1, tag="retry")
    log = new_log()
    publish(store, log, put_body, "song", media=song)
    daemon.stop()
    w = worker(store, daemon.api, backoff_s=0.2, backoff_max_s=30.0, max_attempts=100)
    delays: dict[int, float] = {}

    def note_delay() -> None:
        w.step()
        with store.engine.connect() as conn:
            r = conn.execute(
                text("SELECT failures, extract(epoch FROM next_attempt_at - updated_at) AS d FROM pins")
            ).first()
        if r is not None and r.failures:
            delays[r.failures] = float(r.d)

    eventually(lambda: len(delays) >= 3, step=note_delay, what="three failed attempts")
    row = pin_rows(store)[song[0]]
    assert row.status == "pending" and row.last_error.startswith("ipfs-unavailable: the IPFS node at")
    assert "cannot be reached" in row.last_error
    assert [delays[n] for n in (1, 2, 3)] == [backoff_delay(n, base=0.2, most=30.0) for n in (1, 2, 3)]
    assert delays[2] == 2 * delays[1] and delays[3] == 2 * delays[2]

    own_daemon[0] = daemon = restart_jsipfs(daemon)
    eventually(
        lambda: pin_rows(store)[song[0]].status == "pinned", step=w.step, what="pinned after the restart"
    )
    with IpfsClient(daemon.api) as ipfs:
        assert ipfs.pinned(song[0])
    assert pin_rows(store)[song[0]].last_error is None


def test_a_worker_killed_mid_job_loses_nothing_and_no_job_is_done_twice(
    own_daemon: list[JsIpfs],
    store: Store,
    db_url: str,
    tmp_path: Path,
    new_log: Callable[..., LogBuilder],
    put_body: Callable[..., Any],
) -> None:
    daemon = own_daemon[0]
    files = add_files(daemon.api, tmp_path, 6, tag="crash")
    log = new_log()
    for i, f in enumerate(files):
        publish(store, log, put_body, f"k{i}", media=f)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EMPRESSA_")},
        "EMPRESSA_INDEXER_PIN_BATCH": "1",
        "EMPRESSA_INDEXER_PIN_TIMEOUT_S": "20",
        "EMPRESSA_INDEXER_PIN_LEASE_S": "21",
        "EMPRESSA_INDEXER_PIN_INTERVAL": "0.1",
        "EMPRESSA_INDEXER_PIN_BACKOFF_S": "0.1",
        "PYTHONUNBUFFERED": "1",
    }
    argv = [*empressa_argv(), "indexer", "pin", "--database-url", db_url, "--ipfs-api", daemon.api]

    def start(name: str) -> tuple[subprocess.Popen[bytes], Path]:
        path = tmp_path / f"{name}.log"
        with path.open("wb") as out:
            return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT), path

    daemon.process.send_signal(signal.SIGSTOP)  # the first worker's first pin call hangs
    first, first_log = start("first")
    try:
        claimed = eventually(
            lambda: [r for r in pin_rows(store).values() if r.lease_token is not None],
            what="the first worker holds a job",
        )
        first.send_signal(signal.SIGKILL)  # kill -9, mid-job
        first.wait()
    finally:
        daemon.process.send_signal(signal.SIGCONT)
    assert len(claimed) == 1
    killed = claimed[0].cid
    assert pin_rows(store)[killed].status == "pending"  # the killed worker recorded nothing

    workers = [start("second"), start("third")]  # two at once: they share the queue, never a job
    try:
        eventually(
            lambda: all(r.status == "pinned" for r in pin_rows(store).values()), what="every job pinned"
        )
    finally:
        for proc, _ in workers:
            proc.send_signal(signal.SIGTERM)
        hung = []
        for proc, path in workers:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                hung.append(f"{path.name}:\n{path.read_text()}")
        assert not hung, "a worker did not stop on SIGTERM:\n" + "\n".join(hung)
    done = [m for _, path in workers for m in re.findall(r"pinned cid=(\S+)", path.read_text())]
    assert sorted(done) == sorted(cid for cid, _ in files)  # each job recorded done once, none lost
    assert "pinned cid=" not in first_log.read_text()
    rows = pin_rows(store)
    assert rows[killed].attempts == 2  # the killed claim counted, then done once
    assert all(r.attempts == 1 for cid, r in rows.items() if cid != killed)
    with IpfsClient(daemon.api) as ipfs:
        assert all(ipfs.pinned(cid) for cid, _ in files)
