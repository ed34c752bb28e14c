"""Chain sources of the reconciler, each third-party client in one file.

* :mod:`.contract`: the ``AssetRegistry`` build and its log layout (no client);
* :mod:`.evm`: web3.py: deploying the registry, following its logs (EVM source);
* :mod:`.stellar`: stellar-sdk: following payments on Horizon (Stellar source);
* :func:`build_sources`: the sources a configuration names, for the reconciler
  (:mod:`indexer.reconciler`), which records each one's figures for ``/readyz``
  and ``/metrics`` (:mod:`indexer.api.chains`).
"""

from __future__ import annotations

from typing import Any

from .base import ChainSource, PollResult
from .settings import ChainSettings

__all__ = ["ChainSource", "PollResult", "build_sources"]


def build_sources(settings: ChainSettings, store: Any) -> list[ChainSource]:
    """The chain sources the settings configure, on ``store`` (an :class:`indexer.store.Store`)."""
    sources: list[ChainSource] = []
    if settings.evm_rpc_url is not None and settings.evm_registry is not None:
        from .evm import EvmSource

        sources.append(
            EvmSource(
                store=store,
                rpc_url=settings.evm_rpc_url,
                registry=settings.evm_registry,
                chain_id=settings.evm_chain_id,
                confirmations=settings.evm_confirmations,
                max_reorg_depth=settings.evm_max_reorg_depth,
                start_block=settings.evm_start_block,
                max_range=settings.evm_max_range,
            )
        )
    if settings.stellar_horizon_url is not None:
        from .stellar import StellarSource

        sources.append(StellarSource(settings=settings, store=store))
    return sources
