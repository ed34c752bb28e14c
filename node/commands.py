"""What the ``empressa node …`` and ``empressa verify`` commands do, apart from parsing and printing.

One function per command, taking typed arguments (the node's data directory, the
asset's fields, the environment for the keystore's secret) and returning what the
command prints: a result with ``to_json()`` (its ``--json`` object) and ``text()``
(its lines for a person). ``cli.py`` parses the flags, calls one of these and
prints the result; tests call them directly.

The keystore is unlocked only when a command needs a key, with the secret of the
environment (``EMPRESSA_KEK``/``EMPRESSA_PASSPHRASE``), else by asking on the
terminal (:func:`terminal_prompt`). The jobs themselves live in :mod:`.client`
(writes, the library), :mod:`.onchain` (the EVM account, registration),
:mod:`.archive` (files of entries) and :mod:`.runner` (the daemon).

Errors are the package's (:class:`~node.errors.NodeError`) and the protocol's,
one line each.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from .errors import NodeError
from .logctx import ConfigureLogging
from .paths import KEYSTORE_FILE

if TYPE_CHECKING:  # each command imports what it uses: `node init` need not load httpx or web3
    from .archive import ImportReport
    from .client import AssetFields, BulkResult, WriteResult
    from .config import NodeSettings
    from .keystore import Keys
    from .media import PushResult
    from .onchain import RegisterReport

Environ = Mapping[str, str]


def terminal_prompt() -> Callable[[str], str] | None:
    """``getpass.getpass`` when stdin is a terminal (a person can type a passphrase), else ``None``."""
    return getpass.getpass if sys.stdin.isatty() else None


def unlocker(data_dir: Path, environ: Environ) -> Callable[[], Keys]:
    """Unlocks the node's keystore when called (so only a command that writes asks for the secret)."""
    from .keystore import unlock_from

    return lambda: unlock_from(data_dir / KEYSTORE_FILE, environ=environ, prompt=terminal_prompt())


def evm_unlocker(data_dir: Path, environ: Environ) -> Callable[[], tuple[Keys, bool]]:
    """Unlocks the keystore with the EVM account in it (created on first use): ``(keys, created)``."""
    from .keystore import unlock_with_evm_from

    return lambda: unlock_with_evm_from(data_dir / KEYSTORE_FILE, environ=environ, prompt=terminal_prompt())


@dataclass(frozen=True)
class Initialized:
    did: str
    data_dir: Path

    def to_json(self) -> dict[str, Any]:
        return {"did": self.did, "data_dir": str(self.data_dir)}

    def text(self) -> str:
        return self.did


def init_node(data_dir: Path, *, environ: Environ) -> Initialized:
    """``node init``: create the author key (a new keystore) and the default config in ``data_dir``.

    Raises:
        KeystoreError: a keystore exists already, or no secret to seal it with.
    """
    from .config import write_default_config
    from .keystore import create_keystore, new_keystore_secret

    data_dir.mkdir(parents=True, exist_ok=True)
    passphrase, kek = new_keystore_secret(
        environ,
        terminal_prompt(),
        missing="no passphrase: set EMPRESSA_PASSPHRASE or EMPRESSA_KEK, or run interactively",
    )
    keys = create_keystore(data_dir / KEYSTORE_FILE, passphrase=passphrase, kek=kek)
    write_default_config(data_dir)
    return Initialized(keys.author.public.did, data_dir)


def run_node(settings: NodeSettings, *, environ: Environ, configure_logging: ConfigureLogging) -> None:
    """``node run``: unlock the keystore and run the daemon until SIGINT/SIGTERM."""
    import trio

    from .runner import run_daemon

    configure_logging(settings.log_level, settings.log_json)
    keys = unlocker(settings.data_dir, environ)()
    trio.run(run_daemon, settings, keys)


@dataclass(frozen=True)
class EvmAccount:
    address: str
    created: bool

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "created": self.created}

    def text(self) -> str:
        return self.address + (" (created)" if self.created else "")


def evm_account(data_dir: Path, *, environ: Environ) -> EvmAccount:
    """``node evm-account``: this node's EVM account, created once in the keystore."""
    from .onchain import evm_account as account

    return EvmAccount(*account(evm_unlocker(data_dir, environ)))


def register(
    data_dir: Path,
    key: str,
    *,
    rpc_url: str | None,
    registry: str | None,
    environ: Environ,
    progress: Callable[[str], None] | None = None,
) -> RegisterReport:
    """``node register``: register asset ``key``'s current entry hash on the EVM registry.

    ``rpc_url`` and ``registry`` (``None``: not given) override the node's config.
    """
    from .config import load_node_settings
    from .onchain import register_asset

    settings = load_node_settings(data_dir, {"evm_rpc_url": rpc_url, "evm_registry": registry}, environ)
    return register_asset(
        data_dir,
        key,
        rpc_url=settings.evm_rpc_url,
        registry=settings.evm_registry,
        unlock=evm_unlocker(data_dir, environ),
        progress=progress,
    )


