"""``empressa up`` for now: one node with its data under the stack's data dir.

The next milestone (indexer and bridge) turns this into the whole stack; until
then it initialises a node on first run, optionally publishes the demo
creator's sample assets, and runs the daemon on ``--p2p-port``.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import trio

from .config import load_node_settings, write_default_config
from .demo import demo_assets
from .keystore import create_keystore, unlock_from
from .runner import run_daemon, write_private
from .store import Store

log = logging.getLogger(__name__)


def _dev_kek(data_dir: Path) -> bytes:
    """The dev stack's key-encryption key: from EMPRESSA_KEK/PASSPHRASE, or a local file.

    A real deployment sets ``EMPRESSA_KEK`` or ``EMPRESSA_PASSPHRASE``; the file
    fallback exists so that one command works on a fresh machine, and says so.
    """
    path = data_dir / "dev-kek"
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    kek = secrets.token_bytes(32)
    write_private(path, kek.hex() + "\n")
    log.warning("dev stack: generated a key-encryption key at %s; set EMPRESSA_KEK for real use", path)
    return kek


def run_stack(*, data_dir: Path, p2p_port: int, demo: bool) -> None:
    node_dir = data_dir / "node"
    node_dir.mkdir(parents=True, exist_ok=True)
    keystore = node_dir / "keystore.json"
    env_set = "EMPRESSA_KEK" in os.environ or "EMPRESSA_PASSPHRASE" in os.environ
    environ = dict(os.environ) if env_set else {"EMPRESSA_KEK": _dev_kek(data_dir).hex()}
    if not keystore.exists():
        kek = bytes.fromhex(environ["EMPRESSA_KEK"]) if "EMPRESSA_KEK" in environ else None
        create_keystore(keystore, passphrase=None if kek else environ.get("EMPRESSA_PASSPHRASE"), kek=kek)
        write_default_config(node_dir)
    keys = unlock_from(keystore, environ=environ, prompt=None)
    if demo:
        store = Store.open(node_dir / "node.db")
        try:
            have = {r.uri.key for r in store.assets(local_only=True, include_deleted=True)}
            added = 0
            for key, body in demo_assets():
                if key not in have:
                    store.append_local(keys.author, kind="asset.put", key=key, body=body)
                    added += 1
            log.info("demo creator did=%s assets_added=%d", keys.author.public.did, added)
        finally:
            store.close()
    settings = load_node_settings(node_dir, {"listen": [f"/ip4/0.0.0.0/tcp/{p2p_port}"], "mdns": False})
    trio.run(run_daemon, settings, keys)
