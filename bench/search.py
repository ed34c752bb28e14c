"""Marketplace search at scale: Tantivy (in process) against PostgreSQL's own full text.

    .venv/bin/python bench/search.py [--n 1000000] [--queries 500] [--pg-queries 100] [--data DIR]

Prints figures only; it never passes or fails.

1. Generates ``--n`` assets with a Zipf-distributed vocabulary (s = 1.1 over
   30,000 made-up words, 4% of them accented): titles of 2–6 words, 1–8 tags
   (from 2,000, Zipf), descriptions of 10–60 words, 20,000 creators (Zipf),
   ~5% priced. They are COPYed into ``assets`` of an embedded PostgreSQL in
   one transaction under the ingest advisory lock; then, for PostgreSQL's own
   search (4.), the tsvector column and its GIN indexes (tsvector, tags, title
   trigrams) are built, both timed.
2. Builds the index with :func:`indexer.search.reindex` (the rate printed).
3. Runs ``--queries`` queries of each kind directly against the index in this
   process: full text (1–2 words, Zipf-sampled like real queries), full text
   + filter (a tag, license, price range or creator in turn), typo-tolerant
   (one edit in a word of 5+ letters), a deep keyset page (sort=newest, pages
   50+ reached by cursor), and the title sort deep page and relevance page 2
   (point in time); full text and filter again with facets; and the cost of
   the page's items read from Tantivy's doc store against fetching the same
   rows from PostgreSQL by key.
4. Runs ``--pg-queries`` of the same kinds on PostgreSQL: ``search @@
   plainto_tsquery`` ordered by ``ts_rank``; typo via ``pg_trgm`` similarity
   on the title; keyset on ``(created_ts, id)``.
5. Measures publish → searchable: a row inserted (with NOTIFY) while the
   feeder runs in a thread, until a separate read-only ``SearchIndex``
   (refreshing as the API would) finds it.

6. Runs the same queries through ``GET /v1/assets`` of a real ``empressa
   indexer run`` process on the same index (:func:`http_figures`), each kind
   right after its direct run, and prints the p95 ratio HTTP/direct.

With ``--data DIR`` the database and the index are kept in DIR afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.db import libpq_url, migrate
from indexer.embedded import EmbeddedPostgres
from indexer.models import ASSETS_CHANNEL, INGEST_LOCK, SEARCH_VECTOR_SQL
from indexer.search import Feeder, SearchIndex, SearchQuery, open_index, reindex
from indexer.search.index import SCHEMA_VERSION, plan, read_position
from indexer.store import Store
from protocol import AuthorKey

LICENSES = ["personal", "commercial", "exclusive", "cc-by", "cc-by-sa", "cc0"]
STATUSES = ["listed"] * 8 + ["registered", "licensed"]
MEDIA = [("audio", "audio/wav"), ("audio", "audio/mpeg"), ("image", "image/png"), ("video", "video/mp4")]
ACCENTS = "éèáàüöñçíó"
# What PostgreSQL's own full text needs, built after the load for the comparison (4.): the
# production schema has none of it, as search is Tantivy's (see migration 0002).
PG_SEARCH_DDL = {
    "search": f"ALTER TABLE assets ADD COLUMN search tsvector GENERATED ALWAYS AS ({SEARCH_VECTOR_SQL}) STORED",
    "assets_created_idx": "CREATE INDEX assets_created_idx ON assets (created_ts, id)",
    "assets_search_idx": "CREATE INDEX assets_search_idx ON assets USING gin (search)",
    "assets_tags_idx": "CREATE INDEX assets_tags_idx ON assets USING gin (tags)",
    "assets_title_trgm_idx": "CREATE INDEX assets_title_trgm_idx ON assets USING gin (lower(title) gin_trgm_ops)",
}


class Zipf:
    def __init__(self, items: list[str], s: float, rng: random.Random) -> None:
        self.items = items
        self.cum = list(itertools.accumulate(1 / (k**s) for k in range(1, len(items) + 1)))
        self.rng = rng

    def take(self, k: int) -> list[str]:
        return self.rng.choices(self.items, cum_weights=self.cum, k=k)


def make_words(n: int, rng: random.Random) -> list[str]:
    syll = [
        "ka",
        "lo",
        "mi",
        "ra",
        "ne",
        "so",
        "tu",
        "vi",
        "da",
        "pe",
        "ri",
        "zo",
        "an",
        "el",
        "or",
        "us",
        "ba",
        "qui",
    ]
    out: set[str] = set()
    while len(out) < n:
        w = "".join(rng.choice(syll) for _ in range(rng.choice([1, 2, 2, 3, 3, 4])))
        if rng.random() < 0.04:
            i = rng.randrange(len(w))
            w = w[:i] + rng.choice(ACCENTS) + w[i + 1 :]
        out.add(w)
    words = sorted(out)
    rng.shuffle(words)
    return words


def generate(n: int, rng: random.Random) -> tuple[Iterator[tuple[Any, ...]], dict[str, Any]]:
    words = Zipf(make_words(30_000, rng), 1.1, rng)
    tags = Zipf([f"tag{i}" for i in range(2000)], 1.0, rng)
    # Real did:keys (of made-up public keys): the API checks a creator filter is one.
    keys = {
        AuthorKey(k).did: k for k in (hashlib.sha256(f"creator{i}".encode()).digest() for i in range(20_000))
    }
    creators = Zipf(list(keys), 0.9, rng)
    world = {"words": words, "tags": tags, "creators": creators}

    def rows() -> Iterator[tuple[Any, ...]]:
        ts0 = 1_600_000_000_000
        for i in range(n):
            did = creators.take(1)[0]
            key = f"asset-{i}"
            title = " ".join(words.take(rng.randint(2, 6))).capitalize()
            tag_list = sorted(set(tags.take(rng.randint(1, 8))))
            description = " ".join(words.take(rng.randint(10, 60)))
            media_type, mime = rng.choice(MEDIA)
            priced = rng.random() < 0.05
            price = Decimal(rng.randint(100, 100_000)) / 100 if priced else None
            created = ts0 + i * 1000 + rng.randrange(1000)
            h = hashlib.sha256(key.encode()).digest()
            yield (
                keys[did], did, key, f"empressa://{did}/{key}", h, h, 1, False,
                title, description, "{" + ",".join(tag_list) + "}", rng.choice(LICENSES), price,
                "USD" if priced else None, "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", mime,
                media_type, "{}", 1, created, created, rng.choice(STATUSES),
            )  # fmt: skip

    return rows(), world


COPY_COLUMNS = (
    "author, did, key, uri, entry_hash, put_hash, seq, deleted, title, description, tags, license, price, "
    "currency, media_cid, media_mime, media_type, body, versions, created_ts, updated_ts, chain_status"
)


def load(url: str, rows: Iterator[tuple[Any, ...]], n: int) -> None:
    with psycopg.connect(libpq_url(url)) as conn:
        t0 = time.perf_counter()
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (INGEST_LOCK,))
        with conn.cursor().copy(f"COPY assets ({COPY_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        dt = time.perf_counter() - t0
        print(f"load: {n:,} assets COPYed in {dt:.1f} s ({n / dt:,.0f} rows/s, incl. generation)")
        t0 = time.perf_counter()
        for ddl in PG_SEARCH_DDL.values():
            conn.execute(ddl)
        conn.execute("ANALYZE assets")
        conn.commit()
        print(
            "load: for PostgreSQL's own search, the tsvector column and GIN indexes (tsvector, tags, "
            f"title trigrams) built in {time.perf_counter() - t0:.1f} s"
        )


def pct(samples: list[float]) -> str:
    s = sorted(samples)

    def at(p: float) -> float:
        return s[min(len(s) - 1, int(p * len(s)))] * 1000

    return f"p50 {at(0.50):7.2f} ms   p95 {at(0.95):7.2f} ms   p99 {at(0.99):7.2f} ms   (n={len(s)})"


def timed(fn: Callable[[Any], Any], inputs: list[Any], budget_s: float = 120.0) -> list[float]:
    out: list[float] = []
    deadline = time.monotonic() + budget_s
    for x in inputs:
        t0 = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t0)
        if time.monotonic() > deadline:
            break
    return out


def typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    return rng.choice(
        [
            word[:i] + word[i + 1 :],
            word[:i] + "x" + word[i + 1 :],
            word[:i] + word[i + 1] + word[i] + word[i + 2 :],
        ]
    )


def query_sets(world: dict[str, Any], count: int, rng: random.Random) -> dict[str, list[SearchQuery]]:
    words, tags = world["words"], world["tags"]
    # Queries skip the ~30 commonest words (stop-word-like) and favour the head of the rest.
    pool = Zipf(words.items[30:3000], 0.8, rng)
    creators = world["creators"].items[:200]
    full = [SearchQuery(q=" ".join(pool.take(rng.choice([1, 1, 2])))) for _ in range(count)]
    filters: list[dict[str, Any]] = [
        {"tags": tags.take(1)},
        {"license": rng.choice(LICENSES)},
        {"min_price": Decimal(10), "max_price": Decimal(500)},
        {"creator": rng.choice(creators)},
    ]
    filtered = [replace(q, **filters[i % len(filters)]) for i, q in enumerate(full)]
    long_words = [w for w in words.items[30:5000] if len(w) >= 5]
    typos = [SearchQuery(q=typo(rng.choice(long_words), rng)) for _ in range(count)]
    return {"full text": full, "full text + filter": filtered, "typo-tolerant": typos}


def deep_cursors(index: SearchIndex, sort: str, count: int, *, from_page: int = 50) -> list[str]:
    cursors: list[str] = []
    cursor = None
    for page_no in range(from_page + count):
        page = index.search(SearchQuery(sort=sort, limit=20, cursor=cursor))
        cursor = page.next_cursor
        if cursor is None:
            break
        if page_no + 1 >= from_page:
            cursors.append(cursor)
    return cursors


def bench_index(index: SearchIndex, sets: dict[str, list[SearchQuery]], store: Store) -> None:
    print("\n(a) Tantivy, in process (SearchIndex.search, limit 20, items from the doc store)")
    for name, qs in sets.items():
        print(f"  {name:32s} {pct(timed(index.search, qs))}")
    for name in ("full text", "full text + filter"):
        qs = [replace(q, facets=True) for q in sets[name]]
        print(f"  {name + ' + facets':32s} {pct(timed(index.search, qs))}")
    n = len(sets["full text"])
    for sort in ("newest", "title"):
        cursors = deep_cursors(index, sort, n)
        print(
            f"  {'deep keyset page, sort=' + sort:32s} {pct(timed(lambda c, s=sort: index.search(SearchQuery(sort=s, limit=20, cursor=c)), cursors))}"
        )
    second: list[float] = []
    for q in sets["full text"]:  # page 2 right after page 1 (the pinned searchers are an LRU of 256)
        cursor = index.search(q).next_cursor
        if cursor:
            second += timed(lambda c, q=q: index.search(replace(q, cursor=c)), [cursor])
    print(f"  {'relevance page 2 (pinned)':32s} {pct(second)}")

    print(
        "\n    where the time goes (full text): the bare Tantivy search vs items from the doc store vs from PostgreSQL"
    )
    searcher = index._index.searcher()
    plans = [plan(q, index._index) for q in sets["full text"]]
    hits = {id(p): searcher.search(p.query, 20).hits for p in plans}
    print(
        f"  {'search only (top 20, no items)':32s} {pct(timed(lambda p: searcher.search(p.query, 20), plans))}"
    )
    print(
        f"  {'items from the doc store':32s} {pct(timed(lambda p: [searcher.doc(a).get_first('doc') for _, a in hits[id(p)]], plans))}"
    )
    uris = {
        id(p): [json.loads(searcher.doc(a).get_first("doc"))["uri"] for _, a in hits[id(p)]] for p in plans
    }
    print(
        f"  {'items from PostgreSQL by key':32s} {pct(timed(lambda p: store.changes.assets_by_uri(uris=uris[id(p)]), plans))}"
    )


PG_SELECT = (
    "SELECT id, uri, did, key, title, description, tags, license, price, currency, media_type, created_ts"
)


def bench_pg(url: str, sets: dict[str, list[SearchQuery]], count: int) -> None:
    print(f"\n(b) PostgreSQL full text (ts_rank), up to {count} queries per kind, 120 s budget each")
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("SET pg_trgm.similarity_threshold = 0.3")

        def fts(q: SearchQuery) -> None:
            where, args = "", {"q": q.q}
            if q.tags:
                where, args["tags"] = " AND tags @> %(tags)s", list(q.tags)
            elif q.license:
                where, args["lic"] = " AND license = %(lic)s", q.license
            elif q.min_price is not None:
                where, args["lo"], args["hi"] = (
                    " AND price BETWEEN %(lo)s AND %(hi)s",
                    q.min_price,
                    q.max_price,
                )
            elif q.creator:
                where, args["did"] = " AND did = %(did)s", q.creator
            conn.execute(
                f"{PG_SELECT} FROM assets, plainto_tsquery('simple', empressa_unaccent(%(q)s)) query "
                f"WHERE search @@ query AND NOT deleted AND NOT hidden{where} "
                "ORDER BY ts_rank(search, query) DESC, id LIMIT 20",
                args,
            ).fetchall()

        def trgm(q: SearchQuery) -> None:
            conn.execute(
                f"{PG_SELECT} FROM assets WHERE lower(title) %% lower(%(q)s) AND NOT deleted AND NOT hidden "
                "ORDER BY similarity(lower(title), lower(%(q)s)) DESC, id LIMIT 20",
                {"q": q.q},
            ).fetchall()

        for name, fn in (
            ("full text", fts),
            ("full text + filter", fts),
            ("typo-tolerant (pg_trgm title)", trgm),
        ):
            key = name if name in sets else "typo-tolerant"
            print(f"  {name:32s} {pct(timed(fn, sets[key][:count]))}")
        ts_id = conn.execute(
            "SELECT created_ts, id FROM assets ORDER BY created_ts DESC, id DESC OFFSET 1000 LIMIT 1"
        ).fetchone()
        keys = [ts_id] * count
        print(
            f"  {'deep keyset page, newest':32s} {pct(timed(lambda k: conn.execute(f'{PG_SELECT} FROM assets WHERE (created_ts, id) < (%s, %s) AND NOT deleted AND NOT hidden ORDER BY created_ts DESC, id DESC LIMIT 20', k).fetchall(), keys))}"
        )


def bench_freshness(store: Store, index_dir: Path, samples: int = 50) -> None:
    print(
        "\n(c) publish → searchable (feeder thread with LISTEN; a read-only SearchIndex refreshing as the API would)"
    )
    writer = open_index(index_dir, writer=True)
    reader = open_index(index_dir, writer=False)
    feeder = Feeder(store, writer)
    feeder.catch_up()
    stop = threading.Event()
    thread = threading.Thread(target=feeder.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(1.0)
    out = []
    try:
        for i in range(samples):
            word = f"fresh{i}x{random.randrange(10**9)}"
            did = AuthorKey(b"\0" * 32).did
            with store.engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": INGEST_LOCK})
                conn.execute(
                    text(
                        f"INSERT INTO assets ({COPY_COLUMNS}) VALUES (:a, :did, :key, :uri, :h, :h, 1, false, :t, '', "
                        "'{}', 'personal', NULL, NULL, NULL, NULL, 'audio', '{}', 1, :ts, :ts, 'listed')"
                    ),
                    {"a": b"\0" * 32, "did": did, "key": word, "uri": f"empressa://{did}/{word}", "h": word.encode(),
                     "t": word, "ts": int(time.time() * 1000)},
                )  # fmt: skip
                conn.execute(
                    text("SELECT pg_notify(:c, currval('asset_change_seq')::text)"), {"c": ASSETS_CHANNEL}
                )
            t0 = time.perf_counter()
            while not reader.search(SearchQuery(q=word)).items:
                time.sleep(0.002)
                if time.perf_counter() - t0 > 10:
                    break
            out.append(time.perf_counter() - t0)
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
        writer.close()
    print(f"  {'commit → found by a reader':32s} {pct(out)}")


def _params(q: SearchQuery) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": q.limit}
    for name in ("q", "creator", "license", "status", "sort", "cursor", "min_price", "max_price"):
        value = getattr(q, name)
        if value is not None:
            params[name] = str(value)
    if q.tags:
        params["tag"] = list(q.tags)
    if q.facets:
        params["facets"] = "true"
    return params


def http_figures(index: SearchIndex, sets: dict[str, list[SearchQuery]], url: str, index_dir: Path) -> None:
    """The same queries through ``GET /v1/assets`` of a real ``empressa indexer run`` process.

    One keep-alive HTTP client, one request at a time; each query kind is run
    directly against the index right before it, so the two figures share the
    machine's state. Rate limiting is off for this run.
    """
    import os
    import socket
    import subprocess

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPRESSA_")}
    env.update(
        DATABASE_URL=url, EMPRESSA_INDEXER_RATE_LIMIT_ENABLED="false", EMPRESSA_INDEXER_LOG_LEVEL="WARNING"
    )
    exe = Path(sys.executable).with_name("empressa")
    proc = subprocess.Popen(
        [str(exe), "indexer", "run", "--port", str(port), "--index-dir", str(index_dir)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    print("\n(d) through HTTP: the API did not start")
                    return
                time.sleep(0.1)

            def get(q: SearchQuery) -> None:
                r = http.get("/v1/assets", params=_params(q))
                if r.status_code != 200:
                    raise RuntimeError(f"GET /v1/assets -> {r.status_code}: {r.text[:200]}")

            for q in sets["full text"][:50]:
                get(q)
            kinds = dict(sets)
            for name in ("full text", "full text + filter"):
                kinds[name + " + facets"] = [replace(q, facets=True) for q in sets[name]]
            kinds["deep keyset page, sort=newest"] = [
                SearchQuery(sort="newest", limit=20, cursor=c)
                for c in deep_cursors(index, "newest", len(sets["full text"]))
            ]
            print(
                "\n(d) through HTTP: GET /v1/assets on `empressa indexer run` (uvicorn), one keep-alive client"
            )
            for name, qs in kinds.items():
                direct = sorted(timed(index.search, qs))
                over_http = sorted(timed(get, qs))
                p95_d = direct[min(len(direct) - 1, int(0.95 * len(direct)))]
                p95_h = over_http[min(len(over_http) - 1, int(0.95 * len(over_http)))]
                limit = f"   (limit: p95 < {HTTP_P95_LIMIT_MS:.0f} ms)" if name.endswith("facets") else ""
                print(f"  {name:32s} {pct(over_http)}   p95 ratio HTTP/direct {p95_h / p95_d:4.2f}x{limit}")
    finally:
        proc.terminate()
        proc.wait(30)


PARTS = ("direct", "pg", "fresh", "http")
HTTP_P95_LIMIT_MS = 20.0  # issue 10: search with facets at 1M, through HTTP


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--pg-queries", type=int, default=100)
    ap.add_argument(
        "--data",
        type=Path,
        default=None,
        help="where PostgreSQL and the index live (default: a tmp dir); kept afterwards, and reused "
        "by the next run with the same --n and --seed (no generation, no reindex)",
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts to run, of {', '.join(PARTS)} (default: all)",
    )
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if not parts <= set(PARTS):
        ap.error(f"--parts: unknown {', '.join(sorted(parts - set(PARTS)))}")
    logging.basicConfig(level=logging.WARNING)
    rng = random.Random(args.seed)
    data = args.data or Path(tempfile.mkdtemp(prefix="bench-search-"))
    stamp = data / "bench-search.json"
    wanted = {"n": args.n, "seed": args.seed}
    reuse = stamp.exists() and json.loads(stamp.read_text()) == wanted
    if not reuse and (data / "pg").exists():
        shutil.rmtree(data / "pg")
        shutil.rmtree(data / "search", ignore_errors=True)
    pg = EmbeddedPostgres(data / "pg")
    try:
        url = pg.start()
        migrate(url)
        store = Store.connect(url)
        print(f"bench/search: n={args.n:,} data={data}{' (reused)' if reuse else ''}")
        rows, world = generate(args.n, rng)
        if not reuse:
            load(url, rows, args.n)
            t0 = time.perf_counter()
            docs = reindex(store, data / "search", progress=True)
            dt = time.perf_counter() - t0
            size = sum(f.stat().st_size for f in (data / "search").iterdir()) / 2**20
            print(
                f"reindex: {docs:,} documents in {dt:.1f} s ({docs / dt:,.0f} docs/s), index {size:,.0f} MiB"
            )
            stamp.write_text(json.dumps(wanted))
        elif (
            not (data / "search" / "meta.json").exists()
            or read_position(data / "search").get("version") != SCHEMA_VERSION
        ):
            t0 = time.perf_counter()
            docs = reindex(store, data / "search", progress=True)
            print(f"reindex (a new schema): {docs:,} documents in {time.perf_counter() - t0:.1f} s")
        index = open_index(data / "search", writer=False)
        # Queries from their own generator, so a reused data set gets the same queries as a fresh one.
        sets = query_sets(world, args.queries, random.Random(args.seed + 1))
        for q in sets["full text"][:50]:  # warm the page cache and the term dictionaries
            index.search(q)
        for name, qs in sets.items():
            totals = [index.search(q).total for q in qs[:100]]
            print(f"queries: {name}: median matches {statistics.median(totals):,.0f}, max {max(totals):,}")
        if "direct" in parts:
            bench_index(index, sets, store)
        if "pg" in parts:
            bench_pg(url, sets, args.pg_queries)
        if "fresh" in parts:
            bench_freshness(store, data / "search")
        if "http" in parts:
            http_figures(index, sets, url, data / "search")
        store.close()
    finally:
        if args.data is None:
            pg.destroy()
            shutil.rmtree(data, ignore_errors=True)
        else:
            pg.stop()


if __name__ == "__main__":
    main()
