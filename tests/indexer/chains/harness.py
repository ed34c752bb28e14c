"""A small harness for the chain tests: a deployed AssetRegistry on a real chain (py-evm or anvil),
creators whose signed records name their payout account, and a source polled until it has caught up."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from indexer.chains import contract
from indexer.chains.evm import EvmSource
from indexer.store import Store
from protocol import Entry


def deploy(w3: Any) -> Any:
    """Deploy the committed build from the chain's first unlocked account; the contract object."""
    factory = w3.eth.contract(abi=contract.abi(), bytecode=contract.bytecode())
    receipt = w3.eth.wait_for_transaction_receipt(
        factory.constructor().transact({"from": w3.eth.accounts[0]})
    )
    return w3.eth.contract(address=receipt.contractAddress, abi=contract.abi())


def register(reg: Any, entry: Entry, sender: str) -> Any:
    """``register(entry hash)`` from ``sender``; the mined receipt (automining chains)."""
    w3 = reg.w3
    tx = reg.functions.register(entry.hash.raw).transact({"from": sender})
    return w3.eth.wait_for_transaction_receipt(tx)


@dataclass
class ChainWorld:
    """One chain with the registry, one store, and a source on them."""

    w3: Any
    store: Store
    reg: Any
    make_log: Callable[..., Any]
    put_body: Callable[..., dict[str, Any]]
    source_kw: dict[str, Any] = field(default_factory=dict)
    rpc_url: str | None = None
    _source: EvmSource | None = None

    @property
    def accounts(self) -> list[str]:
        return list(self.w3.eth.accounts)

    def source(self, **kw: Any) -> EvmSource:
        if self._source is None or kw:
            args = {"confirmations": 0, "max_reorg_depth": 64, "start_block": 0, "max_range": 2000}
            args.update(self.source_kw)
            args.update(kw)
            if self.rpc_url is not None:
                args.setdefault("rpc_url", self.rpc_url)
            else:
                args.setdefault("w3", self.w3)
            self._source = EvmSource(store=self.store, registry=self.reg.address, **args)
            self._source.check()
        return self._source

    def put(self, key: str, *, payout_evm: str | None, log: Any = None, **fields: Any) -> tuple[Any, Entry]:
        """Sign (and not yet ingest) an asset.put naming ``payout_evm``; returns (log, entry)."""
        lg = log or self.make_log()
        body = self.put_body(f"{key} title", **fields)
        if payout_evm is not None:
            body["payout"] = {"evm": payout_evm}
        return lg, lg.next(key=key, body=body)

    def drain(self, *, deadline: float = 60.0) -> int:
        """Poll the source until it has caught up; how many events it applied."""
        src = self.source()
        applied = 0
        end = time.monotonic() + deadline
        while True:
            r = src.poll()
            applied += r.applied
            if not r.more:
                return applied
            assert time.monotonic() < end, "the source did not catch up"

    def asset(self, uri: str) -> dict[str, Any]:
        with self.store.engine.connect() as conn:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cur.execute("SELECT chain_status, onchain, change_seq FROM assets WHERE uri = %s", (uri,))
            status, onchain, seq = cur.fetchone()
        return {"chain_status": status, "onchain": onchain, "change_seq": seq}

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.store.engine.connect() as conn:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cur.execute(sql, params)
            return list(cur.fetchall())

    def activity(self, uri: str) -> list[str]:
        return [k for (k,) in self.rows("SELECT kind FROM activity WHERE uri = %s ORDER BY id", uri)]

    def outbox(self, uri: str) -> list[str]:
        return [s for (s,) in self.rows("SELECT status FROM attest_outbox WHERE uri = %s ORDER BY id", uri)]
