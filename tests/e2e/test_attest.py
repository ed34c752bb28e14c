"""Attestations end to end, with real processes: ``empressa bridge run``, two ``empressa node run``
daemons (one trusting the bridge's key, one not) and ``empressa indexer run``, on a real PostgreSQL.

A creator publishes; a ``verified`` attestation is queued the way the reconciler queues it (SQL,
``queue_attestation``); the trusting node shows it in ``node list`` and its local API, the other
does not though it holds the same entries; the indexer's API shows it; a ``revoked`` one undoes it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from indexer.db import libpq_url
from indexer.store.outbox import queue_attestation
from protocol import parse_and_verify, parse_asset_uri, parse_did, parse_entry_hash, split_sequence

from .conftest import (
    EMPRESSA,
    START_TIMEOUT,
    Daemons,
    child_env,
    cli,
    cli_json,
    export,
    free_port,
    init_node,
    publish,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.e2e

TIMEOUT = 60.0  # an upper bound to wait, never a performance target
CHAIN = "eip155:31337"


class Proc:
    """A long-running ``empressa …`` child logging to a file."""

    def __init__(self, log: Path, *args: str | Path, env: dict[str, str]) -> None:
        self.log_path = log
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [EMPRESSA, *map(str, args)], env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"{self.proc.args[1:3]} exited {self.proc.returncode}:\n{self.log()[-3000:]}")

    def stop(self) -> int:
        code = stop_process(self.proc, grace=20)
        self._log.close()
        return code


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        yield started
    finally:
        for p in reversed(started):
            p.stop()


def queue(db_url: str, uri: str, subject_cid: str, status: str, onchain_id: str) -> None:
    with psycopg.connect(libpq_url(db_url)) as conn, conn.cursor() as cur:
        queue_attestation(
            cur, uri=parse_asset_uri(uri), subject=parse_entry_hash(subject_cid).raw, status=status,
            chain=CHAIN, onchain_id=onchain_id, tx="0x" + "12" * 32,
        )  # fmt: skip


def items(data: Path) -> dict[str, dict[str, Any]]:
    return {i["uri"]: i for i in cli_json("node", "list", "--all", "--data", data)["items"]}


def bridge_entries(data: Path, did: str) -> list[str]:
    """The statuses of the bridge's attest entries a node holds, in its log's order."""
    author = parse_did(did)
    entries = [parse_and_verify(raw, now_ms=None) for raw in split_sequence(export(data))]
    return [e.body["status"] for e in sorted(entries, key=lambda e: e.seq) if e.author == author]


def test_attestations_reach_trusting_nodes_and_the_api_and_a_revocation_undoes_them(
    db_url: str, tmp_path: Path, daemons: Daemons, procs: list[Proc]
) -> None:
    bridge_dir = tmp_path / "bridge"
    bridge = Proc(
        tmp_path / "bridge.log",
        "bridge", "run", "--data", bridge_dir, "--database-url", db_url, "--listen", "/ip4/127.0.0.1/tcp/0",
        env=child_env(EMPRESSA_BRIDGE_ANTI_ENTROPY_INTERVAL="0.5"),
    )  # fmt: skip
    procs.append(bridge)

    def bridge_info() -> dict[str, Any] | None:
        bridge.alive()
        try:
            return json.loads((bridge_dir / "bridge.json").read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    info = wait_for(bridge_info, what="bridge.json", timeout=START_TIMEOUT)
    bridge_did, bridge_addr = info["did"], info["multiaddrs"][0]

    trusting, other = tmp_path / "trusting", tmp_path / "other"
    creator_did = init_node(trusting)
    init_node(other)
    config = trusting / "config.toml"
    text = config.read_text()
    assert "# trusted_bridges = []" in text
    config.write_text(text.replace("# trusted_bridges = []", f'trusted_bridges = ["{bridge_did}"]'))
    node_env = child_env(EMPRESSA_NODE_ANTI_ENTROPY_INTERVAL="0.5")
    a = daemons.start(trusting, bootstrap=[bridge_addr], env=node_env)
    daemons.start(other, bootstrap=[bridge_addr], env=node_env)

    port = free_port()
    api = Proc(
        tmp_path / "api.log",
        "indexer", "run", "--data", tmp_path / "indexer", "--database-url", db_url, "--port", str(port),
        env=child_env(EMPRESSA_INDEXER_TRUSTED_BRIDGES=json.dumps([bridge_did])),
    )  # fmt: skip
    procs.append(api)
    base = f"http://127.0.0.1:{port}"

    def api_ready() -> bool:
        api.alive()
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(api_ready, what="indexer run's /readyz", timeout=START_TIMEOUT)

    put = publish(trusting, "song", "Song", "--price", "5", "--currency", "USD")
    uri = put["uri"]

    def indexed() -> dict[str, Any] | None:
        r = httpx.get(f"{base}/v1/assets/{creator_did}/song", timeout=5)
        return r.json() if r.status_code == 200 else None  # type: ignore[no-any-return]

    assert wait_for(indexed, what="the asset in the indexer", timeout=TIMEOUT)["verification"] == {}
    wait_for(lambda: uri in items(other), what="the asset on the other node", timeout=TIMEOUT)

    queue(db_url, uri, put["hash"], "verified", "7")
    shown = wait_for(
        lambda: items(trusting)[uri]["verification"], what="verified on the trusting node", timeout=TIMEOUT
    )
    assert {k: shown[k] for k in ("status", "chain", "onchain_id", "tx", "by")} == {
        "status": "verified", "chain": CHAIN, "onchain_id": "7", "tx": "0x" + "12" * 32, "by": bridge_did,
    }  # fmt: skip
    assert shown["subject"] == put["hash"]
    listing = cli("node", "list", "--data", trusting).stdout.decode()
    assert f"verified {CHAIN} #7" in listing, listing
    local = httpx.get(f"{a.api_url}/v1/library", timeout=5).json()["items"]
    assert [i["verification"]["onchain_id"] for i in local if i["uri"] == uri] == ["7"]

    # The other node holds the bridge's attestation too, and shows nothing: it trusts no bridge.
    wait_for(
        lambda: bridge_entries(other, bridge_did) == ["verified"], what="the attest entry", timeout=TIMEOUT
    )
    assert items(other)[uri]["verification"] is None
    assert f"verified {CHAIN}" not in cli("node", "list", "--all", "--data", other).stdout.decode()

    v = wait_for(lambda: (indexed() or {}).get("verification"), what="verified in the API", timeout=TIMEOUT)
    assert (v["status"], v["by"], v["chain"], v["onchain_id"], v["subject"]) == (
        "verified", bridge_did, CHAIN, "7", put["hash"],
    )  # fmt: skip

    queue(db_url, uri, put["hash"], "revoked", "7")
    wait_for(
        lambda: bridge_entries(trusting, bridge_did) == ["verified", "revoked"],
        what="the revocation on the trusting node",
        timeout=TIMEOUT,
    )
    assert items(trusting)[uri]["verification"] is None, "a revoked attestation undoes it"
    assert f"verified {CHAIN}" not in cli("node", "list", "--data", trusting).stdout.decode()
    local = httpx.get(f"{a.api_url}/v1/library", timeout=5).json()["items"]
    assert [i["verification"] for i in local if i["uri"] == uri] == [None]
    wait_for(
        lambda: (indexed() or {}).get("verification", {}).get("status") == "revoked",
        what="revoked in the API",
        timeout=TIMEOUT,
    )
    assert "Traceback" not in bridge.log() + api.log()
