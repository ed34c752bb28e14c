"""``empressa up`` runs the pin worker as a child exactly when an IPFS API is configured."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stack.errors import StackError
from stack.services import INDEXER_SERVICES, empressa_argv, pin_api, service_argvs
from stack.settings import load_stack_settings


def names(pin: bool, tmp_path: Path) -> list[str]:
    argvs = service_argvs(
        ["empressa"], port=1, p2p_port=2, index_dir=tmp_path / "s", bridge_dir=tmp_path / "b", data_dir=tmp_path,
        pin=pin,
    )  # fmt: skip
    return [name for name, _ in argvs]


def test_the_pin_worker_runs_only_with_an_ipfs_api(tmp_path: Path) -> None:
    assert "pin" not in names(False, tmp_path)
    assert names(True, tmp_path)[-1] == "pin" and "pin" in INDEXER_SERVICES


def test_which_ipfs_api_the_stack_pins_on(tmp_path: Path) -> None:
    assert pin_api(None, tmp_path, {}) is None
    env = {"EMPRESSA_INDEXER_IPFS_API": "/ip4/127.0.0.1/tcp/5002"}
    assert pin_api(None, tmp_path, env) == "/ip4/127.0.0.1/tcp/5002"
    (tmp_path / "indexer.env").write_text("EMPRESSA_INDEXER_IPFS_API=/ip4/127.0.0.1/tcp/5003\n")
    assert pin_api(None, tmp_path, {}) == "/ip4/127.0.0.1/tcp/5003"
    assert pin_api(None, tmp_path, env) == "/ip4/127.0.0.1/tcp/5002"  # the environment over the file
    assert (
        pin_api("/ip4/127.0.0.1/tcp/5004/http", tmp_path, env) == "/ip4/127.0.0.1/tcp/5004/http"
    )  # --ipfs-api


def test_up_checks_its_ipfs_api(tmp_path: Path) -> None:
    s = load_stack_settings(tmp_path, {"ipfs_api": "http://127.0.0.1:5001"}, {})
    assert s.ipfs_api == "/ip4/127.0.0.1/tcp/5001/http"
    with pytest.raises(StackError, match="ipfs_api"):
        load_stack_settings(tmp_path, {"ipfs_api": "ftp://nope"}, {})


def test_indexer_pin_without_an_ipfs_api_is_one_clear_line(tmp_path: Path) -> None:
    r = subprocess.run(
        [*empressa_argv(), "indexer", "pin", "--database-url", "postgresql://127.0.0.1:1/none"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no IPFS node configured: set ipfs_api" in lines[0], r.stderr
