"""The writes and reads behind the ``empressa node …`` commands (:mod:`.commands` calls them).

Writes go to a running daemon when there is one (its local API, named in
``node.json``) so the entry is announced at once and the daemon stays the only
writer of the log; otherwise they go straight into ``node.db`` and the daemon
announces them when it next starts.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from protocol import (
    AssetUri,
    AuthorKey,
    ProtocolError,
    check_write,
    parse_did,
)

from .errors import NodeError, NotFoundError
from .keystore import Keys, read_public_did
from .media import file_cid, put_files
from .media_ledger import MediaFile
from .paths import KEYSTORE_FILE, NODE_DB
from .runner import read_daemon_info
from .store import MAX_BATCH_ITEMS, MAX_BODY_BYTES, LocalWrite, Store, WritesRejected

MAX_LISTED_ERRORS = 20  # bad lines of a catalogue named one by one; the rest are counted


@dataclass(frozen=True)
class WriteResult:
    uri: str
    hash: str
    seq: int
    via: str  # "daemon" or "store"

    def to_json(self) -> dict[str, Any]:
        return {"uri": self.uri, "hash": self.hash, "seq": self.seq}

    def text(self) -> str:
        return f"{self.uri} {self.hash}"


def media_from(
    *,
    file: Path | None,
    cid: str | None,
    mime: str | None,
    size: int | None,
    duration_ms: int | None,
    flag: str = "--file",
) -> dict[str, Any]:
    """A ``media`` (or ``preview``, ``artwork``: ``flag`` names it in errors) object: a file's, or a given CID's."""
    if file is not None:
        if not file.is_file():
            raise NodeError(f"no such file: {file}")
        try:
            cid, size = file_cid(file)
        except OSError as exc:
            raise NodeError(f"cannot read {file}: {exc.strerror or exc}") from None
        mime = mime or mimetypes.guess_type(file.name)[0]
    if cid is None:
        raise NodeError("give the media as --file PATH or --cid CID")
    if mime is None:
        if flag != "--file":
            raise NodeError(
                f"cannot guess the type of {flag} {file}; give it a usual extension (.mp3, .png, …)"
            )
        raise NodeError("cannot guess the media type; give --mime")
    media: dict[str, Any] = {"cid": cid, "mime": mime, "size": size or 0}
    if duration_ms is not None:
        media["duration_ms"] = duration_ms
    return media


def license_from(
    *,
    license_type: str | None,
    price: str | None,
    currency: str | None,
    terms: str | None,
    base: dict[str, Any] | None = None,
) -> dict[str, Any]:
    lic = dict(base or {"type": "personal"})
    if license_type is not None:
        lic["type"] = license_type
    if (price is None) != (currency is None) and not (base and "price" in base):
        raise NodeError("--price and --currency go together")
    if price is not None or currency is not None:
        old = lic.get("price", {})
        lic["price"] = {"amount": price or old.get("amount"), "currency": currency or old.get("currency")}
    if terms is not None:
        lic["terms"] = terms
    return lic


@dataclass(frozen=True)
class AssetFields:
    """The fields ``publish`` and ``edit`` were given; ``None`` (or empty ``tags``) means "not given"."""

    title: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    file: Path | None = None
    cid: str | None = None
    mime: str | None = None
    size: int | None = None
    duration_ms: int | None = None
    license_type: str | None = None
    price: str | None = None
    currency: str | None = None
    terms: str | None = None
    payout_evm: str | None = None
    payout_stellar: str | None = None
    preview: Path | None = None
    artwork: Path | None = None

    def media_files(self, body: dict[str, Any]) -> list[MediaFile]:
        """The files given (``file``, ``preview``, ``artwork``) with the CIDs ``body`` names them by."""
        given = (("media", self.file), ("preview", self.preview), ("artwork", self.artwork))
        return [
            MediaFile(role, path, body[role]["cid"], body[role]["size"])
            for role, path in given
            if path is not None
        ]


def put_body(fields: AssetFields, base: dict[str, Any] | None) -> dict[str, Any]:
    """The ``asset.put`` body: ``fields`` merged into ``base`` (an edit's previous body; ``None`` to publish).

    Fields not given keep their previous value; given tags replace all tags (duplicates
    dropped, order kept); new media (``file`` or ``cid``) replaces the old, while ``mime``
    or ``duration_ms`` alone amend it; a ``preview`` or ``artwork`` file replaces that
    object; the license and payout are merged key by key.

    Raises:
        NodeError: the media or the license cannot be built (one line, naming the flag).
    """
    body = dict(base or {"description": "", "tags": []})
    if fields.title is not None:
        body["title"] = fields.title
    if fields.description is not None:
        body["description"] = fields.description
    if fields.tags:
        body["tags"] = list(dict.fromkeys(fields.tags))
    if fields.file is not None or fields.cid is not None or base is None:
        body["media"] = media_from(
            file=fields.file,
            cid=fields.cid,
            mime=fields.mime,
            size=fields.size,
            duration_ms=fields.duration_ms,
        )
    elif fields.mime is not None or fields.duration_ms is not None:
        media = dict(body["media"])
        if fields.mime is not None:
            media["mime"] = fields.mime
        if fields.duration_ms is not None:
            media["duration_ms"] = fields.duration_ms
        body["media"] = media
    for role, path in (("preview", fields.preview), ("artwork", fields.artwork)):
        if path is not None:
            body[role] = media_from(
                file=path, cid=None, mime=None, size=None, duration_ms=None, flag=f"--{role}"
            )
    body["license"] = license_from(
        license_type=fields.license_type,
        price=fields.price,
        currency=fields.currency,
        terms=fields.terms,
        base=body.get("license"),
    )
    payout = dict(body.get("payout", {}))
    if fields.payout_evm:
        payout["evm"] = fields.payout_evm
    if fields.payout_stellar:
        payout["stellar"] = fields.payout_stellar
    if payout:
        body["payout"] = payout
    return body


def author_did(data_dir: Path) -> str:
    return read_public_did(data_dir / KEYSTORE_FILE)


def write(
    data_dir: Path,
    *,
    kind: str,
    key: str,
    body: dict[str, Any],
    unlock: Callable[[], Keys],
) -> WriteResult:
    """Write one entry of our own log, through the daemon if it is up."""
    daemon = read_daemon_info(data_dir)
    if daemon is not None:
        info, token = daemon
        try:
            r = httpx.post(
                f"{info['api_url']}/v1/local/entries",
                json={"kind": kind, "key": key, "body": body},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
        except httpx.TransportError:
            r = None  # stale node.json: the daemon died; write to the store instead
        if r is not None:
            if r.status_code == 201:
                d = r.json()
                return WriteResult(d["uri"], d["hash"], d["seq"], "daemon")
            detail = (
                r.json().get("detail", r.text)
                if r.headers.get("content-type", "").endswith("json")
                else r.text
            )
            raise NodeError(f"the daemon refused the write: {detail}")
    keys = unlock()
    store = Store.open(data_dir / NODE_DB)
    try:
        e = store.append_local(keys.author, kind=kind, key=key, body=body)
    finally:
        store.close()
    return WriteResult(e.uri.text, e.hash.cid, e.seq, "store")


class DaemonNotRunning(NodeError):
    """No daemon serves this data directory (no ``node.json``, or it does not answer)."""


def one_time_link(data_dir: Path) -> str:
    """A one-time link that opens My Library with write rights, from the running daemon of ``data_dir``.

    Asks ``POST /v1/local/open`` with the daemon's ``api.token``; the link is good for
    one visit within two minutes (:mod:`node.pages`). ``empressa node open`` prints it,
    and ``empressa up`` prints the demo creator's.

    Raises:
        DaemonNotRunning: no daemon runs on ``data_dir`` (one line, saying how to start one).
        NodeError: the daemon refused.
    """
    daemon = read_daemon_info(data_dir)
    not_running = DaemonNotRunning(
        f"no node is running on {data_dir}; start it with: empressa node run --data {data_dir}"
    )
    if daemon is None:
        raise not_running
    info, token = daemon
    try:
        r = httpx.post(
            f"{info['api_url']}/v1/local/open", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
    except httpx.TransportError:
        raise not_running from None
    if r.status_code != 200:
        raise NodeError(f"the daemon refused a link: {_detail(r)}")
    return str(r.json()["url"])


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail", r.text))
    except ValueError:
        return r.text[:200]


class CatalogueError(NodeError):
    """Lines of a ``publish --from`` file are invalid; ``errors`` holds ``(line number, reason)``."""

    def __init__(self, path: Path, errors: list[tuple[int, str]], *, published: int = 0) -> None:
        self.errors = errors
        listed = "; ".join(f"line {n}: {why}" for n, why in errors[:MAX_LISTED_ERRORS])
        more = f"; and {len(errors) - MAX_LISTED_ERRORS} more" if len(errors) > MAX_LISTED_ERRORS else ""
        done = f"{published} entries before them were published" if published else "nothing was published"
        super().__init__(f"{path}: {listed}{more} ({len(errors)} bad line{'s' * (len(errors) > 1)}; {done})")


# The fields a catalogue line may have: the publish flags, with underscores.
_LINE_FIELDS = frozenset(
    {"key", "title", "description", "tags", "file", "cid", "mime", "size", "duration_ms", "license",
     "price", "currency", "terms", "payout_evm", "payout_stellar"}
)  # fmt: skip


def read_catalogue(
    path: Path, *, payout_evm: Callable[[str | None], str | None] = lambda v: v
) -> tuple[list[LocalWrite], list[int], list[MediaFile]]:
    """The ``asset.put`` writes of a JSON Lines catalogue, each one's line number, and the files they name.

    Each non-blank line is one object with the fields of ``node publish`` (``key``,
    ``title``, ``description``, ``tags`` (a list), ``file`` (relative to the
    catalogue's folder) or ``cid``, ``mime``, ``size``, ``duration_ms``,
    ``license``, ``price``, ``currency``, ``terms``, ``payout_evm``,
    ``payout_stellar``), built by the same :func:`put_body` and checked by the
    same :func:`protocol.check_write` as a single publish. All or nothing: any bad
    line fails the whole file before anything is written.

    Raises:
        CatalogueError: each bad line's number and reason.
        NodeError: the file cannot be read.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise NodeError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    writes: list[LocalWrite] = []
    numbers: list[int] = []
    files: list[MediaFile] = []
    errors: list[tuple[int, str]] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            write, media = _catalogue_line(line, path.parent, payout_evm)
            writes.append(write)
            files += media
            numbers.append(n)
        except (NodeError, ProtocolError) as exc:
            errors.append((n, str(exc)))
    if errors:
        raise CatalogueError(path, errors)
    if not writes:
        raise NodeError(f"{path}: no assets in it (one JSON object a line)")
    return writes, numbers, files


def _catalogue_line(
    line: str, base: Path, payout_evm: Callable[[str | None], str | None]
) -> tuple[LocalWrite, list[MediaFile]]:
    try:
        d = json.loads(line)
    except ValueError as exc:
        raise NodeError(f"not JSON: {exc}") from None
    key, fields = asset_fields_of(d, base=base, payout_evm=payout_evm)
    body = put_body(fields, None)
    check_write(kind="asset.put", key=key, body=body)
    return LocalWrite("asset.put", key, body), fields.media_files(body)


def asset_fields_of(
    d: Any,
    *,
    base: Path | None,
    payout_evm: Callable[[str | None], str | None] = lambda v: v,
    require_title: bool = True,
) -> tuple[str, AssetFields]:
    """The key and :class:`AssetFields` of one JSON object with the ``node publish`` fields (underscored).

    What a catalogue line holds (:func:`read_catalogue`) and what My Library's form posts
    (:mod:`node.pages`), so both are checked by the same rules as the CLI's flags. ``base``
    is the folder ``file`` is relative to; ``None`` refuses a ``file`` (the page gives CIDs).
    ``require_title=False`` for an edit, whose fields not given keep their values.

    Raises:
        NodeError: a field is unknown or of the wrong type (one line, naming it).
    """
    if type(d) is not dict:
        raise NodeError("a line is one JSON object")
    unknown = sorted(d.keys() - _LINE_FIELDS)
    if unknown:
        raise NodeError(f"unknown field {unknown[0]!r}")
    key, title, tags = d.get("key"), d.get("title"), d.get("tags", [])
    if type(key) is not str or (type(title) is not str and (require_title or title is not None)):
        raise NodeError("key and title are required text" if require_title else "key is required text")
    if type(tags) is not list or not all(type(t) is str for t in tags):
        raise NodeError("tags is a list of text")
    for name in ("description", "file", "cid", "mime", "license", "price", "currency", "terms",
                 "payout_evm", "payout_stellar"):  # fmt: skip
        if d.get(name) is not None and type(d[name]) is not str:
            raise NodeError(f"{name} is text")
    for name in ("size", "duration_ms"):
        if d.get(name) is not None and type(d[name]) is not int:
            raise NodeError(f"{name} is an integer")
    if d.get("file") is not None and d.get("cid") is not None:
        raise NodeError("give file or cid, not both")
    if d.get("file") is not None and base is None:
        raise NodeError("give the media as a CID here (file uploads are not taken)")
    fields = AssetFields(
        title=title,
        description=d.get("description"),
        tags=tuple(tags),
        file=base / d["file"] if d.get("file") is not None and base is not None else None,
        cid=d.get("cid"),
        mime=d.get("mime"),
        size=d.get("size"),
        duration_ms=d.get("duration_ms"),
        license_type=d.get("license"),
        price=d.get("price"),
        currency=d.get("currency"),
        terms=d.get("terms"),
        payout_evm=payout_evm(d.get("payout_evm")),
        payout_stellar=d.get("payout_stellar"),
    )
    return key, fields


@dataclass(frozen=True)
class BulkResult:
    count: int
    first_seq: int
    last_seq: int
    via: str  # "daemon" or "store"

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "first_seq": self.first_seq, "last_seq": self.last_seq, "via": self.via}

    def text(self) -> str:
        return f"published {self.count} assets (seq {self.first_seq}..{self.last_seq}, via {self.via})"


def chunks_of(writes: Sequence[LocalWrite]) -> Iterator[tuple[int, list[bytes]]]:
    """``writes`` as JSON items in request-sized chunks (≤ MAX_BATCH_ITEMS, ≤ MAX_BODY_BYTES): ``(start, items)``."""
    start, items, size = 0, [], 2
    for i, w in enumerate(writes):
        item = json.dumps({"kind": w.kind, "key": w.key, "body": w.body}, separators=(",", ":")).encode()
        if items and (len(items) >= MAX_BATCH_ITEMS or size + len(item) + 1 > MAX_BODY_BYTES):
            yield start, items
            start, items, size = i, [], 2
        items.append(item)
        size += len(item) + 1
    if items:
        yield start, items


def write_many(
    data_dir: Path,
    writes: Sequence[LocalWrite],
    *,
    unlock: Callable[[], Keys],
    progress: Callable[[int], None] | None = None,
) -> BulkResult:
    """Write many entries of our own log, through the daemon's bulk API if it is up, else into ``node.db``.

    Sent in request-sized chunks, each stored all or nothing in one
    transaction; ``progress(n)`` is told the running count after each.

    Raises:
        WritesRejected: the daemon or the store refused a chunk (indexes into ``writes``); the chunks
            before it are stored, nothing of it or after it.
    """
    seqs: list[int] = []
    via = "store"
    daemon = read_daemon_info(data_dir)
    if daemon is not None:
        info, token = daemon
        try:
            with httpx.Client(
                base_url=info["api_url"],
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                timeout=120,
            ) as client:
                for start, items in chunks_of(writes):
                    r = client.post("/v1/local/entries", content=b"[" + b",".join(items) + b"]")
                    if r.status_code != 201:
                        raise _refused(r, start, len(seqs))
                    seqs += [d["seq"] for d in r.json()["items"]]
                    via = "daemon"
                    if progress is not None:
                        progress(len(seqs))
        except httpx.TransportError:
            if seqs:
                raise NodeError(
                    f"the daemon went away after {len(seqs)} writes; run the rest again"
                ) from None
            daemon = None  # stale node.json: the daemon died; write to the store instead
    if daemon is None:
        keys = unlock()
        store = Store.open(data_dir / NODE_DB)
        try:
            for start in range(0, len(writes), MAX_BATCH_ITEMS):
                [outcome] = store.append_local_many(keys.author, [writes[start : start + MAX_BATCH_ITEMS]])
                if isinstance(outcome, WritesRejected):
                    raise WritesRejected([(start + i, why) for i, why in outcome.errors])
                seqs += [e.seq for e in outcome]
                if progress is not None:
                    progress(len(seqs))
        finally:
            store.close()
    return BulkResult(len(seqs), seqs[0], seqs[-1], via)


def _refused(r: httpx.Response, start: int, done: int) -> NodeError:
    try:
        doc = r.json()
    except ValueError:
        doc = {}
    if doc.get("errors"):
        return WritesRejected([(start + e["index"], e["detail"]) for e in doc["errors"]])
    return NodeError(f"the daemon refused the writes after {done}: {doc.get('detail', r.text)}")


def publish_catalogue(
    data_dir: Path,
    path: Path,
    *,
    unlock: Callable[[], Keys],
    payout_evm: Callable[[str | None], str | None] = lambda v: v,
    progress: Callable[[int, int], None] | None = None,
    ipfs_api: str | None = None,
) -> BulkResult:
    """``node publish --from FILE``: every line of the catalogue (:func:`read_catalogue`), or none.

    The files the lines name are added and pinned on ``ipfs_api`` first, or remembered for
    ``node media push`` (:func:`node.media.put_files`): a daemon that names one otherwise stops it all.
    """
    writes, numbers, files = read_catalogue(path, payout_evm=payout_evm)
    put_files(data_dir, files, ipfs_api=ipfs_api)
    done = 0

    def told(n: int) -> None:
        nonlocal done
        done = n
        if progress is not None:
            progress(n, len(writes))

    try:
        return write_many(data_dir, writes, unlock=unlock, progress=told)
    except WritesRejected as exc:
        raise CatalogueError(path, [(numbers[i], why) for i, why in exc.errors], published=done) from None


def current_put(data_dir: Path, key: str) -> dict[str, Any]:
    """The body of our asset ``key`` as it stands now (for ``edit``)."""
    store = Store.open(data_dir / NODE_DB)
    try:
        return put_of(store, AssetUri.of(_me(data_dir), key))
    finally:
        store.close()


def put_of(store: Store, uri: AssetUri) -> dict[str, Any]:
    """The current ``asset.put`` body of ``uri`` in ``store`` (``edit``'s and ``delete``'s base).

    Raises:
        NotFoundError: no such asset, or it is deleted.
    """
    row = store.asset(uri)
    if row.deleted or row.put is None:
        raise NotFoundError(f"asset {uri.key!r} is deleted; publish it again to restore it")
    return dict(row.put.body)


def _me(data_dir: Path) -> AuthorKey:
    return parse_did(author_did(data_dir))


def library(
    data_dir: Path, *, include_others: bool, trusted_bridges: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The library's items (:meth:`node.store.AssetRow.to_json`, with ``media_kind``), each with the
    verification a trusted bridge's attestation gives it."""
    trusted = frozenset(parse_did(d) for d in trusted_bridges)
    store = Store.open(data_dir / NODE_DB)
    try:
        items = store.library(local_only=not include_others, trusted=trusted)
    finally:
        store.close()
    return items


def export(data_dir: Path, *, include_others: bool) -> Iterator[bytes]:
    store = Store.open(data_dir / NODE_DB)
    try:
        yield from store.export_raw(local_only=not include_others)
    finally:
        store.close()
