"""The node's IPFS daemon, through its Kubo RPC API: :mod:`ipfsrpc`'s client with the node's errors.

:class:`IpfsClient` adds a file, pins a CID and asks whether one is pinned; the
rest of the node (:mod:`node.media`) sees only CIDs and our errors. The client
itself (the one file that imports ``ipfshttpclient``, and what was measured of it
against js-ipfs and Kubo) is :mod:`ipfsrpc`, shared with the indexer's pin worker,
which may not import the node. Its errors are translated at that edge into ours:
an unreachable daemon or a timeout becomes :class:`~node.errors.IpfsUnavailable`,
an error answer :class:`~node.errors.IpfsRefused`, an unreadable file
:class:`~node.errors.NodeError`.
"""

from __future__ import annotations

from ipfsrpc import TIMEOUT_S, RpcClient

from .errors import IpfsRefused, IpfsUnavailable, NodeError

__all__ = ["TIMEOUT_S", "IpfsClient"]


class IpfsClient(RpcClient):
    """A Kubo-compatible RPC API at ``api`` (a multiaddr, as :func:`node.config.check_ipfs_api` gives it)."""

    unavailable = IpfsUnavailable
    refused = IpfsRefused
    unreadable = NodeError

    def __enter__(self) -> IpfsClient:
        return self
