"""The ``AssetRegistry`` contract as data: its committed build, its event, and a fixed-layout log decoder.

No I/O beyond reading the committed build file and no third-party client:
the web3.py code that deploys and follows the contract is in :mod:`indexer.chains.evm`,
and the node's (registering) in :mod:`node.evm`.

``AssetRegistered(asset_id indexed uint256, record_hash bytes32, owner address)``
has a fixed log layout, so it is decoded by slicing (the issue measured web3's
per-log ``process_log`` at ~3,300 logs/s, ``eth_abi.decode`` at ~40,000/s and
fixed-offset slicing at ~470,000/s)::

    topics[0]  keccak256("AssetRegistered(uint256,bytes32,address)")
    topics[1]  asset_id, 32-byte big-endian
    data[0:32]   record_hash
    data[32:64]  owner, left-padded with 12 zero bytes
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from eth_utils import keccak

BUILD = Path(__file__).resolve().parent.parent / "contracts" / "AssetRegistry.json"

EVENT_SIGNATURE = "AssetRegistered(uint256,bytes32,address)"
EVENT_TOPIC: bytes = keccak(text=EVENT_SIGNATURE)
EVENT_TOPIC_HEX = "0x" + EVENT_TOPIC.hex()  # eth-tester matches only 0x… text topics


@lru_cache(maxsize=1)
def build() -> dict[str, Any]:
    """The committed build (``abi``, ``bytecode``, ``compiler``, ``source_sha256``…)."""
    data: dict[str, Any] = json.loads(BUILD.read_text(encoding="utf-8"))
    return data


def abi() -> list[dict[str, Any]]:
    return list(build()["abi"])


def bytecode() -> str:
    return str(build()["bytecode"])


@dataclass(frozen=True, slots=True)
class Registered:
    """One decoded ``AssetRegistered`` log."""

    asset_id: int
    record_hash: bytes  # 32 bytes: the entry hash of the registered asset.put
    owner: bytes  # 20 bytes: the account that registered it


class BadLog(ValueError):
    """A log that is not a well-formed ``AssetRegistered`` event."""


def _raw(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value.startswith(("0x", "0X")) else value)
    raise BadLog(f"not bytes or hex text: {type(value).__name__}")


def decode_registered(topics: list[Any], data: Any) -> Registered:
    """Decode one log's ``topics`` and ``data`` (bytes or ``0x`` hex) by slicing the fixed layout."""
    if len(topics) != 2:
        raise BadLog(f"AssetRegistered has 2 topics, got {len(topics)}")
    t0, t1, d = _raw(topics[0]), _raw(topics[1]), _raw(data)
    if t0 != EVENT_TOPIC:
        raise BadLog("not an AssetRegistered log")
    if len(t1) != 32 or len(d) != 64 or any(d[32:44]):
        raise BadLog("AssetRegistered log has the wrong layout")
    return Registered(int.from_bytes(t1, "big"), d[:32], d[44:64])
