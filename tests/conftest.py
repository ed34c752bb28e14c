"""Fixtures shared by every test package: one real PostgreSQL per session (started only if asked for),
and real EVM chains (anvil from npm, py-evm through eth-tester)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from indexer.testing import PostgresForTests


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresForTests]:
    """The embedded PostgreSQL 18 of this test session, with a migrated template database."""
    server = PostgresForTests.start(tmp_path_factory.mktemp("pg") / "cluster")
    yield server
    server.stop()


@pytest.fixture
def db_url(pg_server: PostgresForTests) -> Iterator[str]:
    """A fresh, migrated, empty database for one test."""
    url = pg_server.fresh_database()
    yield url
    pg_server.drop_database(url)


# -- chains -------------------------------------------------------------------------------------


@dataclass
class Anvil:
    """A real anvil process on 127.0.0.1 (see ``stack.anvil``): ``url``, ``w3``, ``chain_id``."""

    url: str
    process: subprocess.Popen[bytes]
    chain_id: int

    @property
    def w3(self) -> Any:
        from web3 import Web3

        return Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 30}))

    def rpc(self, method: str, *params: Any) -> Any:
        """One raw JSON-RPC call (``anvil_reorg``, ``evm_mine``, ``evm_snapshot``…)."""
        r = httpx.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        body = r.json()
        if "error" in body:
            raise RuntimeError(f"{method}: {body['error']}")
        return body["result"]


def start_anvil(*, chain_id: int = 31337, block_time: float | None = None) -> Anvil:
    from stack.anvil import anvil_argv, find_anvil

    binary = find_anvil()
    if binary is None:
        pytest.skip("anvil is not installed (./dev installs it from npm into .tools/npm; npm was missing)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(anvil_argv(binary, port=port, chain_id=chain_id, block_time=block_time))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.post(
                url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1
            )
            break
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("anvil did not start") from None
            time.sleep(0.05)
    return Anvil(url=url, process=proc, chain_id=chain_id)


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    """A fresh anvil chain (automine) for one test."""
    chain = start_anvil()
    try:
        yield chain
    finally:
        chain.process.kill()
        chain.process.wait()


@pytest.fixture
def eth_tester_w3() -> Any:
    """An in-process py-evm chain through web3's EthereumTesterProvider (small fixtures only:
    its get_logs rescans the whole chain per call)."""
    from web3 import EthereumTesterProvider, Web3

    return Web3(EthereumTesterProvider())


# -- IPFS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def jsipfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real js-ipfs daemon (``node.ipfs_testing``), offline on 127.0.0.1, shared by the session's tests.

    Skips, saying why, where ./dev could not install it (no npm)."""
    from node.ipfs_testing import JsIpfsMissing, find_jsipfs, start_jsipfs

    try:
        tool = find_jsipfs()
    except JsIpfsMissing as exc:
        pytest.skip(str(exc))
    daemon = start_jsipfs(tmp_path_factory.mktemp("jsipfs") / "repo", tool)
    yield daemon
    daemon.stop()