def _resolved(fields: AssetFields, data_dir: Path, environ: Environ) -> AssetFields:
    """``fields`` with ``--payout-evm me`` replaced by this node's EVM account (a bad address refused)."""
    from .onchain import payout_evm

    return replace(fields, payout_evm=payout_evm(fields.payout_evm, evm_unlocker(data_dir, environ)))


def _write(data_dir: Path, kind: str, key: str, body: dict[str, Any], environ: Environ) -> WriteResult:
    from .client import write

    return write(data_dir, kind=kind, key=key, body=body, unlock=unlocker(data_dir, environ))


def _ipfs_api(data_dir: Path, flag: str | None, environ: Environ) -> str | None:
    """The IPFS RPC API to add files to: ``--ipfs-api``, else ``ipfs_api`` of the node's settings."""
    from .config import load_node_settings

    return load_node_settings(data_dir, {"ipfs_api": flag}, environ).ipfs_api


def _with_files(
    data_dir: Path,
    fields: AssetFields,
    body: dict[str, Any],
    ipfs_api: str | None,
    use_ipfs: bool,
    environ: Environ,
) -> dict[str, Any]:
    """``body``, once the files it names are on IPFS (``ipfs_api``) or remembered for ``media push``
    (:func:`node.media.put_files`). The settings are read only when there are files."""
    from .media import put_files

    if files := fields.media_files(body):
        put_files(data_dir, files, ipfs_api=_ipfs_api(data_dir, ipfs_api, environ) if use_ipfs else None)
    return body


def _with_preview(data_dir: Path, fields: AssetFields) -> AssetFields:
    from dataclasses import replace

    from .media import file_cid
    from .preview import make_preview

    if fields.file is None:
        raise NodeError("--make-preview cuts the preview from --file; give --file")
    if fields.preview is not None:
        raise NodeError("--make-preview and --preview both give a preview; choose one")
    try:
        cid, _ = file_cid(fields.file)
    except OSError as exc:
        raise NodeError(f"cannot read {fields.file}: {exc.strerror or exc}") from None
    return replace(fields, preview=make_preview(data_dir, fields.file, cid))


def publish(
    data_dir: Path,
    key: str,
    fields: AssetFields,
    *,
    environ: Environ,
    ipfs_api: str | None = None,
    use_ipfs: bool = True,
    make_preview: bool = False,
) -> WriteResult:
    """``node publish``: sign and store a new ``asset.put`` (``fields.payout_evm`` may be ``me``); its
    files go to IPFS first (``ipfs_api``, else the config's; ``use_ipfs=False``: offline).

    ``make_preview``: cut a 30-second preview of ``fields.file`` (:mod:`node.preview`, with
    ``ffmpeg``) and publish it as ``preview``; an error, and nothing published, without a
    ``file``, with a ``preview`` given, or when it cannot be cut.
    """
    from .client import put_body

    fields = _resolved(fields, data_dir, environ)
    if make_preview:
        fields = _with_preview(data_dir, fields)
    body = _with_files(data_dir, fields, put_body(fields, None), ipfs_api, use_ipfs, environ)
    return _write(data_dir, "asset.put", key, body, environ)


def edit(
    data_dir: Path,
    key: str,
    fields: AssetFields,
    *,
    environ: Environ,
    ipfs_api: str | None = None,
    use_ipfs: bool = True,
) -> WriteResult:
    """``node edit``: a new version of our asset ``key`` with the given ``fields`` changed (files as
    :func:`publish`)."""
    from .client import current_put, put_body

    fields = _resolved(fields, data_dir, environ)
    body = _with_files(
        data_dir, fields, put_body(fields, current_put(data_dir, key)), ipfs_api, use_ipfs, environ
    )
    return _write(data_dir, "asset.put", key, body, environ)


def media_push(data_dir: Path, *, ipfs_api: str | None, environ: Environ) -> PushResult:
    """``node media push``: add and pin on IPFS the files published without it (:func:`node.media.push`)."""
    from .media import push

    return push(data_dir, ipfs_api=_ipfs_api(data_dir, ipfs_api, environ))


def delete(data_dir: Path, key: str, *, environ: Environ) -> WriteResult:
    """``node delete``: a tombstone for our asset ``key`` (which must exist and not be deleted)."""
    from .client import current_put

    current_put(data_dir, key)
    return _write(data_dir, "asset.delete", key, {}, environ)


def publish_from(
    data_dir: Path,
    path: Path,
    *,
    environ: Environ,
    progress: Callable[[int, int], None] | None = None,
    ipfs_api: str | None = None,
    use_ipfs: bool = True,
) -> BulkResult:
    """``node publish --from FILE``: every asset of a JSON Lines catalogue, or none; the files it names
    go to IPFS first, as with :func:`publish`.

    ``progress(done, total)`` is called as the writes go (:func:`progress_bar` shows it).
    """
    from .client import publish_catalogue
    from .onchain import payout_evm

    evm = evm_unlocker(data_dir, environ)
    return publish_catalogue(
        data_dir,
        path,
        unlock=unlocker(data_dir, environ),
        payout_evm=lambda value: payout_evm(value, evm),
        progress=progress,
        ipfs_api=_ipfs_api(data_dir, ipfs_api, environ) if use_ipfs else None,
    )


