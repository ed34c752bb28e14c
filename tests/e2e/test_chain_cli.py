"""``empressa chain deploy``, ``node evm-account`` and ``node register`` as real processes against anvil.

One anvil process serves the module (a real EVM from npm, see ``stack.anvil``); the
registry is deployed on it through the CLI, and what the commands print is checked
against the contract itself, read with web3. Every refusal is one line on stderr, a
non-zero exit, and leaves the node's keystore as it was.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cli as empressa_cli
from indexer.chains import contract
from indexer.errors import SettingsFileError
from node.errors import ConfigError
from protocol import parse_entry_hash
from tests.conftest import Anvil, start_anvil

from .conftest import child_env, cli, cli_json, free_port, init_node, one_line_error, publish

pytestmark = pytest.mark.e2e

ETH = 10**18


@pytest.fixture(scope="module")
def chain() -> Iterator[Anvil]:
    a = start_anvil()
    try:
        yield a
    finally:
        a.process.kill()
        a.process.wait()


@pytest.fixture(scope="module")
def registry(chain: Anvil, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = cli_json("chain", "deploy", "--rpc-url", chain.url, "--data", tmp_path_factory.mktemp("indexer"))
    return str(out["address"])


def fund(chain: Anvil, address: str, wei: int = 10 * ETH) -> None:
    w3 = chain.w3
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": address, "value": wei})
    )


def on_chain(chain: Anvil, registry: str, entry_cid: str) -> tuple[int, str]:
    c = chain.w3.eth.contract(address=registry, abi=contract.abi())
    raw = parse_entry_hash(entry_cid).raw
    asset_id = int(c.functions.asset_of(raw).call())
    return asset_id, str(c.functions.owner_of(asset_id).call())


# -- chain deploy ---------------------------------------------------------------------------------


def test_chain_deploy_writes_the_indexers_config_and_the_indexer_reads_it(
    chain: Anvil, tmp_path: Path
) -> None:
    data = tmp_path / "indexer"
    data.mkdir()
    (data / "indexer.env").write_text(
        "# mine\nEMPRESSA_INDEXER_PORT=8123\nEMPRESSA_INDEXER_EVM_REGISTRY=0xold\n"
    )
    out = cli_json("chain", "deploy", "--rpc-url", chain.url, "--data", data)
    assert out["chain_id"] == 31337 and out["chain"] == "eip155:31337"
    assert len(chain.w3.eth.get_code(out["address"])) > 0  # the contract is there
    env_file = data / "indexer.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    lines = env_file.read_text().splitlines()
    assert "# mine" in lines and "EMPRESSA_INDEXER_PORT=8123" in lines  # other lines kept
    assert f"EMPRESSA_INDEXER_EVM_REGISTRY={out['address']}" in lines
    assert [line for line in lines if "EVM_REGISTRY" in line] == [
        f"EMPRESSA_INDEXER_EVM_REGISTRY={out['address']}"
    ]
    assert f"EMPRESSA_INDEXER_EVM_RPC_URL={chain.url}" in lines
    assert f"EMPRESSA_INDEXER_EVM_START_BLOCK={out['block']}" in lines
    assert "EMPRESSA_INDEXER_EVM_CHAIN_ID=31337" in lines

    def settings(environ: dict[str, str]) -> Any:
        args = empressa_cli.build_parser().parse_args(["indexer", "run", "--data", str(data)])
        return empressa_cli.indexer_settings(args, environ)

    s = settings({})
    assert (s.evm_rpc_url, s.evm_registry, s.evm_chain_id, s.evm_start_block, s.port) == (
        chain.url,
        out["address"],
        31337,
        out["block"],
        8123,
    )
    # The environment wins over the file, flags over both.
    s = settings({"EMPRESSA_INDEXER_EVM_START_BLOCK": "99", "EMPRESSA_INDEXER_PORT": "8124"})
    assert (s.evm_start_block, s.port) == (99, 8124)
    args = empressa_cli.build_parser().parse_args(["indexer", "run", "--data", str(data), "--port", "8125"])
    assert empressa_cli.indexer_settings(args, {"EMPRESSA_INDEXER_PORT": "8124"}).port == 8125
    # A second deploy replaces the lines instead of adding more.
    again = cli_json("chain", "deploy", "--rpc-url", chain.url, "--data", data)
    assert again["address"] != out["address"]
    assert [line for line in env_file.read_text().splitlines() if "EVM_REGISTRY" in line] == [
        f"EMPRESSA_INDEXER_EVM_REGISTRY={again['address']}"
    ]


def test_a_bad_indexer_env_is_named_with_its_file(tmp_path: Path) -> None:
    data = tmp_path / "indexer"
    data.mkdir()
    args = empressa_cli.build_parser().parse_args(["indexer", "run", "--data", str(data)])
    (data / "indexer.env").write_text("EMPRESSA_INDEXER_PORT=many\n")
    with pytest.raises(ConfigError, match=r"\(from EMPRESSA_INDEXER_PORT in .*indexer\.env\)"):
        empressa_cli.indexer_settings(args, {})
    assert empressa_cli.indexer_settings(args, {"EMPRESSA_INDEXER_PORT": "8000"}).port == 8000
    for text, why in (("just words\n", "not NAME=value"), ("HOME=/root\n", "not an indexer setting"),
                      ("EMPRESSA_INDEXER_DATA_DIR=/x\n", "not an indexer setting")):  # fmt: skip
        (data / "indexer.env").write_text(text)
        with pytest.raises(SettingsFileError, match=rf"indexer\.env line 1: .*{why}"):
            empressa_cli.indexer_settings(args, {})
    p = cli("indexer", "migrate", "--data", data, ok=False)
    assert "indexer.env line 1" in one_line_error(p)


def test_chain_deploy_errors_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    data = tmp_path / "indexer"
    for url, said in (
        (f"http://127.0.0.1:{free_port()}", "cannot reach the EVM RPC"),
        ("ftp://x", "not an http"),
    ):
        p = cli("chain", "deploy", "--rpc-url", url, "--data", data, ok=False)
        assert said in one_line_error(p)
    assert not (data / "indexer.env").exists()


# -- node evm-account -------------------------------------------------------------------------------


def test_evm_account_is_created_once(tmp_path: Path) -> None:
    data = tmp_path / "alice"
    init_node(data)
    first = cli_json("node", "evm-account", "--data", data)
    assert first["created"] is True and first["address"].startswith("0x") and len(first["address"]) == 42
    again = cli_json("node", "evm-account", "--data", data)
    assert again == {"address": first["address"], "created": False}
    text = cli("node", "evm-account", "--data", data).stdout.decode().strip()
    assert text == first["address"]
    # Wrong passphrase: one line, nothing changed.
    before = (data / "keystore.json").read_bytes()
    p = cli("node", "evm-account", "--data", data, env=child_env(EMPRESSA_PASSPHRASE="wrong"), ok=False)
    assert "wrong passphrase" in one_line_error(p)
    assert (data / "keystore.json").read_bytes() == before


# -- node register ----------------------------------------------------------------------------------


@pytest.fixture
def creator(tmp_path: Path, chain: Anvil) -> tuple[Path, str]:
    """A node with a funded EVM account; returns (data dir, address)."""
    data = tmp_path / "creator"
    init_node(data)
    address = cli_json("node", "evm-account", "--data", data)["address"]
    fund(chain, address)
    return data, address


def test_register_prints_the_transaction_the_asset_id_and_what_will_be_checked(
    chain: Anvil, registry: str, creator: tuple[Path, str]
) -> None:
    data, address = creator
    pub = publish(data, "rain", "Midnight Rain", "--payout-evm", "me")
    out = cli_json("node", "register", "--data", data, "--key", "rain", "--rpc-url", chain.url,
                   "--registry", registry)  # fmt: skip
    assert out["tx"].startswith("0x") and len(out["tx"]) == 66
    assert out["entry"] == pub["hash"] and out["owner"] == address and out["payout_evm"] == address
    assert out["expect"] == "verified" and out["chain"] == "eip155:31337"
    assert on_chain(chain, registry, pub["hash"]) == (out["asset_id"], address)
    receipt = chain.w3.eth.get_transaction_receipt(out["tx"])
    assert receipt.status == 1 and receipt.blockNumber == out["block"]

    # Text output, with the settings from the node's environment instead of flags; a record
    # naming no EVM address will be unbound, one naming another will be a mismatch.
    env = child_env(EMPRESSA_NODE_EVM_RPC_URL=chain.url, EMPRESSA_NODE_EVM_REGISTRY=registry)
    publish(data, "tide", "Paper Tide")
    p = cli("node", "register", "--data", data, "--key", "tide", env=env)
    text = p.stdout.decode()
    assert text.startswith("transaction 0x")
    assert "waiting for it to be mined" in p.stderr.decode()  # progress, while it waits
    assert f"asset id {out['asset_id'] + 1} on eip155:31337" in text
    assert "will be unbound" in text and f"owner {address}" in text
    other = "0x" + "ab" * 20
    publish(data, "hollow", "Hollow Signal", "--payout-evm", other)
    text = cli("node", "register", "--data", data, "--key", "hollow", env=env).stdout.decode()
    assert "will be a mismatch" in text


def test_register_an_edited_asset_registers_the_current_version(
    chain: Anvil, registry: str, creator: tuple[Path, str]
) -> None:
    data, _ = creator
    publish(data, "loop", "Amber Loop", "--payout-evm", "me")
    edited = cli_json("node", "edit", "--data", data, "--key", "loop", "--title", "Amber Loop II")
    out = cli_json(
        "node", "register", "--data", data, "--key", "loop", "--rpc-url", chain.url, "--registry", registry
    )
    assert out["entry"] == edited["hash"]


def _refused(data: Path, *args: str | Path, env: dict[str, str] | None = None) -> str:
    before = (data / "keystore.json").read_bytes()
    p = cli("node", "register", "--data", data, *args, env=env, ok=False)
    assert (data / "keystore.json").read_bytes() == before, "a refused register changed the keystore"
    return one_line_error(p)


def test_register_refusals_are_one_line(chain: Anvil, registry: str, creator: tuple[Path, str]) -> None:
    data, address = creator
    publish(data, "twice", "Twice Told", "--payout-evm", "me")
    flags = ["--rpc-url", chain.url, "--registry", registry]
    cli("node", "register", "--data", data, "--key", "twice", *flags)

    assert "is already registered as asset" in _refused(data, "--key", "twice", *flags)
    assert "no asset 'nope'" in _refused(data, "--key", "nope", *flags)
    cli("node", "delete", "--data", data, "--key", "twice")
    assert "is deleted" in _refused(data, "--key", "twice", *flags)

    publish(data, "fresh", "Fresh Start", "--payout-evm", "me")
    assert "no EVM RPC configured" in _refused(data, "--key", "fresh", "--registry", registry)
    dead = f"http://127.0.0.1:{free_port()}"
    assert f"cannot reach the EVM RPC at {dead}" in _refused(data, "--key", "fresh", "--rpc-url", dead,
                                                             "--registry", registry)  # fmt: skip
    assert "no registry address" in _refused(data, "--key", "fresh", "--rpc-url", chain.url)
    nobody = "0x" + os.urandom(20).hex()
    msg = _refused(data, "--key", "fresh", "--rpc-url", chain.url, "--registry", nobody)
    assert "no AssetRegistry at" in msg and "no contract code there" in msg
    assert "is not a 0x-prefixed" in _refused(
        data, "--key", "fresh", "--rpc-url", chain.url, "--registry", "0x12"
    )
    # Nothing of those reached the chain.
    c = chain.w3.eth.contract(address=registry, abi=contract.abi())
    fresh_hash = next(
        i["put_hash"] for i in cli_json("node", "list", "--data", data)["items"] if i["key"] == "fresh"
    )
    assert c.functions.asset_of(parse_entry_hash(fresh_hash).raw).call() == 0
    assert chain.w3.eth.get_balance(address) > 0


def test_register_without_funds(chain: Anvil, registry: str, tmp_path: Path) -> None:
    data = tmp_path / "broke"
    init_node(data)
    address = cli_json("node", "evm-account", "--data", data)["address"]  # a fresh account: 0 ETH
    publish(data, "k", "Quiet Meadow", "--payout-evm", "me")
    msg = _refused(data, "--key", "k", "--rpc-url", chain.url, "--registry", registry)
    assert f"the EVM account {address} has 0.000000 ETH" in msg and "fund it" in msg


def test_payout_evm_me_without_an_account_creates_it(tmp_path: Path) -> None:
    data = tmp_path / "new"
    init_node(data)
    publish(data, "k", "Velvet Static", "--payout-evm", "me")
    address = cli_json("node", "evm-account", "--data", data)
    assert address["created"] is False  # `me` made it
    items = cli_json("node", "list", "--data", data)["items"]
    assert items[0]["payout"] == {"evm": address["address"]}
    p = cli("node", "publish", "--data", data, "--key", "x", "--title", "X", "--cid",
            "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "--mime", "audio/mpeg",
            "--payout-evm", "you", ok=False)  # fmt: skip
    assert "is not a 0x address" in one_line_error(p)
    assert json.loads((data / "keystore.json").read_text())["secrets"].keys() == {"author", "peer", "evm"}
