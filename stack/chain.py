"""The dev chain of ``empressa up --chain dev`` (and ``--demo``): anvil, the registry, the demo's registrations.

- anvil (:mod:`stack.anvil`) runs as a supervised child like the other services, on
  127.0.0.1, with 1 s blocks and its state in ``DIR/anvil.json`` (loaded at start,
  dumped every second and on exit), so the chain, its block hashes and the
  registrations survive a restart of the stack;
- the ``AssetRegistry`` is deployed once per chain (``indexer.chains.evm.deploy_registry``,
  from anvil's well-known development account); the deployment is kept in
  ``DIR/chain-dev.json`` and used again while the chain still has it (code at the
  address and the same hash at the deployment block); a chain whose state was lost
  gets a new one, with a warning;
- the reconciler and the API get the chain through their environment
  (``EMPRESSA_INDEXER_EVM_*``, :func:`indexer_env`), never a key;
- the demo creator's EVM account (its keystore's) is funded from the development
  account, and its assets are registered through :mod:`node.evm`, the code of
  ``node register``: most by the creator, one first by another development account
  (a mismatch), one not at all (:func:`node.demo.demo_registrations`).

The two keys used here (:data:`stack.anvil.DEV_FUNDER_KEY`, :data:`stack.anvil.DEV_OTHER_KEY`)
are anvil's public development keys: they hold funds only on this local chain.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from indexer.chains.evm import deploy_registry
from node.evm import EvmClient, account_address
from node.runner import write_private

from .anvil import DEV_FUNDER_KEY, DEV_OTHER_KEY, anvil_argv, find_anvil
from .errors import StackError

__all__ = [
    "CHAIN_ID",
    "CONFIRMATIONS",
    "Deployment",
    "DevChain",
    "anvil_missing",
    "dev_chain_argv",
    "indexer_env",
]

log = logging.getLogger(__name__)

CHAIN_ID = 31337
CONFIRMATIONS = 2  # blocks of 1 s: a registration is applied about 3 s after it is mined
BLOCK_TIME = 1
DEPLOYMENT_FILE = "chain-dev.json"
STATE_FILE = "anvil.json"
FUND_WEI = 100 * 10**18
FUND_BELOW_WEI = 10 * 10**18


def anvil_missing() -> str:
    """The one line that says anvil is not installed and how to get it."""
    return (
        "anvil (the local EVM of --chain dev) is not installed: run ./dev (it installs it from npm into "
        ".tools/npm; npm must be on PATH), or set EMPRESSA_ANVIL to an anvil binary, or use --chain none"
    )


def dev_chain_argv(data_dir: Path, port: int) -> list[str]:
    """anvil's command line for the stack in ``data_dir``.

    Raises:
        StackError: anvil is not installed.
    """
    binary = find_anvil()
    if binary is None:
        raise StackError(anvil_missing())
    return anvil_argv(
        binary, port=port, chain_id=CHAIN_ID, block_time=BLOCK_TIME, state=data_dir / STATE_FILE
    )


@dataclass(frozen=True)
class Deployment:
    """Where the dev chain's registry lives (``DIR/chain-dev.json``)."""

    registry: str
    chain_id: int
    block: int
    block_hash: str
    tx: str


def indexer_env(rpc_url: str, d: Deployment) -> dict[str, str]:
    """The EVM settings of the indexer's children for the dev chain (no key among them)."""
    return {
        "EMPRESSA_INDEXER_EVM_RPC_URL": rpc_url,
        "EMPRESSA_INDEXER_EVM_REGISTRY": d.registry,
        "EMPRESSA_INDEXER_EVM_CHAIN_ID": str(d.chain_id),
        "EMPRESSA_INDEXER_EVM_START_BLOCK": str(d.block),
        "EMPRESSA_INDEXER_EVM_CONFIRMATIONS": str(CONFIRMATIONS),
    }


class DevChain:
    """The running dev chain at ``rpc_url``, for the stack in ``data_dir``."""

    def __init__(self, data_dir: Path, rpc_url: str) -> None:
        self.data_dir = data_dir
        self.rpc_url = rpc_url
        self.client = EvmClient.connect(rpc_url)

    def ensure_registry(self) -> Deployment:
        """The registry of this chain: the recorded one if the chain still has it, else a new one."""
        path = self.data_dir / DEPLOYMENT_FILE
        known = _read_deployment(path)
        if known is not None:
            if (
                self.client.has_code(known.registry)
                and self.client.block_hash(known.block) == known.block_hash
            ):
                log.info("dev chain registry registry=%s block=%d", known.registry, known.block)
                return known
            log.warning(
                "the dev chain does not hold the recorded registry (its state %s was lost); deploying a new one",
                self.data_dir / STATE_FILE,
            )
        d = deploy_registry(self.rpc_url, deployer_key=DEV_FUNDER_KEY)
        block_hash = self.client.block_hash(d.block)
        assert block_hash is not None
        dep = Deployment(
            registry=d.address, chain_id=d.chain_id, block=d.block, block_hash=block_hash, tx=d.tx
        )
        write_private(path, json.dumps(asdict(dep), indent=2) + "\n")
        log.info("dev chain registry deployed registry=%s block=%d tx=%s", dep.registry, dep.block, dep.tx)
        return dep

    def fund(self, address: str) -> None:
        """Give ``address`` 100 ETH of the dev chain's when it holds less than 10."""
        if self.client.balance(address) >= FUND_BELOW_WEI:
            return
        tx = self.client.transfer(_key(DEV_FUNDER_KEY), address, FUND_WEI)
        log.info("dev chain funded address=%s wei=%d tx=%s", address, FUND_WEI, tx)

    def register_demo(
        self,
        registry: str,
        creator_key: bytes,
        hashes: Mapping[str, bytes],
        plan: tuple[list[str], list[str]],
    ) -> int:
        """Register the demo's entry hashes: ``plan`` is (keys by the creator, keys by someone else).

        Hashes registered already (an earlier run) are skipped; returns how many were sent.
        """
        mine, others = plan
        sent = 0
        for key, keys in ((_key(DEV_OTHER_KEY), others), (creator_key, mine)):
            todo = [
                hashes[k] for k in keys if k in hashes and not self.client.asset_of(registry, hashes[k])[0]
            ]
            if todo:
                regs = self.client.register(registry, key, todo)
                sent += len(regs)
                log.info(
                    "dev chain registrations owner=%s count=%d first_asset_id=%d",
                    account_address(key),
                    len(regs),
                    regs[0].asset_id,
                )
        return sent


def _key(hex_key: str) -> bytes:
    return bytes.fromhex(hex_key.removeprefix("0x"))


def _read_deployment(path: Path) -> Deployment | None:
    try:
        return Deployment(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        log.warning("ignoring an unreadable %s", path)
        return None
