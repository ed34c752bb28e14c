"""The ``empressa`` command: parses arguments, builds settings, calls into the packages.

Errors go to stderr as one line and a non-zero exit; ``--json`` prints one
JSON object on stdout for scripts.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NoReturn

DEFAULT_NODE_DIR = Path("~/.empressa/node")
DEFAULT_INDEXER_DIR = Path("~/.empressa/indexer")
DEFAULT_BRIDGE_DIR = Path("~/.empressa/bridge")
DEFAULT_STACK_DIR = Path("~/.empressa/stack")


# -- output ---------------------------------------------------------------------------


class _KeyValueFormatter(logging.Formatter):
    """``ts=… level=… logger=… cid=… msg="…"``: one structured line per record."""

    def format(self, record: logging.LogRecord) -> str:
        from node.logctx import correlation_id

        msg = record.getMessage().replace('"', "'")
        line = (
            f"ts={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')}.{int(record.msecs):03d} "
            f'level={record.levelname.lower()} logger={record.name} cid={correlation_id.get()} msg="{msg}"'
        )
        if record.exc_info:
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from node.logctx import correlation_id

        d = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "cid": correlation_id.get(),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return json.dumps(d)


def configure_logging(level: str = "INFO", as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if as_json else _KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # libp2p logs connection churn at INFO/WARNING; keep it to real problems.
    logging.getLogger("libp2p").setLevel(logging.ERROR)
    logging.getLogger("multiaddr").setLevel(logging.ERROR)


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"empressa: {message}", file=sys.stderr)
    raise SystemExit(code)


def emit(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    print(json.dumps(obj) if getattr(args, "json", False) else text)


# -- node commands ----------------------------------------------------------------------


def _data_dir(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Path:
    """The node's data directory: ``--data``, else ``EMPRESSA_NODE_DATA_DIR``, else ``~/.empressa/node``."""
    from node.config import default_data_dir

    return Path(args.data).expanduser() if args.data else default_data_dir(environ)


def _unlocker(data_dir: Path) -> Callable[[], Any]:
    from node.keystore import unlock_from
    from node.paths import KEYSTORE_FILE

    def unlock() -> Any:
        prompt = getpass.getpass if sys.stdin.isatty() else None
        return unlock_from(data_dir / KEYSTORE_FILE, environ=os.environ, prompt=prompt)

    return unlock


def cmd_node_init(args: argparse.Namespace) -> None:
    from node.config import write_default_config
    from node.keystore import create_keystore, new_keystore_secret
    from node.paths import KEYSTORE_FILE

    data_dir = _data_dir(args)
    data_dir.mkdir(parents=True, exist_ok=True)
    passphrase, kek = new_keystore_secret(
        os.environ,
        getpass.getpass if sys.stdin.isatty() else None,
        missing="no passphrase: set EMPRESSA_PASSPHRASE or EMPRESSA_KEK, or run interactively",
    )
    keys = create_keystore(data_dir / KEYSTORE_FILE, passphrase=passphrase, kek=kek)
    write_default_config(data_dir)
    did = keys.author.public.did
    emit(args, {"did": did, "data_dir": str(data_dir)}, did)


def node_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Any:
    """``empressa node run``'s :class:`~node.config.NodeSettings`: its flags over the layered sources."""
    from node.config import load_node_settings

    overrides: dict[str, Any] = {
        "listen": args.listen,
        "bootstrap": args.bootstrap,
        "api_port": args.api_port,
        "mdns": False if args.no_mdns else None,
    }
    return load_node_settings(_data_dir(args, environ), overrides, environ)


def cmd_node_run(args: argparse.Namespace) -> None:
    import trio

    from node.runner import run_daemon

    settings = node_settings(args, os.environ)
    configure_logging(settings.log_level, settings.log_json)
    keys = _unlocker(settings.data_dir)()
    trio.run(run_daemon, settings, keys)


def _evm_unlocker(data_dir: Path) -> Callable[[], Any]:
    """Unlocks the keystore with the EVM account in it (created on first use): ``(keys, created)``."""
    from node.keystore import unlock_with_evm_from
    from node.paths import KEYSTORE_FILE

    def unlock() -> Any:
        prompt = getpass.getpass if sys.stdin.isatty() else None
        return unlock_with_evm_from(data_dir / KEYSTORE_FILE, environ=os.environ, prompt=prompt)

    return unlock


