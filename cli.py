"""The ``empressa`` command: parses arguments, builds settings, calls into the packages.

Each ``cmd_*`` parses its flags, calls one function of the package that owns the
job (:mod:`node.commands`, :mod:`indexer.commands`, :mod:`bridge.runner`,
:mod:`stack`) and prints what it returns through :func:`emit`. Errors go to
stderr as one line and a non-zero exit; ``--json`` prints one JSON object on
stdout for scripts. The settings of each process are built here (its flags over
the layered sources) and passed in; logging is :func:`node.logctx.configure_logging`,
handed to each service.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, Protocol

from node.logctx import configure_logging

DEFAULT_NODE_DIR = Path("~/.empressa/node")
DEFAULT_INDEXER_DIR = Path("~/.empressa/indexer")
DEFAULT_BRIDGE_DIR = Path("~/.empressa/bridge")
DEFAULT_STACK_DIR = Path("~/.empressa/stack")
DEPLOYER_KEY_ENV = "EMPRESSA_DEPLOYER_KEY"


# -- output ---------------------------------------------------------------------------


class Result(Protocol):
    """What a command function returns: its ``--json`` object and its text for a person.

    It may also have ``notes()`` (lines for stderr, printed first) and ``failed`` (exit 1).
    """

    def to_json(self) -> dict[str, Any]: ...

    def text(self) -> str: ...


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"empressa: {message}", file=sys.stderr)
    raise SystemExit(code)


def note(line: str) -> None:
    """A progress line on stderr (stdout stays the result's)."""
    print(line, file=sys.stderr, flush=True)


def emit(args: argparse.Namespace, result: Result) -> None:
    """Print ``result``: its notes on stderr, then one JSON object (``--json``) or its text; exit 1 if it failed."""
    for line in getattr(result, "notes", list)():
        print(line, file=sys.stderr)
    print(json.dumps(result.to_json()) if getattr(args, "json", False) else result.text())
    if getattr(result, "failed", False):
        raise SystemExit(1)


# -- settings -------------------------------------------------------------------------


def _data_dir(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Path:
    """The node's data directory: ``--data``, else ``EMPRESSA_NODE_DATA_DIR``, else ``~/.empressa/node``."""
    from node.config import default_data_dir

    return Path(args.data).expanduser() if args.data else default_data_dir(environ)


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


def bridge_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Any:
    """``empressa bridge run``'s :class:`~bridge.config.BridgeSettings`: its flags over the layered sources."""
    from bridge.config import default_data_dir, load_bridge_settings

    data_dir = Path(args.data).expanduser() if args.data else default_data_dir(environ)
    overrides = {"database_url": args.database_url, "listen": args.listen, "bootstrap": args.bootstrap}
    return load_bridge_settings(data_dir, overrides, environ)


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
    overrides = {
        name: getattr(args, name, None) for name in ("host", "port", "index_dir", "database_url", "ipfs_api")
    }
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


def deployer_key(environ: Mapping[str, str]) -> str | None:
    """``chain deploy``'s deployer key, from the environment only (never a flag: flags are visible to all)."""
    return environ.get(DEPLOYER_KEY_ENV, "").strip() or None


def _asset_fields(args: argparse.Namespace) -> Any:
    """``publish``'s and ``edit``'s asset flags (``--payout-evm`` as given: ``me`` is resolved by the node)."""
    from node.client import AssetFields

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
        payout_evm=args.payout_evm,
        payout_stellar=args.payout_stellar,
        preview=Path(args.preview) if args.preview else None,
        artwork=Path(args.artwork) if args.artwork else None,
    )


def _ipfs(args: argparse.Namespace) -> dict[str, Any]:
    """``publish``'s and ``edit``'s IPFS flags, for :mod:`node.commands`."""
    return {"ipfs_api": args.ipfs_api, "use_ipfs": not args.no_ipfs}


# -- node commands ----------------------------------------------------------------------


def cmd_node_init(args: argparse.Namespace) -> None:
    from node import commands

    emit(args, commands.init_node(_data_dir(args), environ=os.environ))


def cmd_node_run(args: argparse.Namespace) -> None:
    from node import commands

    commands.run_node(
        node_settings(args, os.environ), environ=os.environ, configure_logging=configure_logging
    )


def cmd_node_evm_account(args: argparse.Namespace) -> None:
    from node import commands

    emit(args, commands.evm_account(_data_dir(args), environ=os.environ))


def cmd_node_register(args: argparse.Namespace) -> None:
    from node import commands

    flags = {"rpc_url": args.rpc_url, "registry": args.registry}
    progress = None if args.json else note
    emit(args, commands.register(_data_dir(args), args.key, **flags, environ=os.environ, progress=progress))


def cmd_node_publish(args: argparse.Namespace) -> None:
    from node import commands

    if args.from_file is not None:
        _publish_from(args)
        return
    if args.key is None:
        fail("--key is required (or --from FILE)")
    if args.title is None:
        fail("--title is required")
    fields = _asset_fields(args)
    emit(
        args,
        commands.publish(
            _data_dir(args),
            args.key,
            fields,
            environ=os.environ,
            make_preview=args.make_preview,
            **_ipfs(args),
        ),
    )


def _publish_from(args: argparse.Namespace) -> None:
    from node import commands

    flags = ("key", "title", "description", "tag", "file", "cid", "preview", "artwork", "make_preview")
    if given := [f for f in flags if getattr(args, f)]:
        fail(f"--from takes the fields from the file; drop --{given[0]}")
    path, progress = Path(args.from_file), commands.progress_bar()
    r = commands.publish_from(_data_dir(args), path, environ=os.environ, progress=progress, **_ipfs(args))
    emit(args, r)


def cmd_node_edit(args: argparse.Namespace) -> None:
    from node import commands

    fields = _asset_fields(args)
    emit(args, commands.edit(_data_dir(args), args.key, fields, environ=os.environ, **_ipfs(args)))


def cmd_node_media_push(args: argparse.Namespace) -> None:
    from node import commands

    emit(args, commands.media_push(_data_dir(args), ipfs_api=args.ipfs_api, environ=os.environ))


def cmd_node_delete(args: argparse.Namespace) -> None:
    from node import commands

    emit(args, commands.delete(_data_dir(args), args.key, environ=os.environ))


def cmd_node_list(args: argparse.Namespace) -> None:
    from node import commands

    emit(args, commands.list_library(_data_dir(args), include_others=args.all, environ=os.environ))


def cmd_node_open(args: argparse.Namespace) -> None:
    from node import commands

    emit(args, commands.open_library(_data_dir(args), browser=not args.no_browser, environ=os.environ))


def cmd_node_export(args: argparse.Namespace) -> None:
    from node import commands

    commands.export_entries(_data_dir(args), sys.stdout.buffer, include_others=args.all)


def cmd_node_import(args: argparse.Namespace) -> None:
    from node import commands
    from node.archive import input_chunks

    emit(args, commands.import_entries(_data_dir(args), input_chunks(args.file)))


def cmd_verify(args: argparse.Namespace) -> None:
    from node import commands
    from node.archive import input_chunks

    if commands.verify(input_chunks(args.file), sys.stdout, as_json=args.json).failed:
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
        "ipfs_api": args.ipfs_api,
    }
    settings = load_stack_settings(Path(args.data).expanduser(), flags, os.environ)
    run_stack(
        settings, environ=os.environ, configure_logging=configure_logging, as_json=args.json, out=sys.stdout
    )


