"""``node publish --make-preview``: a 30-second preview cut with the system's ffmpeg, through the real CLI.

The cut itself needs Debian's ffmpeg, which `./dev test` installs where the machine allows it: that
test skips, saying so, where it is missing. The refusals run everywhere: without ffmpeg
on PATH, with a file that is not audio, with --preview too, or without --file, the
command is one line of error and nothing is published.
"""

from __future__ import annotations

import math
import re
import struct
import subprocess
import wave
from pathlib import Path

import pytest

from node.archive import check_stream
from node.media import file_cid
from node.media_ledger import MediaLedger
from node.preview import PREVIEW_SECONDS, find_ffmpeg
from tests.e2e.conftest import child_env, cli, cli_json, export, init_node, library, one_line_error


def tone(path: Path, seconds: int, rate: int = 8000) -> Path:
    """A mono 16-bit WAV of a 440 Hz tone."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                for i in range(seconds * rate)
            )
        )
    return path


def publish_args(data: Path, song: Path, *extra: str | Path) -> list[str | Path]:
    return [
        "node",
        "publish",
        "--data",
        data,
        "--key",
        "song",
        "--title",
        "Song",
        "--file",
        song,
        "--no-ipfs",
        *extra,
    ]


@pytest.mark.skipif(
    find_ffmpeg() is None,
    reason="ffmpeg is not installed (Debian's ffmpeg package; the project's set-up does not install system packages)",
)
def test_a_30_second_preview_is_cut_and_published(tmp_path: Path) -> None:
    data = tmp_path / "node"
    init_node(data)
    song = tone(tmp_path / "song.wav", PREVIEW_SECONDS + 15)
    cli_json(*publish_args(data, song, "--make-preview"))
    (item,) = check_stream([export(data, all=False)])
    assert item.entry is not None
    body = item.entry.body
    previews = list((data / "previews").glob("*-30s.mp3"))
    assert len(previews) == 1
    preview = body["preview"]
    assert preview["mime"] == "audio/mpeg" and preview["size"] == previews[0].stat().st_size > 0
    assert preview["cid"] == file_cid(previews[0])[0] != body["media"]["cid"]
    with MediaLedger.open(data) as ledger:  # remembered, so `node media push` can add it later
        assert previews[0] in {r.path for r in ledger.rows()}
    probe = subprocess.run(
        [find_ffmpeg() or "ffmpeg", "-hide_banner", "-i", str(previews[0])], capture_output=True, text=True
    )
    h, m, sec = re.search(r"Duration: (\d+):(\d+):([\d.]+)", probe.stderr).groups()  # type: ignore[union-attr]
    assert PREVIEW_SECONDS - 1 <= int(h) * 3600 + int(m) * 60 + float(sec) <= PREVIEW_SECONDS + 1


def test_refusals_are_one_line_and_publish_nothing(tmp_path: Path) -> None:
    data = tmp_path / "node"
    init_node(data)
    song = tone(tmp_path / "song.wav", 2)
    no_ffmpeg = child_env(PATH=str(tmp_path / "empty-bin"))  # the CLI runs by its absolute path
    cases = [
        (publish_args(data, song, "--make-preview"), no_ffmpeg, "needs ffmpeg, which is not installed"),
        (publish_args(data, tmp_path / "cover.png", "--make-preview"), None, "from an audio file; cover.png is image/png"),
        (publish_args(data, song, "--make-preview", "--preview", song), None, "choose one"),
        (["node", "publish", "--data", data, "--key", "k", "--title", "T", "--cid",
          "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "--make-preview"], None, "give --file"),
    ]  # fmt: skip
    (tmp_path / "cover.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    for args, env, why in cases:
        err = one_line_error(cli(*args, env=env, ok=False))
        assert why in err, err
    assert library(data, all=False) == {}
    assert not (data / "previews").exists() or not any((data / "previews").iterdir())
