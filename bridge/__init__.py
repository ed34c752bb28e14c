"""The bridge super-node: node/'s daemon following everyone, writing into the indexer's PostgreSQL.

* :mod:`.service`: :class:`~bridge.service.Bridge`, the daemon on the indexer store;
* :mod:`.replica`: the indexer store as a :class:`node.replica.Replica`, with metrics;
* :mod:`.quarantine`: rejected entries batched into the quarantine table;
* :mod:`.verify`: an optional process pool verifying pulled ranges and building their rows;
* :mod:`.metrics`, :mod:`.config`, :mod:`.runner` (``empressa bridge run``), :mod:`.testing`.

Errors: the bridge defines none of its own. It raises the node's
(:mod:`node.errors`: ``ConfigError`` for settings, ``ListenError``, ``KeystoreError``,
the ``PeerError`` tree for peers) and lets the indexer store's
(:mod:`indexer.errors`: ``DatabaseError``) through; ``cli.py`` prints either as one line.

Nothing is imported here, so ``import bridge.config`` stays cheap (libp2p is slow to import).
"""
