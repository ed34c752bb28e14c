"""Publishing media to a real IPFS node (js-ipfs): added, checked against the offline CID, pinned;
published offline and pushed later; refused whole when the daemon names a file otherwise.
Skips without js-ipfs."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.client import AssetFields, put_body
from node.errors import CidMismatch, IpfsUnavailable
from node.ipfs import IpfsClient
from node.media import file_cid, push, put_files
from node.media_ledger import MediaLedger
from tests.e2e.conftest import cli, cli_json, init_node, library, one_line_error
from tests.vectors import media as vectors


@pytest.fixture
def no_raw_leaves(jsipfs: Any) -> Iterator[str]:
    """The RPC API of an IPFS node that adds without raw leaves, whatever it is asked (js-ipfs
    behind a forwarding proxy that rewrites ``raw-leaves=true``): it names files by other CIDs."""

    class Forward(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = _read_body(self)
            url = jsipfs.api_url + re.sub(r"raw-leaves=(true|True)", "raw-leaves=false", self.path)
            r = httpx.post(
                url, content=body, headers={"Content-Type": self.headers["Content-Type"] or ""}, timeout=60
            )
            self.send_response(r.status_code)
            self.send_header("Content-Type", r.headers.get("content-type", "application/json"))
            self.send_header("Content-Length", str(len(r.content)))
            self.end_headers()
            self.wfile.write(r.content)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"/ip4/127.0.0.1/tcp/{server.server_address[1]}/http"
    server.shutdown()
    server.server_close()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() != "chunked":
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    parts = []
    while size := int(handler.rfile.readline().split(b";")[0], 16):
        parts.append(handler.rfile.read(size))
        handler.rfile.readline()
    handler.rfile.readline()
    return b"".join(parts)


def media_set(folder: Path, tag: str) -> tuple[Path, Path, Path]:
    """A song past one chunk (so its CID is a dag-pb root), a preview and an artwork; bytes of the
    vectors' generator, named by ``tag`` so that no two tests share a file (the daemon is shared)."""
    made = []
    for name, size in (
        (f"{tag}-song.wav", 1 << 20),
        (f"{tag}-preview.mp3", 1),
        (f"{tag}-cover.png", 256 * 1024),
    ):
        path = folder / name
        path.write_bytes(b"".join(vectors.blocks(name, size)))
        made.append(path)
    return made[0], made[1], made[2]


def files_of(song: Path, preview: Path, artwork: Path) -> list[Any]:
    fields = AssetFields(title="Song", file=song, preview=preview, artwork=artwork)
    return fields.media_files(put_body(fields, None))


def test_put_files_adds_checks_and_pins(jsipfs: Any, tmp_path: Path) -> None:
    files = files_of(*media_set(tmp_path, "put"))
    assert [f.cid for f in files] == [file_cid(f.path)[0] for f in files]
    put_files(tmp_path, files, ipfs_api=jsipfs.api)
    with IpfsClient(jsipfs.api) as ipfs:
        assert all(ipfs.pinned(f.cid) for f in files)
    with MediaLedger.open(tmp_path) as ledger:
        assert {r.cid: r.pinned_on for r in ledger.rows()} == {f.cid: jsipfs.api for f in files}


def test_a_daemon_that_names_a_file_otherwise_is_refused(
    jsipfs: Any, no_raw_leaves: str, tmp_path: Path
) -> None:
    files = files_of(*media_set(tmp_path, "mismatch"))
    with pytest.raises(CidMismatch, match="nothing was published"):
        put_files(tmp_path, files, ipfs_api=no_raw_leaves)
    with MediaLedger.open(tmp_path) as ledger, IpfsClient(jsipfs.api) as ipfs:
        assert ledger.rows() == []
        assert not any(ipfs.pinned(f.cid) for f in files)


def test_offline_files_are_pushed_later_and_only_once(jsipfs: Any, tmp_path: Path) -> None:
    song, preview, artwork = media_set(tmp_path, "push")
    files = files_of(song, preview, artwork)
    put_files(tmp_path, files, ipfs_api=None)
    with pytest.raises(IpfsUnavailable, match="no IPFS node configured"):
        push(tmp_path, ipfs_api=None)
    artwork.write_bytes(b"changed since it was published")
    preview.unlink()
    r = push(tmp_path, ipfs_api=jsipfs.api)
    song_cid, preview_cid, artwork_cid = (f.cid for f in files)
    assert r.pushed == [song_cid]
    problems = {cid: why for cid, _, why in r.problems}
    assert problems.keys() == {preview_cid, artwork_cid}
    assert problems[preview_cid] == "the file is gone"
    assert "the file changed" in problems[artwork_cid] and problems[artwork_cid].endswith("not pinned")
    with IpfsClient(jsipfs.api) as ipfs:
        assert ipfs.pinned(song_cid)
        assert not ipfs.pinned(artwork_cid)
    again = push(tmp_path, ipfs_api=jsipfs.api)
    assert (again.pushed, again.already, len(again.problems)) == ([], 1, 2)


def test_publish_through_the_cli(jsipfs: Any, no_raw_leaves: str, tmp_path: Path) -> None:
    data = tmp_path / "node"
    init_node(data)
    song, preview, artwork = media_set(tmp_path, "cli")
    cids = [file_cid(p)[0] for p in (song, preview, artwork)]
    args = ["node", "publish", "--data", data, "--key", "song", "--title", "Song", "--file", song,
            "--preview", preview, "--artwork", artwork]  # fmt: skip

    err = one_line_error(cli(*args, "--ipfs-api", no_raw_leaves, ok=False))
    assert cids[0] in err and "nothing was published" in err
    assert library(data) == {}

    cli_json(*args, "--ipfs-api", jsipfs.api, "--json")
    [item] = library(data).values()
    assert item["media"] == {"cid": cids[0], "mime": "audio/x-wav", "size": 1 << 20}
    assert item["media_kind"] == "unixfs"
    r = httpx.get(f"{jsipfs.gateway_url}/ipfs/{cids[0]}", timeout=60)
    assert r.content == song.read_bytes()
    with IpfsClient(jsipfs.api) as ipfs:
        assert all(ipfs.pinned(cid) for cid in cids)


def test_publish_offline_then_media_push_through_the_cli(jsipfs: Any, tmp_path: Path) -> None:
    data = tmp_path / "node"
    init_node(data)
    song, preview, _ = media_set(tmp_path, "offline")
    catalogue = tmp_path / "catalogue.jsonl"
    catalogue.write_text(json.dumps({"key": "from-file", "title": "Listed", "file": preview.name}) + "\n")
    cids = [file_cid(song)[0], file_cid(preview)[0]]
    cli_json("node", "publish", "--data", data, "--key", "late", "--title", "Late", "--file", song, "--json")
    cli_json("node", "publish", "--data", data, "--from", catalogue, "--json")
    err = one_line_error(cli("node", "media", "push", "--data", data, ok=False))
    assert "no IPFS node configured" in err
    pushed = cli_json("node", "media", "push", "--data", data, "--ipfs-api", jsipfs.api, "--json")
    assert pushed["pushed"] == cids and pushed["problems"] == []
    with IpfsClient(jsipfs.api) as ipfs:
        assert all(ipfs.pinned(cid) for cid in cids)
