"""Search: ranking, folding, typos, filters and sorts against a simple reference, cursors, facets.

Rows are written straight into ``assets`` (under the ingest lock, as the
ordering rule requires) and fed into a real Tantivy index by the real feeder.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, insert, text, update

from indexer.errors import BadRequest
from indexer.models import INGEST_LOCK, Asset
from indexer.search import CursorExpired, Feeder, SearchIndex, SearchQuery, open_index
from indexer.search.index import _PitStore
from indexer.store import Store
from indexer.store.changes import AssetRow
from indexer.testing import PostgresForTests

# -- writing rows the way the ingest path does -------------------------------------------

_ids = itertools.count(1)


def asset(
    title: str,
    *,
    creator: int = 0,
    tags: tuple[str, ...] = (),
    description: str = "",
    license: str | None = "personal",
    price: Decimal | None = None,
    status: str = "listed",
    licenses: int = 0,
    created_ts: int | None = None,
    media_type: str | None = "audio",
    deleted: bool = False,
    hidden: bool = False,
) -> dict[str, Any]:
    """An ``assets`` row as the ingest path would write it."""
    n = next(_ids)
    did = f"did:key:z6MkCreator{creator}"
    key = f"asset-{n}"
    return {
        "author": hashlib.sha256(did.encode()).digest(),
        "did": did,
        "key": key,
        "uri": f"empressa://{did}/{key}",
        "entry_hash": hashlib.sha256(key.encode()).digest(),
        "put_hash": hashlib.sha256(key.encode()).digest(),
        "seq": n,
        "deleted": deleted,
        "title": title,
        "description": description,
        "tags": list(tags),
        "license": license,
        "price": price,
        "currency": "USD" if price is not None else None,
        "media_cid": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
        "media_mime": f"{media_type}/x" if media_type else None,
        "media_type": media_type,
        "body": {},
        "versions": 1,
        "created_ts": 1_700_000_000_000 + n if created_ts is None else created_ts,
        "updated_ts": 1_700_000_000_000 + n,
        "hidden": hidden,
        "chain_status": status,
        "licenses": licenses,
    }


def _status_matches(r: Any, status: str) -> bool:
    """The reference for ``status=``, written out from the shared contract (not from the index's code)."""
    if status == "registered":
        return bool(r.chain_status != "listed")
    if status == "licensed":
        return bool(r.licenses > 0)
    return bool(r.chain_status == status)


def insert_assets(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": INGEST_LOCK})
        conn.execute(insert(Asset), rows)


def update_asset(engine: Engine, uri: str, **values: Any) -> None:
    """Change a row and give it a fresh change_seq, like every writer of assets."""
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": INGEST_LOCK})
        conn.execute(
            update(Asset)
            .where(Asset.uri == uri)
            .values(**values, change_seq=func.nextval("asset_change_seq"))
        )


def all_rows(store: Store) -> list[AssetRow]:
    return store.changes.changes_after(after=0, limit=10**6)


def every_page(index: SearchIndex, query: SearchQuery) -> list[dict[str, Any]]:
    items, cursor = [], None
    for _ in range(10_000):
        page = index.search(replace(query, cursor=cursor))
        items += page.items
        cursor = page.next_cursor
        if cursor is None:
            return items
    raise AssertionError("paging did not end")


@dataclass
class Env:
    store: Store
    index: SearchIndex
    feeder: Feeder

    @property
    def engine(self) -> Engine:
        return self.store.engine

    def put(self, *rows: dict[str, Any]) -> list[str]:
        insert_assets(self.engine, list(rows))
        self.feeder.catch_up()
        return [r["uri"] for r in rows]

    def titles(self, **kw: Any) -> list[str]:
        return [i["title"] for i in self.index.search(SearchQuery(**kw)).items]


def make_env(db_url: str, tmp_path: Path) -> Iterator[Env]:
    """The body of the ``env`` fixture (shared with test_feeder)."""
    store = Store.connect(db_url)
    index = open_index(tmp_path / "search", writer=True)
    yield Env(store, index, Feeder(store, index))
    index.close()
    store.close()


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[Env]:
    yield from make_env(db_url, tmp_path)


# -- ranking, folding, typos ------------------------------------------------------------------


def test_title_outranks_tags_outranks_description(env: Env) -> None:
    env.put(
        asset("Quiet evening", description="a long walk with a lantern through the old town at dusk"),
        asset("Morning", tags=("lantern", "ambient")),
        asset("Lantern"),
        asset("Rain", description="nothing to see"),
    )
    assert env.titles(q="lantern") == ["Lantern", "Morning", "Quiet evening"]


def test_accents_and_case_are_folded_both_ways(env: Env) -> None:
    env.put(asset("Café del Mar"), asset("CAFE NOIR"), asset("Tea room", tags=("Crème",)))
    assert sorted(env.titles(q="cafe")) == ["CAFE NOIR", "Café del Mar"]
    assert sorted(env.titles(q="CAFÉ")) == ["CAFE NOIR", "Café del Mar"]
    assert env.titles(q="creme") == ["Tea room"]


def test_typos_match_below_exact_matches(env: Env) -> None:
    env.put(
        asset("Melodi"), asset("melody"), asset("Orchestral soundscape"), asset("Cat"), asset("Cafeteria")
    )
    assert env.titles(q="melody") == ["melody", "Melodi"]  # distance 1 at 4+ characters, exact first
    assert env.titles(q="sondscapee") == ["Orchestral soundscape"]  # distance 2 at 8+ characters
    assert env.titles(q="car") == []  # no typos under 4 characters
    assert env.titles(q="cafet") == ["Cafeteria"]  # prefix on the last term
    assert env.titles(q="cafet orchestral") == []  # … only on the last term, and every term must match


def test_deleted_and_hidden_assets_leave_search_and_come_back(env: Env) -> None:
    gone, hidden, _kept = env.put(asset("Harbor lights"), asset("Harbor fog"), asset("Harbor bells"))
    update_asset(env.engine, gone, deleted=True)
    update_asset(env.engine, hidden, hidden=True)
    env.feeder.catch_up()
    assert env.titles(q="harbor") == ["Harbor bells"]
    assert env.index.search(SearchQuery(q="harbor", limit=1)).total == 1
    update_asset(env.engine, hidden, hidden=False)
    env.feeder.catch_up()
    assert sorted(env.titles(q="harbor")) == ["Harbor bells", "Harbor fog"]


# -- filters, sorts, facets against a reference ----------------------------------------------

WORDS = [
    "amber",
    "Bálsamo",
    "cello",
    "dusk",
    "échoes",
    "forest",
    "groove",
    "harbor",
    "ivory",
    "jünger",
    "koto",
    "serenata",
    "nocturnal",
]
TAGS = ["ambient", "lofi", "drums", "vocal", "Piano", "8bit", "field", "jazz"]
LICENSES = ["personal", "commercial", "exclusive", "cc-by"]
CHAIN_STATUSES = ["listed", "verified", "mismatch", "unbound"]  # what an asset's chain_status holds
STATUSES = ["listed", "registered", "verified", "mismatch", "unbound", "licensed"]  # what status= asks


def _corpus(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for _ in range(240):
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
        rows.append(
            asset(
                rng.choice([title, title.upper(), title.lower()]),
                creator=rng.randrange(4),
                tags=tuple(rng.sample(TAGS, rng.randint(0, 3))),
                description=" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 6))),
                license=rng.choice([*LICENSES, None]),
                price=rng.choice([None, Decimal(rng.randint(0, 10**7)) / 10**5, Decimal(rng.randint(0, 50))]),
                status=rng.choice(CHAIN_STATUSES),
                licenses=rng.choice([0, 0, 1, 3]),
                created_ts=1_700_000_000_000 + rng.randrange(40),  # many ties: the id breaks them
                media_type=rng.choice(["audio", "image", "video", None]),
                deleted=rng.random() < 0.1,
                hidden=rng.random() < 0.1,
            )
        )
    return rows


@pytest.fixture(scope="module")
def corpus(
    pg_server: PostgresForTests, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SearchIndex, list]]:
    url = pg_server.fresh_database()
    store = Store.connect(url)
    insert_assets(store.engine, _corpus(random.Random(7)))
    index = open_index(tmp_path_factory.mktemp("corpus") / "search", writer=True)
    Feeder(store, index, batch_size=70).catch_up()  # several commits: several segments
    yield index, all_rows(store)
    index.close()
    store.close()
    pg_server.drop_database(url)


def fold(s: str) -> str:
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower()


def words(s: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", fold(s))


def osa(a: str, b: str) -> int:
    """Optimal string alignment distance (Levenshtein plus adjacent transpositions)."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i, j in itertools.product(range(1, len(a) + 1), range(1, len(b) + 1)):
        d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
        if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
            d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def reference(rows: list[AssetRow], q: SearchQuery) -> list[AssetRow]:
    """What a search must return, written as plainly as possible."""
    terms = list(dict.fromkeys(words(q.q or "")))

    def term_matches(t: str, last: bool, tokens: set[str]) -> bool:
        limit = 2 if len(t) >= 8 else 1 if len(t) >= 4 else 0
        return any(w == t or osa(t, w) <= limit or (last and len(t) >= 2 and w.startswith(t)) for w in tokens)

    out = []
    for r in rows:
        tokens = set(words(" ".join([r.title, r.description, *r.tags])))
        if r.deleted or r.hidden:
            continue
        if not all(term_matches(t, i == len(terms) - 1, tokens) for i, t in enumerate(terms)):
            continue
        if q.creator is not None and r.did != q.creator:
            continue
        if not set(q.tags) <= set(r.tags):
            continue
        if q.license is not None and r.license != q.license:
            continue
        if q.status is not None and not _status_matches(r, q.status):
            continue
        if (q.min_price is not None or q.max_price is not None) and r.price is None:
            continue
        if q.min_price is not None and r.price is not None and r.price < q.min_price:
            continue
        if q.max_price is not None and r.price is not None and r.price > q.max_price:
            continue
        out.append(r)
    if q.sort == "title":
        out.sort(key=lambda r: (fold(r.title), r.id))
    else:
        out.sort(key=lambda r: (r.created_ts, r.id), reverse=True)
    return out


def _typo(word: str, rng: random.Random, edits: int = 1) -> str:
    for _ in range(edits):  # a substitution, a deletion or a transposition
        i = rng.randrange(len(word) - 1)
        word = word[:i] + rng.choice(["x" + word[i + 1], word[i + 1], word[i + 1] + word[i]]) + word[i + 2 :]
    return word


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """None two times in three: filters combine, and most combinations should still match something."""
    return st.one_of(st.none(), st.none(), strategy)


@st.composite
def queries(draw: st.DrawFn) -> SearchQuery:
    rng = random.Random(draw(st.integers(0, 2**32)))
    q_words = [
        draw(
            st.sampled_from(
                [w, w.upper(), _typo(fold(w), rng), _typo(fold(w), rng, 2), fold(w)[: rng.randint(2, len(w))]]
            )
        )
        for w in draw(st.lists(st.sampled_from(WORDS), max_size=2))
    ]
    lo, hi = (
        draw(_maybe(st.decimals(min_value=0, max_value=120, places=3))),
        draw(_maybe(st.decimals(0, 120, places=3))),
    )
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    return SearchQuery(
        q=" ".join(q_words) or None,
        creator=draw(_maybe(st.sampled_from([f"did:key:z6MkCreator{i}" for i in range(5)]))),
        tags=draw(
            st.one_of(st.just([]), st.just([]), st.lists(st.sampled_from(TAGS), max_size=2, unique=True))
        ),
        license=draw(_maybe(st.sampled_from(LICENSES))),
        status=draw(_maybe(st.sampled_from(STATUSES))),
        min_price=lo,
        max_price=hi,
        sort=draw(st.sampled_from([None, "newest", "title", "relevance"])),
        limit=draw(st.sampled_from([1, 3, 20, 100])),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=queries())
def test_filters_and_sorts_match_the_reference(
    corpus: tuple[SearchIndex, list[AssetRow]], query: SearchQuery
) -> None:
    index, rows = corpus
    effective = query.sort or ("relevance" if query.q else "newest")
    if effective == "relevance" and not words(query.q or ""):
        effective = "newest"
    expected = reference(rows, replace(query, sort=effective))
    first = index.search(replace(query, facets=True))
    got = every_page(index, query)
    uris = [i["uri"] for i in got]
    assert len(uris) == len(set(uris)), "a page repeated an item"
    if effective == "relevance":
        assert set(uris) == {r.uri for r in expected}
        scores = [i["score"] for i in got]
        assert scores == sorted(scores, reverse=True)
    else:
        assert uris == [r.uri for r in expected]
    assert first.total == len(expected)
    want = {
        "license": Counter(r.license for r in expected if r.license),
        "tag": Counter(t for r in expected for t in r.tags),
        "creator": Counter(r.did for r in expected),
        "media_type": Counter(r.media_type for r in expected if r.media_type),
    }
    assert {k: {b["value"]: b["count"] for b in v} for k, v in first.facets.items()} == want


def test_facet_counts_are_exact_across_segments(env: Env) -> None:
    """A value that is rare in one segment and common in another is counted in both.

    Tantivy's terms aggregation keeps only the top ``segment_size`` values of
    each segment unless told otherwise (10 × size by default): here the first
    segment holds 211 creators and 211 tags, and its one asset of creator 999
    (tag ``rare``) is the least frequent there, so a per-segment cut drops it
    and the facet says 10 instead of 11.
    """
    first = [asset(f"a{i}", creator=i // 2, tags=(f"t{i // 2}",)) for i in range(420)]
    env.put(*first, asset("r", creator=999, tags=("rare",)))  # one commit: one segment
    env.put(*(asset(f"b{i}", creator=999, tags=("rare",)) for i in range(10)))  # another
    facets = env.index.search(SearchQuery(facets=True)).facets
    assert facets["creator"][0] == {"value": "did:key:z6MkCreator999", "count": 11}
    assert facets["tag"][0] == {"value": "rare", "count": 11}
    assert [b["count"] for b in facets["creator"][1:]] == [2] * 19
    assert facets["license"] == [{"value": "personal", "count": 431}]
    assert facets["media_type"] == [{"value": "audio", "count": 431}]


def test_facets_follow_each_commit(env: Env, tmp_path: Path) -> None:
    """Facets are remembered per reader generation: a commit is counted at the next search."""
    reader = open_index(tmp_path / "search", writer=False)
    for index in (env.index, reader):
        assert index.search(SearchQuery(q="moss", facets=True)).total == 0
    for n in range(1, 4):
        env.put(asset(f"moss {n}", creator=n % 2, tags=("green",)))
        for index in (env.index, reader):
            page = index.search(SearchQuery(q="moss", facets=True))
            again = index.search(SearchQuery(q="moss", facets=True, sort="newest"))
            assert page.total == again.total == n
            assert page.facets["tag"] == again.facets["tag"] == [{"value": "green", "count": n}]
            assert sum(b["count"] for b in page.facets["creator"]) == n
    page.facets["tag"][0]["count"] = 99  # a caller's change does not reach the next page
    assert reader.search(SearchQuery(q="moss", facets=True)).facets["tag"][0]["count"] == 3


def test_items_carry_what_the_api_returns(corpus: tuple[SearchIndex, list[AssetRow]]) -> None:
    index, rows = corpus
    item = index.search(SearchQuery(min_price=Decimal(0), limit=1)).items[0]
    row = next(r for r in rows if r.uri == item["uri"])
    assert Decimal(item["price"]) == row.price
    assert item == {**item, "did": row.did, "key": row.key, "title": row.title, "tags": list(row.tags)}
    assert set(item) == {
        "uri", "did", "key", "title", "description", "tags", "license", "price", "currency",
        "media_type", "media_mime", "media_cid", "created_ts", "updated_ts", "chain_status",
    }  # fmt: skip


def test_title_order_ignores_case_and_accents(env: Env) -> None:
    env.put(asset("banana"), asset("Äpfel"), asset("Zebra"), asset("éclair"), asset("apple"), asset("Eagle"))
    assert env.titles(sort="title") == ["Äpfel", "apple", "banana", "Eagle", "éclair", "Zebra"]


# -- validation and cursors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_price": Decimal(5), "max_price": Decimal(1)}, "min_price"),
        ({"min_price": Decimal(-1)}, "min_price"),
        ({"max_price": Decimal("NaN")}, "max_price"),
        ({"sort": "popular"}, "sort"),
        ({"q": "x" * 201}, "q"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"status": "sold"}, "status"),
        ({"tags": [""]}, "tag"),
    ],
)
def test_bad_parameters_are_bad_requests(env: Env, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        env.index.search(SearchQuery(**fields))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_bad_cursors_are_bad_requests(env: Env) -> None:
    env.put(*(asset(f"Pier {i}") for i in range(5)))
    newest = env.index.search(SearchQuery(limit=2)).next_cursor
    title = env.index.search(SearchQuery(limit=2, sort="title")).next_cursor
    relevance = env.index.search(SearchQuery(q="pier", limit=2)).next_cursor
    assert newest and title and relevance
    body = json.loads(base64.urlsafe_b64decode(newest + "=" * (-len(newest) % 4)))
    forged = [
        "",
        "not a cursor!",
        "A" * 5000,
        _b64(b"\xff\xfe"),
        _b64(b"[1, 2]"),
        _b64(json.dumps({**body, "v": 2}).encode()),
        _b64(json.dumps({**body, "extra": 1}).encode()),
        _b64(json.dumps({k: v for k, v in body.items() if k != "k"}).encode()),
        _b64(json.dumps({**body, "n": -1}).encode()),
        _b64(json.dumps({**body, "n": True}).encode()),
        _b64(json.dumps({**body, "k": "zz"}).encode()),
        _b64(json.dumps({**body, "k": "1 OR *"}).encode()),
        _b64(json.dumps({**body, "f": "0" * 16}).encode()),  # another query's fingerprint
        _b64(json.dumps({**body, "s": "x"}).encode()),
        newest[:-3],
    ]
    for c in forged:
        with pytest.raises(BadRequest):
            env.index.search(SearchQuery(limit=2, cursor=c))
    with pytest.raises(BadRequest, match="sort"):
        env.index.search(SearchQuery(limit=2, sort="title", cursor=newest))
    with pytest.raises(BadRequest, match="sort"):
        env.index.search(SearchQuery(limit=2, cursor=title))
    with pytest.raises(BadRequest, match="different query"):
        env.index.search(SearchQuery(q="pier", limit=2, tags=["x"], cursor=relevance))
    with pytest.raises(BadRequest, match="different query"):
        env.index.search(SearchQuery(limit=2, creator="did:key:other", cursor=newest))


def test_an_expired_point_in_time_is_410(env: Env) -> None:
    env.put(*(asset(f"Dock {i}") for i in range(5)))
    first = env.index.search(SearchQuery(q="dock", limit=2))
    assert first.next_cursor is not None
    env.index._pits = _PitStore(keep_alive=0.0)  # every point in time has expired
    with pytest.raises(CursorExpired) as err:
        env.index.search(SearchQuery(q="dock", limit=2, cursor=first.next_cursor))
    assert err.value.status == 410 and err.value.code == "cursor-expired"
    pits = _PitStore(capacity=2)
    a, b, c = (pits.pin(object()) for _ in range(3))  # type: ignore[arg-type]
    with pytest.raises(CursorExpired):
        pits.get(a)  # evicted, least recently used
    assert pits.get(b) is not None and pits.get(c) is not None


@pytest.mark.parametrize("sort", ["relevance", "newest", "title"])
def test_paging_is_exact_while_matching_assets_arrive(env: Env, sort: str) -> None:
    rng = random.Random(sort)
    base_ts = 1_700_000_000_000
    words_ = ["aria", "Bolero", "coda", "Étude", "fugue"]

    def rows(n: int) -> list[dict[str, Any]]:
        return [
            asset(
                f"{rng.choice(words_)} jazz {rng.choice(words_)}" if rng.random() < 0.7 else "jazz",
                description=" ".join(["jazz"] * rng.randint(0, 3)),
                created_ts=base_ts + rng.randrange(-50, 50),
            )
            for _ in range(n)
        ]

    before = set(env.put(*rows(60)))
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        page = env.index.search(SearchQuery(q="jazz", sort=sort, limit=7, cursor=cursor))
        seen += [i["uri"] for i in page.items]
        env.put(*rows(6))  # new matches land before, between and after the pages already served
        if seen:
            update_asset(env.engine, seen[0], description="jazz jazz jazz jazz")  # re-fed, same sort keys
        env.feeder.catch_up()
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "an item was served twice"
    assert before <= set(seen), "an item present from the start was skipped"
    if sort == "relevance":
        assert set(seen) == before  # the point in time froze the result set
