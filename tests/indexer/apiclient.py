"""Helpers shared by the ``test_api_*`` tests: counting rows, checking problems, settings (fixtures: conftest.py)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from indexer.settings import IndexerSettings
from indexer.store import Store
from protocol import Entry, EntryHash

TABLES = (
    "entries",
    "assets",
    "authors",
    "activity",
    "pending",
    "forks",
    "quarantine",
    "api_keys",
    "idempotency_keys",
    "moderation_labels",
)


def counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def q(store: Store, sql: str, **params: Any) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def assert_problem(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    assert body["request_id"] and body["request_id"] == resp.headers["x-request-id"]
    assert body["type"].startswith("urn:empressa:problem:")
    for k in ("title", "detail", "instance", "code"):
        assert k in body
    if code is not None:
        assert body["code"] == code, body
    return body


def settings_for(tmp_path: Path, **overrides: Any) -> IndexerSettings:
    base: dict[str, Any] = {
        "database_url": None,
        "rate_limit_enabled": False,
        "index_dir": tmp_path / "index",
    }
    base.update(overrides)
    return IndexerSettings(**base)


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def cbor_seq(entries: Iterable[Entry | bytes]) -> bytes:
    return b"".join(e if isinstance(e, bytes) else e.raw for e in entries)


def cid(e: Entry) -> str:
    return EntryHash(e.hash.raw).cid
