"""The EVM source on py-evm (eth-tester, in process; small fixtures only: its get_logs rescans the chain):
the real contract, real PostgreSQL, the owner check and the matching in either order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from indexer.errors import ChainConfigError
from indexer.store import Store
from tests.indexer.chains.harness import ChainWorld, deploy, register


@pytest.fixture
def world(eth_tester_w3: Any, store: Store, new_log: Callable[..., Any], put_body: Any) -> ChainWorld:
    return ChainWorld(eth_tester_w3, store, deploy(eth_tester_w3), new_log, put_body)


def test_owner_check_verified_mismatch_unbound(world: ChainWorld) -> None:
    a, b = world.accounts[1], world.accounts[2]
    _, ok = world.put("ok", payout_evm=a.lower())  # lower-case in the record: compared case-insensitively
    _, front = world.put("front", payout_evm=a)
    _, bare = world.put("bare", payout_evm=None)
    world.store.ingest([ok, front, bare])
    register(world.reg, ok, a)
    register(world.reg, front, b)  # someone else registers a's record first: mismatch
    register(world.reg, bare, a)
    world.drain()
    got = {e.key: world.asset(e.uri.text) for e in (ok, front, bare)}
    assert got["ok"]["chain_status"] == "verified"
    assert got["front"]["chain_status"] == "mismatch"
    assert got["bare"]["chain_status"] == "unbound"
    chain = world.source().name
    on = got["ok"]["onchain"][chain]
    assert on["owner"] == a and on["status"] == "verified" and on["asset_id"] == "1"
    assert on["entry"] == ok.hash.cid and on["entry_seq"] == ok.seq
    assert world.activity(ok.uri.text) == ["published", "registered", "verified"]
    assert world.activity(front.uri.text) == ["published", "registered"]
    assert world.outbox(ok.uri.text) == ["verified"]
    assert world.outbox(front.uri.text) == [] and world.outbox(bare.uri.text) == []
    # Polling again over nothing new, and replaying the same blocks, change nothing.
    world.drain()
    world.store.chain.rollback(source=chain, after_block=-1, after_hash=None)  # forget, then re-read
    world.drain()
    assert world.asset(ok.uri.text)["chain_status"] == "verified"
    assert world.outbox(ok.uri.text) == ["verified", "revoked", "verified"]


def test_registration_before_its_entry_waits_then_matches(world: ChainWorld) -> None:
    a = world.accounts[1]
    _, e = world.put("early", payout_evm=a)
    register(world.reg, e, a)
    assert world.drain() == 1  # stored as pending: no asset yet
    assert world.rows("SELECT status, uri FROM registrations") == [("pending", None)]
    world.store.ingest([e])
    assert world.asset(e.uri.text)["chain_status"] == "listed"
    world.drain()  # every poll matches what has arrived since
    assert world.asset(e.uri.text)["chain_status"] == "verified"
    assert world.activity(e.uri.text) == ["published", "registered", "verified"]
    world.drain()
    assert world.activity(e.uri.text) == ["published", "registered", "verified"]  # once


def test_edit_after_registration_keeps_it_and_shows_the_registered_version(world: ChainWorld) -> None:
    a = world.accounts[1]
    lg, v1 = world.put("song", payout_evm=a)
    world.store.ingest([v1])
    register(world.reg, v1, a)
    world.drain()
    before = world.asset(v1.uri.text)
    body = world.put_body("song, remastered")
    body["payout"] = {"evm": a}
    v2 = lg.next(key="song", body=body)
    world.store.ingest([v2])
    world.drain()
    after = world.asset(v1.uri.text)
    on = after["onchain"][world.source().name]
    assert after["chain_status"] == "verified" and on["entry"] == v1.hash.cid and on["entry_seq"] == 1
    assert after["change_seq"] > before["change_seq"]


def test_an_older_version_registered_after_an_edit_is_checked_by_its_own_record(world: ChainWorld) -> None:
    a, b = world.accounts[1], world.accounts[2]
    lg, v1 = world.put("old", payout_evm=a)
    body = world.put_body("old, now paid to b")
    body["payout"] = {"evm": b}
    v2 = lg.next(key="old", body=body)
    world.store.ingest([v1, v2])
    register(world.reg, v1, a)  # v1 names a: verified, though the current version names b
    world.drain()
    on = world.asset(v1.uri.text)["onchain"][world.source().name]
    assert on["status"] == "verified" and on["entry_seq"] == 1


def test_check_refuses_wrong_chain_id_and_missing_contract(world: ChainWorld) -> None:
    with pytest.raises(ChainConfigError, match="not the configured 5"):
        world.source(chain_id=5)
    with pytest.raises(ChainConfigError, match="no contract at"):
        from indexer.chains.evm import EvmSource

        EvmSource(store=world.store, w3=world.w3, registry="0x" + "11" * 20).check()


def test_processed_blocks_kept_are_bounded_by_the_reorg_depth(world: ChainWorld) -> None:
    a = world.accounts[1]
    _, e = world.put("p", payout_evm=a)
    world.store.ingest([e])
    register(world.reg, e, a)
    src = world.source(max_reorg_depth=3, max_range=1)
    for _ in range(8):
        world.w3.testing.mine(1)  # eth-tester mines this way (anvil does not: evm_mine there)
    world.drain()
    assert src.range == 1
    numbers = [n for (n,) in world.rows("SELECT number FROM chain_blocks ORDER BY number")]
    head = world.w3.eth.block_number
    assert numbers == list(range(head - 4, head + 1))
    assert world.asset(e.uri.text)["chain_status"] == "verified"


def test_a_range_of_many_logs_commits_in_batches_at_block_boundaries(
    world: ChainWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexer.chains import evm

    monkeypatch.setattr(evm, "APPLY_BATCH", 2)
    accts = world.accounts
    entries = [world.put(f"b-{i}", payout_evm=accts[1 + i])[1] for i in range(5)]
    world.store.ingest(entries)
    for i, e in enumerate(entries):
        register(world.reg, e, accts[1 + i])  # one block each
    commits: list[int] = []
    apply = world.store.chain.apply_registrations

    def counting(**kw: Any) -> int:
        commits.append(kw["position"])
        return apply(**kw)

    monkeypatch.setattr(world.store.chain, "apply_registrations", counting)
    world.drain()
    head = world.w3.eth.block_number
    assert len(commits) >= 3 and commits[-1] == head and commits == sorted(commits)
    assert [world.asset(e.uri.text)["chain_status"] for e in entries] == ["verified"] * 5
    ((pos, bhash),) = world.rows("SELECT position, block_hash FROM chain_cursors")
    assert pos == head and bytes(bhash) == bytes(world.w3.eth.get_block(head)["hash"])


def test_two_versions_registered_the_verified_one_counts(world: ChainWorld) -> None:
    a, b = world.accounts[1], world.accounts[2]
    lg, v1 = world.put("two", payout_evm=a)
    body = world.put_body("two, v2")
    body["payout"] = {"evm": a}
    v2 = lg.next(key="two", body=body)
    world.store.ingest([v1, v2])
    register(world.reg, v2, b)  # b registers v2 first (which names a): mismatch
    world.drain()
    assert world.asset(v1.uri.text)["chain_status"] == "mismatch"
    register(world.reg, v1, a)  # then a registers v1: verified, and it is the one that counts
    world.drain()
    got = world.asset(v1.uri.text)
    on = got["onchain"][world.source().name]
    assert got["chain_status"] == "verified" and on["entry_seq"] == 1 and on["owner"] == a
    regs = world.store.chain.registrations(uri=v1.uri.text)
    assert [(r["entry_seq"], r["status"]) for r in regs] == [(2, "mismatch"), (1, "verified")]
