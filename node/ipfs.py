"""The node's IPFS daemon, through its Kubo RPC API: the only place ``ipfshttpclient`` is used.

:class:`IpfsClient` adds a file, pins a CID and asks whether one is pinned; the
rest of the node (:mod:`node.media`) sees only CIDs and our errors.
``ipfshttpclient``'s errors are translated here (:func:`_edge`):
``ConnectionError`` / ``TimeoutError`` become
:class:`~node.errors.IpfsUnavailable`, an error answer
:class:`~node.errors.IpfsRefused`.

Measured on ipfshttpclient 0.8.0a2, against js-ipfs 0.18.1 (npm ``ipfs``
0.66.1, the tests' daemon) and as the issue found for Kubo:

- ``ipfshttpclient.connect()`` checks the daemon's version and warns
  ``VersionMismatch`` for every modern one; ``Client(addr)`` skips the check.
- ``add()`` sends ``raw-leaves=false`` unless told: without ``raw_leaves=True``
  and ``cid_version=1`` the CID is not the one :func:`node.media.file_cid`
  computes. ``add_bytes()`` takes no ``cid_version``, so it is not used.
- js-ipfs answers CIDv1 in base58btc (``zdj7…``) unless asked for
  ``cid-base=base32``, which Kubo takes too; so every add asks for it.
- Each call makes urllib3 warn ``FutureWarning`` ("The 'strict' parameter is no
  longer needed"); it is silenced around our calls only.
- The address is a multiaddr ending in ``/http`` (``/ip4/127.0.0.1/tcp/5001/http``);
  :func:`node.config.check_ipfs_api` gives ``ipfs_api`` in that form.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ipfshttpclient
from ipfshttpclient import exceptions as ipfs_errors

from .errors import IpfsRefused, IpfsUnavailable, NodeError

TIMEOUT_S = 300.0  # one call; adding a large file to a busy daemon takes a while


class IpfsClient:
    """A Kubo-compatible RPC API at ``api`` (a multiaddr, as :func:`node.config.check_ipfs_api` gives it)."""

    def __init__(self, api: str, *, timeout: float = TIMEOUT_S) -> None:
        self.api = api
        with _edge(api, "connect"):
            self._client = ipfshttpclient.Client(api, timeout=timeout)

    def __enter__(self) -> IpfsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def version(self) -> dict[str, str]:
        """The daemon's ``version`` answer (``Version``; js-ipfs adds ``ipfs-core``)."""
        with _edge(self.api, "version"):
            return {str(k): str(v) for k, v in self._client.version().items()}

    def add_file(self, path: Path) -> str:
        """Add a file's bytes (not pinned) and return the CID the daemon names them by (CIDv1, raw leaves, base32).

        Raises:
            IpfsUnavailable, IpfsRefused: see the module docstring.
            NodeError: the file cannot be read.
        """
        with _edge(self.api, f"add {path.name}"):
            try:
                r = self._client.add(
                    str(path), raw_leaves=True, cid_version=1, pin=False, opts={"cid-base": "base32"}
                )
            except OSError as exc:
                raise NodeError(f"cannot read {path}: {exc.strerror or exc}") from None
        return str(r["Hash"])

    def pin(self, cid: str) -> None:
        """Pin ``cid`` and everything under it on the daemon (it must hold the blocks, or fetch them)."""
        with _edge(self.api, f"pin {cid}"):
            self._client.pin.add(cid, recursive=True)

    def pinned(self, cid: str) -> bool:
        """Whether ``cid`` is pinned recursively on the daemon."""
        with _edge(self.api, f"pin ls {cid}"):
            try:
                r = self._client.pin.ls(cid, type="recursive")
            except ipfs_errors.ErrorResponse as exc:
                if "not pinned" in str(exc):
                    return False
                raise
        return len(r["Keys"]) > 0


@contextmanager
def _edge(api: str, what: str) -> Iterator[None]:
    """ipfshttpclient's errors as ours, naming the daemon and the call; urllib3's FutureWarning silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="urllib3")
        try:
            yield
        except (ipfs_errors.ConnectionError, ipfs_errors.TimeoutError) as exc:
            raise IpfsUnavailable(
                f"the IPFS node at {api} cannot be reached ({what}): {_short(exc)}"
            ) from None
        except ipfs_errors.AddressError as exc:
            raise IpfsUnavailable(f"ipfs_api {api!r} is not an address the client can use: {exc}") from None
        except ipfs_errors.Error as exc:
            raise IpfsRefused(f"the IPFS node at {api} refused {what}: {_short(exc)}") from None


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:199] + "…"