def cmd_node_evm_account(args: argparse.Namespace) -> None:
    from node.onchain import evm_account

    address, created = evm_account(_evm_unlocker(_data_dir(args)))
    emit(args, {"address": address, "created": created}, f"{address}" + (" (created)" if created else ""))


def cmd_node_register(args: argparse.Namespace) -> None:
    from node.config import load_node_settings
    from node.onchain import register_asset

    data_dir = _data_dir(args)
    settings = load_node_settings(data_dir, {"evm_rpc_url": args.rpc_url, "evm_registry": args.registry})
    r = register_asset(
        data_dir,
        args.key,
        rpc_url=settings.evm_rpc_url,
        registry=settings.evm_registry,
        unlock=_evm_unlocker(data_dir),
        progress=None if args.json else lambda line: print(line, file=sys.stderr, flush=True),
    )
    verdict = {
        "verified": f"will verify: the record's payout.evm is {r.owner}",
        "mismatch": f"will be a mismatch: the record's payout.evm is {r.payout_evm}, not {r.owner}",
        "unbound": "will be unbound: the record names no payout.evm (edit it with --payout-evm me)",
    }[r.expect]
    emit(
        args,
        r.to_json(),
        f"transaction {r.tx}\nasset id {r.asset_id} on {r.chain} (block {r.block}, registry {r.registry})\n"
        f"the indexer will check: entry {r.entry} ({r.record_hash}), owner {r.owner}: {verdict}",
    )


def _asset_fields(args: argparse.Namespace) -> Any:
    from node.client import AssetFields
    from node.onchain import payout_evm

    return AssetFields(
        title=args.title,
        description=args.description,
        tags=tuple(args.tag or ()),
        file=Path(args.file) if args.file else None,
        cid=args.cid,
        mime=args.mime,
        size=args.size,
        duration_ms=args.duration_ms,
        license_type=args.license,
        price=args.price,
        currency=args.currency,
        terms=args.terms,
        payout_evm=payout_evm(args.payout_evm, _evm_unlocker(_data_dir(args))),
        payout_stellar=args.payout_stellar,
        preview=Path(args.preview) if args.preview else None,
        artwork=Path(args.artwork) if args.artwork else None,
    )


def _write(args: argparse.Namespace, kind: str, body: dict[str, Any]) -> None:
    from node.client import write

    data_dir = _data_dir(args)
    r = write(data_dir, kind=kind, key=args.key, body=body, unlock=_unlocker(data_dir))
    emit(args, {"uri": r.uri, "hash": r.hash, "seq": r.seq}, f"{r.uri} {r.hash}")


def cmd_node_publish(args: argparse.Namespace) -> None:
    from node.client import put_body

    if args.from_file is not None:
        _publish_from(args)
        return
    if args.key is None:
        fail("--key is required (or --from FILE)")
    if args.title is None:
        fail("--title is required")
    fields = _asset_fields(args)
    _write(args, "asset.put", _with_files(args, fields, put_body(fields, None)))


def _publish_from(args: argparse.Namespace) -> None:
    from node.client import publish_catalogue
    from node.onchain import payout_evm

    given = [
        f
        for f in ("key", "title", "description", "tag", "file", "cid", "preview", "artwork")
        if getattr(args, f)
    ]
    if given:
        fail(f"--from takes the fields from the file; drop --{given[0]}")
    data_dir = _data_dir(args)
    evm = _evm_unlocker(data_dir)
    r = publish_catalogue(
        data_dir,
        Path(args.from_file),
        unlock=_unlocker(data_dir),
        payout_evm=lambda value: payout_evm(value, evm),
        progress=_progress_bar(),
        ipfs_api=None if args.no_ipfs else _ipfs_api(args),
    )
    emit(args, r.to_json(), f"published {r.count} assets (seq {r.first_seq}..{r.last_seq}, via {r.via})")


def _progress_bar() -> Callable[[int, int], None]:
    """``progress(done, total)`` on stderr: a tqdm bar on a terminal, else a line at each tenth."""
    state: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            if "bar" not in state:
                from tqdm import tqdm

                state["bar"] = tqdm(total=total, unit="asset", file=sys.stderr)
            bar = state["bar"]
            bar.update(done - bar.n)
            if done >= total:
                bar.close()
            return
        tenth = done * 10 // total
        if tenth > state.get("tenth", 0) or done >= total:
            state["tenth"] = tenth
            print(f"empressa: published {done}/{total}", file=sys.stderr, flush=True)

    return progress