# -- indexer and bridge commands ---------------------------------------------------------------


def cmd_chain_deploy(args: argparse.Namespace) -> None:
    from indexer import commands

    data_dir = _indexer_dir(args, os.environ)
    emit(args, commands.deploy_chain(args.rpc_url, data_dir, deployer_key=deployer_key(os.environ)))


def cmd_indexer_run(args: argparse.Namespace) -> None:
    from indexer import commands

    commands.serve_api(indexer_settings(args, os.environ), configure_logging=configure_logging)


def cmd_indexer_migrate(args: argparse.Namespace) -> None:
    from indexer import commands

    settings = indexer_settings(args, os.environ)
    emit(args, commands.migrate_database(settings, configure_logging=configure_logging))


def cmd_indexer_feed(args: argparse.Namespace) -> None:
    from indexer import commands

    commands.feed(indexer_settings(args, os.environ), configure_logging=configure_logging)


def cmd_indexer_reindex(args: argparse.Namespace) -> None:
    from indexer import commands

    settings = indexer_settings(args, os.environ)
    emit(args, commands.reindex(settings, progress=not args.json, configure_logging=configure_logging))


def cmd_indexer_reconcile(args: argparse.Namespace) -> None:
    from indexer import commands

    commands.reconcile(indexer_settings(args, os.environ), configure_logging=configure_logging)


def cmd_indexer_pin(args: argparse.Namespace) -> None:
    from indexer import commands

    commands.pin(indexer_settings(args, os.environ), configure_logging=configure_logging)


def cmd_indexer_api_key_create(args: argparse.Namespace) -> None:
    from indexer import commands

    settings = indexer_settings(args, os.environ)
    emit(args, commands.create_api_key(settings, name=args.name or "", scopes=args.scope))


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
    up.add_argument(
        "--ipfs-api",
        metavar="ADDR",
        help="the operator's IPFS node (Kubo RPC API): run the pin worker, which pins what assets name",
    )
    json_opt(up)
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
    publish.add_argument(
        "--make-preview",
        action="store_true",
        help="cut a 30 s preview (MP3) from the --file audio with ffmpeg, where installed, and publish it as preview",
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

    opn = node.add_parser("open", help="open My Library in a browser (prints a one-time login link)")
    data_opt(opn, env="EMPRESSA_NODE_DATA_DIR")
    opn.add_argument("--no-browser", action="store_true", help="only print the link")
    json_opt(opn)
    opn.set_defaults(func=cmd_node_open)

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

    ipin = indexer.add_parser("pin", help="run the pin worker (pin on IPFS the CIDs that assets name)")
    db_opts(ipin)
    ipin.add_argument("--ipfs-api", help="the operator's IPFS node (Kubo RPC API); default: ipfs_api")
    ipin.set_defaults(func=cmd_indexer_pin)

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
