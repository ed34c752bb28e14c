"""What the ``empressa indexer …`` and ``empressa chain deploy`` commands do, apart from parsing and printing.

Each function takes the command's settings (:class:`~indexer.settings.IndexerSettings`, built
in ``cli.py``) and typed arguments, and returns what the command prints as a result with
``to_json()`` (its ``--json`` object) and ``text()`` (its line for a person); the services
(:func:`serve_api`, :func:`feed`, :func:`reconcile`, :func:`pin`) run until SIGINT/SIGTERM instead.

Without a database URL a command runs an embedded PostgreSQL in ``DATA/postgres`` for its
own run (:func:`_database`). Logging is configured through the ``configure_logging``
the caller hands in (``cli.py``'s, :func:`node.logctx.configure_logging`), so every
process logs by one rule without this package importing the node's.

Errors are the package's (:class:`~indexer.errors.IndexerError`), one line each.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ChainConfigError, Conflict
from .settings import ENV_PREFIX, IndexerSettings, write_env_file
from .stop import SignalStop

ConfigureLogging = Callable[[str, bool], None]  # (level, as_json)


@contextmanager
def _database(settings: IndexerSettings, *, migrate: bool) -> Iterator[str]:
    """The settings' database URL, else an embedded PostgreSQL in ``DATA/postgres`` for the command's run.

    The embedded server is stopped afterwards if this command started it; so that happens on
    SIGTERM too, SIGTERM interrupts like Ctrl-C unless the command handles it itself.
    """
    from .embedded import database

    if settings.database_url is None and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    with database(settings.database_url, settings.data_dir / "postgres", migrate=migrate) as url:
        yield url


def _stop_on_signals() -> SignalStop:
    """A cue set by SIGINT or SIGTERM (:mod:`indexer.stop`): the services' cue to stop after what they are doing."""
    return SignalStop().install()


def serve_api(settings: IndexerSettings, *, configure_logging: ConfigureLogging) -> None:
    """``indexer run``: serve the HTTP API (after migrating the database) until Ctrl-C or SIGTERM."""
    from .api import serve

    configure_logging(settings.log_level, settings.log_json)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # uvicorn stops on Ctrl-C or SIGTERM and then raises it again: a clean stop, after this command's
    # embedded PostgreSQL (if it started one) is stopped too.
    with _database(settings, migrate=True) as url, suppress(KeyboardInterrupt):
        serve(settings.model_copy(update={"database_url": url}))


@dataclass(frozen=True)
class Migrated:
    revision: str

    def to_json(self) -> dict[str, Any]:
        return {"revision": self.revision}

    def text(self) -> str:
        return f"database at revision {self.revision}"


def migrate_database(settings: IndexerSettings, *, configure_logging: ConfigureLogging) -> Migrated:
    """``indexer migrate``: apply every migration (``alembic upgrade head``)."""
    from .db import migrate

    configure_logging("INFO", False)
    with _database(settings, migrate=False) as url:
        return Migrated(migrate(url))


def feed(settings: IndexerSettings, *, configure_logging: ConfigureLogging) -> None:
    """``indexer feed``: keep the search index fed from PostgreSQL until SIGINT/SIGTERM."""
    from .search import Feeder, open_for_feeding
    from .store import Store

    configure_logging(settings.log_level, settings.log_json)
    stop = _stop_on_signals()
    with _database(settings, migrate=True) as url:
        store = Store.connect(url, pool_size=2)
        try:
            Feeder(store, open_for_feeding(store, settings.index_dir)).run(stop)
        finally:
            store.close()


@dataclass(frozen=True)
class Reindexed:
    indexed: int
    index_dir: Path

    def to_json(self) -> dict[str, Any]:
        return {"indexed": self.indexed}

    def text(self) -> str:
        return f"indexed {self.indexed} assets into {self.index_dir}"


def reindex(settings: IndexerSettings, *, progress: bool, configure_logging: ConfigureLogging) -> Reindexed:
    """``indexer reindex``: rebuild the search index from PostgreSQL (``progress``: a bar on stderr).

    Raises:
        Conflict: a running feeder holds the index.
    """
    from .search import reindex as rebuild
    from .store import Store

    configure_logging("WARNING", False)
    with _database(settings, migrate=True) as url:
        store = Store.connect(url, pool_size=2)
        try:
            n = rebuild(store, settings.index_dir, progress=progress)
        except Conflict:
            raise Conflict(
                f"the search index at {settings.index_dir} is held by a running feeder (`empressa up` or"
                " `empressa indexer feed`), which keeps it current by itself; to rebuild it anyway,"
                " stop that process, run this again, then start it again"
            ) from None
        finally:
            store.close()
    return Reindexed(n, settings.index_dir)


