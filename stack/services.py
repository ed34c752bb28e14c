"""What the stack runs: each service's command line and environment, the keystore secret, the demo creator.

Each service is a child process started through the CLI (``empressa indexer
feed``, ``indexer run``, ``bridge run``, ``indexer reconcile``, ``node run``),
so what runs under the supervisor is exactly what an operator runs by hand.

Environment of the children (:func:`child_env`): the caller's, with
``EMPRESSA_INDEXER_*`` and ``EMPRESSA_BRIDGE_*`` passed through (settings of the
stack's services), but no other ``EMPRESSA_*``: not the caller's node settings
(the demo creator is the stack's node, not theirs), not data directories or
database URLs (the stack chooses those), and not the caller's keystore secret
unless it is the one the stack seals with (see :func:`dev_secrets`).
``EMPRESSA_LOG_JSON`` is a setting of ``up`` itself
(:attr:`~stack.settings.StackSettings.log_json`), handed on to every service
when on. PostgreSQL gets only ``PATH`` (see :mod:`stack.supervisor`).

Secrets: the bridge and demo keystores are sealed with ``EMPRESSA_KEK`` (or
``EMPRESSA_PASSPHRASE``) when set; otherwise a development key-encryption key is
generated once in ``DIR/dev-kek`` (mode 0600) and a warning says so. It is
passed in the environment of the processes that unlock a keystore (the bridge,
the demo node: :data:`SIGNERS`) and of no other (least privilege: the API,
feeder and reconciler never hold key material), never on a command line or in
a log. The database URL they get names a libpq password file (``passfile=``),
not a password.
"""

from __future__ import annotations

import logging
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

from node.config import write_default_config
from node.demo import demo_assets
from node.keystore import create_keystore, unlock_from
from node.paths import KEYSTORE_FILE, NODE_DB
from node.runner import write_private
from node.store import Store as NodeStore

from .settings import LOG_JSON_ENV

log = logging.getLogger(__name__)

SIGNERS = frozenset({"bridge", "demo-node"})  # the children that unlock a keystore

# What of the caller's EMPRESSA_* reaches the children: the settings of the stack's services...
PASSED_PREFIXES = ("EMPRESSA_INDEXER_", "EMPRESSA_BRIDGE_")
# ...but not where their data lives: the stack decides that (--data, its own database).
WITHHELD_SUFFIXES = ("_DATA_DIR", "_DATABASE_URL", "_INDEX_DIR")


def empressa_argv() -> list[str]:
    """The command that runs ``empressa`` with this interpreter."""
    script = Path(sys.executable).with_name("empressa")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


def dev_secrets(data_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The keystore secret for the stack's keystores, as environment variables for children."""
    if "EMPRESSA_KEK" in environ:
        return {"EMPRESSA_KEK": environ["EMPRESSA_KEK"]}
    if "EMPRESSA_PASSPHRASE" in environ:
        return {"EMPRESSA_PASSPHRASE": environ["EMPRESSA_PASSPHRASE"]}
    path = data_dir / "dev-kek"
    if not path.exists():
        write_private(path, secrets.token_bytes(32).hex() + "\n")
        log.warning("dev stack: generated a key-encryption key at %s; set EMPRESSA_KEK for real use", path)
    return {"EMPRESSA_KEK": path.read_text().strip()}


def passed(name: str) -> bool:
    """Whether the caller's environment variable ``name`` reaches the children."""
    if not name.startswith("EMPRESSA_"):
        return True
    return name.startswith(PASSED_PREFIXES) and not name.endswith(WITHHELD_SUFFIXES)


def child_env(
    environ: Mapping[str, str],
    *,
    database_url: str,
    metrics_dir: Path,
    log_json: bool,
    kek: Mapping[str, str],
    signer: bool,
) -> dict[str, str]:
    """A service's environment (see the module docstring for what of ``EMPRESSA_*`` passes).

    Args:
        environ: the caller's environment.
        metrics_dir: where every service's Prometheus values land (``PROMETHEUS_MULTIPROC_DIR``).
        kek: the keystore secret (:func:`dev_secrets`).
        signer: it unlocks a keystore (the bridge, the demo node): it gets ``kek``; no other does.
    """
    env = {k: v for k, v in environ.items() if passed(k)}
    if signer:
        env.update(kek)
    env["DATABASE_URL"] = database_url
    env["PYTHONUNBUFFERED"] = "1"
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if log_json:
        env[LOG_JSON_ENV] = "1"
    return env


def service_argvs(
    exe: list[str], *, port: int, p2p_port: int, index_dir: Path, bridge_dir: Path
) -> list[tuple[str, list[str]]]:
    """``(name, argv)`` of the services, in the order they start (the demo node comes later)."""
    return [
        ("feeder", [*exe, "indexer", "feed", "--index-dir", str(index_dir)]),
        (
            "api",
            [
                *exe,
                "indexer",
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--index-dir",
                str(index_dir),
            ],
        ),
        (
            "bridge",
            [*exe, "bridge", "run", "--data", str(bridge_dir), "--listen", f"/ip4/0.0.0.0/tcp/{p2p_port}"],
        ),
        ("reconciler", [*exe, "indexer", "reconcile"]),
    ]


def demo_node_argv(exe: list[str], node_dir: Path, bridge_addr: str) -> list[str]:
    """The demo creator's daemon, on loopback, dialling the bridge."""
    return [
        *exe,
        "node",
        "run",
        "--data",
        str(node_dir),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api-port",
        "0",
        "--no-mdns",  # it listens on loopback: nothing to announce on the LAN
        "--bootstrap",
        bridge_addr,
    ]


def seed_demo_node(node_dir: Path, kek: Mapping[str, str]) -> None:
    """The demo creator: a node data dir holding the sample assets (published offline).

    Creates the keystore (sealed with ``kek``) and config on the first run, and
    publishes whichever sample assets the node does not hold yet.
    """
    node_dir.mkdir(parents=True, exist_ok=True)
    keystore = node_dir / KEYSTORE_FILE
    if not keystore.exists():
        kek_bytes = bytes.fromhex(kek["EMPRESSA_KEK"]) if "EMPRESSA_KEK" in kek else None
        create_keystore(keystore, passphrase=kek.get("EMPRESSA_PASSPHRASE"), kek=kek_bytes)
        write_default_config(node_dir)
    keys = unlock_from(keystore, environ=kek, prompt=None)
    store = NodeStore.open(node_dir / NODE_DB)
    try:
        have = {r.uri.key for r in store.assets(local_only=True, include_deleted=True)}
        added = 0
        for key, body in demo_assets():
            if key not in have:
                store.append_local(keys.author, kind="asset.put", key=key, body=body)
                added += 1
    finally:
        store.close()
    log.info("demo creator did=%s assets_added=%d", keys.author.public.did, added)
