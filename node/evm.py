"""web3.py, for the node: registering entry hashes on the ``AssetRegistry`` and moving dev-chain funds.

This is the node's one file that imports web3 (and eth_account, which signs);
the indexer's is :mod:`indexer.chains.evm`. The contract itself (ABI, event
topic, log layout) comes from :mod:`protocol.registry`, which is pure data
and slicing, so the node imports nothing of the indexer.

Transactions are built here, signed locally with eth_account from the key the
keystore holds (``Keys.evm_key``), sent raw (``eth_sendRawTransaction``), and
waited for. The key is never logged, put in an error, or sent anywhere.

Measured against the two EVMs the tests run:

- a revert is ``ContractLogicError`` on anvil (an RPC error answer) and
  ``eth_tester.exceptions.TransactionFailed`` in py-evm through eth-tester;
  both are translated by :func:`_edge`, as is the RPC's "insufficient funds";
- web3's HTTP provider retries a refused connection with backoff by default;
  it is built without retries here, so an unreachable RPC is one quick error;
- with a block time (``up --chain dev`` runs anvil with 1 s blocks) every
  receipt waits for a block, so :meth:`EvmClient.register` sends a batch with
  consecutive nonces first and then waits for all of their receipts.

Errors (:mod:`node.errors`, all :class:`~node.errors.ChainError`): ``ChainUnavailable``
(unreachable, not mined in time), ``NoRegistry`` (no code at the address),
``NoFunds``, ``AlreadyRegistered``, ``ChainRefused`` (any other refusal).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from protocol.registry import ABI, EVENT_TOPIC, Registered, decode_registered

from .errors import AlreadyRegistered, ChainRefused, ChainUnavailable, NoFunds, NoRegistry

__all__ = ["RPC_TIMEOUT", "EvmClient", "Registration", "account_address", "is_address"]

log = logging.getLogger(__name__)

RPC_TIMEOUT = 30.0  # seconds per JSON-RPC request
RECEIPT_TIMEOUT = 120.0  # seconds a sent transaction may take to be mined
TRANSFER_GAS = 21_000


def account_address(key: bytes) -> str:
    """The checksummed 0x address of the EVM private key ``key``."""
    from eth_account import Account

    return str(Account.from_key(key).address)


def is_address(text: str) -> bool:
    """Whether ``text`` is a 0x-prefixed 20-byte hex address (any case)."""
    from web3 import Web3

    return isinstance(text, str) and text.startswith("0x") and Web3.is_address(text)


def same_address(a: str | None, b: str | None) -> bool:
    """Whether two addresses name the same account (checksum case ignored)."""
    return a is not None and b is not None and a.lower() == b.lower()


@dataclass(frozen=True)
class Registration:
    """One mined ``register``: what ``node register`` prints."""

    record_hash: bytes  # the registered entry hash
    asset_id: int
    owner: str  # checksummed: the account that sent it
    tx: str  # 0x… transaction hash
    block: int


class EvmClient:
    """A JSON-RPC endpoint (``connect``) or a web3 instance (tests: eth-tester), with our errors.

    Args:
        w3: a ``web3.Web3``.
        where: how errors name the endpoint (its URL).
    """

    def __init__(self, w3: Any, *, where: str) -> None:
        self.w3 = w3
        self.where = where

    @classmethod
    def connect(cls, rpc_url: str | None) -> EvmClient:
        """A client of ``rpc_url``; ``None`` (nothing configured) is a one-line error."""
        if not rpc_url:
            raise ChainUnavailable(
                "no EVM RPC configured: give --rpc-url URL, or set evm_rpc_url in the node's config.toml "
                "(EMPRESSA_NODE_EVM_RPC_URL)"
            )
        from web3 import Web3

        provider = Web3.HTTPProvider(
            rpc_url, request_kwargs={"timeout": RPC_TIMEOUT}, exception_retry_configuration=None
        )
        return cls(Web3(provider), where=rpc_url)

    # -- reads -----------------------------------------------------------------------------------

    def chain_id(self) -> int:
        with self._edge():
            return int(self.w3.eth.chain_id)

    def balance(self, address: str) -> int:
        """The balance of ``address`` in wei."""
        with self._edge():
            return int(self.w3.eth.get_balance(self._checksum(address)))

    def block_hash(self, number: int) -> str | None:
        """The hash of block ``number`` (0x…), or None if the chain has no such block."""
        with self._edge():
            try:
                block = self.w3.eth.get_block(number)
            except Exception as exc:  # BlockNotFound: a chain shorter than that
                if type(exc).__name__ == "BlockNotFound":
                    return None
                raise
        return "0x" + bytes(block["hash"]).hex()

    def has_code(self, address: str) -> bool:
        with self._edge():
            return len(bytes(self.w3.eth.get_code(self._checksum(address)))) > 0

    def registry(self, address: str) -> Any:
        """The web3 contract object of the registry at ``address``, after checking there is code there."""
        if not is_address(address):
            raise NoRegistry(f"{address!r:.60} is not a 0x address of 20 bytes")
        if not self.has_code(address):
            raise NoRegistry(
                f"no AssetRegistry at {address} on the chain at {self.where} (no contract code there): "
                "check --registry / evm_registry, or deploy one with `empressa chain deploy`"
            )
        return self.w3.eth.contract(address=self._checksum(address), abi=ABI)

    def asset_of(self, registry: str, record_hash: bytes) -> tuple[int, str | None]:
        """``(asset id, owner)`` of a registered entry hash; ``(0, None)`` if it is not registered."""
        c = self.registry(registry)
        with self._edge():
            asset_id = int(c.functions.asset_of(record_hash).call())
            owner = str(c.functions.owner_of(asset_id).call()) if asset_id else None
        return asset_id, owner

    # -- transactions ----------------------------------------------------------------------------

    def register(
        self,
        registry: str,
        key: bytes,
        record_hashes: Sequence[bytes],
        *,
        precheck: bool = True,
        timeout: float = RECEIPT_TIMEOUT,
        progress: Callable[[str], None] | None = None,
    ) -> list[Registration]:
        """Send ``register(h)`` for each hash from the account of ``key``; wait until all are mined.

        Every transaction is signed and sent before the first receipt is awaited (consecutive
        nonces), so a batch costs about one block, not one block per hash.

        Args:
            precheck: ask ``asset_of`` first and refuse a registered hash before sending anything
                (``False`` leaves it to the contract, whose revert is translated the same way).
            progress: told (one line) once the transactions are sent, while they are mined.

        Raises:
            AlreadyRegistered: a hash is registered already (nothing is sent when the pre-check
                finds it).
            NoFunds: the account cannot pay for the gas.
            NoRegistry, ChainUnavailable, ChainRefused: see the module docstring.
        """
        from eth_account import Account

        c = self.registry(registry)
        acct = Account.from_key(key)
        for h in record_hashes:
            if len(h) != 32:
                raise ChainRefused("a record hash is 32 bytes")
            if precheck:
                asset_id, owner = self.asset_of(registry, h)
                if asset_id:
                    raise AlreadyRegistered(
                        f"entry hash 0x{h.hex()} is already registered as asset {asset_id} (owner {owner})",
                        asset_id,
                    )
        if not record_hashes:
            return []
        with self._edge(sender=acct.address):
            balance = int(self.w3.eth.get_balance(acct.address))
            if balance == 0:
                raise self._no_funds(acct.address, balance)
            chain_id = int(self.w3.eth.chain_id)
            nonce = int(self.w3.eth.get_transaction_count(acct.address, "pending"))
            # Every register costs the same (the same code, fresh storage slots): estimated once,
            # without a nonce, as eth-tester checks a nonce against the state before the batch.
            gas = int(c.functions.register(record_hashes[0]).estimate_gas({"from": acct.address}))
            gas += gas // 5  # headroom
            txs = [
                c.functions.register(h).build_transaction(
                    {"from": acct.address, "nonce": nonce + i, "chainId": chain_id, "gas": gas}
                )
                for i, h in enumerate(record_hashes)
            ]
            cost = sum(int(tx["gas"]) * int(tx.get("maxFeePerGas", tx.get("gasPrice", 0))) for tx in txs)
            if cost > balance:
                raise self._no_funds(acct.address, balance, cost)
            sent = [self.w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction) for tx in txs]
            log.info("registrations sent count=%d from=%s registry=%s", len(sent), acct.address, c.address)
            if progress is not None:
                first = "0x" + bytes(sent[0]).hex()
                more = f" and {len(sent) - 1} more" if len(sent) > 1 else ""
                progress(f"sent {first}{more}; waiting for it to be mined (up to {timeout:.0f} s)")
            receipts = [self.w3.eth.wait_for_transaction_receipt(t, timeout=timeout) for t in sent]
        out = []
        for h, tx_hash, receipt in zip(record_hashes, sent, receipts, strict=True):
            tx_text = "0x" + bytes(tx_hash).hex()
            if receipt["status"] != 1:
                asset_id, owner = self.asset_of(registry, h)
                if asset_id:
                    raise AlreadyRegistered(
                        f"entry hash 0x{h.hex()} is already registered as asset {asset_id} (owner {owner}); "
                        f"transaction {tx_text} reverted",
                        asset_id,
                    )
                raise ChainRefused(f"the registration transaction {tx_text} reverted")
            event = _registered_log(receipt, c.address)
            out.append(
                Registration(
                    record_hash=event.record_hash,
                    asset_id=event.asset_id,
                    owner=self._checksum("0x" + event.owner.hex()),
                    tx=tx_text,
                    block=int(receipt["blockNumber"]),
                )
            )
        return out

    def transfer(self, key: bytes, to: str, value_wei: int, *, timeout: float = RECEIPT_TIMEOUT) -> str:
        """Send ``value_wei`` from the account of ``key`` to ``to``; wait until mined. The tx hash (0x…)."""
        from eth_account import Account

        acct = Account.from_key(key)
        with self._edge(sender=acct.address):
            tx: dict[str, Any] = {
                "from": acct.address,
                "to": self._checksum(to),
                "value": int(value_wei),
                "gas": TRANSFER_GAS,
                "nonce": int(self.w3.eth.get_transaction_count(acct.address, "pending")),
                "chainId": int(self.w3.eth.chain_id),
            }
            base = int(self.w3.eth.get_block("latest").get("baseFeePerGas") or 0)
            tip = int(self.w3.eth.max_priority_fee) if base else 0
            if base:
                tx.update(maxFeePerGas=2 * base + tip, maxPriorityFeePerGas=tip)
            else:
                tx["gasPrice"] = int(self.w3.eth.gas_price)
            tx_hash = self.w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
        text = "0x" + bytes(tx_hash).hex()
        if receipt["status"] != 1:
            raise ChainRefused(f"the transfer {text} reverted")
        return text

    # -- the edge --------------------------------------------------------------------------------

    def _checksum(self, address: str) -> str:
        from web3 import Web3

        return str(Web3.to_checksum_address(address))

    def _no_funds(self, address: str, balance: int, cost: int | None = None) -> NoFunds:
        need = f"; it needs about {cost / 1e18:.6f} ETH for gas" if cost else ""
        return NoFunds(
            f"the EVM account {address} has {balance / 1e18:.6f} ETH on the chain at {self.where}{need}: "
            "fund it first (its address: `empressa node evm-account`)"
        )

    @contextlib.contextmanager
    def _edge(self, *, sender: str | None = None) -> Iterator[None]:
        """Translate what web3, requests and eth-tester raise into :mod:`node.errors`."""
        import requests.exceptions
        from web3.exceptions import ContractLogicError, TimeExhausted, Web3Exception

        try:
            yield
        except (ChainUnavailable, ChainRefused, NoFunds, NoRegistry, AlreadyRegistered):
            raise
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise ChainUnavailable(
                f"cannot reach the EVM RPC at {self.where}: {type(exc).__name__}"
            ) from None
        except TimeExhausted:
            raise ChainUnavailable(
                f"a transaction was not mined in time on the chain at {self.where}"
            ) from None
        except ContractLogicError as exc:
            raise _revert(_message(exc)) from None
        except Exception as exc:
            if type(exc).__name__ == "TransactionFailed":  # eth-tester's revert
                raise _revert(_message(exc)) from None
            if not isinstance(exc, Web3Exception | ValueError):
                raise
            text = _message(exc)
            if "insufficient funds" in text.lower() and sender is not None:
                raise NoFunds(
                    f"the EVM account {sender} cannot pay for gas on the chain at {self.where}: "
                    "fund it first (its address: `empressa node evm-account`)"
                ) from None
            raise ChainRefused(f"the chain at {self.where} refused: {text}") from None


def _revert(reason: str) -> AlreadyRegistered | ChainRefused:
    if "already registered" in reason:
        return AlreadyRegistered("the entry hash is already registered (the registry refused it)", 0)
    return ChainRefused(f"the registry refused the transaction: {reason}")


def _registered_log(receipt: Any, registry: str) -> Registered:
    for entry in receipt["logs"]:
        topics = list(entry["topics"])
        if str(entry["address"]).lower() != registry.lower() or not topics:
            continue
        if bytes(topics[0]) == EVENT_TOPIC:
            return decode_registered(topics, entry["data"])
    raise ChainRefused(f"transaction {bytes(receipt['transactionHash']).hex()} has no AssetRegistered log")


def _message(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    if isinstance(arg, dict) and "message" in arg:
        return str(arg["message"])
    lines = str(arg).splitlines()
    return lines[0] if lines else type(exc).__name__
