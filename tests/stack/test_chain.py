"""The dev chain's pieces (stack.chain) against a real anvil, and how ``up`` decides to run one."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from cli import build_parser
from node.evm import EvmClient, account_address
from stack import load_stack_settings
from stack.anvil import DEV_OTHER_KEY
from stack.chain import CONFIRMATIONS, DEPLOYMENT_FILE, DevChain, indexer_env
from tests.conftest import Anvil, start_anvil


def settings(*argv: str) -> object:
    args = build_parser().parse_args(["up", *argv])
    flags = {"demo": args.demo or None, "chain": args.chain, "chain_port": args.chain_port}
    return load_stack_settings(Path("/d"), flags, {})


@pytest.mark.parametrize(
    ("argv", "dev"),
    [((), False), (("--demo",), True), (("--demo", "--chain", "none"), False), (("--chain", "dev"), True)],
)
def test_demo_implies_the_dev_chain_unless_chain_none(argv: tuple[str, ...], dev: bool) -> None:
    assert settings(*argv).dev_chain is dev  # type: ignore[attr-defined]


def test_chain_flags_are_checked() -> None:
    assert settings("--chain-port", "9545").chain_port == 9545  # type: ignore[attr-defined]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--chain", "mainnet"])
    from stack import StackError

    with pytest.raises(StackError, match=r"invalid setting 'chain_port' \(from command line\)"):
        load_stack_settings(Path("/d"), {"chain_port": 0}, {})


def test_the_registry_is_deployed_once_and_again_when_the_chain_lost_it(tmp_path: Path, anvil: Anvil) -> None:
    dev = DevChain(tmp_path, anvil.url)
    first = dev.ensure_registry()
    assert EvmClient.connect(anvil.url).has_code(first.registry)
    assert json.loads((tmp_path / DEPLOYMENT_FILE).read_text())["registry"] == first.registry
    assert dev.ensure_registry() == first  # kept: the chain still has it
    env = indexer_env(anvil.url, first)
    assert env["EMPRESSA_INDEXER_EVM_REGISTRY"] == first.registry
    assert env["EMPRESSA_INDEXER_EVM_START_BLOCK"] == str(first.block)
    assert env["EMPRESSA_INDEXER_EVM_CONFIRMATIONS"] == str(CONFIRMATIONS)
    assert not [v for v in env.values() if "ac0974bec39a17e36ba4a6b4d238ff944bacb478" in v]  # no key

    fresh = start_anvil()  # the same data dir, a chain that never saw that deployment
    try:
        anvil_rpc_mine(fresh, 5)  # so the recorded block exists, with another hash
        again = DevChain(tmp_path, fresh.url).ensure_registry()
        assert again.block_hash != first.block_hash
        assert EvmClient.connect(fresh.url).has_code(again.registry)
    finally:
        fresh.process.kill()
        fresh.process.wait()


def anvil_rpc_mine(a: Anvil, n: int) -> None:
    a.rpc("anvil_mine", hex(n))


def test_funding_and_the_demo_registrations_are_idempotent(tmp_path: Path, anvil: Anvil) -> None:
    dev = DevChain(tmp_path, anvil.url)
    d = dev.ensure_registry()
    creator = os.urandom(32)
    address = account_address(creator)
    dev.fund(address)
    balance = dev.client.balance(address)
    assert balance == 100 * 10**18
    dev.fund(address)  # enough already: nothing sent
    assert dev.client.balance(address) == balance
    hashes = {k: hashlib.sha256(k.encode()).digest() for k in ("a", "b", "c", "d")}
    plan = (["a", "b"], ["c"])
    assert dev.register_demo(d.registry, creator, hashes, plan) == 3
    assert dev.register_demo(d.registry, creator, hashes, plan) == 0  # a restart sends nothing
    other = account_address(bytes.fromhex(DEV_OTHER_KEY[2:]))
    assert dev.client.asset_of(d.registry, hashes["a"])[1] == address
    assert dev.client.asset_of(d.registry, hashes["c"])[1] == other
    assert dev.client.asset_of(d.registry, hashes["d"]) == (0, None)


def test_the_indexer_services_read_the_stacks_indexer_env(tmp_path: Path) -> None:
    """``up --data DIR``'s feeder, API and reconciler get ``--data DIR``: they read DIR/indexer.env."""
    import cli
    from stack.services import INDEXER_SERVICES, service_argvs

    (tmp_path / "indexer.env").write_text(
        "EMPRESSA_INDEXER_EVM_RPC_URL=http://127.0.0.1:9545\n"
        "EMPRESSA_INDEXER_EVM_REGISTRY=0x5FbDB2315678afecb367f032d93F642f64180aa3\n"
    )
    argvs = dict(
        service_argvs(["empressa"], port=1, p2p_port=2, index_dir=tmp_path / "search", bridge_dir=tmp_path / "b",
                      data_dir=tmp_path, pin=True)
    )  # fmt: skip
    assert set(INDEXER_SERVICES) <= set(argvs)
    for name in INDEXER_SERVICES:
        args = cli.build_parser().parse_args(argvs[name][1:])
        s = cli.indexer_settings(args, {"DATABASE_URL": "postgresql://stack/db"})
        assert (s.evm_rpc_url, s.data_dir, s.index_dir) == (
            "http://127.0.0.1:9545",
            tmp_path,
            tmp_path / "search",
        )
        assert s.database_url == "postgresql://stack/db", "the stack's database, not one of DIR"
