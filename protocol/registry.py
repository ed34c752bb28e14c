"""The ``AssetRegistry`` contract's interface as data: its ABI, its event and that event's log layout.

This is protocol, not I/O: what a registration on an EVM chain looks like on
the wire, shared by the node (which sends ``register``: :mod:`node.evm`) and the
indexer (which follows the logs: :mod:`indexer.chains.evm`). The contract's
source and committed build (with the bytecode) are in ``indexer/contracts/``;
``tests/indexer/chains/test_contract.py`` checks that :data:`ABI` is the
build's and :data:`EVENT_TOPIC` the Keccak-256 of :data:`EVENT_SIGNATURE`.

``AssetRegistered(asset_id indexed uint256, record_hash bytes32, owner address)``
has a fixed log layout, so it is decoded by slicing (the issue measured web3's
per-log ``process_log`` at ~3,300 logs/s, ``eth_abi.decode`` at ~40,000/s and
fixed-offset slicing at ~470,000/s)::

    topics[0]    keccak256("AssetRegistered(uint256,bytes32,address)")
    topics[1]    asset_id, 32-byte big-endian
    data[0:32]   record_hash: the raw entry hash of the registered asset.put
    data[32:64]  owner, left-padded with 12 zero bytes
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import RegistryLogError

EVENT_SIGNATURE = "AssetRegistered(uint256,bytes32,address)"
EVENT_TOPIC = bytes.fromhex("2aa9c4e6dfc93d089f25ff3356df5305b7977f768884056b3bf4c0361e2ab2ac")
EVENT_TOPIC_HEX = "0x" + EVENT_TOPIC.hex()  # eth-tester matches only 0x… text topics

ABI: list[dict[str, Any]] = [
    {
        "anonymous": False,
        "inputs": [
            {"indexed": True, "name": "asset_id", "type": "uint256"},
            {"indexed": False, "name": "record_hash", "type": "bytes32"},
            {"indexed": False, "name": "owner", "type": "address"},
        ],
        "name": "AssetRegistered",
        "type": "event",
    },
    {
        "inputs": [{"name": "record_hash", "type": "bytes32"}],
        "name": "register",
        "outputs": [{"name": "", "type": "uint256"}],
        "stateMutability": "nonpayable",
        "type": "function",
    },
    {
        "inputs": [],
        "name": "last_id",
        "outputs": [{"name": "", "type": "uint256"}],
        "stateMutability": "view",
        "type": "function",
    },
    {
        "inputs": [{"name": "arg0", "type": "bytes32"}],
        "name": "asset_of",
        "outputs": [{"name": "", "type": "uint256"}],
        "stateMutability": "view",
        "type": "function",
    },
    {
        "inputs": [{"name": "arg0", "type": "uint256"}],
        "name": "owner_of",
        "outputs": [{"name": "", "type": "address"}],
        "stateMutability": "view",
        "type": "function",
    },
    {
        "inputs": [{"name": "arg0", "type": "uint256"}],
        "name": "record_of",
        "outputs": [{"name": "", "type": "bytes32"}],
        "stateMutability": "view",
        "type": "function",
    },
]


@dataclass(frozen=True, slots=True)
class Registered:
    """One decoded ``AssetRegistered`` log."""

    asset_id: int
    record_hash: bytes  # 32 bytes: the entry hash of the registered asset.put
    owner: bytes  # 20 bytes: the account that registered it


def _raw(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return bytes.fromhex(value[2:] if value.startswith(("0x", "0X")) else value)
        except ValueError:
            raise RegistryLogError("a log field is not hex text") from None
    raise RegistryLogError(f"a log field is not bytes or hex text: {type(value).__name__}")


def decode_registered(topics: list[Any], data: Any) -> Registered:
    """Decode one log's ``topics`` and ``data`` (bytes or ``0x`` hex) by slicing the fixed layout."""
    if len(topics) != 2:
        raise RegistryLogError(f"AssetRegistered has 2 topics, got {len(topics)}")
    t0, t1, d = _raw(topics[0]), _raw(topics[1]), _raw(data)
    if t0 != EVENT_TOPIC:
        raise RegistryLogError("not an AssetRegistered log")
    if len(t1) != 32 or len(d) != 64 or any(d[32:44]):
        raise RegistryLogError("AssetRegistered log has the wrong layout")
    return Registered(int.from_bytes(t1, "big"), d[:32], d[44:64])
