"""The one Kubo RPC API client (``ipfshttpclient``), shared by the node and the indexer's pin worker.

The indexer may not import the node (``protocol`` ← ``indexer``), and both talk to
an IPFS daemon, so the client lives here, beneath both, and is the only place
``ipfshttpclient`` is imported. Each user translates its errors into its own
tree by subclassing :class:`RpcClient` and naming its classes
(:attr:`RpcClient.unavailable`, :attr:`RpcClient.refused`,
:attr:`RpcClient.unreadable`): ``node.ipfs.IpfsClient`` raises
``node.errors.IpfsUnavailable`` / ``IpfsRefused``, ``indexer.pins`` the indexer's.
Used as is, it raises this module's own errors::

    IpfsRpcError
    ├── IpfsRpcUnavailable   the daemon cannot be reached, did not answer in time (a pin of a CID
    │                        it does not hold and cannot fetch waits until then), or the address is unusable
    └── IpfsRpcRefused       the daemon answered an error (a bad CID, a full repo, …)

Measured on ipfshttpclient 0.8.0a2, against js-ipfs 0.18.1 (npm ``ipfs``
0.66.1, the tests' daemon) and as the issue found for Kubo:

- ``ipfshttpclient.connect()`` checks the daemon's version and warns
  ``VersionMismatch`` for every modern one; ``Client(addr)`` skips the check.
- ``add()`` sends ``raw-leaves=false`` unless told: without ``raw_leaves=True``
  and ``cid_version=1`` the CID is not the one ``node.media.file_cid``
  computes. ``add_bytes()`` takes no ``cid_version``, so it is not used.
- js-ipfs answers CIDv1 in base58btc (``zdj7…``) unless asked for
  ``cid-base=base32``, which Kubo takes too; so every add asks for it.
- Each call makes urllib3 warn ``FutureWarning`` ("The 'strict' parameter is no
  longer needed"); it is silenced around our calls only.
- The address is a multiaddr ending in ``/http`` (``/ip4/127.0.0.1/tcp/5001/http``);
  :func:`check_ipfs_api` gives an ``ipfs_api`` setting in that form.
- ``pin rm`` of a CID that is not pinned answers an error saying "not pinned"
  (both daemons): :meth:`RpcClient.unpin` takes it as done.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ipfshttpclient
from ipfshttpclient import exceptions as ipfs_errors
from multiaddr import Multiaddr

__all__ = [
    "TIMEOUT_S",
    "IpfsRpcError",
    "IpfsRpcRefused",
    "IpfsRpcUnavailable",
    "RpcClient",
    "check_ipfs_api",
]

TIMEOUT_S = 300.0  # one call; adding a large file to a busy daemon takes a while
_DIAL_HOSTS = ("ip4", "ip6", "dns", "dns4", "dns6")


class IpfsRpcError(Exception):
    """The daemon cannot do what was asked; ``str(err)`` names the daemon and the call."""


class IpfsRpcUnavailable(IpfsRpcError):
    """The daemon cannot be reached, did not answer in time, or the address cannot be used."""


class IpfsRpcRefused(IpfsRpcError):
    """The daemon answered the call with an error."""


class RpcClient:
    """A Kubo-compatible RPC API at ``api`` (a multiaddr, as :func:`check_ipfs_api` gives it)."""

    unavailable: type[Exception] = IpfsRpcUnavailable
    refused: type[Exception] = IpfsRpcRefused
    unreadable: type[Exception] = IpfsRpcError  # a file to add cannot be read

    def __init__(self, api: str, *, timeout: float = TIMEOUT_S) -> None:
        self.api = api
        with self._edge("connect"):
            self._client = ipfshttpclient.Client(api, timeout=timeout)

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def version(self) -> dict[str, str]:
        """The daemon's ``version`` answer (``Version``; js-ipfs adds ``ipfs-core``)."""
        with self._edge("version"):
            return {str(k): str(v) for k, v in self._client.version().items()}

    def add_file(self, path: Path) -> str:
        """Add a file's bytes (not pinned) and return the CID the daemon names them by (CIDv1, raw leaves, base32)."""
        with self._edge(f"add {path.name}"):
            try:
                r = self._client.add(
                    str(path), raw_leaves=True, cid_version=1, pin=False, opts={"cid-base": "base32"}
                )
            except OSError as exc:
                raise self.unreadable(f"cannot read {path}: {exc.strerror or exc}") from None
        return str(r["Hash"])

    def pin(self, cid: str) -> None:
        """Pin ``cid`` and everything under it on the daemon (it must hold the blocks, or fetch them)."""
        with self._edge(f"pin {cid}"):
            self._client.pin.add(cid, recursive=True)

    def unpin(self, cid: str) -> None:
        """Unpin ``cid`` (recursively); a CID that is not pinned is already done."""
        with self._edge(f"pin rm {cid}"):
            try:
                self._client.pin.rm(cid, recursive=True)
            except ipfs_errors.ErrorResponse as exc:
                if "not pinned" not in str(exc):
                    raise

    def pinned(self, cid: str) -> bool:
        """Whether ``cid`` is pinned recursively on the daemon."""
        with self._edge(f"pin ls {cid}"):
            try:
                r = self._client.pin.ls(cid, type="recursive")
            except ipfs_errors.ErrorResponse as exc:
                if "not pinned" in str(exc):
                    return False
                raise
        return len(r["Keys"]) > 0

    @contextmanager
    def _edge(self, what: str) -> Iterator[None]:
        """ipfshttpclient's errors as the user's, naming the daemon and the call; urllib3's FutureWarning silenced."""
        api = self.api
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="urllib3")
            try:
                yield
            except ipfs_errors.TimeoutError as exc:
                raise self.unavailable(
                    f"the IPFS node at {api} did not answer in time ({what}): {_short(exc)}"
                ) from None
            except ipfs_errors.ConnectionError as exc:
                raise self.unavailable(
                    f"the IPFS node at {api} cannot be reached ({what}): {_short(exc)}"
                ) from None
            except ipfs_errors.AddressError as exc:
                raise self.unavailable(
                    f"ipfs_api {api!r} is not an address the client can use: {exc}"
                ) from None
            except ipfs_errors.Error as exc:
                raise self.refused(f"the IPFS node at {api} refused {what}: {_short(exc)}") from None