def reconcile(settings: IndexerSettings, *, configure_logging: ConfigureLogging) -> None:
    """``indexer reconcile``: follow the configured chains onto the assets until SIGINT/SIGTERM."""
    from .chains import build_sources
    from .reconciler import run_reconciler
    from .store import Store

    configure_logging("INFO", settings.log_json)
    stop = _stop_on_signals()
    with _database(settings, migrate=True) as url:
        store = Store.connect(url, pool_size=2)
        try:
            run_reconciler(
                database_url=url,
                sources=build_sources(settings, store),
                stop=stop,
                interval=settings.reconcile_interval,
                store=store,
            )
        finally:
            store.close()


def pin(settings: IndexerSettings, *, configure_logging: ConfigureLogging) -> None:
    """``indexer pin``: the pin worker (:mod:`indexer.pins`) until SIGINT/SIGTERM; ``ipfs_api`` must be set."""
    from .errors import IpfsUnavailable
    from .pins import PinWorker
    from .store import Store
    from .store.pins import Pins

    if settings.ipfs_api is None:
        raise IpfsUnavailable(
            "no IPFS node configured: set ipfs_api (EMPRESSA_INDEXER_IPFS_API, --ipfs-api) to run the pin worker"
        )
    configure_logging("INFO", settings.log_json)
    stop = _stop_on_signals()
    with _database(settings, migrate=True) as url:
        store = Store.connect(url, pool_size=2)
        try:
            worker = PinWorker.from_settings(Pins(store.engine), settings)
            try:
                worker.run(stop)
            finally:
                worker.ipfs.close()
        finally:
            store.close()


@dataclass(frozen=True)
class ApiKey:
    id: str
    key: str  # the secret, shown once
    scopes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "key": self.key, "scopes": self.scopes}

    def text(self) -> str:
        return f"{self.key}\n(key id {self.id}, scopes {', '.join(self.scopes)}; shown once: store it now)"


def create_api_key(settings: IndexerSettings, *, name: str, scopes: Sequence[str]) -> ApiKey:
    """``indexer api-key create``: a new key with ``scopes`` (duplicates dropped, sorted).

    Raises:
        BadRequest: no scope, or one that is not a scope.
    """
    from .store import Store

    wanted = sorted(set(scopes))
    with _database(settings, migrate=True) as url:
        store = Store.connect(url, pool_size=1)
        try:
            key_id, secret = store.admin.create_api_key(name=name, scopes=wanted)
        finally:
            store.close()
    return ApiKey(key_id, secret, wanted)


@dataclass(frozen=True)
class Deployed:
    address: str
    chain_id: int
    chain: str  # CAIP-2
    block: int
    tx: str
    config: Path  # the indexer.env written

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "chain_id": self.chain_id, "chain": self.chain, "block": self.block,
                "tx": self.tx, "config": str(self.config)}  # fmt: skip

    def text(self) -> str:
        return (
            f"AssetRegistry deployed at {self.address} on {self.chain} (block {self.block}, tx {self.tx})\n"
            f"wrote {self.config}"
        )


def deploy_chain(rpc_url: str, data_dir: Path, *, deployer_key: str | None) -> Deployed:
    """``chain deploy``: deploy the AssetRegistry and write its address into ``data_dir/indexer.env``.

    Raises:
        ChainConfigError: ``rpc_url`` is not an http(s) URL (said before anything is sent), or the
            chain refused the deployment.
    """
    from pydantic import ValidationError

    from .chains.evm import deploy_registry
    from .chains.settings import ChainSettings

    try:  # the URL's form, before anything is sent
        ChainSettings(evm_rpc_url=rpc_url, evm_registry="0x" + "00" * 20)
    except ValidationError:
        raise ChainConfigError(f"--rpc-url {rpc_url!r:.80} is not an http:// or https:// URL") from None
    d = deploy_registry(rpc_url, deployer_key=deployer_key)
    path = write_env_file(
        data_dir,
        {
            ENV_PREFIX + "EVM_RPC_URL": rpc_url,
            ENV_PREFIX + "EVM_REGISTRY": d.address,
            ENV_PREFIX + "EVM_CHAIN_ID": str(d.chain_id),
            ENV_PREFIX + "EVM_START_BLOCK": str(d.block),
        },
    )
    return Deployed(d.address, d.chain_id, d.caip2, d.block, d.tx, path)
