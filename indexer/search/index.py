"""The marketplace search index: a Tantivy index derived from PostgreSQL's ``assets``.

Documents
    One document per *searchable* asset (neither ``deleted`` nor ``hidden``):
    deleted and moderated assets are kept out of the index altogether, so no
    page is ever short because hits were dropped after the search. Text goes
    through one analyzer, ``fold`` (simple tokenizer, lowercase, ASCII folding:
    "cafe" finds "Café"), into ``title``, ``tags_text`` and ``description``
    (BM25, frequencies without positions) and into ``all`` (doc ids only), the
    one field that fuzzy and prefix terms are expanded against, so a typo costs
    one automaton walk instead of three. Filters and facets use raw fast fields
    (``did``, ``tag``, ``license``, ``media_type``, ``status``). The result item
    itself is one stored JSON blob (``doc``): a hit costs one doc-store read,
    no PostgreSQL round trip (``bench/search.py`` measures both).

Ranking
    Every query term must match (AND). Per term, a disjunction of exact terms
    in title (boost 3), tags (2) and description (1); plus, for terms of 4+
    characters, a constant-score fuzzy term on ``all`` (Levenshtein 1, or 2
    from 8 characters, transposition cost 1); plus a constant-score prefix on
    the last term. A document that has the exact term also matches its fuzzy
    and prefix clauses, so an exact match always outscores a typo-only one.

Sort keys and keyset cursors (``newest``, ``title``)
    Tantivy sorts by one fast field and ties fall back to DocAddress, which
    changes when segments merge; and the Python binding has no text range
    query, only the query parser's. So each keyset sort gets one *unique*
    string key made of query-parser-safe characters, used both to order
    (``order_by_field``) and to resume (a range clause inside the query):

    * ``k_new`` = 16 hex digits of ``created_ts`` + 16 of ``assets.id``
      (sorted descending);
    * ``k_title`` = ``t`` + hex of the UTF-8 of the folded title (NFKD, marks
      removed, casefolded, spaces collapsed; its first 256 bytes) + ``-`` + 16
      hex digits of the id (sorted ascending; ``-`` sorts before every hex
      digit, so "ab" precedes "abc").

    The cursor carries the last key: the next page is "key beyond this one",
    evaluated by Tantivy, stateless and exact under any concurrent insert,
    update, delete or merge (a row updated after being shown may move, as in
    any keyset scheme; nothing is doubled or skipped because of the paging).

Relevance cursors: points in time
    BM25 scores move as documents arrive (IDF, average length) and ties are
    broken by DocAddress, so a score keyset is not stable. Instead page 1 pins
    its tantivy ``Searcher`` (an immutable snapshot of the segments) in a
    small in-process LRU (:class:`_PitStore`: 256 entries, 5 minutes keep-alive
    refreshed by each use); the cursor carries (pit id, offset). Within one
    searcher the order (score, then DocAddress) is frozen, so offset paging is
    exact. An unknown or expired PIT raises :class:`CursorExpired` (410): the
    client starts again from page 1. PITs live in one process: behind several
    API processes relevance paging needs sticky sessions (keyset sorts do not).
    A pinned searcher keeps its segment files mapped, so it stays readable
    even after the writer process merges and deletes them (POSIX semantics).

Cursors
    base64url (no padding) of compact JSON ``{v, s, f, n, k | p+o}``: version,
    sort, a fingerprint of the query and filters, the total of the first page,
    and the position. Anything that does not decode to exactly that
    shape, or that belongs to another sort or query, raises
    :class:`~indexer.errors.BadRequest`.

``total``
    Counted on the first page (exact for its snapshot) and carried by the
    cursor, so deep pages do not pay for a count: approximate while writes
    happen. Relevance pages count within their pinned searcher.

Speed
    Ordering by a fast field visits every match, about 25 ms per million:
    fine for a selective query, too slow to browse everything by ``newest``.
    So ``newest`` searches growing windows of ``created_ts`` read from the
    inverted index first (:meth:`SearchIndex._newest_hits`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import tantivy

from ..errors import BadRequest, IndexerError
from ..store.changes import AssetRow

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
POSITION_FILE = "empressa-position.json"
MAX_Q = 200
MAX_TERMS = 16
MAX_LIMIT = 100
FACET_SIZE = 20
STATUSES = frozenset({"listed", "registered", "licensed"})
SORTS = ("relevance", "newest", "title")
BOOSTS = {"title": 3.0, "tags_text": 2.0, "description": 1.0}
FUZZY_SCORE = 0.5
PREFIX_SCORE = 0.25
FACETS = {"license": "license", "tag": "tag", "creator": "did", "media_type": "media_type"}
WRITER_HEAP = 256_000_000
SPAN_TTL = 30.0  # seconds between two measures of the created_ts span (see _newest_hits)
REFRESH_INTERVAL = 0.02  # seconds between two looks at the position file
RELOAD_INTERVAL = 1.0  # reload even without a position change (e.g. a reindex swapped the directory)
PRICE_MAX = Decimal(10) ** 20  # Numeric(30, 10): 20 integer digits

Sort = Literal["relevance", "newest", "title"]


class CursorExpired(BadRequest):
    """A relevance cursor whose point in time is gone (expired, evicted, or from another process)."""

    status = 410
    code = "cursor-expired"
    title = "Cursor expired"


class SearchUnavailable(IndexerError):
    """The index cannot be opened or read: missing, locked by another writer, corrupt, or from an old schema."""

    status = 503
    code = "search-unavailable"
    title = "Search unavailable"


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
    for name in ("did", "tag", "license", "media_type", "k_new", "k_title", "price_key"):
        sb.add_text_field(name, tokenizer_name="raw", index_option="basic", fast=True)
    sb.add_text_field("status", tokenizer_name="raw", index_option="basic")
    sb.add_integer_field("created", indexed=True, fast=True)
    sb.add_bytes_field("doc", stored=True)
    return sb.build()


SCHEMA = build_schema()


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


def document_of(row: AssetRow) -> tantivy.Document:
    d = tantivy.Document()
    d.add_text("uri", row.uri)
    d.add_text("title", row.title)
    d.add_text("description", row.description)
    d.add_text("all", row.title)
    d.add_text("all", row.description)
    for t in row.tags:
        d.add_text("tag", t)
        d.add_text("tags_text", t)
        d.add_text("all", t)
    d.add_text("did", row.did)
    if row.license is not None:
        d.add_text("license", row.license)
    if row.media_type is not None:
        d.add_text("media_type", row.media_type)
    d.add_text("status", row.chain_status)
    if row.price is not None and row.price >= 0:
        d.add_text("price_key", price_key(row.price))
    d.add_integer("created", row.created_ts)
    d.add_text("k_new", newest_key(row.created_ts, row.id))
    d.add_text("k_title", title_key(row.title, row.id))
    d.add_bytes("doc", json.dumps(item_of(row), separators=(",", ":"), ensure_ascii=False).encode())
    return d


# -- queries ------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchQuery:
    """One search request, validated by :meth:`SearchIndex.search`.

    ``sort`` defaults to relevance when ``q`` has words, else newest;
    ``sort="relevance"`` without words behaves as newest. ``facets`` asks for
    facet counts (they cost a pass over every match; see ``bench/search.py``).
    """

    q: str | None = None
    creator: str | None = None
    tags: Sequence[str] = ()
    license: str | None = None
    status: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    sort: str | None = None
    limit: int = 20
    cursor: str | None = None
    facets: bool = False


@dataclass
class SearchPage:
    items: list[dict[str, Any]]
    next_cursor: str | None
    total: int
    facets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    """A validated query: the Tantivy query without the cursor clause, and what the cursor must match."""

    query: tantivy.Query
    sort: Sort
    fingerprint: str
    terms: tuple[str, ...]
    match_all: bool


def _const(q: tantivy.Query, score: float) -> tantivy.Query:
    return tantivy.Query.const_score_query(q, score)


def _term(name: str, value: str) -> tantivy.Query:
    return tantivy.Query.term_query(SCHEMA, name, value)


def text_clauses(terms: Sequence[str]) -> list[tantivy.Query]:
    """One MUST clause per analysed term (see the module docstring)."""
    clauses = []
    for i, t in enumerate(terms):
        should = [tantivy.Query.boost_query(_term(f, t), b) for f, b in BOOSTS.items()]
        if len(t) >= 4:
            distance = 2 if len(t) >= 8 else 1
            should.append(
                _const(tantivy.Query.fuzzy_term_query(SCHEMA, "all", t, distance=distance), FUZZY_SCORE)
            )
        if i == len(terms) - 1 and len(t) >= 2:
            prefix = tantivy.Query.fuzzy_term_query(SCHEMA, "all", t, distance=0, prefix=True)
            should.append(_const(prefix, PREFIX_SCORE))
        clauses.append(tantivy.Query.boolean_query([(tantivy.Occur.Should, s) for s in should]))
    return clauses


def _bound(value: Any, name: str) -> Decimal | None:
    if value is None:
        return None
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise BadRequest(f"{name} must be a decimal number") from None
    if not d.is_finite() or d < 0:
        raise BadRequest(f"{name} must be a finite decimal number ≥ 0")
    return d


def _price_clause(lo: Decimal | None, hi: Decimal | None) -> tuple[str, str]:
    lo_key = (
        price_key(min(lo, PRICE_MAX).quantize(Decimal("1e-10"), ROUND_CEILING)) if lo is not None else "*"
    )
    hi_key = price_key(min(hi, PRICE_MAX).quantize(Decimal("1e-10"), ROUND_FLOOR)) if hi is not None else "*"
    return lo_key, hi_key


def _short(value: Any, name: str, limit: int = 256) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise BadRequest(f"{name} must be a non-empty string of at most {limit} characters")
    return value


def plan(sq: SearchQuery, index: tantivy.Index) -> _Plan:
    """Validate a query and build its Tantivy query (without the cursor's range)."""
    q = sq.q.strip() if sq.q is not None else ""
    if len(q) > MAX_Q:
        raise BadRequest(f"q is longer than {MAX_Q} characters")
    if sq.sort is not None and sq.sort not in SORTS:
        raise BadRequest(f"sort must be one of {', '.join(SORTS)}")
    if not isinstance(sq.limit, int) or isinstance(sq.limit, bool) or not 1 <= sq.limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    terms = tuple(dict.fromkeys(ANALYZER.analyze(q)))[:MAX_TERMS] if q else ()
    sort: Sort = sq.sort or "relevance"  # type: ignore[assignment]
    if sq.sort is None and not terms:
        sort = "newest"
    if sort == "relevance" and not terms:
        sort = "newest"
    clauses: list[tuple[tantivy.Occur, tantivy.Query]] = [
        (tantivy.Occur.Must, c) for c in text_clauses(terms)
    ]
    filters: list[tantivy.Query] = []
    if sq.creator is not None:
        filters.append(_term("did", _short(sq.creator, "creator")))
    tags = list(sq.tags or ())
    if len(tags) > 20:
        raise BadRequest("at most 20 tag filters")
    for t in dict.fromkeys(tags):
        filters.append(_term("tag", _short(t, "tag", 64)))
    if sq.license is not None:
        filters.append(_term("license", _short(sq.license, "license", 64)))
    if sq.status is not None:
        if sq.status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(sorted(STATUSES))}")
        filters.append(_term("status", sq.status))
    lo, hi = _bound(sq.min_price, "min_price"), _bound(sq.max_price, "max_price")
    price = None
    if lo is not None and hi is not None and lo > hi:
        raise BadRequest("min_price is greater than max_price")
    if lo is not None or hi is not None:
        price = _price_clause(lo, hi)
        with translate_errors("price filter"):
            filters.append(index.parse_query(f"price_key:[{price[0]} TO {price[1]}]", ["price_key"]))
    clauses += [(tantivy.Occur.Must, _const(f, 0.0)) for f in filters]
    query = tantivy.Query.boolean_query(clauses) if clauses else tantivy.Query.all_query()
    identity = [list(terms), sq.creator, sorted(set(tags)), sq.license, sq.status, price, sort]
    fingerprint = hashlib.blake2b(json.dumps(identity).encode(), digest_size=8).hexdigest()
    return _Plan(query=query, sort=sort, fingerprint=fingerprint, terms=terms, match_all=not clauses)


