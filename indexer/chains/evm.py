"""web3.py, for the indexer: deploying the ``AssetRegistry`` and (the EVM source) following its logs.

This is the indexer's one file that imports web3; the node's (sending
``register``) is :mod:`node.evm`. Errors of web3 and of the RPC are
translated here into :mod:`indexer.errors`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..errors import ChainConfigError, ChainUnavailable
from . import contract

log = logging.getLogger(__name__)

RPC_TIMEOUT = 30.0  # seconds per JSON-RPC request


def connect(rpc_url: str) -> Any:
    """A web3 client for ``rpc_url`` (HTTP JSON-RPC)."""
    from web3 import Web3

    return Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": RPC_TIMEOUT}))


@dataclass(frozen=True)
class Deployment:
    """Where a registry was deployed: what ``chain deploy`` writes into the indexer's config."""

    address: str  # checksummed 0x address
    chain_id: int
    block: int  # the block holding the deployment (the EVM source's start block)
    tx: str

    @property
    def caip2(self) -> str:
        return f"eip155:{self.chain_id}"


def deploy_registry(rpc_url: str, *, deployer_key: str | None = None) -> Deployment:
    """Deploy the committed ``AssetRegistry`` build and wait for it to be mined.

    ``deployer_key`` (0x hex private key) signs the deployment; without one the
    RPC's first unlocked account sends it (a development chain such as anvil).
    """
    import requests.exceptions
    from eth_account import Account
    from web3.exceptions import Web3Exception

    w3 = connect(rpc_url)
    try:
        chain_id = int(w3.eth.chain_id)
        factory = w3.eth.contract(abi=contract.abi(), bytecode=contract.bytecode())
        if deployer_key is not None:
            acct = Account.from_key(deployer_key)
            tx = factory.constructor().build_transaction(
                {
                    "from": acct.address,
                    "nonce": w3.eth.get_transaction_count(acct.address),
                    "chainId": chain_id,
                }
            )
            tx_hash = w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
        else:
            accounts = w3.eth.accounts
            if not accounts:
                raise ChainConfigError(
                    f"the RPC at {rpc_url} has no unlocked account; give a deployer key (EMPRESSA_DEPLOYER_KEY)"
                )
            tx_hash = factory.constructor().transact({"from": accounts[0]})
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise ChainUnavailable(f"cannot reach the EVM RPC at {rpc_url}: {type(exc).__name__}") from None
    except ValueError as exc:  # an RPC error answer (insufficient funds, bad key…)
        raise ChainConfigError(f"the RPC at {rpc_url} refused the deployment: {_rpc_message(exc)}") from None
    except Web3Exception as exc:
        raise ChainConfigError(f"the RPC at {rpc_url} refused the deployment: {_rpc_message(exc)}") from None
    if receipt.status != 1 or not receipt.contractAddress:
        raise ChainConfigError(f"the deployment transaction {tx_hash.hex()} reverted")
    return Deployment(
        address=str(receipt.contractAddress),
        chain_id=chain_id,
        block=int(receipt.blockNumber),
        tx="0x" + bytes(tx_hash).hex(),
    )


def _rpc_message(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    if isinstance(arg, dict) and "message" in arg:
        return str(arg["message"])
    return str(arg).splitlines()[0]
