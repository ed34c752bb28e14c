"""Protocol hot paths on one core: raw Ed25519 verify against sign_entry and parse_and_verify.

    ./dev bench protocol [--n 2000] [--runs 7] [--authors 200]

Prints figures only; it never passes or fails. The entries are a realistic mix
(mostly asset.put, some edits and deletes, about 430 bytes each) from many
authors. Every operation runs over the same entries in one process, after a
warm-up; each is timed ``--runs`` times and the best and median are shown.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

# Run as ``python bench/protocol.py``, this file's folder comes first on sys.path
# and its own name would shadow the ``protocol`` package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from nacl.bindings import crypto_sign_open  # noqa: E402
from nacl.signing import VerifyKey  # noqa: E402

from protocol import Entry, Signer, canonical_bytes, parse_and_verify, sign_entry  # noqa: E402
from protocol.canonical import loads_canonical, loads_strict, require_canonical  # noqa: E402
from protocol.schema import MAX_ENTRY_BYTES, validate_fields  # noqa: E402
from tests.vectors import unsigned_fields  # noqa: E402

TS0 = 1_700_000_000_000
WORDS = (  # noqa: SIM905
    "night drive loop ambient field recording tape choir synth bass drum break vocal chop "
    "piano room strings dusk harbour neon rain analog warm dry wet stem mix master demo"
).split()
MIMES = ("audio/mpeg", "audio/flac", "audio/wav", "audio/ogg", "image/png", "video/mp4")
LICENSES = ("personal", "commercial", "exclusive", "cc-by", "cc-by-nc", "cc0")
B32 = "abcdefghijklmnopqrstuvwxyz234567"


def _words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _body(rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": _words(rng, 2, 6).title(),
        "description": _words(rng, 2, 10).capitalize() + ".",
        "tags": sorted(set(rng.sample(WORDS, rng.randint(1, 4)))),
        "media": {
            "cid": "bafybei" + "".join(rng.choice(B32) for _ in range(52)),
            "mime": rng.choice(MIMES),
            "size": rng.randint(10_000, 200_000_000),
            "duration_ms": rng.randint(1_000, 900_000),
        },
        "license": {"type": rng.choice(LICENSES)},
    }
    if rng.random() < 0.5:
        body["license"]["price"] = {
            "amount": f"{rng.randint(1, 200)}.{rng.randint(0, 99):02d}",
            "currency": "USDC",
        }
    if rng.random() < 0.3:
        body["payout"] = {"evm": "0x" + rng.randbytes(20).hex()}
    return body


def make_entries(n: int, authors: int, seed: int = 1) -> list[tuple[Signer, dict[str, Any], Entry]]:
    """``n`` entries spread over ``authors`` logs: puts, edits of earlier keys, a few deletes."""
    rng = random.Random(seed)
    signers = [Signer(hashlib.sha256(b"bench-author-%d" % i).digest()) for i in range(authors)]
    heads: dict[int, Entry] = {}
    keys: dict[int, list[str]] = {i: [] for i in range(authors)}
    out = []
    for j in range(n):
        a = rng.randrange(authors)
        head = heads.get(a)
        roll = rng.random()
        if keys[a] and roll < 0.07:
            kind, key, body = "asset.delete", rng.choice(keys[a]), {}
        elif keys[a] and roll < 0.3:
            kind, key, body = "asset.put", rng.choice(keys[a]), _body(rng)
        else:
            kind, key, body = "asset.put", f"track-{j:06d}", _body(rng)
            keys[a].append(key)
        fields = {
            "seq": head.seq + 1 if head else 1,
            "prev": head.hash if head else None,
            "ts": TS0 + j * 1000,
            "kind": kind,
            "key": key,
            "body": body,
        }
        e = sign_entry(signers[a], **fields)
        heads[a] = e
        out.append((signers[a], fields, e))
    return out


def _signing_bytes(e: Entry) -> bytes:
    return canonical_bytes(unsigned_fields(e))


def timed(fn: Callable[[], None], runs: int) -> list[float]:
    """Seconds per call of ``fn`` over ``runs`` runs, after one warm-up call."""
    fn()
    out = []
    for _ in range(runs):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to cpu {cpu}"
    return "not pinned (no sched_setaffinity)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="entries per run (default 2000)")
    ap.add_argument("--runs", type=int, default=7, help="timed runs per operation (default 7)")
    ap.add_argument("--authors", type=int, default=200, help="distinct authors (default 200)")
    args = ap.parse_args()

    pinned = pin_one_core()
    data = make_entries(args.n, args.authors)
    entries = [e for _, _, e in data]
    raws = [e.raw for e in entries]
    verify = [(VerifyKey(e.author.raw), _signing_bytes(e), e.sig) for e in entries]
    opened = [(e.sig + msg, e.author.raw) for e, (_, msg, _) in zip(entries, verify, strict=True)]
    now = TS0 + args.n * 1000
    sizes = [len(r) for r in raws]

    def raw_verify() -> None:
        for vk, msg, sig in verify:
            vk.verify(msg, sig)

    def raw_open() -> None:
        for sm, pk in opened:
            crypto_sign_open(sm, pk)

    def sign() -> None:
        for signer, fields, _ in data:
            sign_entry(signer, **fields)

    def validate() -> None:
        for raw in raws:
            parse_and_verify(raw, now_ms=now)

    decoded = [loads_strict(raw, max_size=MAX_ENTRY_BYTES) for raw in raws]

    def part_decode() -> None:
        for raw in raws:
            loads_canonical(raw, max_size=MAX_ENTRY_BYTES)

    def part_general_decode() -> None:
        for raw in raws:
            loads_strict(raw, max_size=MAX_ENTRY_BYTES)

    def part_schema() -> None:
        for m in decoded:
            validate_fields(m)

    def part_canonical() -> None:
        for m, raw in zip(decoded, raws, strict=True):
            require_canonical(m, raw, key_order_checked=True)

    rows = [
        ("nacl VerifyKey.verify", raw_verify),
        ("nacl crypto_sign_open", raw_open),
        ("sign_entry (encode + sign)", sign),
        ("parse_and_verify (decode + validate)", validate),
        ("  of which: one-pass canonical decode", part_decode),
        ("  of which: schema checks", part_schema),
        ("  non-canonical input instead: decode", part_general_decode),
        ("    + canonical re-encode check", part_canonical),
    ]
    results = {name: [t / args.n for t in timed(fn, args.runs)] for name, fn in rows}

    kinds = {k: sum(e.kind == k for e in entries) for k in ("asset.put", "asset.delete")}
    print(
        f"protocol bench: {args.n} entries from {args.authors} authors "
        f"({kinds['asset.put']} put, {kinds['asset.delete']} delete), "
        f"{statistics.mean(sizes):.0f} B mean ({min(sizes)}-{max(sizes)} B)"
    )
    print(
        f"python {platform.python_version()}, cbor2 {metadata.version('cbor2')}, "
        f"PyNaCl {metadata.version('pynacl')}; {args.runs} runs after a warm-up; {pinned}"
    )
    print()
    print(f"{'operation':<38}{'best µs/op':>12}{'median µs/op':>14}{'best op/s':>12}{'median op/s':>13}")
    print("-" * 89)
    for name, per_op in results.items():
        if name in ("  of which: one-pass canonical decode", "  non-canonical input instead: decode"):
            print()
        best, med = min(per_op), statistics.median(per_op)
        print(f"{name:<38}{best * 1e6:>12.1f}{med * 1e6:>14.1f}{1 / best:>12,.0f}{1 / med:>13,.0f}")
    print()
    full = results["parse_and_verify (decode + validate)"]
    print("raw verify rate / validate rate (target: within 1.5x)")
    for name in ("nacl VerifyKey.verify", "nacl crypto_sign_open"):
        base = results[name]
        best_ratio = min(full) / min(base)
        med_ratio = statistics.median(full) / statistics.median(base)
        overhead = (min(full) - min(base)) * 1e6
        print(
            f"  vs {name:<24}{best_ratio:>6.2f}x best {med_ratio:>6.2f}x median   (+{overhead:.1f} µs/entry)"
        )


if __name__ == "__main__":
    main()
