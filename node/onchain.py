"""What ``empressa node evm-account`` and ``node register`` do (:mod:`.commands` calls them).

The creator's EVM account is the keystore's ``evm`` secret (:func:`node.keystore.ensure_evm_key`),
created on first use. ``register`` names the asset by the entry hash of its current
``asset.put`` and sends it from that account (:mod:`node.evm`); the indexer's reconciler
later matches the registration to the record and checks the owner: the registration is
``verified`` only when the signed record's ``payout.evm`` is the account that registered
it, a ``mismatch`` when it names another, ``unbound`` when it names none.
:func:`expected_status` is that rule as seen from here, so the command can say what
the indexer will decide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from protocol import AssetUri, parse_did

from .errors import AlreadyRegistered, NodeError, NotFoundError
from .evm import EvmClient, account_address, is_address, same_address
from .keystore import Keys, read_public_did
from .paths import KEYSTORE_FILE, NODE_DB
from .store import Store

__all__ = ["MY_ACCOUNT", "RegisterReport", "evm_account", "expected_status", "payout_evm", "register_asset"]

MY_ACCOUNT = "me"  # `--payout-evm me`: this node's own EVM account

UnlockEvm = Callable[[], tuple[Keys, bool]]  # keys with evm_key, and whether the account is new


def evm_account(unlock: UnlockEvm) -> tuple[str, bool]:
    """``(address, created)`` of this node's EVM account, creating it once."""
    keys, created = unlock()
    assert keys.evm_key is not None
    return account_address(keys.evm_key), created


def payout_evm(value: str | None, unlock: UnlockEvm) -> str | None:
    """A ``--payout-evm`` value: ``me`` is this node's EVM account; an address is taken as it is.

    Raises:
        NodeError: neither ``me`` nor a 0x address of 20 bytes.
    """
    if value is None:
        return None
    if value == MY_ACCOUNT:
        return evm_account(unlock)[0]
    if not is_address(value):
        raise NodeError(f"--payout-evm {value!r:.60} is not a 0x address of 20 bytes (or `me`)")
    return value


def expected_status(payout: str | None, owner: str) -> str:
    """What the reconciler will make of a registration by ``owner`` of a record naming ``payout``."""
    if payout is None:
        return "unbound"
    return "verified" if same_address(payout, owner) else "mismatch"


@dataclass(frozen=True)
class RegisterReport:
    """What ``node register`` did and what the indexer will check (``--json`` prints it as is)."""

    uri: str
    entry: str  # CID of the registered asset.put
    record_hash: str  # 0x… the raw entry hash, as the contract holds it
    chain: str  # CAIP-2, eip155:<id>
    registry: str
    tx: str
    asset_id: int
    block: int
    owner: str
    payout_evm: str | None  # what the record names
    expect: str  # verified | mismatch | unbound
    account_created: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        verdict = {
            "verified": f"will verify: the record's payout.evm is {self.owner}",
            "mismatch": f"will be a mismatch: the record's payout.evm is {self.payout_evm}, not {self.owner}",
            "unbound": "will be unbound: the record names no payout.evm (edit it with --payout-evm me)",
        }[self.expect]
        return (
            f"transaction {self.tx}\nasset id {self.asset_id} on {self.chain} (block {self.block}, registry "
            f"{self.registry})\nthe indexer will check: entry {self.entry} ({self.record_hash}), owner "
            f"{self.owner}: {verdict}"
        )


def register_asset(
    data_dir: Path,
    key: str,
    *,
    rpc_url: str | None,
    registry: str | None,
    unlock: UnlockEvm,
    progress: Callable[[str], None] | None = None,
) -> RegisterReport:
    """Register asset ``key``'s current entry hash on the registry, from this node's EVM account.

    The asset is checked first (it exists and is not deleted), then the chain (reachable,
    code at the registry, the hash not yet registered), and only then is the keystore
    unlocked and the transaction sent.

    Raises:
        NotFoundError: no such asset here, or it is deleted.
        ChainError: as :meth:`node.evm.EvmClient.register` (no RPC, no funds, already
            registered, no registry at the address).
    """
    uri = AssetUri.of(parse_did(read_public_did(data_dir / KEYSTORE_FILE)), key)
    store = Store.open(data_dir / NODE_DB)
    try:
        try:
            row = store.asset(uri)
        except NotFoundError:
            raise NotFoundError(f"no asset {key!r} in this node's library ({uri})") from None
    finally:
        store.close()
    if row.deleted or row.put is None:
        raise NotFoundError(f"asset {key!r} is deleted; publish it again before registering it")
    put = row.put
    payout = (put.body.get("payout") or {}).get("evm")
    if not registry:
        raise NodeError(
            "no registry address: give --registry ADDR, or set evm_registry in the node's config.toml "
            "(EMPRESSA_NODE_EVM_REGISTRY)"
        )
    client = EvmClient.connect(rpc_url)
    chain_id = client.chain_id()
    # Unreachable, no registry, already registered: said before the keystore is touched.
    asset_id, owner = client.asset_of(registry, put.hash.raw)
    if asset_id:
        raise AlreadyRegistered(
            f"asset {key!r} (entry {put.hash.cid}) is already registered as asset {asset_id} by {owner}",
            asset_id,
        )
    keys, created = unlock()
    assert keys.evm_key is not None
    (reg,) = client.register(registry, keys.evm_key, [put.hash.raw], progress=progress)
    return RegisterReport(
        uri=uri.text,
        entry=put.hash.cid,
        record_hash="0x" + put.hash.raw.hex(),
        chain=f"eip155:{chain_id}",
        registry=registry,
        tx=reg.tx,
        asset_id=reg.asset_id,
        block=reg.block,
        owner=reg.owner,
        payout_evm=payout,
        expect=expected_status(payout, reg.owner),
        account_created=created,
    )
