"""The committed AssetRegistry build is what its Vyper source compiles to, and it behaves as specified
on both test chains: py-evm (eth-tester, in process) and anvil (a real process)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from indexer.chains import contract

ROOT = Path(__file__).resolve().parents[3]
VYPER_PYTHON = ROOT / ".tools" / "vyper" / "bin" / "python"


def test_committed_build_is_what_the_source_compiles_to() -> None:
    if not VYPER_PYTHON.exists():
        pytest.skip("the Vyper compiler is not installed (./dev test installs it into .tools/vyper)")
    r = subprocess.run(
        [str(VYPER_PYTHON), str(ROOT / "indexer" / "contracts" / "build.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_protocol_interface_is_the_builds() -> None:
    """protocol.registry (what the node uses) carries the build's ABI and the event's real topic."""
    from eth_utils import keccak

    from protocol import registry

    assert contract.build()["abi"] == registry.ABI
    assert keccak(text=registry.EVENT_SIGNATURE) == registry.EVENT_TOPIC


def test_build_records_its_source_digest() -> None:
    import hashlib

    src = (ROOT / "indexer" / "contracts" / "AssetRegistry.vy").read_bytes()
    assert contract.build()["source_sha256"] == hashlib.sha256(src).hexdigest()


def _deploy(w3: Any) -> Any:
    acct = w3.eth.accounts[0]
    factory = w3.eth.contract(abi=contract.abi(), bytecode=contract.bytecode())
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor().transact({"from": acct}))
    return w3.eth.contract(address=receipt.contractAddress, abi=contract.abi())


def _check_registry(w3: Any) -> None:
    reg = _deploy(w3)
    a, b = w3.eth.accounts[0], w3.eth.accounts[1]
    r1 = w3.eth.wait_for_transaction_receipt(reg.functions.register(b"\x01" * 32).transact({"from": a}))
    r2 = w3.eth.wait_for_transaction_receipt(reg.functions.register(b"\x02" * 32).transact({"from": b}))
    assert r1.status == 1 and r2.status == 1
    logs = w3.eth.get_logs(
        {"fromBlock": 0, "toBlock": "latest", "address": reg.address, "topics": [contract.EVENT_TOPIC_HEX]}
    )
    got = [contract.decode_registered(log["topics"], log["data"]) for log in logs]
    assert got == [
        contract.Registered(1, b"\x01" * 32, bytes.fromhex(a[2:])),
        contract.Registered(2, b"\x02" * 32, bytes.fromhex(b[2:])),
    ]
    assert reg.functions.owner_of(2).call() == b
    assert reg.functions.asset_of(b"\x01" * 32).call() == 1
    for bad in (b"\x01" * 32, b"\x00" * 32):  # already registered; empty
        with pytest.raises(Exception, match=r"already registered|empty record hash"):
            reg.functions.register(bad).transact({"from": b})
    assert reg.functions.last_id().call() == 2


def test_registry_on_py_evm(eth_tester_w3: Any) -> None:
    _check_registry(eth_tester_w3)


def test_registry_on_anvil(anvil: Any) -> None:
    _check_registry(anvil.w3)


def test_decoder_refuses_other_logs() -> None:
    ok_topics = [contract.EVENT_TOPIC, (7).to_bytes(32, "big")]
    data = b"\x01" * 32 + bytes(12) + b"\x02" * 20
    assert contract.decode_registered(ok_topics, data).asset_id == 7
    with pytest.raises(contract.BadLog):
        contract.decode_registered([b"\x00" * 32, ok_topics[1]], data)
    with pytest.raises(contract.BadLog):
        contract.decode_registered(ok_topics, data[:-1])
    with pytest.raises(contract.BadLog):
        contract.decode_registered(ok_topics, b"\x01" * 32 + b"\x09" * 32)  # owner not left-padded
    with pytest.raises(contract.BadLog):
        contract.decode_registered(ok_topics[:1], data)
