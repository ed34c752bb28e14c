"""A real ``empressa indexer reconcile`` process, SIGKILLed while it works through the ranges of a real
anvil chain and started again: every registration applied once, no activity twice, no outbox row twice,
no event missed (the range, its logs, the matching and the cursor commit in one transaction)."""

from __future__ import annotations

import copy
import secrets
import signal
import subprocess
from pathlib import Path
from typing import Any

from indexer.store import Store
from protocol import Signer
from tests.conftest import Anvil
from tests.e2e.conftest import EMPRESSA, child_env, wait_for
from tests.indexer.chains.harness import ChainWorld, deploy
from tests.node.conftest import _BASE_PUT, LogBuilder

N = 300


def _put_body(title: str = "Night Drive", **fields: Any) -> dict[str, Any]:
    return {**copy.deepcopy(_BASE_PUT), "title": title, **fields}


def _new_log() -> LogBuilder:
    return LogBuilder(Signer(secrets.token_bytes(32)), _put_body)


def _start(
    tmp_path: Path, db_url: str, anvil: Anvil, registry: str, n: int
) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"reconcile-{n}.log"
    env = child_env(
        DATABASE_URL=db_url,
        EMPRESSA_INDEXER_EVM_RPC_URL=anvil.url,
        EMPRESSA_INDEXER_EVM_REGISTRY=registry,
        EMPRESSA_INDEXER_EVM_CHAIN_ID=str(anvil.chain_id),
        EMPRESSA_INDEXER_EVM_CONFIRMATIONS="0",
        EMPRESSA_INDEXER_EVM_MAX_RANGE="1",  # one block per range: many commits to be killed between
        EMPRESSA_INDEXER_RECONCILE_INTERVAL="0.1",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [EMPRESSA, "indexer", "reconcile", "--data", str(tmp_path / "data")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


def test_sigkill_mid_range_and_restart(tmp_path: Path, db_url: str, anvil: Anvil) -> None:
    store = Store.connect(db_url)
    try:
        w3 = anvil.w3
        world = ChainWorld(w3, store, deploy(w3), _new_log, _put_body, rpc_url=anvil.url)
        accts = world.accounts[1:6]
        entries = [world.put(f"k-{i}", payout_evm=accts[i % 5])[1] for i in range(N)]
        store.ingest(entries)
        anvil.rpc("evm_setAutomine", False)
        for i, e in enumerate(entries):
            world.reg.functions.register(e.hash.raw).transact({"from": accts[i % 5], "gas": 200_000})
            if i % 2 == 1:
                anvil.rpc("evm_mine")  # two registrations a block: ~150 blocks, one range each
        anvil.rpc("evm_mine")
        head = w3.eth.block_number

        def matched() -> int:
            return int(world.rows("SELECT count(*) FROM registrations WHERE status <> 'pending'")[0][0])

        kills = 0
        for target in (N // 4, N // 2):
            proc, log = _start(tmp_path, db_url, anvil, world.reg.address, kills)
            wait_for(
                lambda t=target, p=proc: matched() >= t or p.poll() is not None,
                what=f"{target} matched",
                timeout=120,
                interval=0.005,
            )
            assert proc.poll() is None, log.read_text()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            assert matched() < N, "it finished before it was killed: the test proves nothing"
        proc, log = _start(tmp_path, db_url, anvil, world.reg.address, kills)
        try:
            wait_for(
                lambda: (
                    matched() == N
                    and world.rows(
                        "SELECT position FROM chain_cursors WHERE source = %s", f"eip155:{anvil.chain_id}"
                    )
                    == [(head,)]
                ),
                what="everything matched",
                timeout=180,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, log.read_text()
        assert "Traceback" not in log.read_text()
        assert world.rows("SELECT count(*), count(DISTINCT (tx_hash, log_index)) FROM registrations") == [
            (N, N)
        ]
        per_kind = dict(
            world.rows(
                "SELECT kind, count(*) FROM activity WHERE kind IN ('registered', 'verified', 'unregistered') "
                "GROUP BY kind"
            )
        )
        assert per_kind == {"registered": N, "verified": N}
        assert world.rows(
            "SELECT count(*), count(DISTINCT (uri, kind)) FROM activity WHERE kind IN ('registered', 'verified')"
        ) == [(2 * N, 2 * N)]
        assert world.rows("SELECT count(*), count(DISTINCT uri) FROM attest_outbox") == [(N, N)]
        assert world.rows("SELECT count(*) FROM assets WHERE chain_status = 'verified'") == [(N,)]
    finally:
        store.close()
