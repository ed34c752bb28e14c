"""``empressa bridge run``: the bridge's process lifecycle.

:func:`main` is what the CLI calls with the :class:`~bridge.config.BridgeSettings` it
built: it unlocks the bridge's keystore (creating it on first run, like ``node init``),
configures logging and runs :func:`run_bridge` under trio until SIGINT/SIGTERM.
:func:`run_bridge` connects to PostgreSQL, starts the :class:`~bridge.service.Bridge`
and writes ``DATA_DIR/bridge.json`` {did, peer_id, multiaddrs} once listening
(removed again on a clean stop).

Errors for the caller to print as one line: :class:`node.errors.ConfigError`
(settings, or no database URL), :class:`node.errors.ListenError` (a listen
address in use or not ours, checked before the keystore and the database),
:class:`node.errors.KeystoreError` (locked or wrong passphrase/KEK).
"""

from __future__ import annotations

import gc
import getpass
import json
import logging
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

import trio

from node.errors import ConfigError
from node.keystore import Keys, create_keystore, new_keystore_secret, unlock_from
from node.logctx import ConfigureLogging
from node.paths import BRIDGE_JSON, KEYSTORE_FILE
from node.runner import write_private

from .config import BridgeSettings

log = logging.getLogger(__name__)


def unlock_or_create_keys(data_dir: Path, *, environ: Mapping[str, str], interactive: bool) -> Keys:
    """The bridge's keys from ``DATA_DIR/keystore.json``, created there on first run.

    A new keystore is sealed with ``EMPRESSA_KEK`` or ``EMPRESSA_PASSPHRASE`` (or,
    interactively, a passphrase typed twice).

    Raises:
        KeystoreError: locked, wrong secret, or nothing to seal a new keystore with.
    """
    path = data_dir / KEYSTORE_FILE
    prompt = getpass.getpass if interactive else None
    if path.exists():
        return unlock_from(path, environ=environ, prompt=prompt)
    passphrase, kek = new_keystore_secret(
        environ,
        prompt,
        missing=f"no bridge keystore at {path} and nothing to create it with: set EMPRESSA_KEK or EMPRESSA_PASSPHRASE",
        what="bridge keystore",
    )
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = create_keystore(path, passphrase=passphrase, kek=kek)
    log.info("bridge keys created did=%s data_dir=%s", keys.did, data_dir)
    return keys


async def run_bridge(settings: BridgeSettings, keys: Keys) -> None:
    """Run the bridge until SIGINT/SIGTERM (or cancellation); ``bridge.json`` while listening."""
    from indexer.store import Store

    from .service import Bridge

    if not settings.database_url:
        raise ConfigError("the bridge needs a database: set --database-url, DATABASE_URL or database_url")
    data_dir = settings.data_dir
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    from .attest import trusted_attesters

    store = Store.connect(
        settings.database_url,
        pool_size=settings.db_pool_size,
        quarantine_limits=settings.quarantine_limits,
        trusted_attesters=trusted_attesters(settings, keys),
    )
    bridge = Bridge(settings=settings, keys=keys, store=store)
    info_path = data_dir / BRIDGE_JSON
    started = False
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                await nursery.start(bridge.run)
                info = {"did": bridge.did, "peer_id": bridge.peer_id, "multiaddrs": bridge.addrs()}
                write_private(info_path, json.dumps(info, indent=2) + "\n")
                started = True
                gc.freeze()  # what start-up built lives as long as the process (see node.runner)
                log.info("bridge listening did=%s multiaddrs=%s", bridge.did, ",".join(bridge.addrs()))
                async for signum in signals:
                    log.info("shutting down signal=%s", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break
    finally:
        info_path.unlink(missing_ok=True)
        store.close()
        if started:  # one that failed to start says so in its error alone
            log.info("bridge stopped")


def main(
    settings: BridgeSettings,
    environ: Mapping[str, str],
    *,
    configure_logging: ConfigureLogging,
) -> None:
    """``empressa bridge run``: check the settings, unlock or create keys, run until SIGINT/SIGTERM.

    Args:
        settings: the bridge's settings (:func:`~bridge.config.load_bridge_settings`, in ``cli.py``).
        environ: the environment, for the keystore's secret (``EMPRESSA_KEK``/``EMPRESSA_PASSPHRASE``).
        configure_logging: ``(level, as_json)``: cli.py's (:func:`node.logctx.configure_logging`), so
            every service logs by one rule.

    Raises:
        ConfigError, ListenError, KeystoreError: one-line messages for the CLI to print.
    """
    if not settings.database_url:
        raise ConfigError("the bridge needs a database: set --database-url, DATABASE_URL or database_url")
    configure_logging(settings.node.log_level, settings.node.log_json)
    from node.net.host import check_listen

    check_listen(settings.node.listen)  # a taken port is the one line, before keys and the database
    keys = unlock_or_create_keys(settings.data_dir, environ=environ, interactive=sys.stdin.isatty())
    trio.run(run_bridge, settings, keys)
