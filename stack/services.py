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
On top of those, the stack gives the indexer's services (:data:`INDEXER_SERVICES`)
``EMPRESSA_INDEXER_TRUSTED_BRIDGES`` naming its own bridge and, with a dev chain, the
chain's ``EMPRESSA_INDEXER_EVM_*`` (:func:`stack.chain.indexer_env`), and the demo
node ``EMPRESSA_NODE_TRUSTED_BRIDGES``: settings, never a key (``child_env``'s ``extra``).
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

import json
import logging
import secrets
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from node.config import write_default_config
from node.demo import demo_assets
from node.evm import account_address
from node.keystore import create_keystore, read_public_did, unlock_from, unlock_with_evm_from
from node.paths import CONFIG_FILE, KEYSTORE_FILE, NODE_DB
from node.runner import write_private
from node.store import Store as NodeStore

from .settings import LOG_JSON_ENV

log = logging.getLogger(__name__)

SIGNERS = frozenset({"bridge", "demo-node"})  # the children that unlock a keystore
INDEXER_SERVICES = frozenset({"feeder", "api", "reconciler", "pin"})  # they read EMPRESSA_INDEXER_*

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
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A service's environment (see the module docstring for what of ``EMPRESSA_*`` passes).

    Args:
        environ: the caller's environment.
        metrics_dir: where every service's Prometheus values land (``PROMETHEUS_MULTIPROC_DIR``).
        kek: the keystore secret (:func:`dev_secrets`).
        signer: it unlocks a keystore (the bridge, the demo node): it gets ``kek``; no other does.
        extra: settings the stack gives this service (the dev chain's, the trusted bridge), over
            the caller's; never a secret.
    """
    env = {k: v for k, v in environ.items() if passed(k)}
    env.update(extra or {})
    if signer:
        env.update(kek)
    env["DATABASE_URL"] = database_url
    env["PYTHONUNBUFFERED"] = "1"
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if log_json:
        env[LOG_JSON_ENV] = "1"
    return env


def service_argvs(
    exe: list[str],
    *,
    port: int,
    p2p_port: int,
    index_dir: Path,
    bridge_dir: Path,
    data_dir: Path,
    pin: bool = False,
) -> list[tuple[str, list[str]]]:
    """``(name, argv)`` of the services, in the order they start (the demo node comes later).

    With ``pin`` (an IPFS API is configured: :func:`pin_api`) the pin worker runs last.

    The indexer's get ``--data DIR`` (the stack's directory), so they read ``DIR/indexer.env``
    (``empressa chain deploy --data DIR`` writes a registry there); their database is the
    stack's (``DATABASE_URL``) and their index ``--index-dir``, so nothing else of DIR is theirs.
    """
    indexer = [*exe, "indexer"]
    data = ["--data", str(data_dir)]
    return [
        ("feeder", [*indexer, "feed", *data, "--index-dir", str(index_dir)]),
        (
            "api",
            [
                *indexer,
                "run",
                *data,
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
        ("reconciler", [*indexer, "reconcile", *data]),
        *([("pin", [*indexer, "pin", *data])] if pin else []),
    ]


def pin_api(stack_ipfs_api: str | None, data_dir: Path, environ: Mapping[str, str]) -> str | None:
    """The IPFS API the stack's pin worker uses, or None (then it runs none).

    ``up --ipfs-api`` (the stack's ``ipfs_api``), else the indexer's own
    ``EMPRESSA_INDEXER_IPFS_API`` from the environment or ``DIR/indexer.env``, which the
    indexer's services read themselves.
    """
    if stack_ipfs_api is not None:
        return stack_ipfs_api
    from indexer.settings import ENV_PREFIX, EnvFile

    value = EnvFile.read(data_dir).under(environ).get(ENV_PREFIX + "IPFS_API", "").strip()
    return value or None


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


def ensure_keystore(path: Path, kek: Mapping[str, str]) -> str:
    """Create the keystore at ``path`` (sealed with ``kek``) unless there is one; its public did."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        kek_bytes = bytes.fromhex(kek["EMPRESSA_KEK"]) if "EMPRESSA_KEK" in kek else None
        create_keystore(path, passphrase=kek.get("EMPRESSA_PASSPHRASE"), kek=kek_bytes)
    return read_public_did(path)


@dataclass(frozen=True)
class DemoCreator:
    """The demo creator as seeded: its did, its EVM key (with a chain) and its assets' current entry hashes."""

    did: str
    evm_key: bytes | None = field(repr=False)
    hashes: dict[str, bytes]  # key -> raw entry hash of the current asset.put, in demo order


def trust_bridge(node_dir: Path, did: str) -> None:
    """Make the demo node's config.toml trust the stack's bridge (``trusted_bridges``), once.

    A config that sets ``trusted_bridges`` already is left as it is (someone chose it).
    """
    path = node_dir / CONFIG_FILE
    table = tomllib.loads(path.read_text()).get("node", {}) if path.exists() else {}
    if "trusted_bridges" in table:
        return
    with path.open("a", encoding="utf-8") as f:
        f.write(
            f"\n# The bridge of the `empressa up` stack this demo node belongs to.\ntrusted_bridges = {json.dumps([did])}\n"
        )


def seed_demo_node(node_dir: Path, kek: Mapping[str, str], *, evm: bool = False) -> DemoCreator:
    """The demo creator: a node data dir holding the sample assets (published offline).

    Creates the keystore (sealed with ``kek``) and config on the first run, and
    publishes whichever sample assets the node does not hold yet. With ``evm`` the
    keystore's EVM account is created (once) and every sample names it as
    ``payout.evm``; a sample held without it (a stack first run without a chain) gets
    a new version that names it.
    """
    node_dir.mkdir(parents=True, exist_ok=True)
    keystore = node_dir / KEYSTORE_FILE
    if not keystore.exists():
        ensure_keystore(keystore, kek)
        write_default_config(node_dir)
    if evm:
        keys, _ = unlock_with_evm_from(keystore, environ=kek, prompt=None)
    else:
        keys = unlock_from(keystore, environ=kek, prompt=None)
    payout = account_address(keys.evm_key) if keys.evm_key is not None and evm else None
    store = NodeStore.open(node_dir / NODE_DB)
    hashes: dict[str, bytes] = {}
    try:
        held = {r.uri.key: r for r in store.assets(local_only=True, include_deleted=True)}
        added = 0
        for key, body in demo_assets(payout_evm=payout):
            row = held.get(key)
            current = row.put if row is not None and not row.deleted else None
            stale = (
                current is not None and payout is not None and current.body.get("payout") != body["payout"]
            )
            if row is None or stale:
                current = store.append_local(keys.author, kind="asset.put", key=key, body=body)
                added += 1
            if current is not None:
                hashes[key] = current.hash.raw
    finally:
        store.close()
    log.info("demo creator did=%s assets_added=%d evm=%s", keys.author.public.did, added, payout)
    return DemoCreator(did=keys.author.public.did, evm_key=keys.evm_key if evm else None, hashes=hashes)
