"""Chain sources of the reconciler, each third-party client in one file.

* :mod:`.contract`: the ``AssetRegistry`` build and its log layout (no client);
* :mod:`.evm`: web3.py: deploying the registry, following its logs (EVM source);
* :mod:`.stellar`: stellar-sdk: following payments on Horizon (Stellar source).
"""

from __future__ import annotations

from typing import Any

from .base import ChainSource
from .settings import ChainSettings


def build_sources(settings: ChainSettings, store: Any) -> list[ChainSource]:
    """The chain sources the settings configure, on ``store`` (an :class:`indexer.store.Store`)."""
    sources: list[ChainSource] = []
    # EVM source: added by the evm slice
    if settings.stellar_horizon_url is not None:
        from .stellar import StellarSource

        sources.append(StellarSource(settings=settings, store=store))
    return sources


__all__ = ["ChainSource", "build_sources"]
