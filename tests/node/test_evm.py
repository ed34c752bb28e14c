"""node.evm against the two real EVMs: py-evm in process (eth-tester) and an anvil process.

The contract is the committed build of indexer/contracts/AssetRegistry.vy (a test in
tests/indexer/chains recompiles it and compares). Reverts differ by node, eth-tester's
TransactionFailed and anvil's ContractLogicError: both must come out as our errors.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from typing import Any

import pytest
from eth_account import Account

from indexer.chains import contract
from node.errors import AlreadyRegistered, ChainUnavailable, NoFunds, NoRegistry
from node.evm import EvmClient, account_address, is_address, same_address
from tests.conftest import Anvil

ETH = 10**18


def deploy(w3: Any) -> str:
    factory = w3.eth.contract(abi=contract.abi(), bytecode=contract.bytecode())
    tx = factory.constructor().transact({"from": w3.eth.accounts[0]})
    return str(w3.eth.wait_for_transaction_receipt(tx).contractAddress)


def funded_key(w3: Any, wei: int = 10 * ETH) -> bytes:
    key = os.urandom(32)
    tx = w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": account_address(key), "value": wei})
    w3.eth.wait_for_transaction_receipt(tx)
    return key


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def test_addresses() -> None:
    key = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
    addr = account_address(key)
    assert addr == Account.from_key(key).address
    assert is_address(addr) and is_address(addr.lower())
    assert not is_address("0x123") and not is_address("me")
    assert same_address(addr, addr.lower()) and not same_address(addr, None)


def test_register_on_py_evm_reads_the_asset_id_from_the_log(eth_tester_w3: Any) -> None:
    w3 = eth_tester_w3
    registry = deploy(w3)
    key = funded_key(w3)
    client = EvmClient(w3, where="eth-tester")
    regs = client.register(registry, key, [h("a"), h("b")])
    assert [r.asset_id for r in regs] == [1, 2]
    assert {r.owner for r in regs} == {account_address(key)}
    assert [r.record_hash for r in regs] == [h("a"), h("b")]
    assert all(r.tx.startswith("0x") and len(r.tx) == 66 for r in regs)
    # What the chain holds agrees with what was printed.
    assert client.asset_of(registry, h("b")) == (2, account_address(key))
    assert client.asset_of(registry, h("never")) == (0, None)


def test_eth_testers_revert_is_translated(eth_tester_w3: Any) -> None:
    w3 = eth_tester_w3
    registry = deploy(w3)
    key = funded_key(w3)
    client = EvmClient(w3, where="eth-tester")
    client.register(registry, key, [h("x")])
    with pytest.raises(AlreadyRegistered, match="already registered as asset 1"):
        client.register(registry, key, [h("x")])
    # Without the pre-check the contract refuses: eth-tester's TransactionFailed, translated.
    with pytest.raises(AlreadyRegistered, match="already registered"):
        client.register(registry, key, [h("x")], precheck=False)


def test_no_funds_on_py_evm(eth_tester_w3: Any) -> None:
    w3 = eth_tester_w3
    registry = deploy(w3)
    with pytest.raises(NoFunds, match=r"has 0\.000000 ETH"):
        EvmClient(w3, where="eth-tester").register(registry, os.urandom(32), [h("y")])


def test_anvils_revert_is_translated(anvil: Anvil) -> None:
    client = EvmClient.connect(anvil.url)
    registry = deploy(anvil.w3)
    key = funded_key(anvil.w3)
    client.register(registry, key, [h("z")])
    with pytest.raises(AlreadyRegistered, match="already registered"):
        client.register(registry, key, [h("z")], precheck=False)  # anvil's ContractLogicError


def test_a_race_lost_after_sending_is_already_registered(anvil: Anvil) -> None:
    """Two accounts register one hash in the same block: the second reverts when mined."""
    client = EvmClient.connect(anvil.url)
    registry = deploy(anvil.w3)
    first, second = funded_key(anvil.w3), funded_key(anvil.w3)
    anvil.rpc("evm_setAutomine", False)
    c = anvil.w3.eth.contract(address=registry, abi=contract.abi())
    acct = Account.from_key(first)
    tx = c.functions.register(h("race")).build_transaction(
        {"from": acct.address, "nonce": anvil.w3.eth.get_transaction_count(acct.address), "gas": 200_000}
    )
    anvil.w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
    errors: list[BaseException] = []

    def lose() -> None:
        try:
            client.register(registry, second, [h("race")], precheck=False, timeout=30)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=lose)
    t.start()

    def pending() -> int:
        return len(anvil.rpc("eth_getBlockByNumber", "pending", False)["transactions"])

    deadline = time.monotonic() + 20
    while pending() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    anvil.rpc("evm_mine")
    t.join(30)
    assert len(errors) == 1 and isinstance(errors[0], AlreadyRegistered), errors
    assert "reverted" in str(errors[0])
    assert client.asset_of(registry, h("race")) == (1, acct.address)


def test_transfer_funds_an_account(anvil: Anvil) -> None:
    from stack.anvil import DEV_FUNDER_KEY

    client = EvmClient.connect(anvil.url)
    to = account_address(os.urandom(32))
    tx = client.transfer(bytes.fromhex(DEV_FUNDER_KEY[2:]), to, 3 * ETH)
    assert tx.startswith("0x")
    assert client.balance(to) == 3 * ETH


def test_no_code_at_the_address_and_no_rpc(anvil: Anvil) -> None:
    client = EvmClient.connect(anvil.url)
    nobody = account_address(os.urandom(32))
    with pytest.raises(NoRegistry, match="no contract code there"):
        client.register(nobody, os.urandom(32), [h("q")])
    with pytest.raises(ChainUnavailable, match=r"cannot reach the EVM RPC at http://127\.0\.0\.1:9"):
        EvmClient.connect("http://127.0.0.1:9").chain_id()
    with pytest.raises(ChainUnavailable, match="no EVM RPC configured"):
        EvmClient.connect(None)