def progress_bar() -> Callable[[int, int], None]:
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


def _verified(v: dict[str, Any] | None) -> str:
    """``  verified eip155:31337 #3``: a trusted bridge's standing attestation, as ``node list`` shows it."""
    return f"  verified {v['chain']} #{v['onchain_id']}" if v else ""


@dataclass(frozen=True)
class Library:
    """``node list``: the library's items (:meth:`node.store.Store.library`), one line each as text."""

    items: list[dict[str, Any]]
    include_others: bool

    def to_json(self) -> dict[str, Any]:
        return {"items": self.items}

    def text(self) -> str:
        if not self.items:
            hint = (
                "" if self.include_others else " (publish one with: empressa node publish --key … --title …)"
            )
            return "no assets" + hint
        width = max(len(i["key"]) for i in self.items)
        lines = []
        for i in self.items:
            lic = i["license"] or {}
            price = lic.get("price")
            price_s = f"{price['amount']} {price['currency']}" if price else "free"
            who = "" if i["mine"] else f"  by {i['did'][:20]}…"
            tags = ",".join(i["tags"])
            lines.append(
                f"{i['key']:<{width}}  {i['title']}  [{lic.get('type', '?')}, {price_s}]  v{i['versions']}  "
                f"{tags}{who}" + _verified(i["verification"])
            )
        return "\n".join(lines)


def list_library(data_dir: Path, *, include_others: bool, environ: Environ) -> Library:
    """``node list``: my assets (``include_others``: and those replicated from others), each with the
    verification a trusted bridge (the config's ``trusted_bridges``) attests."""
    from .client import library
    from .config import load_node_settings

    trusted = load_node_settings(data_dir, {}, environ).trusted_bridges
    return Library(library(data_dir, include_others=include_others, trusted_bridges=trusted), include_others)


@dataclass(frozen=True)
class Opened:
    """``node open``: the one-time link, and whether a browser was asked to show it."""

    url: str
    browser: bool

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "browser": self.browser, "expires_in": 120}

    def text(self) -> str:
        return self.url

    def notes(self) -> list[str]:
        how = "opened in your browser; " if self.browser else ""
        return [f"My Library: {how}the link works once, within 2 minutes"]


def open_library(
    data_dir: Path,
    *,
    browser: bool,
    environ: Environ,
    opener: Callable[[str], bool] | None = None,
) -> Opened:
    """``node open``: a one-time link to My Library from the running daemon, opened in a browser
    when ``browser`` and there is one to open (a display, or macOS/Windows); ``opener`` is
    :func:`webbrowser.open` unless a test gives another.

    Raises:
        DaemonNotRunning: no daemon runs on ``data_dir``.
    """
    from .client import one_time_link

    url = one_time_link(data_dir)
    shown = False
    if browser and _has_display(environ):
        if opener is None:
            import webbrowser

            opener = webbrowser.open
        try:
            shown = bool(opener(url))
        except Exception:  # no usable browser: the printed link is enough
            shown = False
    return Opened(url, shown)


def _has_display(environ: Environ) -> bool:
    return sys.platform in ("darwin", "win32") or bool(
        environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY")
    )


def export_entries(data_dir: Path, out: BinaryIO, *, include_others: bool) -> None:
    """``node export``: the signed entries as a CBOR sequence on ``out``."""
    from .client import export

    for raw in export(data_dir, include_others=include_others):
        out.write(raw)
    out.flush()


def import_entries(data_dir: Path, chunks: Iterable[bytes]) -> ImportReport:
    """``node import``: validate and store the entries of a CBOR sequence (see :func:`.archive.import_entries`).

    Raises:
        NodeError: no entries in the input (an empty file is a wrong file, not a no-op, as ``verify`` says).
    """
    from .archive import import_entries as store_entries

    report = store_entries(data_dir, chunks)
    if not report.items:
        raise NodeError("no entries in the input")
    return report


@dataclass(frozen=True)
class Verified:
    ok: int
    failed: int


def verify(chunks: Iterable[bytes], out: TextIO, *, as_json: bool) -> Verified:
    """``verify``: one line per entry of a CBOR sequence on ``out`` as it is read (``as_json``: one
    object, written as it goes). Failures past :data:`.archive.REPORT_LIMIT` are only counted.

    Raises:
        NodeError: no entries in the input.
    """
    from .archive import REPORT_LIMIT, check_stream

    ok = failed = listed = 0
    for c in check_stream(chunks):
        e = c.entry
        if e is None:
            failed += 1
            if listed >= REPORT_LIMIT and not c.last:
                continue
            listed += 1
        else:
            ok += 1
        if as_json:
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
        raise NodeError("no entries in the input")
    unlisted = failed - listed
    if as_json:
        out.write(f'], "ok": {ok}, "failed": {failed}, "unlisted": {unlisted}}}\n')
    elif unlisted:
        out.write(f"… and {unlisted} more failed entries not listed\n")
    return Verified(ok, failed)
