"""node.media offline: the UnixFS CIDs of the golden vectors (made by a real js-ipfs), and CID kinds."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from node.client import AssetFields, put_body
from node.config import load_node_settings
from node.errors import ConfigError, IpfsUnavailable
from node.media import CHUNK_SIZE, bytes_cid, cid_kind, file_cid, put_files
from node.media_ledger import MediaLedger
from protocol import b32
from tests.vectors import media as vectors

VECTORS = vectors.load()["files"]
PEER = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"


def old_rule_cid(data: bytes) -> str:
    """The CID records named media by before UnixFS: one raw block over all the bytes."""
    return "b" + b32(b"\x01\x55\x12\x20" + hashlib.sha256(data).digest())


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_file_cid_is_what_ipfs_gave(vector: dict[str, object], tmp_path: Path) -> None:
    name, size = str(vector["name"]), int(vector["size"])  # type: ignore[call-overload]
    path = vectors.write_file(name, size, tmp_path)
    assert file_cid(path) == (vector["cid"], size)


def test_the_vectors_cover_one_chunk_and_past_it() -> None:
    sizes = {v["size"] for v in VECTORS}
    assert {0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 1 << 20, 50 << 20} <= sizes
    assert len({v["cid"] for v in VECTORS}) == len(VECTORS)


def test_bytes_cid_equals_file_cid(tmp_path: Path) -> None:
    for name, size in (("one-byte", 1), ("one-chunk-plus-one", CHUNK_SIZE + 1)):
        data = b"".join(vectors.blocks(name, size))
        path = tmp_path / name
        path.write_bytes(data)
        assert bytes_cid(data) == file_cid(path)[0]


def test_publishing_a_file_names_it_by_its_unixfs_cid(tmp_path: Path) -> None:
    [vector] = [v for v in VECTORS if v["name"] == "one-mib"]
    path = vectors.write_file("one-mib", 1 << 20, tmp_path)
    body = put_body(AssetFields(title="Song", file=path, mime="audio/wav"), None)
    assert body["media"] == {"cid": vector["cid"], "mime": "audio/wav", "size": 1 << 20}
    assert body["media"]["cid"] != old_rule_cid(path.read_bytes())


def test_cid_kind() -> None:
    by_name = {v["name"]: v for v in VECTORS}
    for v in VECTORS:
        assert cid_kind(v["cid"], v["size"]) == "unixfs", v["name"]
    big = b"".join(vectors.blocks("one-chunk-plus-one", CHUNK_SIZE + 1))
    assert cid_kind(old_rule_cid(big), len(big)) == "raw-block"
    assert cid_kind(old_rule_cid(big)) == "raw-block"  # no size: a raw CID may be over one chunk
    small = by_name["one-chunk"]
    assert old_rule_cid(b"".join(vectors.blocks("one-chunk", CHUNK_SIZE))) == small["cid"]  # the rules agree
    assert cid_kind("QmRaaUwTNfwgFZpeUy8qrZwrp2dY4kCKmmB5xEqvH3vtD1") == "unixfs"  # CIDv0: dag-pb
    dag_cbor = "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    for text in (dag_cbor, "bnotbase32!", "zdj7WaTZi1VTZmuTs12LqamCD7oRWXJvqdAc2YSAMpvkUNBHK", "b", ""):
        assert cid_kind(text) == "unknown", text


def test_ipfs_api_takes_kubos_multiaddr_or_a_url_and_refuses_the_rest(tmp_path: Path) -> None:
    good = {
        "/ip4/127.0.0.1/tcp/5001": "/ip4/127.0.0.1/tcp/5001/http",
        "http://127.0.0.1:5001": "/ip4/127.0.0.1/tcp/5001/http",
        "https://ipfs.example.com:443/": "/dns/ipfs.example.com/tcp/443/https",
        "http://[::1]:5001": "/ip6/::1/tcp/5001/http",
    }
    for given, kept in good.items():
        assert load_node_settings(tmp_path, {"ipfs_api": given}, {}).ipfs_api == kept
    for bad in (
        "/ip4/127.0.0.1/udp/5001",
        "ftp://host:1",
        "http://host",
        "5001",
        f"/ip4/1.2.3.4/tcp/1/p2p/{PEER}",
    ):
        with pytest.raises(ConfigError, match="invalid setting 'ipfs_api'"):
            load_node_settings(tmp_path, {}, {"EMPRESSA_NODE_IPFS_API": bad})


def test_an_unreachable_ipfs_node_publishes_nothing(tmp_path: Path) -> None:
    song = vectors.write_file("one-mib", 1 << 20, tmp_path)
    fields = AssetFields(title="Song", file=song)
    with socket.socket() as closed:  # bound, never listening
        closed.bind(("127.0.0.1", 0))
        api = f"/ip4/127.0.0.1/tcp/{closed.getsockname()[1]}/http"
        with pytest.raises(IpfsUnavailable, match="cannot be reached"):
            put_files(tmp_path, fields.media_files(put_body(fields, None)), ipfs_api=api)
    with MediaLedger.open(tmp_path) as ledger:
        assert ledger.rows() == []


def test_library_items_say_which_kind_of_cid_names_their_media(tmp_path: Path) -> None:
    """node list and the local API's /v1/library share AssetRow.to_json: each item says its kind."""
    import secrets

    from node.store import Store
    from protocol import Signer

    store = Store.open(tmp_path / "node.db")
    signer = Signer(secrets.token_bytes(32))
    big = b"".join(vectors.blocks("one-chunk-plus-one", CHUNK_SIZE + 1))
    new = next(v for v in VECTORS if v["name"] == "one-mib")
    base = {"description": "", "tags": [], "license": {"type": "cc0"}}
    bodies = {
        "old": {"media": {"cid": old_rule_cid(big), "mime": "audio/wav", "size": len(big)}},
        "new": {"media": {"cid": new["cid"], "mime": "audio/wav", "size": new["size"]}},
    }
    try:
        for key, body in bodies.items():
            store.append_local(signer, kind="asset.put", key=key, body={"title": key, **base, **body})
        kinds = {item["key"]: item["media_kind"] for item in store.library(local_only=True)}
    finally:
        store.close()
    assert kinds == {"old": "raw-block", "new": "unixfs"}
