"""web3.py, for the indexer: deploying the ``AssetRegistry`` and (the EVM source) following its logs.

This is the indexer's one file that imports web3; the node's (sending
``register``) is :mod:`node.evm`. Errors of web3 and of the RPC are
translated here into :mod:`indexer.errors` (:meth:`EvmSource._call`):
a connection failure or timeout is ``ChainUnavailable`` (at :meth:`EvmSource.check`,
``ChainConfigError``), a refused or timed-out ``eth_getLogs`` halves the range.

* :func:`deploy_registry`: the committed build, mined (``chain deploy``);
* :class:`EvmSource`: the reconciler's :class:`~.base.ChainSource` for one registry.

Measured here (web3 8.0.0, eth-tester 0.14.0b1, anvil 1.7.1): web3's
``w3.eth.get_logs`` result formatting runs at ~8,000 logs/s, so over HTTP the raw
JSON answer is read (~30,000-55,000 logs/s fetched and decoded by slicing);
eth-tester's provider takes no raw requests, and needs ``0x`` text topics.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from ..errors import ChainConfigError, ChainUnavailable, ReorgTooDeep
from . import contract
from .base import PollResult

log = logging.getLogger(__name__)

RPC_TIMEOUT = 30.0  # seconds per JSON-RPC request
APPLY_BATCH = 2000  # logs per transaction, at most (rounded up to a block boundary): measured here,
# 10,000 logs in one transaction cost 2.6x the time of 5,000 (PostgreSQL's per-statement memory)


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


# -- the EVM source ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """A block as the source stores it (``chain_blocks``): number, hash, parent hash (when fetched)."""

    number: int
    hash: bytes
    parent_hash: bytes | None = None
    ts: int | None = None  # the block's timestamp (unix seconds), when its header was fetched


@dataclass(frozen=True, slots=True)
class RegistrationLog:
    """One decoded ``AssetRegistered`` log with where it sits on the chain (what the store applies)."""

    block_number: int
    block_hash: bytes
    tx_hash: bytes
    log_index: int
    contract: bytes
    asset_id: int
    record_hash: bytes
    owner: bytes


# JSON-RPC errors by which a node refuses a too-large eth_getLogs (geth, erigon, alchemy, infura…),
# or times out on it: each halves the range.
_RANGE_CODES = {-32005, -32602, -32600, -32000}
_RANGE_WORDS = ("more than", "too many", "range", "limit", "exceed", "timeout", "timed out", "too large")


def _b(value: Any) -> bytes:
    """A hash/address as bytes, from HexBytes, bytes or 0x text (eth-tester and HTTP answer differently)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    text = str(value)
    return bytes.fromhex(text[2:] if text.startswith(("0x", "0X")) else text)


class _RangeRefused(Exception):
    """The RPC refused the range (too many results, too wide, timed out): halve it and ask again."""


