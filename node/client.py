"""What the ``empressa node …`` commands do, apart from parsing and printing.

Writes go to a running daemon when there is one (its local API, named in
``node.json``) so the entry is announced at once and the daemon stays the only
writer of the log; otherwise they go straight into ``node.db`` and the daemon
announces them when it next starts.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from protocol import (
    AssetUri,
    AuthorKey,
    b32,
    parse_did,
)

from .errors import NodeError, NotFoundError
from .keystore import Keys, read_public_did
from .paths import KEYSTORE_FILE, NODE_DB
from .runner import read_daemon_info
from .store import Store


@dataclass(frozen=True)
class WriteResult:
    uri: str
    hash: str
    seq: int
    via: str  # "daemon" or "store"


def file_cid(path: Path) -> tuple[str, int]:
    """A CIDv1 (raw codec, sha2-256, base32) of a file's bytes, and its size.

    This names the exact bytes; it equals ``ipfs add --cid-version 1
    --raw-leaves`` only for files that fit one IPFS block (≤ 256 KiB).
    """
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return "b" + b32(b"\x01\x55\x12\x20" + h.digest()), size


def media_from(
    *, file: Path | None, cid: str | None, mime: str | None, size: int | None, duration_ms: int | None
) -> dict[str, Any]:
    if file is not None:
        if not file.is_file():
            raise NodeError(f"no such file: {file}")
        cid, size = file_cid(file)
        mime = mime or mimetypes.guess_type(file.name)[0]
    if cid is None:
        raise NodeError("give the media as --file PATH or --cid CID")
    if mime is None:
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


def put_body(fields: AssetFields, base: dict[str, Any] | None) -> dict[str, Any]:
    """The ``asset.put`` body: ``fields`` merged into ``base`` (an edit's previous body; ``None`` to publish).

    Fields not given keep their previous value; given tags replace all tags (duplicates
    dropped, order kept); new media (``file`` or ``cid``) replaces the old, while ``mime``
    or ``duration_ms`` alone amend it; the license and payout are merged key by key.

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


def current_put(data_dir: Path, key: str) -> dict[str, Any]:
    """The body of our asset ``key`` as it stands now (for ``edit``)."""
    uri = AssetUri.of(_me(data_dir), key)
    store = Store.open(data_dir / NODE_DB)
    try:
        row = store.asset(uri)
    finally:
        store.close()
    if row.deleted or row.put is None:
        raise NotFoundError(f"asset {key!r} is deleted; publish it again to restore it")
    return dict(row.put.body)


def _me(data_dir: Path) -> AuthorKey:
    return parse_did(author_did(data_dir))


def library(
    data_dir: Path, *, include_others: bool, trusted_bridges: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The library's items, each with the verification a trusted bridge's attestation gives it."""
    trusted = frozenset(parse_did(d) for d in trusted_bridges)
    store = Store.open(data_dir / NODE_DB)
    try:
        return store.library(local_only=not include_others, trusted=trusted)
    finally:
        store.close()


def export(data_dir: Path, *, include_others: bool) -> Iterator[bytes]:
    store = Store.open(data_dir / NODE_DB)
    try:
        yield from store.export_raw(local_only=not include_others)
    finally:
        store.close()
