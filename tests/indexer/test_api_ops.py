"""Health, readiness, metrics, request ids, rate limits, and the error paths of last resort."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from indexer.api import create_app
from indexer.store import Store
from indexer.store.reads import Reads
from indexer.testing import PostgresForTests
from tests.indexer.apiclient import assert_problem, client_for, counts, settings_for
from tests.node.conftest import LogBuilder

DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["ready"] is True


async def test_readyz_503_on_an_unmigrated_database(pg_server: PostgresForTests, tmp_path: Path) -> None:
    with psycopg.connect(pg_server.pg.admin_url(), autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "unmigrated"')
        conn.execute('CREATE DATABASE "unmigrated"')
    store = Store.connect(pg_server.pg.admin_url("unmigrated"))
    try:
        async with client_for(create_app(settings_for(tmp_path), store=store)) as c:
            p = assert_problem(await c.get("/readyz"), 503, "not-ready")
            assert p["revision"] is None and p["expected"]
            assert (await c.get("/healthz")).status_code == 200
    finally:
        store.close()
        pg_server.drop_database(pg_server.pg.admin_url("unmigrated"))


async def test_database_down_is_503(tmp_path: Path) -> None:
    store = Store.connect("postgresql://nobody@127.0.0.1:1/none")
    try:
        async with client_for(create_app(settings_for(tmp_path), store=store)) as c:
            assert_problem(await c.get("/readyz"), 503)
            p = assert_problem(await c.get(f"/v1/creators/{DID}"), 503, "database-unavailable")
            assert "127.0.0.1" not in p["detail"] and "nobody" not in p["detail"]
            assert_problem(
                await c.post("/v1/entries", content=b"\x01", headers={"content-type": "application/cbor"}),
                503,
            )
    finally:
        store.close()


async def test_request_ids_and_plain_http_errors(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces" and len(r.headers["x-request-id"]) == 16
    p = assert_problem(await client.get("/nowhere", headers={"X-Request-ID": "mine"}), 404)
    assert p["request_id"] == "mine"
    assert_problem(await client.put("/healthz"), 405)


async def test_a_nul_in_the_url_is_400_before_any_route(client: httpx.AsyncClient, store: Store) -> None:
    _, admin = store.admin.create_api_key(name="root", scopes=["admin"])
    before = counts(store)
    for method, url in [
        ("GET", "/v1/activity?kind=pub%00lished"),
        ("GET", "/v1/assets?q=rain%00&tag=a"),
        ("GET", f"/v1/creators/{DID}/assets?cursor=%00"),
        ("DELETE", "/v1/admin/api-keys/abc%00def"),
        ("DELETE", f"/v1/admin/moderation/{DID}/night-drive/spam%00"),
    ]:
        r = await client.request(method, url, headers={"Authorization": f"Bearer {admin}"})
        p = assert_problem(r, 400, "bad-request")
        assert "NUL" in p["detail"] and "\x00" not in p["instance"], p
    assert counts(store) == before


async def test_unexpected_errors_are_500_without_internals(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("password=hunter2 in a stack frame")

    monkeypatch.setattr(Reads, "creator", boom)
    r = await client.get(f"/v1/creators/{DID}")
    assert_problem(r, 500, "internal")
    assert "hunter2" not in r.text and "RuntimeError" not in r.text


async def test_metrics(client: httpx.AsyncClient) -> None:
    await client.get(f"/v1/assets/{DID}/nothing")
    await client.post("/v1/entries", content=b"\xa0", headers={"content-type": "application/cbor"})
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert (
        'empressa_http_requests_total{method="GET",route="/v1/assets/{did}/{key}",status="404"} 1.0' in text
    )
    assert 'empressa_http_request_duration_seconds_bucket{le="0.001",method="GET"' in text or (
        "empressa_http_request_duration_seconds_bucket" in text
    )
    assert 'empressa_api_ingest_entries_total{status="invalid"} 1.0' in text


async def test_multiprocess_metrics(
    make_app: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client import CollectorRegistry, Counter
    from prometheus_client import values as pvalues

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(pvalues, "ValueClass", pvalues.get_value_class())
    # what another process (the bridge) would write into the shared directory
    Counter("empressa_bridge_entries_total", "x", registry=CollectorRegistry()).inc(7)
    async with client_for(make_app()) as c:
        text = (await c.get("/metrics")).text
    assert "empressa_bridge_entries_total 7.0" in text


async def test_rate_limits(
    make_app: Callable[..., Any],
    store: Store,
    new_log: Callable[..., LogBuilder],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(
        rate_limit_enabled=True,
        rate_limit_read="3/minute",
        rate_limit_submit="1/minute",
        rate_limit_submit_key="2/minute",
    )
    async with client_for(app) as c:
        for i in range(3):
            r = await c.get(f"/v1/creators/{DID}")
            assert r.status_code == 404
            assert r.headers["ratelimit-limit"] == "3" and r.headers["ratelimit-remaining"] == str(2 - i)
        p = assert_problem(await c.get(f"/v1/creators/{DID}"), 429, "rate-limited")
        r = await c.get(f"/v1/creators/{DID}")
        assert int(r.headers["retry-after"]) >= 1 and r.headers["ratelimit-remaining"] == "0"
        assert "3 per 1 minute" in p["detail"]
        assert (await c.get("/healthz")).status_code == 200  # never limited

        log = new_log()
        e1, e2, e3 = log.next(), log.next(), log.next()
        cbor = {"content-type": "application/cbor"}
        assert (await c.post("/v1/entries", content=e1.raw, headers=cbor)).status_code == 200
        before = counts(store)
        assert_problem(await c.post("/v1/entries", content=e2.raw, headers=cbor), 429)
        assert counts(store) == before
        # an ingest key gets its own, higher budget
        _, secret = store.admin.create_api_key(name="ing", scopes=["ingest"])
        caplog.set_level(logging.DEBUG)
        auth = {**cbor, "Authorization": f"Bearer {secret}"}
        assert (await c.post("/v1/entries", content=e2.raw, headers=auth)).status_code == 200
        assert (await c.post("/v1/entries", content=e3.raw, headers=auth)).status_code == 200
        assert_problem(await c.post("/v1/entries", content=e3.raw, headers=auth), 429)
        assert secret not in caplog.text and "Bearer" not in caplog.text
        assert "request_id=" in caplog.text
