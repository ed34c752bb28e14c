"""``node publish --make-preview``: a 30-second preview cut from the audio file, with the system's ``ffmpeg``.

No Python library here decodes every audio format a creator may give, so the cut
is ``ffmpeg``'s (Debian's ``ffmpeg`` package, found on ``PATH`` with
:func:`shutil.which`): the first :data:`PREVIEW_SECONDS` seconds, audio only, as
MP3 at 128 kb/s. The project's set-up does not install system packages; without
``ffmpeg`` the flag is an error saying so, and nothing is published.

The preview is written to ``DATA_DIR/previews/<media CID>-30s.mp3`` (written
beside it and renamed, so a crash leaves no half file under that name) and kept
there: ``DATA_DIR/media.db`` remembers it like any published file, so ``node media
push`` can add it later.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import subprocess
from pathlib import Path

from .errors import NodeError

__all__ = ["PREVIEW_SECONDS", "find_ffmpeg", "make_preview"]

PREVIEW_SECONDS = 30
TIMEOUT_S = 600.0


def find_ffmpeg() -> str | None:
    """The ``ffmpeg`` on ``PATH``, or None."""
    return shutil.which("ffmpeg")


def make_preview(data_dir: Path, source: Path, cid: str) -> Path:
    """Cut the preview of ``source`` (whose CID is ``cid``) into ``DATA_DIR/previews/`` and return its path.

    Raises:
        NodeError: ``ffmpeg`` is not installed, ``source`` is not an audio file (by its name's
            type), or ``ffmpeg`` failed (its last line of output).
    """
    mime = mimetypes.guess_type(source.name)[0] or ""
    if not mime.startswith("audio/"):
        raise NodeError(
            f"--make-preview cuts a preview from an audio file; {source.name} is "
            f"{mime or 'of unknown type'} (give --preview FILE instead)"
        )
    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        raise NodeError(
            "--make-preview needs ffmpeg, which is not installed (Debian: apt-get install ffmpeg); "
            "give --preview FILE instead"
        )
    folder = data_dir / "previews"
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{cid}-{PREVIEW_SECONDS}s.mp3"
    if dest.is_file() and dest.stat().st_size > 0:
        return dest  # cut before from the same bytes
    tmp = folder / f".{dest.name}.{os.getpid()}.tmp.mp3"
    argv = [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
        "-t", str(PREVIEW_SECONDS), "-vn", "-map_metadata", "-1", "-c:a", "libmp3lame", "-b:a", "128k", str(tmp),
    ]  # fmt: skip
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        if r.returncode != 0 or not tmp.is_file():
            last = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
            raise NodeError(f"ffmpeg could not cut a preview of {source.name}: {last}")
        os.replace(tmp, dest)
    except subprocess.TimeoutExpired:
        raise NodeError(f"ffmpeg did not cut a preview of {source.name} within {TIMEOUT_S:.0f} s") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest
