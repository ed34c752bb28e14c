"""The bridge survives what a deployment throws at it: SIGKILL mid-burst, and PostgreSQL restarting.

The crash test runs the bridge as a real process (``empressa bridge run``) following
an in-process network; the restart test runs PostgreSQL of its own (a dedicated
:class:`indexer.embedded.EmbeddedPostgres`) so it can stop and start it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import trio

from bridge.testing import spawn_bridge
from indexer.db import migrate
from indexer.embedded import EmbeddedPostgres
from node.testing import spawn_network
from protocol import Entry

from .conftest import read, wait_for
from .test_bridge import assert_mirrors, mirrored, publish_many

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0  # an upper bound to wait, never a performance target


def start_bridge_process(
    data_dir: Path, *, db_url: str, bootstrap: str, kek: str, log: Path, extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "EMPRESSA_KEK": kek,
        "DATABASE_URL": db_url,
        "EMPRESSA_BRIDGE_LISTEN": "/ip4/127.0.0.1/tcp/0",
        "EMPRESSA_BRIDGE_BOOTSTRAP": bootstrap,
        "EMPRESSA_BRIDGE_ANTI_ENTROPY_INTERVAL": "0.5",
        "EMPRESSA_BRIDGE_LOG_LEVEL": "INFO",
    }
    env.update(extra or {})
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    (data_dir / "bridge.json").unlink(missing_ok=True)
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("empressa")), "bridge", "run", "--data", str(data_dir)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


async def wait_listening(proc: subprocess.Popen[bytes], data_dir: Path, log: Path) -> dict[str, object]:
    path = data_dir / "bridge.json"
    with trio.move_on_after(DEADLINE):
        while not path.exists() and proc.poll() is None:
            await trio.sleep(0.1)
    assert path.exists(), f"bridge never wrote bridge.json (exit={proc.poll()}):\n{log.read_text()[-3000:]}"
    info: dict[str, object] = json.loads(path.read_text())
    return info


async def test_sigkill_mid_burst_loses_nothing_and_doubles_nothing(
    db_url: str, put_body, tmp_path: Path
) -> None:
    data_dir, log = tmp_path / "bridge", tmp_path / "bridge.log"
    kek = secrets.token_hex(32)
    async with spawn_network(2) as net:
        source = net.nodes[0]
        boot = source.addrs()[0]
        proc = start_bridge_process(data_dir, db_url=db_url, bootstrap=boot, kek=kek, log=log)
        try:
            first = await wait_listening(proc, data_dir, log)
            published: list[Entry] = []
            total = 3000

            async def burst() -> None:
                for k in range(total):
                    published.append(
                        await source.publish(kind="asset.put", key=f"burst-{k}", body=put_body(f"burst {k}"))
                    )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(burst)
                # Kill it once it has committed part of the burst, while the burst goes on.
                await wait_for(
                    lambda: _count(db_url, 300),
                    timeout=DEADLINE,
                    what=f"the bridge commits part of the burst\n{log}",
                )
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                at_kill = len((await read(db_url)).entries)
            assert at_kill < total, "the bridge was not killed mid-burst"

            proc = start_bridge_process(data_dir, db_url=db_url, bootstrap=boot, kek=kek, log=log)
            second = await wait_listening(proc, data_dir, log)
            assert (second["did"], second["peer_id"]) == (first["did"], first["peer_id"]), (
                "same keys after restart"
            )
            await wait_for(
                lambda: mirrored(db_url, published),
                timeout=DEADLINE,
                what="the whole burst after the restart",
            )
            await trio.sleep(1.5)  # a few anti-entropy rounds more: still nothing doubled
            snap = await read(db_url)
            assert_mirrors(snap, published)
            assert snap.heads[source.keys.author.public.raw][:2] == (total, published[-1].hash.raw)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        assert not (data_dir / "bridge.json").exists(), "a clean stop removes bridge.json"


async def _count(db_url: str, at_least: int) -> bool:
    return len((await read(db_url)).entries) >= at_least


async def test_postgres_restart_while_bridge_runs(put_body, tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    url = await trio.to_thread.run_sync(pg.start)
    try:
        await trio.to_thread.run_sync(migrate, url)
        async with spawn_network(2) as net, spawn_bridge(url, net=net):
            published = await publish_many(net.nodes[0], 10, put_body, prefix="before")
            await wait_for(
                lambda: mirrored(url, published), timeout=DEADLINE, what="entries before the restart"
            )

            await trio.to_thread.run_sync(pg.stop)
            published += await publish_many(net.nodes[0], 15, put_body, prefix="down")
            published += await publish_many(net.nodes[1], 15, put_body, prefix="down1")
            await trio.sleep(1.0)  # the writer and the pullers meet the dead database
            await trio.to_thread.run_sync(pg.start)

            await wait_for(
                lambda: mirrored(url, published), timeout=DEADLINE, what="everything after the restart"
            )
            await trio.sleep(1.0)
            assert_mirrors(await read(url), published)
    finally:
        await trio.to_thread.run_sync(pg.destroy)
