"""``empressa up --demo`` with its dev chain: anvil as a child, the registry deployed, the demo registered.

A real ``empressa up`` process (``RunningStack``) runs anvil from npm under its
supervisor; the tests read the chain with web3 to see what the stack did on it:
the registry at the address stack.json names, the demo creator's assets registered
by its own EVM account (the address its records name as ``payout.evm``), one by
another development account, one not at all. Whether the API then shows them as
verified, a mismatch and unregistered depends on the reconciler's EVM source and
the attestations (other parts of the reconciliation work): that test skips, saying
so, until they are here.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from web3 import Web3

from indexer.chains import contract
from node.demo import demo_registrations
from node.evm import account_address
from protocol import parse_entry_hash
from stack.anvil import DEV_OTHER_KEY, find_anvil

from .conftest import RunningStack, alive, cli_json, free_port, start_error, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed (./dev installs it from npm)"),
]

VISIBLE_TIMEOUT = 90.0
DEMO_ASSETS = 36


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    s = RunningStack(
        tmp_path_factory.mktemp("chain-stack") / "data",
        "--json",  # the first screen as one JSON object (test_the_json_first_screen_...)
        EMPRESSA_INDEXER_RATE_LIMIT_READ="100000/minute",
    )
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


def w3_of(up: RunningStack) -> Any:
    return Web3(Web3.HTTPProvider(up.info["chain"]["rpc_url"], request_kwargs={"timeout": 10}))


def registry_of(up: RunningStack) -> Any:
    return w3_of(up).eth.contract(address=up.info["chain"]["registry"], abi=contract.abi())


def demo_library(up: RunningStack) -> list[dict[str, Any]]:
    """The demo creator's assets in demo order, as its node lists them."""
    items = cli_json("node", "list", "--data", up.data / "demo-node")["items"]
    from node.demo import demo_assets

    order = [k for k, _ in demo_assets()]
    return sorted(items, key=lambda i: order.index(i["key"]))


def test_the_json_first_screen_is_one_object_and_nothing_else_on_stdout(up: RunningStack) -> None:
    screen = up.first_screen()
    assert screen.count("\n") == 1, screen
    doc = json.loads(screen)
    assert doc["marketplace_url"] == f"{up.api_url}/" and doc["api_docs_url"] == f"{up.api_url}/docs"
    assert doc["chain"] == up.info["chain"]
    assert doc["data_dir"] == str(up.data) and doc["logs_dir"] == str(up.data / "logs")
    assert doc["pid"] == up.proc.pid
    lib = doc["my_library"]
    assert lib["data_dir"] == str(up.data / "demo-node") and lib["expires_in"] == 120
    assert "/open?code=" in lib["link"]


def test_anvil_runs_under_the_supervisor_and_stack_json_names_the_chain(up: RunningStack) -> None:
    assert "anvil" in up.services(), up.services()
    chain = up.info["chain"]
    assert set(chain) == {"rpc_url", "registry", "chain_id"} and chain["chain_id"] == 31337
    w3 = w3_of(up)
    assert w3.eth.chain_id == 31337
    assert len(w3.eth.get_code(chain["registry"])) > 0, "no registry at the address stack.json names"
    # Blocks advance by themselves (1 s block time): the reconciler's confirmations come.
    first = w3.eth.block_number
    wait_for(lambda: w3.eth.block_number >= first + 2, what="two more blocks", timeout=30)


def test_the_demo_creators_assets_are_registered_as_planned(up: RunningStack) -> None:
    items = demo_library(up)
    assert len(items) == DEMO_ASSETS
    creator = {i["payout"]["evm"] for i in items}
    assert len(creator) == 1, "every demo record names the creator's EVM account"
    (creator_address,) = creator
    other = account_address(bytes.fromhex(DEV_OTHER_KEY[2:]))
    mine, others, unregistered = demo_registrations([i["key"] for i in items])
    reg = registry_of(up)
    owners: dict[str, str | None] = {}
    for i in items:
        asset_id = reg.functions.asset_of(parse_entry_hash(i["put_hash"]).raw).call()
        owners[i["key"]] = reg.functions.owner_of(asset_id).call() if asset_id else None
    assert {k for k, o in owners.items() if o == creator_address} == set(mine)
    assert {k for k, o in owners.items() if o == other} == set(others) and len(others) == 1
    assert {k for k, o in owners.items() if o is None} == set(unregistered) and len(unregistered) == 1
    assert reg.functions.last_id().call() == DEMO_ASSETS - 1
    # The creator's account was funded, and what it holds is the dev chain's only.
    assert w3_of(up).eth.get_balance(creator_address) > 0


