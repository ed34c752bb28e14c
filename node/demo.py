"""Sample assets from a demo creator, so a newcomer sees the registry at work at once."""

from __future__ import annotations

import hashlib
import random
from typing import Any

from protocol import b32

_MOODS = ["Midnight", "Golden", "Velvet", "Neon", "Quiet", "Electric", "Paper", "Amber", "Hollow", "Crystal"]
_THINGS = [
    "Rain",
    "Harbor",
    "Static",
    "Orchard",
    "Signal",
    "Lanterns",
    "Tide",
    "Circuit",
    "Meadow",
    "Skyline",
]
_GENRES = [
    "lofi",
    "ambient",
    "techno",
    "jazz",
    "cinematic",
    "hip-hop",
    "folk",
    "house",
    "drum-and-bass",
    "synthwave",
]
_KINDS = [
    ("loop", "audio/wav", "A seamless {bpm} BPM {genre} loop, mixed and mastered, stems on request."),
    ("track", "audio/mpeg", "A full {genre} track at {bpm} BPM for videos, games and podcasts."),
    ("sample-pack", "application/zip", "Twenty one-shots in {genre} style: drums, textures and bass hits."),
    ("cover-art", "image/png", "Square cover artwork in a {genre} mood, 3000×3000 px."),
]
_LICENSES = [
    ("personal", None),
    ("commercial", ("12.00", "USD")),
    ("commercial", ("25.50", "USD")),
    ("cc-by", None),
    ("exclusive", ("450.00", "USD")),
    ("commercial", ("40", "XLM")),
]


def _cid(seed: str) -> str:
    return "b" + b32(b"\x01\x55\x12\x20" + hashlib.sha256(seed.encode()).digest())


def demo_assets(
    n: int = 36, *, seed: int = 7, payout_evm: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """``n`` deterministic, realistic ``(key, asset.put body)`` pairs; ``payout_evm`` goes in each payout."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        mood, thing, genre = rng.choice(_MOODS), rng.choice(_THINGS), rng.choice(_GENRES)
        kind, mime, blurb = _KINDS[i % len(_KINDS)]
        bpm = rng.randrange(70, 175)
        lic_type, price = rng.choice(_LICENSES)
        license_: dict[str, Any] = {"type": lic_type}
        if price:
            license_["price"] = {"amount": price[0], "currency": price[1]}
        media: dict[str, Any] = {
            "cid": _cid(f"{i}-{mood}-{thing}"),
            "mime": mime,
            "size": rng.randrange(40_000, 9_000_000),
        }
        if mime.startswith("audio/"):
            media["duration_ms"] = rng.randrange(8_000, 240_000)
        body = {
            "title": f"{mood} {thing}" + ("" if kind == "track" else f" ({kind.replace('-', ' ')})"),
            "description": blurb.format(bpm=bpm, genre=genre),
            "tags": sorted({genre, kind, mood.lower()}),
            "media": media,
            "license": license_,
        }
        if payout_evm is not None:
            body["payout"] = {"evm": payout_evm}
        out.append((f"{mood.lower()}-{thing.lower()}-{i:02d}", body))
    return out


def demo_registrations(keys: list[str]) -> tuple[list[str], list[str], list[str]]:
    """How the dev chain treats the demo assets ``keys``: ``(by the creator, by someone else, not at all)``.

    Most are registered by the demo creator's own EVM account, which their records name
    (verified); the second-to-last is registered first by another account (a mismatch);
    the last stays unregistered.
    """
    if len(keys) < 3:
        return list(keys), [], []
    return list(keys[:-2]), [keys[-2]], [keys[-1]]
