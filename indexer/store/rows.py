"""What ingest writes, as rows: the codecs (jsonb, binary COPY) and the row builders.

Rows are encoded once, in PostgreSQL's binary COPY format, as bytes: the
``entries`` row of an entry, the asset columns of an ``asset.put`` and the
``activity`` columns of an entry (all but the activity's kind, which only the
ingest transaction knows). Bytes are what a worker process can hand the
writer for nearly nothing (:meth:`Rows.export` / :meth:`Rows.adopt`: no
objects to rebuild), and a batch is COPYed as the concatenation of its rows
(:func:`copy_rows`). The values are encoded by psycopg's own binary dumpers
(no connection needed: the types are PostgreSQL's built-in ones), so the bytes
are exactly what ``copy.write_row`` would send.

Pure Python over verified entries, apart from :func:`binary_copy` and
:func:`copy_rows`, which drive a psycopg cursor's ``COPY … FROM STDIN`` in binary format.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from psycopg._copy_base import format_row_binary  # the C encoder behind Copy.write_row
from psycopg.adapt import AdaptersMap, Transformer
from psycopg.pq import Format
from psycopg.types.json import set_json_dumps

from protocol import AssetUri, AuthorKey, Entry, EntryHash, now_ms


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """JSON for a jsonb column, encoded once (bytes values as hex)."""
    return orjson.dumps(value, default=_json_default)


def _encoded(data: bytes) -> bytes:
    """The jsonb dumper's ``dumps`` for rows whose JSON :func:`dumps` already encoded."""
    return data


