"""What the supervisor asks of the machine and of its services: is a port free, a process alive,
a service ready, and where does the bridge listen."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import httpx


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def port_free(host: str, port: int) -> bool:
    """Whether a listener could bind ``host:port`` now."""
    with socket.socket() as s:
        # SO_REUSEADDR as uvicorn and trio set it: a port in TIME_WAIT is no conflict, a listener is.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def api_ready(api_url: str) -> bool:
    """Whether the indexer API at ``api_url`` answers ``/readyz`` with 200."""
    try:
        return httpx.get(f"{api_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def rpc_ready(rpc_url: str) -> bool:
    """Whether an EVM JSON-RPC at ``rpc_url`` answers ``eth_chainId``."""
    try:
        r = httpx.post(
            rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=2
        )
        return r.status_code == 200 and "result" in r.json()
    except (httpx.HTTPError, ValueError):
        return False


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object a service wrote once ready (``bridge.json``), or None while there is none."""
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def loopback_addr(addrs: list[str], peer_id: str) -> str:
    """The bridge's address for peers on this machine (a full multiaddr with /p2p/)."""
    for a in addrs:
        if a.startswith("/ip4/127.0.0.1/"):
            return a if "/p2p/" in a else f"{a}/p2p/{peer_id}"
    a = addrs[0]
    return a if "/p2p/" in a else f"{a}/p2p/{peer_id}"