def cmd_node_edit(args: argparse.Namespace) -> None:
    from node.client import current_put, put_body

    fields = _asset_fields(args)
    _write(
        args, "asset.put", _with_files(args, fields, put_body(fields, current_put(_data_dir(args), args.key)))
    )


def _with_files(args: argparse.Namespace, fields: Any, body: dict[str, Any]) -> dict[str, Any]:
    """``body``, once the files it names are on IPFS (``ipfs_api``) or remembered for ``media push`` (:mod:`node.media`)."""
    from node.media import put_files

    if files := fields.media_files(body):
        put_files(_data_dir(args), files, ipfs_api=None if args.no_ipfs else _ipfs_api(args))
    return body


def _ipfs_api(args: argparse.Namespace) -> str | None:
    from node.config import load_node_settings

    return load_node_settings(_data_dir(args), {"ipfs_api": args.ipfs_api}, os.environ).ipfs_api


def cmd_node_media_push(args: argparse.Namespace) -> None:
    from node.media import push

    r = push(_data_dir(args), ipfs_api=_ipfs_api(args))
    emit(args, r.to_json(), r.text())
    if r.problems:
        raise SystemExit(1)


def cmd_node_delete(args: argparse.Namespace) -> None:
    from node.client import current_put

    current_put(_data_dir(args), args.key)
    _write(args, "asset.delete", {})


def _verified(v: dict[str, Any] | None) -> str:
    """``  verified eip155:31337 #3``: a trusted bridge's standing attestation, as ``node list`` shows it."""
    return f"  verified {v['chain']} #{v['onchain_id']}" if v else ""


def cmd_node_list(args: argparse.Namespace) -> None:
    from node.client import library
    from node.config import load_node_settings

    data_dir = _data_dir(args)
    trusted = load_node_settings(data_dir, {}, os.environ).trusted_bridges
    items = library(data_dir, include_others=args.all, trusted_bridges=trusted)
    if args.json:
        print(json.dumps({"items": items}))
        return
    if not items:
        print(
            "no assets" + ("" if args.all else " (publish one with: empressa node publish --key … --title …)")
        )
        return
    width = max(len(i["key"]) for i in items)
    for i in items:
        lic = i["license"] or {}
        price = lic.get("price")
        price_s = f"{price['amount']} {price['currency']}" if price else "free"
        who = "" if i["mine"] else f"  by {i['did'][:20]}…"
        tags = ",".join(i["tags"])
        print(
            f"{i['key']:<{width}}  {i['title']}  [{lic.get('type', '?')}, {price_s}]  v{i['versions']}  {tags}{who}"
            + _verified(i["verification"])
        )


def cmd_node_export(args: argparse.Namespace) -> None:
    from node.client import export

    out = sys.stdout.buffer
    for raw in export(_data_dir(args), include_others=args.all):
        out.write(raw)
    out.flush()


INPUT_CHUNK = 64 * 1024


def _input_chunks(path: str) -> Iterator[bytes]:
    """The file (``-``: stdin) as it is read, in chunks; an unreadable file is one line."""
    from node.errors import NodeError

    try:
        f = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")

    def chunks() -> Iterator[bytes]:
        try:
            while chunk := f.read(INPUT_CHUNK):
                yield chunk
        except OSError as exc:
            raise NodeError(f"cannot read {path}: {exc.strerror}") from None
        finally:
            if f is not sys.stdin.buffer:
                f.close()

    return chunks()


def cmd_node_import(args: argparse.Namespace) -> None:
    from node.archive import import_entries

    report = import_entries(_data_dir(args), _input_chunks(args.file))
    if not report.items:
        fail("no entries in the input")  # as verify says: an empty file is a wrong file, not a no-op
    rejected = report.rejected
    for index, why in rejected.listed:
        print(f"entry {index}: rejected: {why}", file=sys.stderr)
    if rejected.unlisted:
        print(f"… and {rejected.unlisted} more rejected entries not listed", file=sys.stderr)
    emit(
        args,
        {"stored": report.stored, "duplicates": report.duplicates, "rejected": rejected.count},
        f"stored {report.stored}, already held {report.duplicates}, rejected {rejected.count}",
    )
    if rejected.count:
        raise SystemExit(1)


