"""The marketplace search index: a Tantivy index derived from PostgreSQL's ``assets``.

This module holds :class:`SearchIndex` and the design notes below; the
schema and documents live in :mod:`.schema`, requests and cursors in
:mod:`.query`, following PostgreSQL in :mod:`.feeder`.

Documents
    One document per *searchable* asset (neither ``deleted`` nor ``hidden``):
    deleted and moderated assets are kept out of the index altogether, so no
    page is ever short because hits were dropped after the search. Text goes
    through one analyzer, ``fold`` (simple tokenizer, lowercase, ASCII folding:
    "cafe" finds "Café"), into ``title``, ``tags_text`` and ``description``
    (BM25, frequencies without positions) and into ``all`` (doc ids only), the
    one field that fuzzy and prefix terms are expanded against, so a typo costs
    one automaton walk instead of three. Filters use raw terms (``did``, ``tag``,
    ``license``, ``status``, ``price_key``), facets fast fields (see Facets). The result item
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

Facets
    Exact counts of the top 20 values of ``license``, ``tag``, ``creator`` and
    ``media_type`` among all matches, from Tantivy terms aggregations that
    also count the matches (``value_count`` of ``created``, which every
    document has), so a page with facets asks for its top hits without a
    count and they need not visit every match. Two details make the counts
    exact and cheap:

    * Tantivy keeps only the top ``segment_size`` values of each segment
      (10 × size by default) and then merges segments, which undercounts a
      value that is rare in one segment and common in another; so
      ``segment_size`` is unbounded (:data:`EXACT`).
    * Unbounded, a text fast field costs a term-dictionary lookup for every
      distinct value of every segment (about 30 µs each: 60 ms for 20,000
      creators over four segments). So creators and tags are counted by
      integer fields holding 63 bits of BLAKE2b of the value (``did_h``,
      ``tag_h``, :func:`~.schema.facet_hash`), merged as integers; only the
      top 20 are turned back into text, by a prefix walk of the ``names``
      field's term dictionary (terms ``field:hash:value``, :func:`~.schema.name_term`),
      and remembered (:data:`NAMES_MAX` of them). Two values would have to
      collide in 63 bits to be counted together.

    The tag facet (multi-valued, the costliest: ~20 ns per value) is one
    aggregation request in a second thread, while this one runs the other
    three with the count and then finds the top hits (Tantivy releases the
    GIL). Facets are remembered per reader generation (:data:`FACET_CACHE`
    queries, dropped at the next reload), as Elasticsearch's request cache
    does: a popular query pays once per commit.

    What stays slow: counting visits every match, so a query that matches
    most of the index (a two-letter prefix, a short word with many
    one-edit neighbours) costs about 70 ms per 800,000 matches on this
    machine, nearly all of it the tag facet; ``bench/search.py`` prints it.

Speed
    Ordering by a fast field visits every match, about 25 ms per million:
    fine for a selective query, too slow to browse everything by ``newest``.
    So ``newest`` searches growing windows of ``created_ts`` read from the
    inverted index first (:meth:`SearchIndex._newest_hits`).
"""

import json
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tantivy

from ..errors import CursorExpired, SearchUnavailable
from ..store.changes import AssetRow
from .query import Cursor, Plan, SearchPage, SearchQuery, _const, decode_cursor, plan
from .schema import ANALYZER, SCHEMA, SCHEMA_VERSION, document_of, name_term, translate_errors

__all__ = [
    "CursorExpired",
    "SearchIndex",
    "SearchPage",
    "SearchQuery",
    "SearchUnavailable",
    "open_index",
    "plan",
]

log = logging.getLogger(__name__)

POSITION_FILE = "empressa-position.json"
FACET_SIZE = 20
# facet name -> the fast field it counts; a hashed one is resolved through the item key next to it
FACETS = {"license": "license", "tag": "tag_h", "creator": "did_h", "media_type": "media_type"}
HASHED = {"tag_h": "tags", "did_h": "did"}
EXACT = 2**32 - 1  # a terms aggregation's segment_size that cuts nothing: exact counts


def _terms(f: str) -> dict[str, Any]:
    return {"terms": {"field": f, "size": FACET_SIZE, "segment_size": EXACT}}


# Two aggregation requests run side by side: the tag facet, and the rest with the match count.
FACET_SPECS = (
    {"tag": _terms("tag_h")},
    {name: _terms(f) for name, f in FACETS.items() if name != "tag"}
    | {"_total": {"value_count": {"field": "created"}}},
)
NAMES_MAX = 100_000  # hash -> value cache of the hashed facets
FACET_CACHE = 512  # queries whose facets are remembered within one reader generation
# The feeder's writer: its batches are small (≤ 1,000 rows, a few MB), and Tantivy sizes each new
# segment's term table from this budget (up to 2^19 slots from ~48 MB), zeroed after every commit.
WRITER_HEAP = 32_000_000
SPAN_TTL = 30.0  # seconds between two measures of the created_ts span (see _newest_hits)
REFRESH_INTERVAL = 0.0  # seconds between two looks at the directory: every search (~15 µs, see refresh)


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


