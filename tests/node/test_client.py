"""node.client.put_body: what publish and edit make of their fields (pure: no store, no daemon)."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.client import AssetFields, put_body
from node.errors import NodeError

CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
BASE = {
    "title": "Rain",
    "description": "loop",
    "tags": ["ambient"],
    "media": {"cid": CID, "mime": "audio/mpeg", "size": 10, "duration_ms": 1000},
    "license": {"type": "commercial", "price": {"amount": "5", "currency": "USD"}},
    "payout": {"evm": "0x" + "11" * 20},
}


def test_publish_builds_a_body_from_the_fields() -> None:
    body = put_body(AssetFields(title="T", tags=("a", "b", "a"), cid=CID, mime="audio/wav"), None)
    assert body == {
        "title": "T",
        "description": "",
        "tags": ["a", "b"],
        "media": {"cid": CID, "mime": "audio/wav", "size": 0},
        "license": {"type": "personal"},
    }


def test_an_edit_changes_only_what_it_names() -> None:
    assert put_body(AssetFields(), BASE) == BASE
    body = put_body(
        AssetFields(description="new", duration_ms=5, price="7", payout_stellar="G" + "A" * 55), BASE
    )
    assert body["description"] == "new" and body["title"] == "Rain" and body["tags"] == ["ambient"]
    assert body["media"] == {**BASE["media"], "duration_ms": 5}  # type: ignore[dict-item]
    assert body["license"] == {"type": "commercial", "price": {"amount": "7", "currency": "USD"}}
    assert body["payout"] == {"evm": "0x" + "11" * 20, "stellar": "G" + "A" * 55}
    assert BASE["description"] == "loop", "the previous body is not changed in place"


def test_new_media_replaces_the_old(tmp_path: Path) -> None:
    f = tmp_path / "a.wav"
    f.write_bytes(b"RIFF")
    body = put_body(AssetFields(file=f), BASE)
    assert body["media"]["mime"] == "audio/x-wav" and body["media"]["size"] == 4
    assert "duration_ms" not in body["media"]


def test_bad_fields_are_one_line_node_errors(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="--file PATH or --cid CID"):
        put_body(AssetFields(title="T"), None)
    with pytest.raises(NodeError, match="no such file"):
        put_body(AssetFields(title="T", file=tmp_path / "missing"), None)
    with pytest.raises(NodeError, match="--price and --currency go together"):
        put_body(AssetFields(title="T", cid=CID, mime="audio/wav", price="1"), None)
