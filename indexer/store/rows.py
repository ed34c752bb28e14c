"""What ingest writes, as rows: the codecs (jsonb, binary COPY) and the row builders.

Pure Python over verified entries, apart from :func:`binary_copy`, which
drives a psycopg cursor's ``COPY … FROM STDIN`` in binary format.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from psycopg.types.json import set_json_dumps

from protocol import AuthorKey, Entry, EntryHash, now_ms


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


EMPTY_PUT: tuple[Any, ...] = ("", "", [], None, None, None, None, None, None, b"{}")


def asset_fields(body: dict[str, Any]) -> tuple[Any, ...]:
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


class Dids(dict[bytes, str]):
    """did:key text per author key, computed once per batch (base58 is the costly part)."""

    def __missing__(self, author: bytes) -> str:
        did = self[author] = AuthorKey(author).did
        return did


class Rows:
    """The COPY rows of a batch's entries, built before the ingest lock is taken.

    Building rows (did text, asset fields, JSON) is most of ingest's Python work.
    Done before the lock, it overlaps the PostgreSQL work of whichever transaction
    holds it: the bridge's pullers and writer call ingest from several threads.
    Entries first met under the lock (parked in ``pending``) are built on demand.
    """

    def __init__(self, received: dict[bytes, int]) -> None:
        self.dids = Dids()
        self._received = received
        self._times: dict[int, datetime] = {}
        self._entry: dict[bytes, tuple[Any, ...]] = {}
        self._put: dict[bytes, tuple[Any, ...]] = {}
        self._activity: dict[bytes, bytes] = {}

    def build(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            self.entry(e)
            self.activity_data(e)
            if e.kind == "asset.put":
                self.put_fields(e)

    def entry(self, e: Entry) -> tuple[Any, ...]:
        """``entries`` row (:data:`ENTRY_COLUMNS`)."""
        row = self._entry.get(e.hash.raw)
        if row is None:
            ms = self._received.get(e.hash.raw) or now_ms()
            at = self._times.get(ms)
            if at is None:
                at = self._times[ms] = datetime.fromtimestamp(ms / 1000, tz=UTC)
            row = self._entry[e.hash.raw] = (e.hash.raw, e.author.raw, e.seq, e.ts, e.kind, e.key, e.raw, at)
        return row

    def put_fields(self, e: Entry) -> tuple[Any, ...]:
        """The asset columns an ``asset.put`` sets, title to body (see :func:`asset_fields`)."""
        fields = self._put.get(e.hash.raw)
        if fields is None:
            fields = self._put[e.hash.raw] = asset_fields(e.body)
        return fields

    def activity_data(self, e: Entry) -> bytes:
        """The ``activity.data`` JSON of the entry's activity row."""
        data = self._activity.get(e.hash.raw)
        if data is None:
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
            data = self._activity[e.hash.raw] = dumps(value)
        return data

    def uri(self, e: Entry) -> str:
        return f"empressa://{self.dids[e.author.raw]}/{e.key}"


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