@contextmanager
def binary_copy(cur: Any, sql: str, types: Sequence[str]) -> Iterator[Any]:
    """``COPY … FROM STDIN`` in PostgreSQL's binary format: bytea as is (not hex), jsonb as
    :func:`dumps` encoded it. Rows are written with ``copy.write_row``."""
    set_json_dumps(_encoded, context=cur)
    with cur.copy(f"{sql} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        yield copy


_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER = b"\xff\xff"


def copy_rows(cur: Any, sql: str, rows: Iterable[bytes]) -> None:
    """``COPY … FROM STDIN (FORMAT BINARY)`` of rows encoded by :class:`Codec`: one write."""
    with cur.copy(f"{sql} FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(b"".join([_SIGNATURE, *rows, _TRAILER]))


class _Encoder:
    """Values of fixed PostgreSQL types as binary COPY fields (a row, or a run of fields)."""

    def __init__(self, adapters: AdaptersMap, types: Sequence[str]) -> None:
        self._tx = Transformer(adapters)
        self._tx.set_dumper_types([adapters.types.get_oid(t) for t in types], Format.BINARY)
        self._n = len(types)

    def row(self, values: Sequence[Any]) -> bytes:
        """A whole row: field count, then the fields."""
        out = bytearray()
        format_row_binary(values, self._tx, out)
        return bytes(out)

    def fields(self, values: Sequence[Any]) -> bytes:
        """The fields alone (part of a row that :meth:`Codec.asset_row` or the activity row completes)."""
        out = bytearray()
        format_row_binary(values, self._tx, out)
        return bytes(memoryview(out)[2:])


ASSET_COLUMNS = (
    "author, did, key, uri, entry_hash, put_hash, seq, deleted, title, description, tags, license, price, "
    "currency, media_cid, media_mime, media_type, body, versions, created_ts, updated_ts"
)
ASSET_TYPES = (
    "bytea", "text", "text", "text", "bytea", "bytea", "int8", "bool", "text", "text", "text[]", "text",
    "numeric", "text", "text", "text", "text", "jsonb", "int4", "int8", "int8",
)  # fmt: skip
ENTRY_COLUMNS = "hash, author, seq, ts, kind, key, raw, received_at"
ENTRY_TYPES = ("bytea", "bytea", "int8", "int8", "text", "text", "bytea", "timestamptz")
ACTIVITY_COLUMNS = "kind, uri, did, entry_hash, seq, data"
ACTIVITY_TYPES = ("text", "text", "text", "bytea", "int8", "jsonb")

# An asset row is its head (author … deleted), the put's fields (title … body) and its tail.
# The tags (text[]) are encoded by :func:`text_array` and passed through as bytea: binary
# COPY carries no types, and psycopg's list dumper is pure Python (the costliest field).
_ASSET_HEAD, _ASSET_TAIL = ASSET_TYPES[:8], ASSET_TYPES[18:]
_PUT = tuple("bytea" if t == "text[]" else t for t in ASSET_TYPES[8:18])
_TEXT_OID = 25
_INT4 = struct.Struct(">i")
_EMPTY_TEXT_ARRAY = struct.pack(">iii", 0, 0, _TEXT_OID)


def text_array(items: Sequence[str]) -> bytes:
    """A one-dimensional ``text[]`` without nulls in PostgreSQL's binary format."""
    if not items:
        return _EMPTY_TEXT_ARRAY
    parts = [struct.pack(">iiiii", 1, 0, _TEXT_OID, len(items), 1)]
    for item in items:
        data = item.encode()
        parts.append(_INT4.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


EMPTY_PUT: tuple[Any, ...] = ("", "", _EMPTY_TEXT_ARRAY, None, None, None, None, None, None, b"{}")


class Codec:
    """The encoders of the rows ingest writes, one set per process (:func:`codec`)."""

    def __init__(self) -> None:
        adapters = AdaptersMap(psycopg.adapters)
        set_json_dumps(_encoded, context=adapters)
        self.entry = _Encoder(adapters, ENTRY_TYPES)
        self.put = _Encoder(adapters, _PUT)
        self.asset_head = _Encoder(adapters, _ASSET_HEAD)
        self.asset_tail = _Encoder(adapters, _ASSET_TAIL)
        self.activity_tail = _Encoder(adapters, ACTIVITY_TYPES[1:])
        kind = _Encoder(adapters, ACTIVITY_TYPES[:1])
        count = struct.pack(">h", len(ACTIVITY_TYPES))
        self.activity_head = {
            k: count + kind.fields([k]) for k in ("published", "updated", "deleted", "attested")
        }
        self.empty_put = self.put.fields(EMPTY_PUT)
        self._asset_count = struct.pack(">h", len(ASSET_TYPES))

    def asset_row(self, head: Sequence[Any], put: bytes | None, tail: Sequence[Any]) -> bytes:
        """An ``asset_stage`` row: ``head`` (author … deleted), the put's encoded fields, ``tail``."""
        return b"".join(
            (
                self._asset_count,
                self.asset_head.fields(head),
                self.empty_put if put is None else put,
                self.asset_tail.fields(tail),
            )
        )


_codec: Codec | None = None


def codec() -> Codec:
    """This process's :class:`Codec` (built on first use)."""
    global _codec
    if _codec is None:
        _codec = Codec()
    return _codec


def asset_fields(body: dict[str, Any]) -> tuple[Any, ...]:
    """The asset columns of an ``asset.put`` body, title to body (tags as a list)."""
    lic = body.get("license") or {}
    price = lic.get("price")
    media = body.get("media") or {}
    mime = media.get("mime")
    return (
        body.get("title", ""),
        body.get("description", ""),
        list(body.get("tags", [])),
        lic.get("type"),
        Decimal(price["amount"]) if price else None,
        price["currency"] if price else None,
        media.get("cid"),
        mime,
        mime.split("/", 1)[0] if mime else None,
        dumps(body),
    )


def _put_values(body: dict[str, Any]) -> tuple[Any, ...]:
    """:func:`asset_fields` as :class:`Codec` ``put`` takes them (the tags encoded)."""
    title, description, tags, *rest = asset_fields(body)
    return (title, description, text_array(tags), *rest)


class Dids(dict[bytes, str]):
    """did:key text per author key, computed once per batch (base58 is the costly part)."""

    def __missing__(self, author: bytes) -> str:
        did = self[author] = AuthorKey(author).did
        return did


Prepared = dict[bytes, tuple[bytes, bytes | None, bytes, str | None]]
"""Encoded rows by entry hash: (``entries`` row, the put's asset fields or None, the activity
fields after its kind, the asset id (:attr:`~protocol.AssetUri.id_b32`) of an ``asset.put`` or
``asset.delete``, else None). What :meth:`Rows.export` gives and :meth:`Rows.adopt` takes."""


class Rows:
    """The encoded COPY rows of a batch's entries, built before the ingest lock is taken.

    Building rows (did text, asset fields, JSON, encoding) is most of ingest's
    Python work. Done before the lock, it overlaps the PostgreSQL work of
    whichever transaction holds it; done in another process (the bridge's verify
    workers: :meth:`export` there, :meth:`adopt` here) it leaves the writer's
    process altogether. Entries first met under the lock (parked in ``pending``)
    are built on demand.

    Args:
        received: receipt time (unix ms) by entry hash, for ``entries.received_at`` (absent: now).
    """

    def __init__(self, received: dict[bytes, int]) -> None:
        self.dids = Dids()
        self._codec = codec()
        self._received = received
        self._times: dict[int, datetime] = {}
        self._rows: Prepared = {}

    def build(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            self._built(e)

    def adopt(self, prepared: Prepared) -> None:
        """Take rows another process built (:meth:`export`)."""
        self._rows.update(prepared)

    def export(self) -> Prepared:
        return self._rows

    def _built(self, e: Entry) -> tuple[bytes, bytes | None, bytes, str | None]:
        built = self._rows.get(e.hash.raw)
        if built is None:
            c = self._codec
            ms = self._received.get(e.hash.raw) or now_ms()
            at = self._times.get(ms)
            if at is None:
                at = self._times[ms] = datetime.fromtimestamp(ms / 1000, tz=UTC)
            did = self.dids[e.author.raw]
            built = self._rows[e.hash.raw] = (
                c.entry.row((e.hash.raw, e.author.raw, e.seq, e.ts, e.kind, e.key, e.raw, at)),
                c.put.fields(_put_values(e.body)) if e.kind == "asset.put" else None,
                c.activity_tail.fields(
                    (f"empressa://{did}/{e.key}", did, e.hash.raw, e.seq, self._activity_data(e))
                ),
                AssetUri(e.author, e.key).id_b32 if e.kind in ("asset.put", "asset.delete") else None,
            )
        return built

    def entry(self, e: Entry) -> bytes:
        """The encoded ``entries`` row (:data:`ENTRY_COLUMNS`)."""
        return self._built(e)[0]

    def put_fields(self, e: Entry) -> bytes | None:
        """The encoded asset columns an ``asset.put`` sets, title to body (see :func:`asset_fields`)."""
        return self._built(e)[1]

    def asset_id(self, e: Entry) -> str:
        """The id (:attr:`~protocol.AssetUri.id_b32`) of the asset an ``asset.put`` or ``asset.delete``
        changes: the key of the ``attest`` entries about it (a sha256 and base32, done with the rows,
        before the ingest lock and, in the bridge's verify workers, in another process)."""
        built = self._built(e)[3]
        return built if built is not None else AssetUri(e.author, e.key).id_b32

    def activity(self, e: Entry, kind: str) -> bytes:
        """The encoded ``activity`` row of the entry (:data:`ACTIVITY_COLUMNS`), of ``kind``."""
        return self._codec.activity_head[kind] + self._built(e)[2]

    @staticmethod
    def _activity_data(e: Entry) -> bytes:
        """The ``activity.data`` JSON of the entry's activity row."""
        if e.kind == "asset.put":
            value: dict[str, Any] = {"title": e.body.get("title", "")}
        elif e.kind == "attest":
            subject = e.body.get("subject")
            value = {
                "subject": EntryHash(subject).cid if isinstance(subject, bytes) else None,
                "status": e.body.get("status"),
            }
        else:
            value = {}
        return dumps(value)

    def uri(self, e: Entry) -> str:
        return f"empressa://{self.dids[e.author.raw]}/{e.key}"

    def asset_row(self, head: Sequence[Any], put: Entry | None, tail: Sequence[Any]) -> bytes:
        """An ``asset_stage`` row (:data:`ASSET_COLUMNS`): see :meth:`Codec.asset_row`."""
        return self._codec.asset_row(head, None if put is None else self.put_fields(put), tail)
