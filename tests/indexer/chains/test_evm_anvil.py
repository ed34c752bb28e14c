"""The EVM source and the reconciler on a real anvil process (its JSON-RPC over HTTP), real PostgreSQL,
the real API app: verification seen through the API and search, reorgs (``anvil_reorg``, and
``evm_snapshot``/``evm_revert`` then a different chain), a reorg too deep, bad config, an RPC that
refuses large ranges (a small proxy in this file answers -32005 above N blocks)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexer.api import create_app
from indexer.chains import build_sources
from indexer.errors import ChainConfigError
from indexer.reconciler import run_reconciler
from indexer.search import Feeder, open_index
from indexer.store import Store
from tests.conftest import Anvil
from tests.indexer.apiclient import client_for, settings_for
from tests.indexer.chains.harness import ChainWorld, deploy, register


@pytest.fixture
def world(anvil: Anvil, store: Store, new_log: Callable[..., Any], put_body: Any) -> ChainWorld:
    return ChainWorld(anvil.w3, store, deploy(anvil.w3), new_log, put_body, rpc_url=anvil.url)


def wait_for(what: str, cond: Callable[[], Any], timeout: float = 60.0) -> Any:
    end = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


class Reconciler:
    """``run_reconciler`` in a thread, on sources built from settings, as ``indexer reconcile`` runs it."""

    def __init__(self, store: Store, settings: Any) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=run_reconciler,
            kwargs={
                "database_url": store.url,
                "sources": build_sources(settings, store),
                "stop": self.stop,
                "interval": settings.reconcile_interval,
                "store": store,
            },
            daemon=True,
        )
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


@pytest.fixture
def reconciler(store: Store) -> Iterator[Callable[..., Reconciler]]:
    running: list[Reconciler] = []

    def start(settings: Any) -> Reconciler:
        r = Reconciler(store, settings)
        running.append(r)
        return r

    yield start
    for r in running:
        r.close()


def chain_settings(tmp_path: Path, anvil: Anvil, registry: str, **kw: Any) -> Any:
    base = {
        "evm_rpc_url": anvil.url,
        "evm_registry": registry,
        "evm_chain_id": anvil.chain_id,
        "evm_confirmations": 3,
        "reconcile_interval": 0.1,
    }
    base.update(kw)
    return settings_for(tmp_path, **base)


async def test_registered_from_payout_accounts_verified_through_api_search_readyz_metrics(
    world: ChainWorld, anvil: Anvil, store: Store, tmp_path: Path, reconciler: Callable[..., Reconciler]
) -> None:
    accts = world.accounts
    good = [world.put(f"good-{i}", payout_evm=accts[1 + i]) for i in range(3)]
    _, front = world.put("front", payout_evm=accts[1])
    _, bare = world.put("bare", payout_evm=None)
    _, plain = world.put("plain", payout_evm=accts[5])  # never registered: listed
    store.ingest([e for _, e in good] + [front, bare, plain])
    for i, (_, e) in enumerate(good):
        register(world.reg, e, accts[1 + i])
    register(world.reg, front, accts[6])  # front-running: another account registers the record
    register(world.reg, bare, accts[2])
    settings = chain_settings(tmp_path, anvil, world.reg.address)
    reconciler(settings)
    chain = f"eip155:{anvil.chain_id}"
    time.sleep(0.5)  # give it polls to (wrongly) apply unconfirmed blocks: nothing is confirmed yet
    assert world.asset(good[-1][1].uri.text)["chain_status"] == "listed"
    anvil.rpc("anvil_mine", "0x3")  # past the confirmation depth
    wait_for(
        "all matched",
        lambda: world.rows("SELECT count(*) FROM registrations WHERE status <> 'pending'") == [(5,)],
    )
    index = open_index(tmp_path / "idx", writer=True)
    Feeder(store, index).catch_up()
    async with client_for(create_app(settings, store=store, index=index)) as c:
        for i, (_, e) in enumerate(good):
            a = (await c.get(f"/v1/assets/{e.author.did}/{e.key}")).json()
            assert a["chain_status"] == "verified"
            assert a["onchain"][chain]["owner"] == accts[1 + i]
            assert a["onchain"][chain]["entry"] == e.hash.cid
            [reg] = a["registrations"]
            assert reg["chain"] == chain and reg["status"] == "verified" and reg["entry_seq"] == e.seq
        f = (await c.get(f"/v1/assets/{front.author.did}/{front.key}")).json()
        assert f["chain_status"] == "mismatch" and f["registrations"][0]["owner"] == accts[6]
        assert (await c.get(f"/v1/assets/{bare.author.did}/{bare.key}")).json()["chain_status"] == "unbound"

        async def keys(status: str) -> set[str]:
            r = await c.get("/v1/assets", params={"status": status, "limit": 100})
            assert r.status_code == 200, r.text
            return {i["key"] for i in r.json()["items"]}

        assert await keys("verified") == {"good-0", "good-1", "good-2"}
        assert await keys("mismatch") == {"front"}
        assert await keys("unbound") == {"bare"}
        assert await keys("registered") == {"good-0", "good-1", "good-2", "front", "bare"}
        assert await keys("listed") == {"plain"}
        assert await keys("licensed") == set()
        bad = await c.get("/v1/assets", params={"status": "bogus"})
        assert bad.status_code == 400 and "status must be one of" in bad.text
        ready = await c.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["chains"][chain]["error"] is None
        metrics = (await c.get("/metrics")).text
        assert f'empressa_chain_events_total{{chain="{chain}"}} 5.0' in metrics
        assert f'empressa_chain_up{{chain="{chain}"}} 1.0' in metrics
        assert f'empressa_chain_head{{chain="{chain}"}}' in metrics
    index.close()
    assert world.outbox(good[0][1].uri.text) == ["verified"] and world.outbox(front.uri.text) == []


def _summary(world: ChainWorld, chain: str) -> dict[str, Any]:
    """Everything the source wrote, to see nothing is half-applied."""
    (cursor,) = world.rows("SELECT position, block_hash FROM chain_cursors WHERE source = %s", chain)
    top = world.rows("SELECT max(number) FROM chain_blocks WHERE source = %s", chain)[0][0]
    regs = world.rows("SELECT max(block_number), count(*) FROM registrations WHERE source = %s", chain)[0]
    return {"position": cursor[0], "top_block": top, "max_reg_block": regs[0], "regs": regs[1]}


def test_anvil_reorg_drops_a_registration(world: ChainWorld, anvil: Anvil) -> None:
    a1, a2 = world.accounts[1], world.accounts[2]
    _, keep = world.put("keep", payout_evm=a1)
    _, lose = world.put("lose", payout_evm=a2)
    world.store.ingest([keep, lose])
    register(world.reg, keep, a1)
    register(world.reg, lose, a2)  # its own block, the newest
    anvil.rpc("anvil_mine", "0x1")
    src = world.source()
    world.drain()
    assert world.asset(lose.uri.text)["chain_status"] == "verified"
    anvil.rpc("anvil_reorg", 2, [])  # replace the last two blocks (the one with `lose`) with empty ones
    world.drain()
    assert world.asset(lose.uri.text) | {"change_seq": 0} == {
        "chain_status": "listed",
        "onchain": {},
        "change_seq": 0,
    }
    assert world.activity(lose.uri.text) == ["published", "registered", "verified", "unregistered"]
    assert world.outbox(lose.uri.text) == ["verified", "revoked"]
    assert world.asset(keep.uri.text)["chain_status"] == "verified"
    assert world.outbox(keep.uri.text) == ["verified"]
    s = _summary(world, src.name)
    assert s["regs"] == 1 and s["position"] == s["top_block"] == anvil.w3.eth.block_number
    (data,) = world.rows("SELECT data FROM activity WHERE kind = 'unregistered'")
    assert data[0]["chain"] == src.name and data[0]["asset_id"] == "2"


def test_snapshot_revert_then_a_different_chain(world: ChainWorld, anvil: Anvil) -> None:
    a1, a2 = world.accounts[1], world.accounts[2]
    _, x = world.put("x", payout_evm=a1)
    _, y = world.put("y", payout_evm=a2)
    world.store.ingest([x, y])
    snap = anvil.rpc("evm_snapshot")
    register(world.reg, x, a1)
    anvil.rpc("anvil_mine", "0x2")
    world.drain()
    assert world.asset(x.uri.text)["chain_status"] == "verified"
    anvil.rpc("evm_revert", snap)
    world.drain()  # the chain is now shorter than the stored tip: rolled back at once
    assert world.asset(x.uri.text)["chain_status"] == "listed"
    register(world.reg, y, a2)  # a different chain grows past the old height
    anvil.rpc("anvil_mine", "0x4")
    world.drain()
    assert world.asset(x.uri.text)["chain_status"] == "listed"
    assert world.asset(y.uri.text)["chain_status"] == "verified"
    assert world.outbox(x.uri.text) == ["verified", "revoked"]
    assert world.activity(x.uri.text) == ["published", "registered", "verified", "unregistered"]
    on = world.asset(y.uri.text)["onchain"][world.source().name]
    assert on["asset_id"] == "1"  # the registry's state was reverted too: y got id 1 on the new chain


async def test_a_reorg_deeper_than_the_limit_stops_the_source_and_fails_readiness(
    world: ChainWorld, anvil: Anvil, store: Store, tmp_path: Path, reconciler: Callable[..., Reconciler]
) -> None:
    a1 = world.accounts[1]
    _, x = world.put("x", payout_evm=a1)
    store.ingest([x])
    register(world.reg, x, a1)
    settings = chain_settings(
        tmp_path, anvil, world.reg.address, evm_confirmations=0, evm_max_reorg_depth=2, evm_max_range=1
    )  # one block per range: every block is stored
    reconciler(settings)
    chain = f"eip155:{anvil.chain_id}"
    wait_for("verified", lambda: world.asset(x.uri.text)["chain_status"] == "verified")
    anvil.rpc("anvil_mine", "0x2")
    head = anvil.w3.eth.block_number
    wait_for(
        "caught up",
        lambda: world.rows("SELECT position FROM chain_cursors WHERE source = %s", chain) == [(head,)],
    )
    anvil.rpc("anvil_reorg", 3, [])  # drops x's block: 3 > 2
    async with client_for(create_app(settings, store=store)) as c:

        async def failing() -> Any:
            r = await c.get("/readyz")
            return r if r.status_code == 503 else None

        end = time.monotonic() + 30
        while (r := await failing()) is None:
            assert time.monotonic() < end, "readiness never failed"
            time.sleep(0.05)
        body = r.json()
        assert "reorg-too-deep" in body["detail"] and chain in body["detail"]
        assert "\n" not in body["detail"]
        metrics = (await c.get("/metrics")).text
        assert f'empressa_chain_up{{chain="{chain}"}} 0.0' in metrics
    # Stopped, not guessing: what it applied stays as it was.
    assert world.asset(x.uri.text)["chain_status"] == "verified"
    (data,) = world.rows("SELECT data FROM chain_cursors WHERE source = %s", chain)[0]
    assert data["state"] == "stopped"


@pytest.mark.parametrize("case", ["unreachable", "no-contract", "wrong-chain-id"])
async def test_bad_config_is_a_clear_error_and_a_readiness_failure(
    case: str,
    world: ChainWorld,
    anvil: Anvil,
    store: Store,
    tmp_path: Path,
    reconciler: Callable[..., Reconciler],
) -> None:
    from tests.e2e.conftest import free_port

    kw: dict[str, Any] = {
        "unreachable": {"evm_rpc_url": f"http://127.0.0.1:{free_port()}"},
        "no-contract": {"evm_registry": "0x" + "42" * 20},
        "wrong-chain-id": {"evm_chain_id": 5},
    }[case]
    expect = {
        "unreachable": "cannot reach the EVM RPC",
        "no-contract": "no contract at",
        "wrong-chain-id": f"is chain {anvil.chain_id}, not the configured 5",
    }[case]
    settings = chain_settings(tmp_path, anvil, world.reg.address, **kw)
    [src] = build_sources(settings, store)
    with pytest.raises(ChainConfigError, match=expect) as info:
        src.check()
    assert "\n" not in str(info.value)
    r = reconciler(settings)
    async with client_for(create_app(settings, store=store)) as c:
        end = time.monotonic() + 30
        while (ready := await c.get("/readyz")).status_code != 503:
            assert time.monotonic() < end, "readiness never failed"
            time.sleep(0.05)
        assert expect in ready.json()["detail"] and "chain-config" in ready.json()["detail"]
    assert r.thread.is_alive()  # recorded and retried, never a crash
    assert world.rows("SELECT count(*) FROM registrations") == [(0,)]


class RangeLimitProxy:
    """An HTTP JSON-RPC proxy to anvil that refuses ``eth_getLogs`` over more than ``limit`` blocks with
    -32005 "query returned more than 10000 results", as hosted RPCs do."""

    def __init__(self, upstream: str, limit: int) -> None:
        self.limit = limit
        self.refused = 0
        self.spans: list[int] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if body.get("method") == "eth_getLogs":
                    q = body["params"][0]
                    span = int(q["toBlock"], 16) - int(q["fromBlock"], 16) + 1
                    proxy.spans.append(span)
                    if span > proxy.limit:
                        proxy.refused += 1
                        answer = {
                            "jsonrpc": "2.0",
                            "id": body.get("id"),
                            "error": {"code": -32005, "message": "query returned more than 10000 results"},
                        }
                        return self._send(answer)
                r = httpx.post(upstream, json=body, timeout=30)
                self._send(r.json())

            def _send(self, answer: Any) -> None:
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_rpc_that_refuses_large_ranges_gets_everything_through_smaller_ones(
    world: ChainWorld, anvil: Anvil
) -> None:
    accts = world.accounts
    entries = [world.put(f"r-{i}", payout_evm=accts[1 + i % 5])[1] for i in range(6)]
    world.store.ingest(entries)
    for i, e in enumerate(entries):
        register(world.reg, e, accts[1 + i % 5])
        anvil.rpc("anvil_mine", "0x5")  # spread over ~40 blocks
    proxy = RangeLimitProxy(anvil.url, limit=8)
    try:
        world.source(rpc_url=proxy.url, max_range=1000)
        world.drain()
    finally:
        proxy.close()
    assert proxy.refused > 0 and max(s for s in proxy.spans if s <= proxy.limit) <= 8
    assert [world.asset(e.uri.text)["chain_status"] for e in entries] == ["verified"] * 6
    assert world.rows("SELECT count(*) FROM registrations") == [(6,)]


async def test_an_rpc_that_goes_away_is_retried_with_backoff_and_readiness_waits(
    world: ChainWorld, anvil: Anvil, store: Store, tmp_path: Path, reconciler: Callable[..., Reconciler]
) -> None:
    settings = chain_settings(tmp_path, anvil, world.reg.address, evm_confirmations=0)
    r = reconciler(settings)
    chain = f"eip155:{anvil.chain_id}"

    def state() -> Any:
        rows = world.rows("SELECT data FROM chain_cursors WHERE source = %s", chain)
        return rows[0][0] if rows else None

    wait_for("a first poll", lambda: (state() or {}).get("state") == "ok")
    anvil.process.kill()
    anvil.process.wait()
    data = wait_for("the outage recorded", lambda: (s := state()) and s.get("state") == "unavailable" and s)
    assert "cannot reach the EVM RPC" in data["error"] and data["retry_in"] > 0
    assert r.thread.is_alive()
    async with client_for(create_app(settings, store=store)) as c:
        ready = await c.get("/readyz")  # a short outage is retried, not (yet) a readiness failure
        assert ready.status_code == 200, ready.text
        assert ready.json()["chains"][chain]["state"] == "unavailable"
