"""Golden media CIDs: generated files and the CIDs a real IPFS node gave them (``media_cids.json``).

The files are not committed; their bytes come from a seeded generator, so anyone
can make them again: block ``i`` (1 MiB) of the file named ``NAME`` is the first
1 MiB of SHAKE-128(``b"empressa media vector " + NAME + uint64-big-endian(i)``),
and the file is the first ``size`` bytes of blocks 0, 1, …

Regenerate the vectors against a running js-ipfs or Kubo (or one this script
starts, from ``.tools/npm``), and check them without writing::

    .venv/bin/python -m tests.vectors.media [--api /ip4/127.0.0.1/tcp/5001]
    .venv/bin/python -m tests.vectors.media --check

Each file is added through :class:`node.ipfs.IpfsClient` (``ipfs add
--cid-version=1 --raw-leaves``, not pinned); the script refuses to write a file
whose CIDs disagree with :func:`node.media.file_cid`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).with_name("media_cids.json")
BLOCK = 1 << 20
KIB, MIB = 1024, 1 << 20
SIZES = {
    "empty": 0,
    "one-byte": 1,
    "one-chunk": 256 * KIB,
    "one-chunk-plus-one": 256 * KIB + 1,
    "one-mib": MIB,
    "fifty-mib": 50 * MIB,
}
GENERATOR = (
    'block i (1 MiB) of the file named NAME = the first 1 MiB of SHAKE-128(b"empressa media vector " '
    "+ NAME + uint64-big-endian(i)); the file = the first `size` bytes of blocks 0, 1, …"
)


def blocks(name: str, size: int) -> Iterator[bytes]:
    """The bytes of the vector file ``name`` of ``size`` bytes, in pieces of at most 1 MiB."""
    for i in range(0, (size + BLOCK - 1) // BLOCK):
        block = hashlib.shake_128(b"empressa media vector " + name.encode() + i.to_bytes(8, "big")).digest(
            BLOCK
        )
        yield block[: size - i * BLOCK]


def write_file(name: str, size: int, folder: Path) -> Path:
    path = folder / f"{name}.bin"
    with path.open("wb") as f:
        for piece in blocks(name, size):
            f.write(piece)
    return path


def load() -> dict[str, Any]:
    return json.loads(VECTORS.read_text())


def main(argv: list[str] | None = None) -> int:
    from node.ipfs import IpfsClient
    from node.ipfs_testing import start_jsipfs
    from node.media import file_cid

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api", help="the IPFS RPC API multiaddr (default: start js-ipfs from .tools/npm)")
    ap.add_argument("--check", action="store_true", help="exit 1 if the file would change; write nothing")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="media-vectors-") as tmp:
        folder = Path(tmp)
        daemon = None if args.api else start_jsipfs(folder / "repo")
        api = args.api or daemon.api  # type: ignore[union-attr]
        try:
            with IpfsClient(api) as ipfs:
                version = ipfs.version()
                files = []
                for name, size in SIZES.items():
                    path = write_file(name, size, folder)
                    cid = ipfs.add_file(path)
                    offline, _ = file_cid(path)
                    if cid != offline:
                        print(f"{name}: the daemon gave {cid}, file_cid {offline}", file=sys.stderr)
                        return 1
                    files.append({"name": name, "size": size, "cid": cid})
                    path.unlink()
        finally:
            if daemon is not None:
                daemon.stop()
    doc = {
        "description": "UnixFS CIDv1 of `ipfs add --cid-version=1 --raw-leaves` (256 KiB chunks, balanced "
        "DAG, raw leaves, base32) of generated files; made by tests/vectors/media.py",
        "generator": GENERATOR,
        "added_with": " ".join(f"{k} {v}" for k, v in version.items() if k in ("Version", "ipfs-core")),
        "files": files,
    }
    text = json.dumps(doc, indent=2) + "\n"
    if args.check:
        same = VECTORS.exists() and json.loads(VECTORS.read_text())["files"] == files
        print("media vectors up to date" if same else "media vectors would change")
        return 0 if same else 1
    VECTORS.write_text(text)
    print(f"wrote {VECTORS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
