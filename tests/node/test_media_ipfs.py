"""The media of a record on a real IPFS node (js-ipfs through the Kubo RPC API)."""

from __future__ import annotations

from typing import Any

import httpx


def test_the_daemon_adds_and_serves_bytes(jsipfs: Any) -> None:
    r = httpx.post(
        f"{jsipfs.api_url}/api/v0/add",
        params={"cid-version": 1, "raw-leaves": "true"},
        files={"file": ("a.bin", b"hello", "application/octet-stream")},
    )
    r.raise_for_status()
    cid = r.json()["Hash"]
    assert httpx.get(f"{jsipfs.gateway_url}/ipfs/{cid}").content == b"hello"