def cmd_verify(args: argparse.Namespace) -> None:
    """One line per entry; ``--json`` one object, written as it goes. Failures past REPORT_LIMIT are counted."""
    from node.archive import REPORT_LIMIT, check_stream

    ok = failed = listed = 0
    out = sys.stdout
    for c in check_stream(_input_chunks(args.file)):
        e = c.entry
        if e is None:
            failed += 1
            if listed >= REPORT_LIMIT and not c.last:
                continue
            listed += 1
        else:
            ok += 1
        if args.json:
            row = (
                {"index": c.index, "ok": True, "hash": e.hash.cid, "author": e.author.did,
                 "seq": e.seq, "kind": e.kind, "key": e.key}
                if e is not None
                else {"index": c.index, "ok": False, "error": c.error}
            )  # fmt: skip
            out.write(('{"entries": [' if ok + listed == 1 else ", ") + json.dumps(row))
        elif e is not None:
            out.write(f"{c.index}: ok {e.hash.cid} {e.author.did} #{e.seq} {e.kind} {e.key}\n")
        else:
            out.write(f"{c.index}: {c.error}\n")
    if not ok + failed:
        fail("no entries in the input")
    unlisted = failed - listed
    if args.json:
        out.write(f'], "ok": {ok}, "failed": {failed}, "unlisted": {unlisted}}}\n')
    elif unlisted:
        out.write(f"… and {unlisted} more failed entries not listed\n")
    if failed:
        raise SystemExit(1)


def cmd_up(args: argparse.Namespace) -> None:
    from stack import load_stack_settings, run_stack

    flags = {
        "port": args.port,
        "p2p_port": args.p2p_port,
        "database_url": args.database_url,
        "demo": args.demo or None,  # a store_true flag: absent is "not given", not False
        "chain": args.chain,
        "chain_port": args.chain_port,
    }
    settings = load_stack_settings(Path(args.data).expanduser(), flags, os.environ)
    configure_logging("INFO", as_json=settings.log_json)
    run_stack(settings, environ=os.environ)


# -- indexer and bridge commands ---------------------------------------------------------------


@contextmanager
def _database(settings: Any, *, migrate: bool) -> Iterator[str]:
    """The settings' database URL, else an embedded PostgreSQL in ``DATA/postgres`` for the command's run.

    The embedded server is stopped afterwards if this command started it; so that happens on
    SIGTERM too, SIGTERM interrupts like Ctrl-C unless the command handles it itself.
    """
    import signal

    from indexer.embedded import database

    if settings.database_url is None and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    with database(settings.database_url, settings.data_dir / "postgres", migrate=migrate) as url:
        yield url


def indexer_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Any:
    """An ``empressa indexer …`` command's :class:`~indexer.settings.IndexerSettings`.

    Built by the loader every process's settings are built by: ``DATA_DIR/indexer.env`` <
    ``DATABASE_URL`` < ``EMPRESSA_INDEXER_*`` < the command's flags.
    """
    from indexer.settings import ENV_PREFIX, PLAIN_ENV, EnvFile, IndexerSettings
    from node.errors import ConfigError
    from node.layered import load_layered

    data_dir = _indexer_dir(args, environ)
    file = EnvFile.read(data_dir)
    overrides = {name: getattr(args, name, None) for name in ("host", "port", "index_dir", "database_url")}
    try:
        return load_layered(
            IndexerSettings,
            data_dir,
            overrides,
            file.under(environ),
            table=None,
            env_prefix=ENV_PREFIX,
            plain_env=PLAIN_ENV,
        )
    except ConfigError as exc:
        raise ConfigError(file.source_of(str(exc), environ)) from None


def _indexer_dir(args: argparse.Namespace, environ: Mapping[str, str]) -> Path:
    """``--data``, else ``EMPRESSA_INDEXER_DATA_DIR``, else ``~/.empressa/indexer``."""
    from indexer.settings import ENV_PREFIX
    from node.layered import data_dir_from

    if getattr(args, "data", None):
        return Path(args.data).expanduser()
    return data_dir_from(environ, ENV_PREFIX, DEFAULT_INDEXER_DIR.expanduser())


DEPLOYER_KEY_ENV = "EMPRESSA_DEPLOYER_KEY"


def deployer_key(environ: Mapping[str, str]) -> str | None:
    """``chain deploy``'s deployer key, from the environment only (never a flag: flags are visible to all)."""
    return environ.get(DEPLOYER_KEY_ENV, "").strip() or None


