"""Search requests: validation, the Tantivy query they become, and their cursors.

See :mod:`indexer.search.index` for the design of ranking and cursors.
"""

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, Literal

import tantivy

from ..errors import BadRequest, NoSearchTerms
from .schema import ANALYZER, PRICE_MAX, SCHEMA, price_key, translate_errors

MAX_Q = 200
MAX_TERMS = 16
MAX_LIMIT = 100
STATUSES = frozenset({"listed", "registered", "verified", "mismatch", "unbound", "licensed"})
SORTS = ("relevance", "newest", "title")
BOOSTS = {"title": 3.0, "tags_text": 2.0, "description": 1.0}
FUZZY_SCORE = 0.5
PREFIX_SCORE = 0.25

Sort = Literal["relevance", "newest", "title"]


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
    media_type: str | None = None
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
class Plan:
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


def plan(sq: SearchQuery, index: tantivy.Index) -> Plan:
    """Validate a query and build its Tantivy query (without the cursor's range)."""
    q = sq.q.strip() if sq.q is not None else ""
    if len(q) > MAX_Q:
        raise BadRequest(f"q is longer than {MAX_Q} characters")
    if sq.sort is not None and sq.sort not in SORTS:
        raise BadRequest(f"sort must be one of {', '.join(SORTS)}")
    if not isinstance(sq.limit, int) or isinstance(sq.limit, bool) or not 1 <= sq.limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    terms = tuple(dict.fromkeys(ANALYZER.analyze(q)))[:MAX_TERMS] if q else ()
    if q and not terms:
        raise NoSearchTerms(
            "q holds no searchable term: a term is a run of letters or digits of at most 64 characters"
        )
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
    if isinstance(sq.tags, str):
        raise BadRequest("tags must be a list of strings")
    tags = list(sq.tags or ())
    if len(tags) > 20:
        raise BadRequest("at most 20 tag filters")
    for t in dict.fromkeys(tags):
        filters.append(_term("tag", _short(t, "tag", 64)))
    if sq.license is not None:
        filters.append(_term("license", _short(sq.license, "license", 64)))
    if sq.media_type is not None:
        filters.append(_term("media_type", _short(sq.media_type, "media_type", 64)))
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
    if sq.media_type is not None:  # only then: the cursors of queries without it stay valid
        identity.append(sq.media_type)
    fingerprint = hashlib.blake2b(json.dumps(identity).encode(), digest_size=8).hexdigest()
    return Plan(query=query, sort=sort, fingerprint=fingerprint, terms=terms, match_all=not clauses)


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


def decode_cursor(text: str, *, plan: Plan) -> Cursor:
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
