"""Schema, analyzer, documents and sort keys of the search index; its errors at the Tantivy edge.

See :mod:`indexer.search.index` for the design. Everything written into a
document is computed here, from one :class:`~indexer.store.changes.AssetRow`.
"""

import hashlib
import json
import logging
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import tantivy

from ..errors import SearchUnavailable
from ..store.changes import AssetRow

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: did_h and tag_h (facet counts by hash)
PRICE_MAX = Decimal(10) ** 20  # Numeric(30, 10): 20 integer digits


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Tantivy raises ValueError/OSError/RuntimeError; callers see :class:`SearchUnavailable`."""
    try:
        yield
    except (ValueError, OSError, RuntimeError) as exc:
        raise SearchUnavailable(f"search index: {what} failed: {exc}") from exc


# -- schema and documents ------------------------------------------------------------


def _analyzer() -> tantivy.TextAnalyzer:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(64))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .build()
    )


ANALYZER = _analyzer()


def build_schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("uri", tokenizer_name="raw", index_option="basic")
    for name in ("title", "tags_text", "description"):
        sb.add_text_field(name, tokenizer_name="fold", index_option="freq")
    sb.add_text_field("all", tokenizer_name="fold", index_option="basic")
    for name in ("did", "tag"):  # filters; their facets count did_h and tag_h
        sb.add_text_field(name, tokenizer_name="raw", index_option="basic")
    for name in ("license", "media_type", "k_new", "k_title", "price_key"):
        sb.add_text_field(name, tokenizer_name="raw", index_option="basic", fast=True)
    for name in ("did_h", "tag_h"):
        sb.add_unsigned_field(name, fast=True)
    sb.add_text_field("names", tokenizer_name="raw", index_option="basic")  # see name_term
    sb.add_text_field("status", tokenizer_name="raw", index_option="basic")
    sb.add_integer_field("created", indexed=True, fast=True)
    sb.add_bytes_field("doc", stored=True)
    return sb.build()


SCHEMA = build_schema()


def facet_hash(value: str) -> int:
    """63 bits of BLAKE2b of a creator or tag: what its facet counts (see :mod:`.index`, Facets)."""
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big") >> 1


def name_term(field: str, h: int, value: str = "") -> str:
    """A ``names`` term: the hashed field, the hash, the value; a facet's hash finds its value by prefix."""
    return f"{field}:{h:016x}:{value}"


def fold_title(title: str) -> str:
    """Case- and accent-insensitive form of a title for sorting."""
    decomposed = unicodedata.normalize("NFKD", title)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


def newest_key(created_ts: int, asset_id: int) -> str:
    return f"{created_ts:016x}{asset_id:016x}"


def title_key(title: str, asset_id: int) -> str:
    """``t`` + hex of the folded title's UTF-8 (first 256 bytes) + ``-`` + the id: unique, parser-safe."""
    folded = fold_title(title).encode()[:256].decode("utf-8", "ignore").encode()
    return f"t{folded.hex()}-{asset_id:016x}"


def price_key(price: Decimal) -> str:
    """30 digits (20 integer, 10 fractional) whose string order is the numeric order (price ≥ 0)."""
    units = int(price.scaleb(10).to_integral_value(ROUND_FLOOR))
    return f"{units:030d}"


def _decimal_text(d: Decimal | None) -> str | None:
    if d is None:
        return None
    text = format(d.normalize(), "f")
    return text


def item_of(row: AssetRow) -> dict[str, Any]:
    """The result item of one asset, as the API returns it (without ``score``)."""
    return {
        "uri": row.uri,
        "did": row.did,
        "key": row.key,
        "title": row.title,
        "description": row.description,
        "tags": list(row.tags),
        "license": row.license,
        "price": _decimal_text(row.price),
        "currency": row.currency,
        "media_type": row.media_type,
        "media_mime": row.media_mime,
        "media_cid": row.media_cid,
        "created_ts": row.created_ts,
        "updated_ts": row.updated_ts,
        "chain_status": row.chain_status,
    }


def status_tokens(row: AssetRow) -> list[str]:
    """What ``status=`` matches: the chain status (``listed``, ``verified``, ``mismatch``, ``unbound``),
    ``registered`` for any registration, ``licensed`` once a payment licensed the asset."""
    tokens = [row.chain_status]
    if row.chain_status != "listed":
        tokens.append("registered")
    if row.licenses > 0:
        tokens.append("licensed")
    return tokens


def document_of(row: AssetRow) -> tantivy.Document:
    d = tantivy.Document()
    d.add_text("uri", row.uri)
    d.add_text("title", row.title)
    d.add_text("description", row.description)
    d.add_text("all", row.title)
    d.add_text("all", row.description)
    for t in row.tags:
        d.add_text("tag", t)
        h = facet_hash(t)
        d.add_unsigned("tag_h", h)
        d.add_text("names", name_term("tag_h", h, t))
        d.add_text("tags_text", t)
        d.add_text("all", t)
    d.add_text("did", row.did)
    h = facet_hash(row.did)
    d.add_unsigned("did_h", h)
    d.add_text("names", name_term("did_h", h, row.did))
    if row.license is not None:
        d.add_text("license", row.license)
    if row.media_type is not None:
        d.add_text("media_type", row.media_type)
    for token in status_tokens(row):
        d.add_text("status", token)
    if row.price is not None and row.price >= 0:
        d.add_text("price_key", price_key(row.price))
    d.add_integer("created", row.created_ts)
    d.add_text("k_new", newest_key(row.created_ts, row.id))
    d.add_text("k_title", title_key(row.title, row.id))
    d.add_bytes("doc", json.dumps(item_of(row), separators=(",", ":"), ensure_ascii=False).encode())
    return d
