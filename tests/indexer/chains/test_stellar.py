"""The Stellar source against a real PostgreSQL and a fake Horizon (``horizon.py``: no Horizon can run here),
through the real stellar-sdk: what licenses, what does not, paging, restarts, bad config."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from indexer.api import create_app
from indexer.chains import build_sources
from indexer.chains.settings import ChainSettings
from indexer.chains.stellar import StellarSource
from indexer.errors import ChainConfigError, ChainUnavailable
from indexer.store import Store
from protocol import AssetUri, Entry
from tests.indexer.apiclient import client_for, q, settings_for
from tests.node.conftest import LogBuilder

from .horizon import PUBNET, Asset, FakeHorizon, account_id

NET = "stellar:testnet"


@pytest.fixture
def horizon() -> Iterator[FakeHorizon]:
    fake = FakeHorizon().start()
    yield fake
    fake.stop()


@pytest.fixture
def usdc_issuer() -> str:
    return account_id()


def settings(horizon: FakeHorizon | str, issuer: str | None = None, **kw: Any) -> ChainSettings:
    url = horizon if isinstance(horizon, str) else horizon.url
    assets = {"USDC": issuer} if issuer else {}
    kw.setdefault("stellar_network", "testnet")
    return ChainSettings(stellar_horizon_url=url, stellar_assets=assets, **kw)


class Shop:
    """A creator publishing priced assets that pay out to Stellar accounts."""

    def __init__(self, store: Store, log: LogBuilder, put_body: Callable[..., dict[str, Any]]) -> None:
        self.store, self.log, self.put_body = store, log, put_body

    def uri(self, key: str) -> AssetUri:
        return AssetUri(self.log.signer.public, key)

    def publish(self, key: str, *, account: str, amount: str = "10", currency: str = "XLM") -> AssetUri:
        body = self.put_body(
            f"{key} title",
            license={"type": "commercial", "price": {"amount": amount, "currency": currency}},
            payout={"stellar": account},
        )
        entry: Entry = self.log.next(key=key, body=body)
        report = self.store.ingest([entry], source="test")
        assert report.status[entry.hash.raw] == "appended"
        return self.uri(key)


@pytest.fixture
def shop(store: Store, new_log: Callable[..., LogBuilder], put_body: Callable[..., dict[str, Any]]) -> Shop:
    return Shop(store, new_log(), put_body)


def memo(uri: AssetUri) -> tuple[str, bytes]:
    return ("hash", uri.id_hash)


def payments(store: Store) -> dict[str, str]:
    return {r[0]: r[1] for r in q(store, "SELECT payment_id, status FROM payments")}


def asset_row(store: Store, uri: AssetUri) -> Any:
    return q(store, "SELECT licenses, onchain, change_seq FROM assets WHERE uri = :u", u=uri.text)[0]


def licensed_activity(store: Store) -> list[Any]:
    return q(store, "SELECT uri, did, data, entry_hash FROM activity WHERE kind = 'licensed' ORDER BY id")


async def test_a_correct_payment_licenses(
    store: Store, shop: Shop, horizon: FakeHorizon, tmp_path: Path
) -> None:
    seller = account_id()
    horizon.fund(seller)
    uri = shop.publish("night-drive", account=seller, amount="12.5")
    before = asset_row(store, uri).change_seq
    buyer = account_id()
    paid = horizon.pay(to=seller, sender=buyer, amount="12.5000000", memo=memo(uri))
    # A path payment whose received side is the price licenses too.
    path = horizon.pay(to=seller, amount="13.0000000", memo=memo(uri), kind="path_payment_strict_send")

    source = StellarSource(settings=settings(horizon), store=store)
    assert source.name == NET
    source.check()
    result = source.poll()

    assert result.applied == 2 and result.extra["payments"] == {"licensed": 2}
    assert result.head == horizon.ledger and result.processed == horizon.ledger and result.lag_blocks == 0
    assert payments(store) == {paid["id"]: "licensed", path["id"]: "licensed"}
    licenses, onchain, change_seq = asset_row(store, uri)
    assert licenses == 2 and change_seq > before
    assert onchain[NET]["licenses"] == 2
    assert onchain[NET]["last"]["tx"] == path["transaction_hash"]
    assert set(onchain[NET]["last"]) == {"tx", "buyer", "amount", "asset", "at"}
    acts = licensed_activity(store)
    assert len(acts) == 2
    first = acts[0]
    assert first.uri == uri.text and first.did == uri.author.did and first.entry_hash is not None
    assert first.data == {
        "chain": NET,
        "buyer": buyer,
        "amount": "12.5000000",
        "asset": "XLM",
        "tx": paid["transaction_hash"],
        "at": first.data["at"],
        "payment": paid["id"],
    }
    # The cursor row of the account holds the last paging token.
    (data,) = q(store, "SELECT data FROM chain_cursors WHERE source = :s", s=f"{NET}/{seller}")[0]
    assert data["cursor"] == path["paging_token"]

    app = create_app(settings_for(tmp_path), store=store)
    async with client_for(app) as client:
        r = await client.get(f"/v1/assets/{uri.author.did}/night-drive")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["licenses"] == 2
    assert [p["status"] for p in body["payments"]] == ["licensed", "licensed"]
    assert body["payments"][1] == {
        "chain": NET,
        "status": "licensed",
        "buyer": buyer,
        "amount": "12.5000000",
        "asset": "XLM",
        "tx": paid["transaction_hash"],
        "at": body["payments"][1]["at"],
    }
    assert body["onchain"][NET]["licenses"] == 2


def test_bad_payments_license_nothing(
    store: Store, shop: Shop, horizon: FakeHorizon, usdc_issuer: str
) -> None:
    seller, elsewhere = account_id(), account_id()
    horizon.fund(seller)
    horizon.fund(elsewhere)
    xlm = shop.publish("xlm-priced", account=seller, amount="10")
    usdc = shop.publish("usdc-priced", account=seller, amount="5", currency="USDC")
    other = shop.publish("other-account", account=elsewhere, amount="1")
    unpriced = shop.publish("unpayable", account=seller, amount="1", currency="EUR")  # no issuer mapped
    usdc_asset, fake_usdc = Asset("USDC", usdc_issuer), Asset("USDC", account_id())
    verdicts = {
        horizon.pay(to=seller, amount="9.9999999", memo=memo(xlm))["id"]: "underpaid",
        horizon.pay(to=seller, amount="4.9999999", asset=usdc_asset, memo=memo(usdc))["id"]: "underpaid",
        horizon.pay(to=seller, amount="100.0000000", asset=usdc_asset, memo=memo(xlm))["id"]: "wrong-asset",
        horizon.pay(to=seller, amount="100.0000000", memo=memo(usdc))["id"]: "wrong-asset",
        # The right code, another issuer: not the configured asset.
        horizon.pay(to=seller, amount="100.0000000", asset=fake_usdc, memo=memo(usdc))["id"]: "wrong-asset",
        horizon.pay(to=seller, amount="100.0000000", memo=memo(unpriced))["id"]: "wrong-asset",
        horizon.pay(to=seller, amount="10.0000000", memo=("text", "xlm-priced"))["id"]: "wrong-memo",
        horizon.pay(to=seller, amount="10.0000000", memo=("id", 42))["id"]: "wrong-memo",
        horizon.pay(to=seller, amount="10.0000000")["id"]: "wrong-memo",
        # A hash memo naming an asset of another payout account, or no asset at all.
        horizon.pay(to=seller, amount="10.0000000", memo=memo(other))["id"]: "wrong-memo",
        horizon.pay(to=seller, amount="10.0000000", memo=("hash", b"\x01" * 32))["id"]: "wrong-memo",
        horizon.pay(to=seller, amount="10.0000000", memo=memo(xlm), successful=False)["id"]: "failed",
    }
    # Not payments to the account: skipped, the cursor moves past them.
    horizon.pay(to=account_id(), sender=seller, amount="50.0000000", memo=memo(xlm))
    gone = account_id()
    horizon.fund(gone, funder=seller)
    last = horizon.merge(gone, into=seller)

    source = StellarSource(settings=settings(horizon, usdc_issuer), store=store)
    source.check()
    result = source.poll()

    assert payments(store) == verdicts
    for uri in (xlm, usdc, unpriced):
        licenses, onchain, _ = asset_row(store, uri)
        assert licenses == 0 and NET not in onchain
    assert licensed_activity(store) == []
    (data,) = q(store, "SELECT data FROM chain_cursors WHERE source = :s", s=f"{NET}/{seller}")[0]
    assert data["cursor"] == last["paging_token"]
    assert result.extra["payments"]["wrong-memo"] == 5
    # Stored as judged, amounts exact (7 decimals, never float).
    amounts = {r[0]: str(r[1]) for r in q(store, "SELECT payment_id, amount FROM payments")}
    assert "9.9999999" in amounts.values() and "4.9999999" in amounts.values()

    # A correct payment after all that still licenses, once.
    good = horizon.pay(to=seller, amount="5.0000000", asset=usdc_asset, memo=memo(usdc))
    assert source.poll().applied == 1
    assert payments(store)[good["id"]] == "licensed" and asset_row(store, usdc).licenses == 1


def test_a_replayed_page_or_a_reset_cursor_counts_once(
    store: Store, shop: Shop, horizon: FakeHorizon
) -> None:
    seller = account_id()
    horizon.fund(seller)
    uri = shop.publish("loop", account=seller)
    for _ in range(3):
        horizon.pay(to=seller, amount="10.0000000", memo=memo(uri))
    source = StellarSource(settings=settings(horizon), store=store)
    assert source.poll().applied == 3
    seen = (asset_row(store, uri), len(licensed_activity(store)), payments(store))

    horizon.replay_from_start = 1  # Horizon serves the same records again, whatever the cursor
    assert source.poll().applied == 0
    q_exec(store, "DELETE FROM chain_cursors")  # the cursor is lost: everything is read again
    assert source.poll().applied == 0
    again = StellarSource(settings=settings(horizon), store=store)  # and by a fresh process
    q_exec(store, "DELETE FROM chain_cursors")
    assert again.poll().applied == 0
    assert (asset_row(store, uri), len(licensed_activity(store)), payments(store)) == seen
    assert asset_row(store, uri).licenses == 3


def q_exec(store: Store, sql: str) -> None:
    from sqlalchemy import text

    with store.engine.begin() as conn:
        conn.execute(text(sql))


def payment_requests(horizon: FakeHorizon, account: str) -> list[dict[str, str]]:
    return [qs for path, qs in horizon.requests if path == f"/accounts/{account}/payments"]


def test_paging_over_several_pages(store: Store, shop: Shop, horizon: FakeHorizon) -> None:
    seller = account_id()
    horizon.fund(seller)
    uri = shop.publish("paged", account=seller)
    paid = [horizon.pay(to=seller, amount="10.0000000", memo=memo(uri)) for _ in range(10)]

    source = StellarSource(settings=settings(horizon), store=store, page_limit=3, max_pages=2)
    first = source.poll()  # 2 pages of 3 records (create_account + 5 payments): behind, wants more
    assert first.more and first.applied == 5 and first.lag_blocks and first.lag_blocks > 0
    second = source.poll()  # 2 more pages: 5 more payments and the end
    assert second.applied == 5 and not second.more and second.lag_blocks == 0
    assert source.poll().applied == 0
    assert set(payments(store)) == {p["id"] for p in paid}
    assert asset_row(store, uri).licenses == 10
    asked = payment_requests(horizon, seller)
    # Each page asked from the previous page's last paging token, in ascending order, with the memo joined.
    assert "cursor" not in asked[0]
    assert all(
        a["order"] == "asc"
        and a["limit"] == "3"
        and a["join"] == "transactions"
        and a["include_failed"] == "true"
        for a in asked
    )
    cursors = [a["cursor"] for a in asked[1:]]
    assert len(cursors) == 4 and cursors == sorted(cursors, key=int) and len(set(cursors)) == 4
    assert cursors[-1] == paid[-1]["paging_token"]


def test_restart_resumes_from_the_stored_cursor(store: Store, shop: Shop, horizon: FakeHorizon) -> None:
    seller = account_id()
    horizon.fund(seller)
    uri = shop.publish("restart", account=seller)
    horizon.pay(to=seller, amount="10.0000000", memo=memo(uri))
    StellarSource(settings=settings(horizon), store=store).poll()
    stored = q(store, "SELECT data FROM chain_cursors WHERE source = :s", s=f"{NET}/{seller}")[0][0]["cursor"]

    # Paid while the reconciler was down: a new source object (a restart) misses none of it.
    down = [horizon.pay(to=seller, amount="10.0000000", memo=memo(uri)) for _ in range(3)]
    horizon.requests.clear()
    result = StellarSource(settings=settings(horizon), store=store).poll()
    assert result.applied == 3
    assert payment_requests(horizon, seller)[0]["cursor"] == stored
    assert {p["id"] for p in down} <= set(payments(store))
    assert asset_row(store, uri).licenses == 4


def test_an_account_named_later_is_followed_from_its_start(
    store: Store, shop: Shop, horizon: FakeHorizon
) -> None:
    first, later = account_id(), account_id()
    horizon.fund(first)
    horizon.fund(later)
    shop.publish("first", account=first)
    # Paid to an account no indexed asset names yet (the asset reaches the indexer afterwards).
    early = horizon.pay(to=later, amount="10.0000000", memo=memo(shop.uri("second")))
    source = StellarSource(settings=settings(horizon), store=store)
    source.poll()
    assert payment_requests(horizon, later) == [] and payments(store) == {}

    uri = shop.publish("second", account=later)
    assert source.poll().applied == 1
    assert "cursor" not in payment_requests(horizon, later)[0]
    assert payments(store) == {early["id"]: "licensed"} and asset_row(store, uri).licenses == 1


def test_an_account_horizon_does_not_know_is_retried(
    store: Store, shop: Shop, horizon: FakeHorizon, caplog: pytest.LogCaptureFixture
) -> None:
    unfunded, bad = account_id(), account_id()
    bad = bad[:-1] + ("A" if bad[-1] != "A" else "B")  # the strkey's checksum no longer matches
    uri = shop.publish("not-yet", account=unfunded)
    shop.publish("bad-account", account=bad)  # the protocol checks the shape only
    source = StellarSource(settings=settings(horizon), store=store)
    with caplog.at_level(logging.INFO, logger="indexer.chains.stellar"):
        result = source.poll()
        source.poll()
    assert result.applied == 0 and result.extra["unknown_accounts"] == [unfunded]
    assert result.extra["invalid_accounts"] == [bad]
    assert sum("unknown to Horizon" in r.getMessage() for r in caplog.records) == 1  # logged once
    assert payment_requests(horizon, bad) == []  # never asked for

    horizon.fund(unfunded)
    paid = horizon.pay(to=unfunded, amount="10.0000000", memo=memo(uri))
    result = source.poll()
    assert result.applied == 1 and result.extra["unknown_accounts"] == []
    assert payments(store) == {paid["id"]: "licensed"}


def test_transient_horizon_failures_change_nothing(store: Store, shop: Shop, horizon: FakeHorizon) -> None:
    seller = account_id()
    horizon.fund(seller)
    uri = shop.publish("flaky", account=seller)
    horizon.pay(to=seller, amount="10.0000000", memo=memo(uri))
    source = StellarSource(settings=settings(horizon), store=store)
    for status in (503, 429, 500):
        horizon.fail = [status] * 4  # more than the client's own retries
        with pytest.raises(ChainUnavailable) as err:
            source.poll()
        assert str(status) in str(err.value) and "\n" not in str(err.value)
        assert payments(store) == {} and q(store, "SELECT count(*) FROM chain_cursors")[0][0] == 0
    horizon.fail = []
    assert source.poll().applied == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_bad_config_is_a_clear_error(store: Store, horizon: FakeHorizon, usdc_issuer: str) -> None:
    nowhere = StellarSource(settings=settings(f"http://127.0.0.1:{_closed_port()}"), store=store)
    with pytest.raises(ChainConfigError) as err:
        nowhere.check()
    assert "cannot reach Horizon" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ChainUnavailable):
        nowhere.poll()

    horizon.passphrase = PUBNET
    with pytest.raises(ChainConfigError, match="not testnet"):
        StellarSource(settings=settings(horizon), store=store).check()
    horizon.passphrase = "Test SDF Network ; September 2015"

    # A well-shaped issuer whose checksum is wrong: the settings accept its shape, check() does not.
    broken = usdc_issuer[:-1] + ("A" if usdc_issuer[-1] != "A" else "B")
    with pytest.raises(ChainConfigError, match="issuer of USDC is not a valid Stellar account"):
        StellarSource(settings=settings(horizon, broken), store=store).check()
    with pytest.raises(ValidationError, match="issuer of USDC"):
        settings(horizon, "not-an-account")
    with pytest.raises(ValidationError, match="JSON object"):
        ChainSettings(stellar_assets="USDC")  # as an environment variable gives it: text
    assert ChainSettings(stellar_assets=f'{{"USDC": "{usdc_issuer}"}}').stellar_assets == {
        "USDC": usdc_issuer
    }
    with pytest.raises(ValidationError, match="testnet or pubnet"):
        settings(horizon, stellar_network="futurenet")
    StellarSource(settings=settings(horizon, usdc_issuer), store=store).check()
    assert q(store, "SELECT count(*) FROM payments")[0][0] == 0


def test_build_sources_and_the_reconciler_loop(
    store: Store, shop: Shop, horizon: FakeHorizon, db_url: str
) -> None:
    from indexer.reconciler import run_reconciler

    assert build_sources(ChainSettings(), store) == []
    (source,) = build_sources(settings(horizon), store)
    assert isinstance(source, StellarSource) and source.name == NET
    seller = account_id()
    horizon.fund(seller)
    uri = shop.publish("looped", account=seller)
    source.check()

    stop = threading.Event()
    # The loop on main logs a poll's result with %d (it predates PollResult); keep its info lines
    # quiet so that pytest's log capture does not fail the thread over it.
    logger = logging.getLogger("indexer.reconciler")
    level = logger.level
    logger.setLevel(logging.WARNING)
    thread = threading.Thread(
        target=run_reconciler,
        kwargs={"database_url": db_url, "sources": [source], "stop": stop, "interval": 0.05},
        daemon=True,
    )
    thread.start()
    try:
        horizon.pay(to=seller, amount="10.0000000", memo=memo(uri))
        deadline = time.monotonic() + 30
        while asset_row(store, uri).licenses < 1:
            assert thread.is_alive(), "the reconciler stopped"
            assert time.monotonic() < deadline, "the payment was not reconciled within 30 s"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=30)
        logger.setLevel(level)
    assert not thread.is_alive()
    assert asset_row(store, uri).licenses == 1 and len(licensed_activity(store)) == 1


async def test_the_api_shows_an_asset_without_payments(store: Store, shop: Shop, tmp_path: Path) -> None:
    uri = shop.publish("quiet", account=account_id())
    async with client_for(create_app(settings_for(tmp_path), store=store)) as client:
        r: httpx.Response = await client.get(f"/v1/assets/{uri.author.did}/quiet")
    assert r.status_code == 200 and r.json()["licenses"] == 0 and r.json()["payments"] == []


def test_a_page_is_applied_whole_or_not_at_all(store: Store, shop: Shop, horizon: FakeHorizon) -> None:
    from indexer.errors import DatabaseError

    seller = account_id()
    horizon.fund(seller)
    uri = shop.publish("atomic", account=seller)
    horizon.pay(to=seller, amount="10.0000000", memo=memo(uri))
    horizon.pay(to=seller, amount="1.0000000", memo=memo(uri))
    before = asset_row(store, uri)
    # The database goes away at the page's last write (the cursor), as in a restart of PostgreSQL.
    q_exec(
        store,
        "CREATE FUNCTION fail_cursor() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'terminating connection' USING ERRCODE = '57P01'; END $$; "
        "CREATE TRIGGER fail_cursor BEFORE INSERT OR UPDATE ON chain_cursors "
        "FOR EACH ROW EXECUTE FUNCTION fail_cursor()",
    )
    source = StellarSource(settings=settings(horizon), store=store)
    with pytest.raises(DatabaseError):
        source.poll()
    assert payments(store) == {} and licensed_activity(store) == [] and asset_row(store, uri) == before
    q_exec(store, "DROP TRIGGER fail_cursor ON chain_cursors")
    assert source.poll().applied == 2
    assert sorted(payments(store).values()) == ["licensed", "underpaid"]
    assert asset_row(store, uri).licenses == 1 and len(licensed_activity(store)) == 1
