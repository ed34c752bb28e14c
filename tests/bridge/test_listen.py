"""Nobody takes over a running bridge's P2P port: a node or a second bridge started on it fails.

The bridge runs as a real process (``empressa bridge run``); the intruders are real
processes through the CLI too, and the one-line error is what ``empressa up`` reports
when its bridge cannot listen.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
from pathlib import Path

import trio

from node.testing import spawn_network
from tests.e2e.conftest import child_env, init_node, start_error

from .test_recovery import start_bridge_process, wait_listening


async def test_a_bridge_port_cannot_be_taken_by_a_node_or_a_second_bridge(
    db_url: str, tmp_path: Path
) -> None:
    data_dir, log = tmp_path / "bridge", tmp_path / "bridge.log"
    kek = secrets.token_hex(32)
    async with spawn_network(1) as net:
        source = net.nodes[0]
        proc = start_bridge_process(data_dir, db_url=db_url, bootstrap=source.addrs()[0], kek=kek, log=log)
        try:
            info = await wait_listening(proc, data_dir, log)
            addr = str(info["multiaddrs"][0])  # type: ignore[index]
            listen = addr.split("/p2p/")[0]

            intruder = tmp_path / "intruder"
            await trio.to_thread.run_sync(init_node, intruder)
            line = await trio.to_thread.run_sync(
                lambda: start_error("node", "run", "--data", intruder, "--listen", listen, "--no-mdns")
            )
            assert listen in line and "in use" in line, line

            env = child_env(EMPRESSA_KEK=kek, DATABASE_URL=db_url)
            line = await trio.to_thread.run_sync(
                lambda: start_error(
                    "bridge", "run", "--data", tmp_path / "bridge2", "--listen", listen, env=env
                )
            )
            assert listen in line and "in use" in line, line

            # Every dial of the port still reaches this bridge (a sharer would answer some with its own key).
            for _ in range(5):
                assert await source.p2p.connect(addr) == info["peer_id"]
                await source.p2p.disconnect(str(info["peer_id"]))
            assert proc.poll() is None, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
