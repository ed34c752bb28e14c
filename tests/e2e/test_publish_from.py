"""``empressa node publish --from FILE``: a JSON Lines catalogue, offline and through a running daemon."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import CID, Daemons, cli, cli_json, init_node, library, one_line_error


def catalogue(folder: Path, lines: list[dict[str, object] | str]) -> Path:
    path = folder / "catalogue.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_a_catalogue_is_published_whole_or_not_at_all(tmp_path: Path) -> None:
    data = tmp_path / "node"
    init_node(data)
    media = tmp_path / "cat" / "media"
    media.mkdir(parents=True)
    (media / "loop.wav").write_bytes(b"RIFF" + b"\x00" * 60)
    good = catalogue(
        tmp_path / "cat",
        [
            {"key": "loop", "title": "Loop", "file": "media/loop.wav", "tags": ["a", "b"]},
            "",
            {"key": "pad", "title": "Pad", "cid": CID, "mime": "audio/mpeg", "license": "commercial",
             "price": "4.50", "currency": "USD"},
        ],
    )  # fmt: skip
    bad = tmp_path / "cat" / "bad.jsonl"
    bad.write_text(
        json.dumps({"key": "ok", "title": "Fine", "cid": CID, "mime": "audio/mpeg"})
        + "\n"
        + json.dumps({"key": "no media", "title": "x", "file": "media/missing.wav"})
        + "\nnot json\n"
    )
    err = one_line_error(cli("node", "publish", "--data", data, "--from", bad, ok=False))
    assert "line 2: " in err and "line 3: not JSON" in err and "nothing was published" in err
    assert not err.split(": ", 2)[2].startswith("line 1:") and "; line 1:" not in err
    assert library(data) == {}, "a bad line publishes nothing, not even the good lines"

    r = cli_json("node", "publish", "--data", data, "--from", good)
    assert r == {"count": 2, "first_seq": 1, "last_seq": 2, "via": "store"}
    items = {i["key"]: i for i in library(data).values()}
    assert items["loop"]["media"]["size"] == 64 and items["loop"]["media"]["mime"] == "audio/x-wav"
    assert items["loop"]["tags"] == ["a", "b"]
    assert items["pad"]["license"] == {"type": "commercial", "price": {"amount": "4.50", "currency": "USD"}}


def test_a_catalogue_goes_through_the_running_daemon(tmp_path: Path, daemons: Daemons) -> None:
    data = tmp_path / "node"
    init_node(data)
    d = daemons.start(data)
    lines = [
        {"key": f"k{i:04d}", "title": f"Take {i}", "cid": CID, "mime": "audio/mpeg"} for i in range(1200)
    ]
    path = catalogue(tmp_path, [*lines])
    p = cli("node", "publish", "--data", data, "--from", path, "--json")
    assert json.loads(p.stdout) == {"count": 1200, "first_seq": 1, "last_seq": 1200, "via": "daemon"}
    assert "published 1200/1200" in p.stderr.decode(), "a progress line when stderr is not a terminal"
    assert d.log().count("POST /v1/local/entries -> 201") == 2, "two bulk requests (1,000 + 200)"
    bad = catalogue(tmp_path, [lines[0], {"key": "x", "title": " ", "cid": CID, "mime": "audio/mpeg"}])
    err = one_line_error(cli("node", "publish", "--data", data, "--from", bad, ok=False))
    assert "line 2: body.title" in err
    assert len(library(data)) == 1200
