"""``empressa up --ipfs-api`` runs the pin worker: what a creator publishes with its file is pinned by the
operator and shown by the API, real processes through the CLI, on a real js-ipfs. Skips without js-ipfs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Daemons, RunningStack, cli_json, init_node, wait_for

pytestmark = pytest.mark.e2e

VISIBLE_TIMEOUT = 180.0


@pytest.fixture
def up(jsipfs: Any, tmp_path: Path) -> Iterator[RunningStack]:
    s = RunningStack(
        tmp_path / "data",
        "--chain",
        "none",
        "--ipfs-api",
        jsipfs.api,
        EMPRESSA_INDEXER_RATE_LIMIT_READ="100000/minute",
        EMPRESSA_INDEXER_IPFS_GATEWAY=jsipfs.gateway_url,
        # The demo assets name files no IPFS node holds: each pin waits out its timeout, then fails.
        EMPRESSA_INDEXER_PIN_TIMEOUT_S="1",
        EMPRESSA_INDEXER_PIN_MAX_ATTEMPTS="1",
        EMPRESSA_INDEXER_PIN_BATCH="4",
        EMPRESSA_INDEXER_PIN_LEASE_S="10",
    )
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


def test_what_a_creator_publishes_is_pinned_by_the_stack_and_shown(
    up: RunningStack, jsipfs: Any, tmp_path: Path, daemons: Daemons
) -> None:
    assert "pin" in up.services()
    song = tmp_path / "song.wav"
    song.write_bytes(os.urandom(300_000))  # more than one chunk: a UnixFS DAG
    data = tmp_path / "creator"
    did = init_node(data)
    daemons.start(data, bootstrap=[up.info["bridge_multiaddr"]])
    cli_json(
        "node", "publish", "--data", data, "--key", "song", "--title", "Song", "--file", song,
        "--ipfs-api", jsipfs.api,
    )  # fmt: skip

    def pinned() -> Any:
        r = up.get(f"/v1/assets/{did}/song")
        return r.status_code == 200 and r.json()["media_files"][0]["pin_status"] == "pinned" and r.json()

    asset = wait_for(pinned, what="the creator's file pinned by the stack", timeout=VISIBLE_TIMEOUT)
    (f,) = asset["media_files"]
    assert (f["role"], f["size"], f["cid_kind"], f["pin_error"]) == ("media", 300_000, "unixfs", None)
    assert f["gateway_url"] == f"{jsipfs.gateway_url}/ipfs/{f['cid']}"
    assert httpx.get(f["gateway_url"], timeout=60).content == song.read_bytes()

    def a_failed_demo_file() -> Any:
        items = up.get("/v1/assets", limit=100).json()["items"]
        for item in items:
            if item["did"] == did:
                continue
            for m in up.get(f"/v1/assets/{item['did']}/{item['key']}").json()["media_files"]:
                if m["pin_status"] == "failed":
                    return m
        return None

    failed = wait_for(a_failed_demo_file, what="a demo file's pin recorded failed", timeout=VISIBLE_TIMEOUT)
    assert "did not answer in time" in failed["pin_error"] and failed["pin_attempts"] == 1
    metrics = up.get("/metrics").text
    assert 'empressa_pin_queue{status="pinned"} 1.0' in metrics
    assert "empressa_pin_failures" in metrics
    assert "pin worker started" in (up.data / "logs" / "pin.log").read_text()
