"""The bridge super-node: node/'s daemon following everyone, writing into the indexer's PostgreSQL.

* :mod:`.service`: :class:`~bridge.service.Bridge`, the daemon on the indexer store;
* :mod:`.replica`: the indexer store as a :class:`node.replica.Replica`, with metrics;
* :mod:`.quarantine`: rejected entries batched into the quarantine table;
* :mod:`.verify`: an optional process pool for verifying pulled ranges;
* :mod:`.metrics`, :mod:`.config`, :mod:`.runner` (``empressa bridge run``), :mod:`.testing`.

Nothing is imported here, so ``import bridge.config`` stays cheap (libp2p is slow to import).
"""