def test_only_signers_hold_the_kek_and_the_chain_children_hold_no_key(up: RunningStack) -> None:
    from .conftest import environ_of

    for name, pid in up.services().items():
        env = environ_of(pid)
        if name in ("bridge", "demo-node"):
            continue
        assert not {"EMPRESSA_KEK", "EMPRESSA_PASSPHRASE"} & set(env), name
        assert not [v for v in env.values() if DEV_OTHER_KEY[2:] in v], name
    recon = environ_of(up.services()["reconciler"])
    assert recon["EMPRESSA_INDEXER_EVM_REGISTRY"] == up.info["chain"]["registry"]
    assert recon["EMPRESSA_INDEXER_EVM_CONFIRMATIONS"] == "2"
    api = environ_of(up.services()["api"])
    assert api["EMPRESSA_INDEXER_TRUSTED_BRIDGES"] == f'["{up.info["bridge_did"]}"]'


def _evm_reconciler_present() -> bool:
    import indexer.chains.evm

    return hasattr(indexer.chains.evm, "EvmSource")


def test_the_api_shows_verified_assets_a_mismatch_and_an_unregistered_one(up: RunningStack) -> None:
    if not _evm_reconciler_present():
        pytest.skip(
            "needs the reconciler's EVM source (indexer.chains.evm.EvmSource), not on this branch yet"
        )
    items = demo_library(up)
    mine, others, unregistered = demo_registrations([i["key"] for i in items])

    def keys(status: str) -> set[str]:
        r = httpx.get(up.api_url + "/v1/assets", params={"status": status, "limit": 100}, timeout=10)
        assert r.status_code == 200, r.text
        return {i["key"] for i in r.json()["items"]}

    wait_for(
        lambda: keys("verified") == set(mine),
        what="the creator's registrations verified",
        timeout=VISIBLE_TIMEOUT,
    )
    assert keys("mismatch") == set(others)
    assert set(unregistered) <= keys("listed")
    assert not set(unregistered) & keys("registered")

    # The attestations reach the demo creator's node, which trusts the stack's bridge (its config).
    import node.store

    if not hasattr(node.store.Store, "verifications"):
        return  # nodes apply attestations once that part of the work is merged

    def node_verified() -> set[str]:
        items = cli_json("node", "list", "--data", up.data / "demo-node")["items"]
        return {i["key"] for i in items if i.get("verification")}

    wait_for(
        lambda: node_verified() == set(mine),
        what="the attestations on the demo node",
        timeout=VISIBLE_TIMEOUT,
    )


def test_chain_dev_without_anvil_is_one_line_naming_dev(tmp_path: Path) -> None:
    from .conftest import child_env

    env = child_env(EMPRESSA_ANVIL=str(tmp_path / "no-anvil"), EMPRESSA_PASSPHRASE=None)
    msg = start_error("up", "--data", tmp_path / "s", "--port", str(free_port()), "--p2p-port", str(free_port()),
                      "--chain", "dev", env=env)  # fmt: skip
    assert "anvil" in msg and "./dev" in msg
    assert not (tmp_path / "s" / "postgres").exists(), "it started something before refusing"


def test_sigkill_of_up_leaves_no_anvil_and_the_chain_survives_a_restart(up: RunningStack) -> None:
    """Last in the module: it kills the module's stack, then starts it again on the same data."""
    registry = up.info["chain"]["registry"]
    anvil = up.services()["anvil"]
    pids = list(up.services().values())
    up.stop(signal.SIGKILL)
    wait_for(
        lambda: not any(alive(p) for p in pids), what="every child, anvil too, to die with up", timeout=60
    )
    assert not alive(anvil)
    again = RunningStack(up.data, EMPRESSA_INDEXER_RATE_LIMIT_READ="100000/minute").wait_ready()
    try:
        assert again.info["chain"]["registry"] == registry, "the same chain, the same registry"
        # Nothing registered twice: the restart found every registration already on chain.
        assert registry_of(again).functions.last_id().call() == DEMO_ASSETS - 1
    finally:
        again.stop()


def test_demo_without_anvil_runs_without_a_chain_and_says_so(tmp_path: Path) -> None:
    s = RunningStack(tmp_path / "data", EMPRESSA_ANVIL=str(tmp_path / "no-anvil"))
    try:
        s.wait_ready()
        assert "chain" not in s.info
        assert "anvil" not in s.services()
        assert "no dev chain: anvil (the local EVM of --chain dev) is not installed" in s.log_path.read_text()
    finally:
        assert s.stop() == 0
