"""The local EVM (anvil, from the npm registry) that ``up --chain dev`` and the tests run.

``./dev`` installs ``@foundry-rs/anvil`` from ``configs/npm/package-lock.json``
into ``.tools/npm``; the npm package carries the real binary in a per-platform
package (``@foundry-rs/anvil-linux-amd64/bin/anvil``), which is run directly
(the package's ``bin.mjs`` wrapper only finds and execs it). ``EMPRESSA_ANVIL``
names another binary; else one on ``PATH`` is used.
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NPM_DIR = ROOT / ".tools" / "npm" / "node_modules" / "@foundry-rs"
ANVIL_ENV = "EMPRESSA_ANVIL"

# anvil's first default account (its well-known development mnemonic "test test … junk"): public
# knowledge, funded only on a local development chain; never a real key.
DEV_FUNDER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
# Its second account (same mnemonic, same standing): the demo's "someone else" who registers one
# of the demo creator's records first, so the demo shows a mismatch.
DEV_OTHER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"


def _platform_dir() -> str:
    machine = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    system = {"linux": "linux", "darwin": "darwin", "windows": "win32"}.get(
        platform.system().lower(), "linux"
    )
    return f"anvil-{system}-{machine}"


def find_anvil() -> Path | None:
    """The anvil binary to run, or None when none is installed."""
    if env := os.environ.get(ANVIL_ENV):
        p = Path(env)
        return p if p.is_file() and os.access(p, os.X_OK) else None
    local = NPM_DIR / _platform_dir() / "bin" / "anvil"
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which("anvil")
    return Path(found) if found else None


def anvil_argv(
    binary: Path,
    *,
    port: int,
    chain_id: int = 31337,
    block_time: float | None = None,
    state: Path | None = None,
) -> list[str]:
    """anvil on 127.0.0.1:``port``; automine unless ``block_time`` (seconds) is given.

    ``state``: a file the chain is loaded from at start (if it exists) and dumped to every
    second and on exit (SIGTERM included). Measured here with anvil 1.7.1: the blocks and
    their hashes come back as they were, even after a SIGKILL (up to the last second's).
    """
    argv = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id), "--silent"]
    if block_time is not None:
        argv += ["--block-time", str(block_time)]
    if state is not None:
        argv += ["--state", str(state), "--state-interval", "1"]
    return argv