class EvmSource:
    """Follows ``AssetRegistered`` logs of one registry on one EVM chain (:class:`~.base.ChainSource`).

    One poll: ``head`` = the chain's block number, ``confirmed = head - confirmations``.
    From the stored cursor (``chain_cursors``, the last fully processed block and
    its hash) it reads one range ``[next, to]`` of at most ``range`` blocks:

    1. the header of ``next``: its parent hash must be the stored tip's hash, else
       the chain reorganised under us (:meth:`_rewind`);
    2. the header of ``to``, then ``eth_getLogs`` (address and topic0, as ``0x`` text:
       eth-tester matches nothing with bytes topics), then the header of ``to`` again:
       if it changed, a reorg happened while reading, and the range is read again;
    3. the logs are decoded by slicing (:func:`.contract.decode_registered`, never
       web3's event decoder) and applied by ``store.chain.apply_registrations``
       in one transaction with the cursor's advance and the blocks seen
       (``next``, ``to`` and every block with a log).

    A refused or timed-out range halves the range size (down to one block); each
    success doubles it back up to ``max_range``. On a reorg the source walks
    back through the stored blocks (newest first) comparing each stored hash with
    the chain's at that height; the first that still matches is the common
    ancestor, and ``store.chain.rollback`` undoes everything after it. A reorg
    deeper than ``max_reorg_depth`` raises :class:`~indexer.errors.ReorgTooDeep`.
    Transient RPC failures are :class:`~indexer.errors.ChainUnavailable`.

    Measured here (web3 8.0.0, eth-tester 0.14.0b1, anvil 1.7.1): eth-tester needs
    ``0x`` text topics, and its ``get_logs`` rescans the whole chain per call.
    """

    def __init__(
        self,
        *,
        store: Any,
        registry: str,
        rpc_url: str | None = None,
        w3: Any = None,
        chain_id: int | None = None,
        confirmations: int = 12,
        max_reorg_depth: int = 64,
        start_block: int = 0,
        max_range: int = 2000,
    ) -> None:
        if w3 is None and rpc_url is None:
            raise ValueError("an EvmSource needs an rpc_url or a web3 client")
        self.store = store
        self.rpc_url = rpc_url or "the in-process chain"
        self.w3 = w3 if w3 is not None else connect(str(rpc_url))
        self.registry = registry
        self.registry_raw = _b(registry)
        self.registry_lower = "0x" + self.registry_raw.hex()
        self.chain_id = chain_id
        self.confirmations = confirmations
        self.max_reorg_depth = max_reorg_depth
        self.start_block = start_block
        self.max_range = max_range
        self.range = max_range
        self.name = f"eip155:{chain_id}" if chain_id is not None else "eip155"
        from web3 import HTTPProvider

        self._raw = isinstance(self.w3.provider, HTTPProvider)

    # -- the RPC edge: web3 and requests errors become ours ------------------------------------

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        import requests.exceptions
        from web3.exceptions import Web3Exception, Web3RPCError

        try:
            return fn(*args)
        except requests.exceptions.Timeout:
            if what == "eth_getLogs":
                raise _RangeRefused("timed out") from None
            raise ChainUnavailable(f"the EVM RPC at {self.rpc_url} timed out ({what})") from None
        except (requests.exceptions.ConnectionError, ConnectionError, OSError) as exc:
            raise ChainUnavailable(
                f"cannot reach the EVM RPC at {self.rpc_url}: {type(exc).__name__}"
            ) from None
        except requests.exceptions.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else "?"
            if what == "eth_getLogs" and code in (413, 504):
                raise _RangeRefused(f"HTTP {code}") from None
            raise ChainUnavailable(f"the EVM RPC at {self.rpc_url} answered HTTP {code} ({what})") from None
        except Web3RPCError as exc:
            err = (exc.rpc_response or {}).get("error") or {}
            message = str(err.get("message") or exc.message)
            if what == "eth_getLogs" and (
                err.get("code") in _RANGE_CODES and any(w in message.lower() for w in _RANGE_WORDS)
            ):
                raise _RangeRefused(message) from None
            raise ChainUnavailable(f"the EVM RPC at {self.rpc_url} refused {what}: {message}") from None
        except (Web3Exception, ValueError) as exc:
            raise ChainUnavailable(
                f"the EVM RPC at {self.rpc_url} failed {what}: {_rpc_message(exc)}"
            ) from None

    def _head(self) -> int:
        return int(self._call("eth_blockNumber", lambda: self.w3.eth.block_number))

    def _header(self, number: int) -> Block:
        b = self._call("eth_getBlockByNumber", self.w3.eth.get_block, number)
        return Block(int(b["number"]), _b(b["hash"]), _b(b["parentHash"]), int(b["timestamp"]))

    def _logs(self, lo: int, hi: int) -> list[Any]:
        """The registry's logs in ``[lo, hi]``. Over HTTP the raw JSON answer is used as it is (web3's
        result formatters cost more than the whole rest of a log's reconciliation: measured here
        ~8,000 logs/s through ``w3.eth.get_logs``); an in-process provider goes through web3's API."""
        query: dict[str, Any] = {"address": self.registry, "topics": [contract.EVENT_TOPIC_HEX]}
        if not self._raw:
            return list(
                self._call("eth_getLogs", self.w3.eth.get_logs, {"fromBlock": lo, "toBlock": hi, **query})
            )
        query.update(fromBlock=hex(lo), toBlock=hex(hi))
        return list(self._call("eth_getLogs", self._raw_request, "eth_getLogs", [query]))

    def _raw_request(self, method: str, params: list[Any]) -> Any:
        from web3.exceptions import Web3RPCError

        answer = self.w3.provider.make_request(method, params)
        if "error" in answer:
            err = answer["error"]
            message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            raise Web3RPCError(message, rpc_response=answer)
        return answer["result"]

    # -- ChainSource ---------------------------------------------------------------------------

    def check(self) -> None:
        """RPC reachable, the chain id as configured, code at the registry address; else ChainConfigError."""
        try:
            chain_id = int(self._call("eth_chainId", lambda: self.w3.eth.chain_id))
            code = self._call("eth_getCode", self.w3.eth.get_code, self.registry)
        except ChainUnavailable as exc:
            raise ChainConfigError(str(exc)) from None
        if self.chain_id is not None and chain_id != self.chain_id:
            raise ChainConfigError(
                f"the EVM RPC at {self.rpc_url} is chain {chain_id}, not the configured {self.chain_id}"
            )
        if not bytes(code):
            raise ChainConfigError(
                f"no contract at {self.registry} on chain {chain_id} (EMPRESSA_EVM_REGISTRY is wrong, "
                "or the chain was reset)"
            )
        self.chain_id = chain_id
        self.name = f"eip155:{chain_id}"

    def poll(self) -> PollResult:
        """Apply the next confirmed range (or a rollback); ``more`` when the source is still behind."""
        head = self._head()
        confirmed = head - self.confirmations
        cursor = self.store.chain.cursor(self.name)
        tip: Block | None = None
        if cursor is not None and cursor.block_hash is not None and cursor.position >= self.start_block:
            tip = Block(cursor.position, cursor.block_hash)
        nxt = tip.number + 1 if tip else self.start_block
        matched = self.store.chain.match_pending(source=self.name)
        if nxt > confirmed:
            # Nothing new is confirmed; the tip must still be on the chain (a revert may even shorten it).
            ts = None
            if tip is not None:
                if tip.number > head:
                    return self._rewind(tip, head)
                now_tip = self._header(tip.number)
                if now_tip.hash != tip.hash:
                    return self._rewind(tip, head)
                ts = now_tip.ts
            return self._result(head, tip.number if tip else nxt - 1, matched, block_ts=ts)
        first = self._header(nxt)
        if tip is not None and first.parent_hash != tip.hash:
            return self._rewind(tip, head)
        while True:
            to = min(confirmed, nxt + self.range - 1)
            last = self._header(to) if to != nxt else first
            try:
                raw_logs = self._logs(nxt, to)
            except _RangeRefused as exc:
                if to == nxt:
                    raise ChainUnavailable(
                        f"the EVM RPC at {self.rpc_url} refused eth_getLogs for one block: {exc}"
                    ) from None
                self.range = max(1, (to - nxt + 1) // 2)
                log.info(
                    "evm range refused source=%s blocks=%d next=%d why=%s",
                    self.name,
                    to - nxt + 1,
                    self.range,
                    exc,
                )
                continue
            again = self._header(to)
            if again.hash != last.hash:
                log.warning(
                    "evm block changed while reading source=%s block=%d; reading again", self.name, to
                )
                return PollResult(head=head, more=True)
            break
        regs, blocks = self._decode(raw_logs, first, again)
        applied = 0
        done = nxt - 1
        for logs, upto in _batches(regs, blocks, to, APPLY_BATCH):
            # Each batch is one transaction that also moves the cursor to its last block (whose hash
            # came with its logs): a range of many logs commits in steps, each one consistent.
            applied += self.store.chain.apply_registrations(
                source=self.name,
                logs=logs,
                blocks=[b for b in blocks if done < b.number <= upto.number],
                position=upto.number,
                position_hash=upto.hash,
                prune_below=upto.number - self.max_reorg_depth - 1,
            )
            done = upto.number
        self.range = min(self.max_range, max(self.range, (to - nxt + 1)) * 2)
        if regs or to - nxt > 0:
            log.info(
                "evm range source=%s from=%d to=%d logs=%d applied=%d head=%d",
                self.name,
                nxt,
                to,
                len(regs),
                applied,
                head,
            )
        return self._result(head, to, applied + matched, more=to < confirmed, block_ts=again.ts)

    def _decode(
        self, raw_logs: list[Any], first: Block, last: Block
    ) -> tuple[list[RegistrationLog], list[Block]]:
        regs: list[RegistrationLog] = []
        blocks: dict[int, Block] = {first.number: first, last.number: last}
        seen: dict[Any, Block] = {}  # a block's logs share its number and hash: convert them once
        for lg in raw_logs:
            if lg.get("removed"):
                continue
            address = lg["address"]
            if (
                (address.lower() != self.registry_lower)
                if isinstance(address, str)
                else (_b(address) != self.registry_raw)
            ):
                continue
            try:
                ev = contract.decode_registered(list(lg["topics"]), lg["data"])
            except contract.BadLog as exc:
                log.warning(
                    "evm log skipped source=%s tx=%s why=%s", self.name, _hex(lg["transactionHash"]), exc
                )
                continue
            block = seen.get(lg["blockHash"])
            if block is None:
                block = seen[lg["blockHash"]] = Block(_int(lg["blockNumber"]), _b(lg["blockHash"]))
                blocks.setdefault(block.number, block)
            regs.append(
                RegistrationLog(
                    block_number=block.number,
                    block_hash=block.hash,
                    tx_hash=_b(lg["transactionHash"]),
                    log_index=_int(lg["logIndex"]),
                    contract=self.registry_raw,
                    asset_id=ev.asset_id,
                    record_hash=ev.record_hash,
                    owner=ev.owner,
                )
            )
        return regs, sorted(blocks.values(), key=lambda b: b.number)

    def _rewind(self, tip: Block, head: int) -> PollResult:
        """The stored tip left the chain: find the common ancestor, roll back past it."""
        floor = tip.number - self.max_reorg_depth
        lowest_mismatch = tip.number
        ancestor: Block | None = None
        for stored in self.store.chain.blocks(self.name, at_most=tip.number, limit=self.max_reorg_depth + 1):
            if stored.number <= head and self._header(stored.number).hash == stored.hash:
                ancestor = Block(stored.number, stored.hash)
                break
            lowest_mismatch = stored.number
            if stored.number < floor:
                break
        depth = tip.number - lowest_mismatch + 1
        if ancestor is None and tip.number - self.start_block + 1 <= self.max_reorg_depth:
            depth = tip.number - self.start_block + 1  # everything processed was replaced
        elif ancestor is None or depth > self.max_reorg_depth:
            raise ReorgTooDeep(
                f"a reorg on {self.name} replaced blocks down to at least {lowest_mismatch} (tip {tip.number}), "
                f"deeper than evm_max_reorg_depth={self.max_reorg_depth}; the source stops"
            )
        after = ancestor.number if ancestor else self.start_block - 1
        dropped = self.store.chain.rollback(
            source=self.name, after_block=after, after_hash=ancestor.hash if ancestor else None
        )
        log.warning(
            "evm reorg source=%s tip=%d ancestor=%d depth=%d dropped=%d",
            self.name,
            tip.number,
            after,
            depth,
            dropped,
        )
        return PollResult(
            applied=dropped, head=head, processed=after, lag_blocks=head - after, reorgs=1, more=True
        )

    def _result(
        self, head: int, processed: int, applied: int, *, more: bool = False, block_ts: float | None = None
    ) -> PollResult:
        return PollResult(
            applied=applied,
            head=head,
            processed=processed,
            lag_blocks=max(0, head - processed),
            lag_seconds=None if block_ts is None else max(0.0, round(time.time() - block_ts, 3)),
            more=more,
        )


def _batches(
    regs: list[RegistrationLog], blocks: list[Block], to: int, size: int
) -> list[tuple[list[RegistrationLog], Block]]:
    """Split a range's logs into batches of about ``size`` at block boundaries: (logs, the batch's last
    block). The last batch ends at the range's end ``to`` (whose header was fetched)."""
    by_number = {b.number: b for b in blocks}
    out: list[tuple[list[RegistrationLog], Block]] = []
    cur: list[RegistrationLog] = []
    for i, r in enumerate(regs):
        cur.append(r)
        boundary = i + 1 == len(regs) or regs[i + 1].block_number != r.block_number
        if len(cur) >= size and boundary and r.block_number < to:
            out.append((cur, by_number[r.block_number]))
            cur = []
    out.append((cur, by_number[to]))
    return out


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _hex(value: Any) -> str:
    return "0x" + _b(value).hex()
