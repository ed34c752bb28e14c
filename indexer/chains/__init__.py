"""Chain sources of the reconciler, each third-party client in one file.

* :mod:`.contract`: the ``AssetRegistry`` build and its log layout (no client);
* :mod:`.evm`: web3.py: deploying the registry, following its logs (EVM source);
* :mod:`.stellar`: stellar-sdk: following payments on Horizon (Stellar source).
"""