def check_ipfs_api(text: str) -> str:
    """An IPFS RPC API address as the multiaddr :class:`RpcClient` dials, ending in ``/http`` or ``/https``.

    Takes Kubo's form (``/ip4/127.0.0.1/tcp/5001``, optionally with ``/http`` or
    ``/https``) or a URL (``http://127.0.0.1:5001``); a ValueError names the problem otherwise.
    """
    url = re.fullmatch(r"(https?)://(\[[0-9a-fA-F:.]+\]|[^\s/:\[\]]+):(\d{1,5})/?", text)
    if url:
        scheme, host, port = url.groups()
        host = host.strip("[]")
        kind = "ip6" if ":" in host else "ip4" if re.fullmatch(r"[0-9.]+", host) else "dns"
        text = f"/{kind}/{host}/tcp/{port}/{scheme}"
    elif re.match(r"^[a-z]+://", text):
        raise ValueError(f"{text!r:.120} is not an http://HOST:PORT or https://HOST:PORT URL")
    try:
        addr = Multiaddr(text)
    except Exception as exc:
        raise ValueError(f"{text!r:.120} is not a multiaddr ({' '.join(str(exc).split())})") from None
    protocols = [p.name for p in addr.protocols()]
    if not protocols:
        raise ValueError("an empty multiaddr")
    if protocols[-1] not in ("http", "https"):
        protocols.append("http")
        addr = addr.encapsulate("/http")
    if len(protocols) != 3 or protocols[0] not in _DIAL_HOSTS or protocols[1] != "tcp":
        raise ValueError(
            f"{text!r:.120} is not an IPFS RPC API address: /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>"
            "[/http|/https], or http://HOST:PORT"
        )
    return str(addr)


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:199] + "…"
