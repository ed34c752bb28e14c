"""Media on a real IPFS node (js-ipfs through its Kubo RPC API): it names the vector files as the
golden vectors say, and serves back the bytes. Skips without js-ipfs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from node.errors import IpfsRefused, IpfsUnavailable
from node.ipfs import IpfsClient
from tests.vectors import media as vectors

VECTORS = vectors.load()["files"]


def test_the_daemon_gives_the_vector_cids(jsipfs: Any, tmp_path: Path) -> None:
    with IpfsClient(jsipfs.api) as ipfs:
        for v in VECTORS:
            path = vectors.write_file(v["name"], v["size"], tmp_path)
            assert ipfs.add_file(path) == v["cid"], v["name"]
            path.unlink()


def test_added_and_pinned_bytes_come_back_through_the_gateway(jsipfs: Any, tmp_path: Path) -> None:
    path = vectors.write_file("one-mib", 1 << 20, tmp_path)
    with IpfsClient(jsipfs.api) as ipfs:
        cid = ipfs.add_file(path)
        assert not ipfs.pinned(cid)
        ipfs.pin(cid)
        assert ipfs.pinned(cid)
    r = httpx.get(f"{jsipfs.gateway_url}/ipfs/{cid}", timeout=60)
    assert r.status_code == 200
    assert r.content == path.read_bytes()


def test_errors_are_ours(jsipfs: Any) -> None:
    with IpfsClient(jsipfs.api) as ipfs, pytest.raises(IpfsRefused, match="refused pin"):
        ipfs.pin("not-a-cid")
    with (
        socket_closed() as api,
        IpfsClient(api) as ipfs,
        pytest.raises(IpfsUnavailable, match="cannot be reached"),
    ):
        ipfs.version()


class socket_closed:
    """The multiaddr of a 127.0.0.1 port that nothing listens on (bound, never listening)."""

    def __enter__(self) -> str:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return f"/ip4/127.0.0.1/tcp/{self.sock.getsockname()[1]}/http"

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