# -- cursors ---------------------------------------------------------------------------

CURSOR_VERSION = 1
MAX_CURSOR = 1200
_SORT_CODE = {"relevance": "r", "newest": "n", "title": "t"}
_B64 = re.compile(r"[A-Za-z0-9_-]+")
_KEY = {
    "n": re.compile(r"[0-9a-f]{32}"),
    "t": re.compile(r"t(?:[0-9a-f]{2}){0,256}-[0-9a-f]{16}"),
}
_PIT_ID = re.compile(r"[A-Za-z0-9_-]{22}")
_FP = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Cursor:
    sort: Sort
    fingerprint: str
    total: int
    key: str | None = None
    pit: str | None = None
    offset: int = 0

    def encode(self) -> str:
        body: dict[str, Any] = {
            "v": CURSOR_VERSION,
            "s": _SORT_CODE[self.sort],
            "f": self.fingerprint,
            "n": self.total,
        }
        if self.sort == "relevance":
            body |= {"p": self.pit, "o": self.offset}
        else:
            body["k"] = self.key
        raw = json.dumps(body, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _is_int(v: Any, hi: int) -> bool:
    return type(v) is int and 0 <= v <= hi


def decode_cursor(text: str, *, plan: _Plan) -> Cursor:
    """Parse a cursor strictly; any doubt is a :class:`BadRequest` with the reason."""
    if not isinstance(text, str) or not text or len(text) > MAX_CURSOR or not _B64.fullmatch(text):
        raise BadRequest("cursor is malformed (not a base64url string of a sane length)")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        body = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadRequest("cursor is malformed (does not decode)") from None
    if not isinstance(body, dict) or body.get("v") != CURSOR_VERSION:
        raise BadRequest("cursor is malformed (unknown version)")
    code = body.get("s")
    sort = next((s for s, c in _SORT_CODE.items() if c == code), None)
    expected = {"v", "s", "f", "n", "p", "o"} if code == "r" else {"v", "s", "f", "n", "k"}
    if sort is None or set(body) != expected:
        raise BadRequest("cursor is malformed (unexpected fields)")
    if not isinstance(body["f"], str) or not _FP.fullmatch(body["f"]) or not _is_int(body["n"], 10**9):
        raise BadRequest("cursor is malformed (bad fingerprint or count)")
    if sort != plan.sort:
        raise BadRequest(f"cursor belongs to sort={sort}, not sort={plan.sort}")
    if body["f"] != plan.fingerprint:
        raise BadRequest("cursor belongs to a different query or filters")
    if sort == "relevance":
        if (
            not isinstance(body["p"], str)
            or not _PIT_ID.fullmatch(body["p"])
            or not _is_int(body["o"], 10**7)
        ):
            raise BadRequest("cursor is malformed (bad point in time or offset)")
        return Cursor(sort, body["f"], body["n"], pit=body["p"], offset=body["o"])
    key = body["k"]
    if not isinstance(key, str) or not _KEY[code].fullmatch(key):
        raise BadRequest("cursor is malformed (bad position key)")
    return Cursor(sort, body["f"], body["n"], key=key)


class _PitStore:
    """Pinned searchers for relevance paging: bounded LRU with a keep-alive (see module docstring)."""

    def __init__(self, *, capacity: int = 256, keep_alive: float = 300.0) -> None:
        self.capacity = capacity
        self.keep_alive = keep_alive
        self._items: OrderedDict[str, tuple[tantivy.Searcher, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._items:
            pit, (_, deadline) = next(iter(self._items.items()))
            if deadline > now and len(self._items) <= self.capacity:
                break
            del self._items[pit]

    def pin(self, searcher: tantivy.Searcher) -> str:
        pit = secrets.token_urlsafe(16)
        now = time.monotonic()
        with self._lock:
            self._items[pit] = (searcher, now + self.keep_alive)
            self._expire(now)
        return pit

    def get(self, pit: str) -> tantivy.Searcher:
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            found = self._items.get(pit)
            if found is None:
                raise CursorExpired("the cursor's point in time has expired; start again from the first page")
            self._items[pit] = (found[0], now + self.keep_alive)
            self._items.move_to_end(pit)
            return found[0]

    def __len__(self) -> int:
        return len(self._items)


# -- the index -----------------------------------------------------------------------


def read_position(path: Path) -> dict[str, Any]:
    """The feeder's position file in an index directory (``change_seq`` 0 when there is none)."""
    try:
        data = json.loads((path / POSITION_FILE).read_text())
    except FileNotFoundError:
        return {"version": SCHEMA_VERSION, "change_seq": 0}
    except (OSError, ValueError) as exc:
        raise SearchUnavailable(f"search index: unreadable position file: {exc}") from exc
    if not isinstance(data, dict) or type(data.get("change_seq")) is not int:
        raise SearchUnavailable("search index: malformed position file")
    return data


def write_position(path: Path, change_seq: int) -> None:
    """Atomically replace the position file (write, fsync, rename, fsync the directory)."""
    tmp = path / (POSITION_FILE + ".tmp")
    body = {"version": SCHEMA_VERSION, "change_seq": change_seq, "written_at": time.time()}
    with open(tmp, "w") as f:
        f.write(json.dumps(body))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / POSITION_FILE)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exists(path: Path) -> bool:
    return path.is_dir() and (path / "meta.json").exists()


def _open_tantivy(path: Path, *, create: bool) -> tantivy.Index:
    with translate_errors("open"):
        if _exists(path):
            version = read_position(path).get("version")
            if version != SCHEMA_VERSION:
                raise SearchUnavailable(
                    f"search index at {path} has schema version {version}, expected {SCHEMA_VERSION}: "
                    "run `empressa indexer reindex`"
                )
            index = tantivy.Index.open(str(path))
        elif create:
            path.mkdir(parents=True, exist_ok=True)
            index = tantivy.Index(SCHEMA, str(path), reuse=True)
        else:
            raise SearchUnavailable(
                f"no search index at {path}: start the feeder or run `empressa indexer reindex`"
            )
        index.register_tokenizer("fold", ANALYZER)
        index.config_reader(reload_policy="Manual")
        return index


def _stamp(p: Path) -> tuple[int, int, int] | None:
    try:
        st = p.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class SearchIndex:
    """One index directory, opened to search it (API) or to write it too (feeder, reindex).

    Use :func:`open_index`. Searching is thread-safe; writing is for one thread.
    """

    def __init__(self, path: Path, index: tantivy.Index, *, writer: tantivy.IndexWriter | None) -> None:
        self.path = path
        self._index = index
        self._writer = writer
        self._pits = _PitStore()
        self._refresh_lock = threading.Lock()
        self._checked = self._reloaded = time.monotonic()
        self._pos_stamp = _stamp(path / POSITION_FILE)
        self._dir_stamp = _stamp(path)
        self._position = int(read_position(path)["change_seq"])
        self._span_cache: tuple[float, int, int, int] | None = None

    # -- reading ------------------------------------------------------------------

    @property
    def position(self) -> int:
        """The ``assets.change_seq`` the index reflects (as of the last commit or refresh)."""
        return self._position

    @property
    def num_docs(self) -> int:
        with translate_errors("count"):
            return int(self._index.searcher().num_docs)

    def refresh(self, *, force: bool = False) -> None:
        """Cheap; call before a search. Sees the feeder's commits within ~20 ms and a reindex's swap."""
        now = time.monotonic()
        if not force and now - self._checked < REFRESH_INTERVAL:
            return
        with self._refresh_lock:
            self._checked = now
            if self._writer is None and _stamp(self.path) not in (self._dir_stamp, None):
                self._reopen()
                return
            stamp = _stamp(self.path / POSITION_FILE)
            if force or stamp != self._pos_stamp or now - self._reloaded > RELOAD_INTERVAL:
                with translate_errors("reload"):
                    self._index.reload()
                self._reloaded = now
                if stamp != self._pos_stamp:
                    self._pos_stamp = stamp
                    self._position = int(read_position(self.path)["change_seq"])

    def _reopen(self) -> None:
        """The directory was swapped by a reindex: open the new one (pinned searchers stay valid)."""
        self._index = _open_tantivy(self.path, create=False)
        self._dir_stamp = _stamp(self.path)
        self._pos_stamp = _stamp(self.path / POSITION_FILE)
        self._position = int(read_position(self.path)["change_seq"])
        self._reloaded = time.monotonic()
        log.info("search index reopened path=%s position=%d", self.path, self._position)

    def search(self, query: SearchQuery) -> SearchPage:
        """Run one validated search; raises BadRequest, CursorExpired or SearchUnavailable."""
        self.refresh()
        p = plan(query, self._index)
        cursor = decode_cursor(query.cursor, plan=p) if query.cursor is not None else None
        with translate_errors("search"):
            if p.sort == "relevance":
                return self._relevance(p, query, cursor)
            return self._keyset(p, query, cursor)

    def _items(self, searcher: tantivy.Searcher, hits: list[tuple[Any, Any]]) -> list[dict[str, Any]]:
        return [json.loads(searcher.doc(addr).get_first("doc")) for _, addr in hits]

    def _relevance(self, p: _Plan, sq: SearchQuery, cursor: Cursor | None) -> SearchPage:
        if cursor is not None:
            searcher, offset, pit = self._pits.get(cursor.pit or ""), cursor.offset, cursor.pit
        else:
            searcher, offset, pit = self._index.searcher(), 0, None
        res = searcher.search(p.query, sq.limit, count=True, offset=offset)
        items = self._items(searcher, res.hits)
        for item, (score, _) in zip(items, res.hits, strict=True):
            item["score"] = round(float(score), 4)
        end = offset + len(items)
        next_cursor = None
        if items and end < res.count:
            pit = pit or self._pits.pin(searcher)
            next_cursor = Cursor("relevance", p.fingerprint, int(res.count), pit=pit, offset=end).encode()
        facets = self._facets(searcher, p.query) if sq.facets else {}
        return SearchPage(items=items, next_cursor=next_cursor, total=int(res.count), facets=facets)

    def _keyset(self, p: _Plan, sq: SearchQuery, cursor: Cursor | None) -> SearchPage:
        searcher = self._index.searcher()
        name, order = ("k_new", tantivy.Order.Desc) if p.sort == "newest" else ("k_title", tantivy.Order.Asc)
        query = p.query
        if cursor is not None:
            bounds = f"{{* TO {cursor.key}}}" if p.sort == "newest" else f"{{{cursor.key} TO *}}"
            after = self._index.parse_query(f"{name}:{bounds}", [name])
            query = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, p.query), (tantivy.Occur.Must, _const(after, 0.0))]
            )
        if p.sort == "newest":
            top = int(cursor.key[:16], 16) if cursor is not None and cursor.key else None
            hits = self._newest_hits(searcher, query, top, sq.limit + 1)
        else:
            hits = searcher.search(query, sq.limit + 1, count=False, order_by_field=name, order=order).hits
        if cursor is not None:
            total = cursor.total
        elif p.match_all:
            total = int(searcher.num_docs)
        else:
            total = int(searcher.search(p.query, 1, count=True).count)
        hits = hits[: sq.limit + 1]
        more = len(hits) > sq.limit
        hits = hits[: sq.limit]
        items = self._items(searcher, hits)
        next_cursor = Cursor(p.sort, p.fingerprint, total, key=hits[-1][0]).encode() if more else None
        facets = self._facets(searcher, p.query) if sq.facets else {}
        return SearchPage(items=items, next_cursor=next_cursor, total=total, facets=facets)

    def _span(self, searcher: tantivy.Searcher) -> tuple[int, int, int]:
        """(documents, oldest created_ts, newest created_ts), recomputed at most every 30 s (an estimate)."""
        now = time.monotonic()
        if self._span_cache is None or now - self._span_cache[0] > SPAN_TTL:
            n = int(searcher.num_docs)
            every = tantivy.Query.all_query()
            oldest = searcher.search(
                every, 1, count=False, order_by_field="created", order=tantivy.Order.Asc
            ).hits
            newest = searcher.search(
                every, 1, count=False, order_by_field="created", order=tantivy.Order.Desc
            ).hits
            span = (n, int(oldest[0][0]), int(newest[0][0])) if oldest and newest else (0, 0, 0)
            self._span_cache = (now, *span)
        return self._span_cache[1:]

    def _newest_hits(
        self, searcher: tantivy.Searcher, query: tantivy.Query, top: int | None, want: int
    ) -> list:
        """Top ``want`` by ``k_new`` (descending), searched in growing windows of ``created_ts``.

        Ordering every match by a fast field visits every match (~25 ms at 1M
        documents). A window ``created_ts`` ∈ [top − w, top] is read from the
        inverted index, so it costs what it holds; ``w`` starts where about
        4 × ``want`` documents are expected (at the index's average density)
        and grows ×16 while the window holds fewer than ``want`` matches. The
        window's hits are exact: everything outside it is older than all of
        it. After four windows, the unbounded query (cheap when few match).
        """
        n, oldest, newest = self._span(searcher)
        if n:
            upper = newest if top is None else top
            width = max(1, (newest - oldest) * 4 * want // n)
            for _ in range(4):
                window = tantivy.Query.range_query(
                    SCHEMA,
                    "created",
                    tantivy.FieldType.Integer,
                    lower_bound=upper - width,
                    upper_bound=top,
                    use_inverted_index=True,
                )
                q = tantivy.Query.boolean_query(
                    [(tantivy.Occur.Must, query), (tantivy.Occur.Must, _const(window, 0.0))]
                )
                hits = searcher.search(
                    q, want, count=False, order_by_field="k_new", order=tantivy.Order.Desc
                ).hits
                if len(hits) >= want:
                    return hits
                if upper - width < oldest:
                    break
                width *= 16
        return searcher.search(
            query, want, count=False, order_by_field="k_new", order=tantivy.Order.Desc
        ).hits

    def _facets(self, searcher: tantivy.Searcher, query: tantivy.Query) -> dict[str, list[dict[str, Any]]]:
        spec = {name: {"terms": {"field": f, "size": FACET_SIZE}} for name, f in FACETS.items()}
        res = searcher.aggregate(query, spec)
        return {
            name: [
                {"value": b["key"], "count": int(b["doc_count"])}
                for b in res.get(name, {}).get("buckets", [])
            ]
            for name in FACETS
        }

    # -- writing (feeder and reindex) -----------------------------------------------

    def _require_writer(self) -> tantivy.IndexWriter:
        if self._writer is None:
            raise SearchUnavailable("search index opened read-only")
        return self._writer

    def apply(self, rows: Sequence[AssetRow]) -> None:
        """Upsert rows idempotently: delete by ``uri``, then add back if searchable. Visible after :meth:`commit`."""
        w = self._require_writer()
        with translate_errors("write"):
            for row in rows:
                w.delete_documents_by_term("uri", row.uri)
                if row.searchable:
                    w.add_document(document_of(row))

    def add(self, rows: Sequence[AssetRow]) -> None:
        """Add rows known to be absent (a fresh index being built): no delete per row."""
        w = self._require_writer()
        with translate_errors("write"):
            for row in rows:
                if row.searchable:
                    w.add_document(document_of(row))

    def commit(self, *, position: int) -> None:
        """Commit what was applied, then record ``position`` (see :mod:`.feeder` for why this order is safe)."""
        w = self._require_writer()
        with translate_errors("commit"):
            w.commit()
        write_position(self.path, position)
        self._position = position
        self.refresh(force=True)

    def rollback(self) -> None:
        w = self._require_writer()
        with translate_errors("rollback"):
            w.rollback()

    def close(self) -> None:
        """Release the writer lock (waits for merges) and drop pinned searchers."""
        if self._writer is not None:
            w, self._writer = self._writer, None
            with translate_errors("close"):
                w.wait_merging_threads()
        self._pits = _PitStore()


def open_index(
    path: str | Path, *, writer: bool, heap_size: int = WRITER_HEAP, threads: int = 1
) -> SearchIndex:
    """Open (and with ``writer=True`` create) an index directory.

    Only one process may hold the writer (Tantivy's lock file); a second one
    gets :class:`SearchUnavailable`. Readers need no lock and may be many.
    """
    path = Path(path)
    index = _open_tantivy(path, create=writer)
    w = None
    if writer:
        try:
            w = index.writer(heap_size=heap_size, num_threads=threads)
        except (ValueError, OSError, RuntimeError) as exc:
            raise SearchUnavailable(
                f"search index at {path} is being written by another process: {exc}"
            ) from exc
    return SearchIndex(path, index, writer=w)


@contextmanager
def hold_writer_lock(path: Path) -> Iterator[bool]:
    """Hold an existing index's writer lock (whatever its schema); yields False if someone else holds it.

    Yields True at once when there is no index at ``path`` (nothing to protect).
    """
    if not _exists(path):
        yield True
        return
    try:
        writer = tantivy.Index.open(str(path)).writer(heap_size=15_000_000, num_threads=1)
    except (ValueError, OSError, RuntimeError):
        yield False
        return
    try:
        yield True
    finally:
        del writer