def write_position(path: Path, change_seq: int, *, started_at: float | None = None) -> None:
    """Atomically replace the position file (write, fsync, rename, fsync the directory).

    ``written_at`` (and ``started_at``, when the batch was read) are wall-clock
    seconds, for the latency breakdown of ``bench/latency.py``.
    """
    tmp = path / (POSITION_FILE + ".tmp")
    body: dict[str, Any] = {"version": SCHEMA_VERSION, "change_seq": change_seq, "written_at": time.time()}
    if started_at is not None:
        body["started_at"] = started_at
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


def exists(path: Path) -> bool:
    """Whether ``path`` holds an index (of any schema version)."""
    return path.is_dir() and (path / "meta.json").exists()


def _open_tantivy(path: Path, *, create: bool) -> tantivy.Index:
    with translate_errors("open"):
        if exists(path):
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


def _stamp(p: Path) -> tuple[int, int, int, int] | None:
    try:
        st = p.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


def _inode(p: Path) -> int | None:
    """A directory's identity: a reindex swaps in another directory under the same name."""
    try:
        return p.stat().st_ino
    except FileNotFoundError:
        return None


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
        self._checked = time.monotonic()
        self._generation = 0  # reloads so far; facets are cached per generation
        self._dir_ino = _inode(path)
        self._seen, self._position = self._look_and_reload()
        self._span_cache: tuple[float, int, int, int] | None = None
        self._names: dict[tuple[str, int], str] = {}  # (hashed field, hash) -> value
        self._facet_cache: OrderedDict[tuple[int, str], tuple[int, dict[str, Any]]] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="search-facets")
        self._cache_lock = threading.Lock()

    # -- reading ------------------------------------------------------------------

    @property
    def position(self) -> int:
        """The ``assets.change_seq`` the index reflects (as of the last commit or refresh).

        Never ahead of what :meth:`search` sees: the position file is read
        *before* the reader reloads, and the feeder writes it only after the
        commit it names, so every change up to it is searchable here.
        """
        return self._position

    def _look(self) -> tuple[Any, dict[str, Any]]:
        """What changes when the index does: ``meta.json``'s identity (a commit, a merge) and the position file."""
        return _stamp(self.path / "meta.json"), read_position(self.path)

    def _look_and_reload(self) -> tuple[tuple[Any, dict[str, Any]], int]:
        """(what was seen, position), read in that order, then the reader reloaded."""
        seen = self._look()
        with translate_errors("reload"):
            self._index.reload()
        self._generation += 1
        return seen, int(seen[1]["change_seq"])

    @property
    def num_docs(self) -> int:
        with translate_errors("count"):
            return int(self._index.searcher().num_docs)

    def refresh(self, *, force: bool = False) -> None:
        """Call before a search: reloads the reader when the feeder committed, merged, or a reindex swapped.

        Cheap when nothing changed (two ``stat`` calls and a small read,
        ~15 µs), so it runs on every search and a commit is searchable at the
        next request. A commit renames a new position file into place and
        Tantivy renames a new ``meta.json`` (also after a merge); the position
        file is compared by its content (a rename within one clock tick can
        keep the mtime), ``meta.json`` by inode, times and size.
        """
        now = time.monotonic()
        if not force and now - self._checked < REFRESH_INTERVAL:
            return
        self._checked = now
        if self._writer is None and _inode(self.path) not in (self._dir_ino, None):
            with self._refresh_lock:
                if _inode(self.path) not in (self._dir_ino, None):
                    self._reopen()
            return
        if not force and self._look() == self._seen:
            return
        with self._refresh_lock:
            self._seen, self._position = self._look_and_reload()

    def _reopen(self) -> None:
        """The directory was swapped by a reindex: open the new one (pinned searchers stay valid)."""
        self._index = _open_tantivy(self.path, create=False)
        self._dir_ino = _inode(self.path)
        self._seen, self._position = self._look_and_reload()
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

    def _current(self) -> tuple[tantivy.Searcher, int]:
        """The current searcher and its generation, taken together (a reload changes both)."""
        with self._refresh_lock:
            return self._index.searcher(), self._generation

    def _relevance(self, p: Plan, sq: SearchQuery, cursor: Cursor | None) -> SearchPage:
        generation: int | None = None
        if cursor is not None:
            searcher, offset, pit = self._pits.get(cursor.pit or ""), cursor.offset, cursor.pit
        else:
            (searcher, generation), offset, pit = self._current(), 0, None
        started = self._facets_start(searcher, generation, p) if sq.facets else None
        res = searcher.search(p.query, sq.limit, count=started is None, offset=offset)
        total, facets = self._facets_end(searcher, p, started) if started else (int(res.count), {})
        items = self._items(searcher, res.hits)
        for item, (score, _) in zip(items, res.hits, strict=True):
            item["score"] = round(float(score), 4)
        end = offset + len(items)
        next_cursor = None
        if items and end < total:
            pit = pit or self._pits.pin(searcher)
            next_cursor = Cursor("relevance", p.fingerprint, total, pit=pit, offset=end).encode()
        return SearchPage(items=items, next_cursor=next_cursor, total=total, facets=facets)

    def _keyset(self, p: Plan, sq: SearchQuery, cursor: Cursor | None) -> SearchPage:
        searcher, generation = self._current()
        started = self._facets_start(searcher, generation, p) if sq.facets else None
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
        counted, facets = self._facets_end(searcher, p, started) if started else (None, {})
        if cursor is not None:
            total = cursor.total
        elif counted is not None:
            total = counted
        elif p.match_all:
            total = int(searcher.num_docs)
        else:
            total = int(searcher.search(p.query, 1, count=True).count)
        hits = hits[: sq.limit + 1]
        more = len(hits) > sq.limit
        hits = hits[: sq.limit]
        items = self._items(searcher, hits)
        next_cursor = Cursor(p.sort, p.fingerprint, total, key=hits[-1][0]).encode() if more else None
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

    def _facets_start(self, searcher: tantivy.Searcher, generation: int | None, p: Plan) -> Any:
        """Begin counting facets (the tag facet in another thread); :meth:`_facets_end` finishes.

        ``generation`` is None for a pinned searcher (not cached).
        """
        key = None if generation is None else (generation, p.fingerprint)
        if key is not None:
            with self._cache_lock:
                hit = self._facet_cache.get(key)
                if hit is not None:
                    self._facet_cache.move_to_end(key)
                    return key, hit, None
        return key, None, self._pool.submit(searcher.aggregate, p.query, FACET_SPECS[0])

    def _facets_end(
        self, searcher: tantivy.Searcher, p: Plan, started: Any
    ) -> tuple[int, dict[str, list[dict[str, Any]]]]:
        """(matches, facets), exact (see the module docstring, Facets)."""
        key, hit, pending = started
        if hit is None:
            res = searcher.aggregate(p.query, FACET_SPECS[1]) | pending.result()
            facets = {}
            for name, f in FACETS.items():
                buckets = [(b["key"], int(b["doc_count"])) for b in res.get(name, {}).get("buckets", [])]
                if f in HASHED:
                    buckets = [(self._name(searcher, f, int(k)), n) for k, n in buckets]
                buckets.sort(key=lambda b: (-b[1], b[0]))  # ties in a stable order
                facets[name] = [{"value": k, "count": n} for k, n in buckets]
            hit = (int(res["_total"]["value"]), facets)
            if key is not None:
                with self._cache_lock:
                    if self._facet_cache and next(iter(self._facet_cache))[0] != key[0]:
                        self._facet_cache.clear()  # a reload: older generations are never asked again
                    self._facet_cache[key] = hit
                    while len(self._facet_cache) > FACET_CACHE:
                        self._facet_cache.popitem(last=False)
        total, facets = hit
        return total, {name: [dict(b) for b in buckets] for name, buckets in facets.items()}

    def _name(self, searcher: tantivy.Searcher, field: str, h: int) -> str:
        """The creator or tag whose :func:`~.schema.facet_hash` is ``h`` (a prefix walk of ``names``)."""
        found = self._names.get((field, h))
        if found is not None:
            return found
        prefix = name_term(field, h)
        terms = searcher.terms_with_prefix("names", prefix, limit=1)
        if not terms:
            raise SearchUnavailable(f"search index: no name for {field}={h}")
        value = terms[0][0][len(prefix) :]
        if len(self._names) >= NAMES_MAX:
            self._names.clear()
        self._names[(field, h)] = value
        return value

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

    def commit(self, *, position: int, started_at: float | None = None) -> None:
        """Commit what was applied, then record ``position`` (see :mod:`.feeder` for why this order is safe)."""
        w = self._require_writer()
        with translate_errors("commit"):
            w.commit()
        write_position(self.path, position, started_at=started_at)
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
        self._pool.shutdown(wait=False)


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
    if not exists(path):
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