def cmd_chain_deploy(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from indexer.chains.evm import deploy_registry
    from indexer.chains.settings import ChainSettings
    from indexer.settings import ENV_PREFIX, write_env_file

    try:  # the URL's form, before anything is sent
        ChainSettings(evm_rpc_url=args.rpc_url, evm_registry="0x" + "00" * 20)
    except ValidationError:
        fail(f"--rpc-url {args.rpc_url!r:.80} is not an http:// or https:// URL")
    data_dir = _indexer_dir(args, os.environ)
    d = deploy_registry(args.rpc_url, deployer_key=deployer_key(os.environ))
    path = write_env_file(
        data_dir,
        {
            ENV_PREFIX + "EVM_RPC_URL": args.rpc_url,
            ENV_PREFIX + "EVM_REGISTRY": d.address,
            ENV_PREFIX + "EVM_CHAIN_ID": str(d.chain_id),
            ENV_PREFIX + "EVM_START_BLOCK": str(d.block),
        },
    )
    emit(
        args,
        {"address": d.address, "chain_id": d.chain_id, "chain": d.caip2, "block": d.block, "tx": d.tx,
         "config": str(path)},
        f"AssetRegistry deployed at {d.address} on {d.caip2} (block {d.block}, tx {d.tx})\nwrote {path}",
    )  # fmt: skip


def cmd_indexer_run(args: argparse.Namespace) -> None:
    import signal

    from indexer.api import serve

    settings = indexer_settings(args, os.environ)
    configure_logging(settings.log_level, settings.log_json)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # uvicorn stops on Ctrl-C or SIGTERM and then raises it again: a clean stop, after this command's
    # embedded PostgreSQL (if it started one) is stopped too.
    with _database(settings, migrate=True) as url, suppress(KeyboardInterrupt):
        serve(settings.model_copy(update={"database_url": url}))


def cmd_indexer_migrate(args: argparse.Namespace) -> None:
    from indexer.db import migrate

    configure_logging("INFO")
    with _database(indexer_settings(args, os.environ), migrate=False) as url:
        revision = migrate(url)
    emit(args, {"revision": revision}, f"database at revision {revision}")


def _stop_on_signals() -> Any:
    import signal
    import threading

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def cmd_indexer_feed(args: argparse.Namespace) -> None:
    from indexer.search import Feeder, open_for_feeding
    from indexer.store import Store

    settings = indexer_settings(args, os.environ)
    configure_logging(settings.log_level, settings.log_json)
    stop = _stop_on_signals()
    with _database(settings, migrate=True) as url:
        store = Store.connect(url, pool_size=2)
        try:
            Feeder(store, open_for_feeding(store, settings.index_dir)).run(stop)
        finally:
            store.close()


def cmd_indexer_reindex(args: argparse.Namespace) -> None:
    from indexer.errors import Conflict
    from indexer.search import reindex
    from indexer.store import Store

    settings = indexer_settings(args, os.environ)
    configure_logging("WARNING")
    with _database(settings, migrate=True) as url:
        store = Store.connect(url, pool_size=2)
        try:
            n = reindex(store, settings.index_dir, progress=not args.json)
        except Conflict:
            fail(
                f"the search index at {settings.index_dir} is held by a running feeder (`empressa up` or"
                " `empressa indexer feed`), which keeps it current by itself; to rebuild it anyway,"
                " stop that process, run this again, then start it again"
            )
        finally:
            store.close()
    emit(args, {"indexed": n}, f"indexed {n} assets into {settings.index_dir}")


def cmd_indexer_reconcile(args: argparse.Namespace) -> None:
    from indexer.chains import build_sources
    from indexer.reconciler import run_reconciler
    from indexer.store import Store

    settings = indexer_settings(args, os.environ)
    configure_logging("INFO", as_json=settings.log_json)
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


def cmd_indexer_api_key_create(args: argparse.Namespace) -> None:
    from indexer.store import Store

    with _database(indexer_settings(args, os.environ), migrate=True) as url:
        store = Store.connect(url, pool_size=1)
        try:
            key_id, secret = store.admin.create_api_key(name=args.name or "", scopes=sorted(set(args.scope)))
        finally:
            store.close()
    emit(
        args,
        {"id": key_id, "key": secret, "scopes": sorted(set(args.scope))},
        f"{secret}\n(key id {key_id}, scopes {', '.join(sorted(set(args.scope)))}; shown once: store it now)",
    )


def bridge_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Any:
    """``empressa bridge run``'s :class:`~bridge.config.BridgeSettings`: its flags over the layered sources."""
    from bridge.config import default_data_dir, load_bridge_settings

    data_dir = Path(args.data).expanduser() if args.data else default_data_dir(environ)
    overrides = {"database_url": args.database_url, "listen": args.listen, "bootstrap": args.bootstrap}
    return load_bridge_settings(data_dir, overrides, environ)


def cmd_bridge_run(args: argparse.Namespace) -> None:
    from bridge.runner import main as run_bridge

    run_bridge(bridge_settings(args, os.environ), os.environ, configure_logging=configure_logging)


# -- parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="empressa", description="Empressa: a creator-owned media registry.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_opt(
        sp: argparse.ArgumentParser, default: Path = DEFAULT_NODE_DIR, env: str | None = None
    ) -> None:
        if env is None:  # `up`: no variable names its directory
            sp.add_argument(
                "--data", default=str(default), metavar="DIR", help=f"data directory (default {default})"
            )
            return
        sp.add_argument("--data", metavar="DIR", help=f"data directory (default {env}, else {default})")

    def json_opt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--json", action="store_true", help="print one JSON object for scripts")

    def ipfs_opt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--ipfs-api", metavar="ADDR", help="the IPFS node's RPC API (default: ipfs_api of the config)"
        )

    up = sub.add_parser("up", help="run the whole stack on this machine")
    data_opt(up, DEFAULT_STACK_DIR)
    up.add_argument("--port", type=int, help="indexer API port")  # defaults: stack.settings
    up.add_argument("--p2p-port", type=int, help="libp2p TCP port")
    up.add_argument("--database-url", help="use this PostgreSQL instead of the embedded one")
    up.add_argument("--demo", action="store_true", help="publish sample assets from a demo creator")
    up.add_argument(
        "--chain",
        choices=["dev", "none"],
        help="dev: run a local EVM chain (anvil) with the registry deployed (the default with --demo); none: no chain",
    )
    up.add_argument(
        "--chain-port", type=int, metavar="N", help="the dev chain's JSON-RPC port (default 8545)"
    )
    up.set_defaults(func=cmd_up)

    verify = sub.add_parser("verify", help="check every entry of a CBOR sequence file")
    verify.add_argument("file", help="CBOR sequence (RFC 8742), or - for stdin")
    json_opt(verify)
    verify.set_defaults(func=cmd_verify)

    node = sub.add_parser("node", help="the creator's node").add_subparsers(
        dest="node_command", required=True, metavar="COMMAND"
    )

    init = node.add_parser("init", help="create the author key and config; prints the did:key")
    data_opt(init, env="EMPRESSA_NODE_DATA_DIR")
    json_opt(init)
    init.set_defaults(func=cmd_node_init)

    run = node.add_parser("run", help="run the node daemon")
    data_opt(run, env="EMPRESSA_NODE_DATA_DIR")
    run.add_argument("--listen", action="append", metavar="MULTIADDR", help="listen address (repeatable)")
    run.add_argument("--bootstrap", action="append", metavar="MULTIADDR", help="peer to dial (repeatable)")
    run.add_argument("--api-port", type=int, metavar="N", help="local API port (default: any free port)")
    run.add_argument("--no-mdns", action="store_true", help="do not discover peers on the LAN")
    run.set_defaults(func=cmd_node_run)

    def asset_fields(sp: argparse.ArgumentParser, *, required_title: bool) -> None:
        sp.add_argument("--key", required=not required_title, help="asset key [A-Za-z0-9._~-]{1,64}")
        sp.add_argument("--title", help="title" + (" (required)" if required_title else ""))
        sp.add_argument("--description")
        sp.add_argument(
            "--tag", action="append", metavar="T", help="tag (repeatable; replaces all tags on edit)"
        )
        media = sp.add_mutually_exclusive_group()
        media.add_argument("--file", metavar="PATH", help="media file (its CID, size and type are computed)")
        media.add_argument("--cid", metavar="CID", help="media CID, for content already on IPFS")
        sp.add_argument("--mime", metavar="M", help="media type, e.g. audio/mpeg")
        sp.add_argument("--size", type=int, help="media size in bytes (with --cid)")
        sp.add_argument("--duration-ms", type=int, dest="duration_ms", help="media duration in ms")
        sp.add_argument("--license", metavar="TYPE", help="personal, commercial, exclusive, cc-by, …")
        sp.add_argument("--price", metavar="AMOUNT", help="decimal amount, e.g. 12.50")
        sp.add_argument("--currency", metavar="CUR", help="currency code, e.g. USD")
        sp.add_argument("--terms", help="license terms text")
        sp.add_argument(
            "--payout-evm",
            metavar="ADDR",
            help="0x… address for on-chain payments and registration; `me`: this node's EVM account",
        )
        sp.add_argument("--payout-stellar", metavar="ACCOUNT", help="G… Stellar account for payments")
        sp.add_argument("--preview", metavar="PATH", help="a preview file (e.g. a 30 s excerpt), kept apart")
        sp.add_argument("--artwork", metavar="PATH", help="an artwork image file")
        ipfs_opt(sp)
        sp.add_argument(
            "--no-ipfs",
            action="store_true",
            help="publish offline with the computed CIDs even when ipfs_api is set (push later: node media push)",
        )
        data_opt(sp, env="EMPRESSA_NODE_DATA_DIR")
        json_opt(sp)

    publish = node.add_parser("publish", help="sign and store a new asset (or many: --from FILE)")
    asset_fields(publish, required_title=True)
    publish.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="publish every asset of a JSON Lines file (one object a line, the fields of these flags "
        "with underscores; file paths relative to FILE); all lines or none",
    )
    publish.set_defaults(func=cmd_node_publish)

    edit = node.add_parser("edit", help="publish a new version with the given fields changed")
    asset_fields(edit, required_title=False)
    edit.set_defaults(func=cmd_node_edit)

    delete = node.add_parser("delete", help="delete an asset (a tombstone; history stays)")
    delete.add_argument("--key", required=True)
    data_opt(delete, env="EMPRESSA_NODE_DATA_DIR")
    json_opt(delete)
    delete.set_defaults(func=cmd_node_delete)

    lst = node.add_parser("list", help="my library")
    data_opt(lst, env="EMPRESSA_NODE_DATA_DIR")
    lst.add_argument("--all", action="store_true", help="include assets replicated from others")
    json_opt(lst)
    lst.set_defaults(func=cmd_node_list)

    export = node.add_parser("export", help="signed entries as a CBOR sequence on stdout")
    data_opt(export, env="EMPRESSA_NODE_DATA_DIR")
    export.add_argument("--all", action="store_true", help="include entries replicated from others")
    export.set_defaults(func=cmd_node_export)

    imp = node.add_parser("import", help="validate and store entries from a CBOR sequence")
    data_opt(imp, env="EMPRESSA_NODE_DATA_DIR")
    imp.add_argument("file", help="CBOR sequence (RFC 8742), or - for stdin")
    json_opt(imp)
    imp.set_defaults(func=cmd_node_import)

    evm = node.add_parser("evm-account", help="this node's EVM account (created once, in the keystore)")
    data_opt(evm, env="EMPRESSA_NODE_DATA_DIR")
    json_opt(evm)
    evm.set_defaults(func=cmd_node_evm_account)

    media = node.add_parser("media", help="the media files on IPFS").add_subparsers(
        dest="media_command", required=True, metavar="COMMAND"
    )
    push = media.add_parser("push", help="add and pin on IPFS the files published without it")
    ipfs_opt(push)
    data_opt(push, env="EMPRESSA_NODE_DATA_DIR")
    json_opt(push)
    push.set_defaults(func=cmd_node_media_push)

    reg = node.add_parser("register", help="register an asset's current entry hash on the EVM registry")
    reg.add_argument("--key", required=True, help="the asset's key")
    reg.add_argument("--rpc-url", metavar="URL", help="EVM JSON-RPC URL (default: evm_rpc_url of the config)")
    reg.add_argument("--registry", metavar="ADDR", help="AssetRegistry address (default: evm_registry)")
    data_opt(reg, env="EMPRESSA_NODE_DATA_DIR")
    json_opt(reg)
    reg.set_defaults(func=cmd_node_register)
    indexer = sub.add_parser(
        "indexer", help="the indexer: API, migrations, search index, keys"
    ).add_subparsers(dest="indexer_command", required=True, metavar="COMMAND")

    def db_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--database-url", help="PostgreSQL URL (default: DATABASE_URL, else an embedded one)")
        sp.add_argument(
            "--data",
            metavar="DIR",
            help=f"data directory: the embedded PostgreSQL in DIR/postgres, the search index in DIR/search "
            f"(default {DEFAULT_INDEXER_DIR}, or EMPRESSA_INDEXER_DATA_DIR); an `empressa up --data DIR` "
            "stack's directory acts on that stack",
        )

    def index_opt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--index-dir",
            dest="index_dir",
            metavar="DIR",
            help="the search index directory (default DATA/search)",
        )

    irun = indexer.add_parser("run", help="serve the HTTP API")
    db_opts(irun)
    index_opt(irun)
    irun.add_argument("--host", help="bind address (default 127.0.0.1)")
    irun.add_argument("--port", type=int, help="port (default 8000)")
    irun.set_defaults(func=cmd_indexer_run)

    imig = indexer.add_parser("migrate", help="apply database migrations (alembic upgrade head)")
    db_opts(imig)
    json_opt(imig)
    imig.set_defaults(func=cmd_indexer_migrate)

    ifeed = indexer.add_parser("feed", help="keep the search index fed from PostgreSQL")
    db_opts(ifeed)
    index_opt(ifeed)
    ifeed.set_defaults(func=cmd_indexer_feed)

    irei = indexer.add_parser("reindex", help="rebuild the search index from PostgreSQL")
    db_opts(irei)
    index_opt(irei)
    json_opt(irei)
    irei.set_defaults(func=cmd_indexer_reindex)

    irec = indexer.add_parser("reconcile", help="run the reconciler (chain events onto assets)")
    db_opts(irec)
    irec.set_defaults(func=cmd_indexer_reconcile)

    ikey = indexer.add_parser("api-key", help="API keys").add_subparsers(
        dest="key_command", required=True, metavar="COMMAND"
    )
    kcreate = ikey.add_parser("create", help="create an API key; prints the secret once")
    kcreate.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=["ingest", "moderate", "admin"],
        help="a scope (repeatable)",
    )
    kcreate.add_argument("--name", help="a label for the key")
    db_opts(kcreate)
    json_opt(kcreate)
    kcreate.set_defaults(func=cmd_indexer_api_key_create)

    chain = sub.add_parser("chain", help="the EVM registry contract").add_subparsers(
        dest="chain_command", required=True, metavar="COMMAND"
    )
    deploy = chain.add_parser(
        "deploy", help="deploy the AssetRegistry and write its address into the indexer's config"
    )
    deploy.add_argument("--rpc-url", required=True, metavar="URL", help="EVM JSON-RPC URL")
    deploy.add_argument(
        "--data",
        metavar="DIR",
        help=f"the indexer's data directory, whose indexer.env gets the registry (default "
        f"EMPRESSA_INDEXER_DATA_DIR, else {DEFAULT_INDEXER_DIR}); the deployer is the RPC's unlocked "
        f"account, or {DEPLOYER_KEY_ENV} from the environment",
    )
    json_opt(deploy)
    deploy.set_defaults(func=cmd_chain_deploy)

    bridge = sub.add_parser("bridge", help="the bridge super-node").add_subparsers(
        dest="bridge_command", required=True, metavar="COMMAND"
    )
    brun = bridge.add_parser("run", help="follow every author and mirror them into PostgreSQL")
    data_opt(brun, DEFAULT_BRIDGE_DIR, env="EMPRESSA_BRIDGE_DATA_DIR")
    brun.add_argument("--database-url", help="PostgreSQL URL (default: DATABASE_URL)")
    brun.add_argument("--listen", action="append", metavar="MULTIADDR", help="listen address (repeatable)")
    brun.add_argument("--bootstrap", action="append", metavar="MULTIADDR", help="peer to dial (repeatable)")
    brun.set_defaults(func=cmd_bridge_run)
    return p


def one_line_errors() -> tuple[type[Exception], ...]:
    """The packages' root errors: :func:`main` prints any of them as one line, ``empressa: …``."""
    from indexer.errors import IndexerError
    from node.errors import NodeError
    from protocol import ProtocolError
    from stack import StackError

    return (NodeError, ProtocolError, IndexerError, StackError)


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    ours = one_line_errors()
    try:
        args.func(args)
    except ours as exc:
        fail(str(exc))
    except BaseExceptionGroup as group:
        # trio wraps a task's error in a group per nursery it leaves: one of ours is still one line.
        match, rest = group.split(ours)
        if match is None or rest is not None:
            raise
        first: BaseException = match
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        fail(str(first))
    except KeyboardInterrupt:
        fail("interrupted", 130)


if __name__ == "__main__":
    main()
