"""The ``AssetRegistry`` contract for the indexer: its committed build (bytecode) beside its interface.

The interface (ABI, the ``AssetRegistered`` event and its fixed-layout
decoder) is protocol, shared with the node: :mod:`protocol.registry`, re-exported
here. What only the indexer needs is the build that ``chain deploy`` sends
(``indexer/contracts/AssetRegistry.json``, compiled from ``AssetRegistry.vy``
and checked against it by ``tests/indexer/chains/test_contract.py``). The
web3.py code that deploys and follows the contract is :mod:`indexer.chains.evm`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from protocol.errors import RegistryLogError as BadLog
from protocol.registry import (
    ABI,
    EVENT_SIGNATURE,
    EVENT_TOPIC,
    EVENT_TOPIC_HEX,
    Registered,
    decode_registered,
)

__all__ = [
    "ABI",
    "BUILD",
    "EVENT_SIGNATURE",
    "EVENT_TOPIC",
    "EVENT_TOPIC_HEX",
    "BadLog",
    "Registered",
    "abi",
    "build",
    "bytecode",
    "decode_registered",
]

BUILD = Path(__file__).resolve().parent.parent / "contracts" / "AssetRegistry.json"


@lru_cache(maxsize=1)
def build() -> dict[str, Any]:
    """The committed build (``abi``, ``bytecode``, ``compiler``, ``source_sha256``…)."""
    data: dict[str, Any] = json.loads(BUILD.read_text(encoding="utf-8"))
    return data


def abi() -> list[dict[str, Any]]:
    return list(ABI)


def bytecode() -> str:
    return str(build()["bytecode"])
