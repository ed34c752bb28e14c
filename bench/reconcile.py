"""Reconciler throughput: ``AssetRegistered`` logs on a real anvil chain reconciled into PostgreSQL.

    .venv/bin/python bench/reconcile.py [--registrations 10000] [--per-block 100] [--max-range 2000]

Prints figures only; it never passes or fails. All in one run, on the same chain and database:

set-up  an embedded PostgreSQL and an anvil process (automine off); N signed
        ``asset.put`` entries indexed first through ``Store.ingest``, each naming
        the anvil development account that then registers it (``payout.evm``);
        N ``register(entry hash)`` transactions sent in JSON-RPC batches, a block
        mined with ``evm_mine`` every ``--per-block``;
(a) raw fetch-and-decode: ``eth_getLogs`` over the same blocks in ranges of
    ``--max-range`` through web3 (the source's own client) and
    :func:`indexer.chains.contract.decode_registered` on every log: the chain
    side's ceiling;
(b) raw PostgreSQL write: the same rows the reconciler writes (the
    registrations, two activity rows and one outbox row each, one asset update
    each) with one statement per table (``unnest``), in transactions of
    ``--apply-batch`` rows (as the source commits), rolled back: the database
    side's ceiling;
(c) end to end: an :class:`indexer.chains.evm.EvmSource` polled from an empty
    cursor until it has caught up (fetch, decode, store, match with the owner
    check, activity, outbox, asset rows): events/s, and the time until every
    asset is ``verified``.

Target (issue 9): (c) at least 5,000 events/s, and at least 50% of (a).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[0] = str(Path(__file__).resolve().parents[1])  # bench/protocol.py must not shadow ``protocol``

import httpx  # noqa: E402
from eth_utils import keccak  # noqa: E402

from indexer.chains import contract, evm  # noqa: E402
from indexer.chains.evm import EvmSource, connect, deploy_registry  # noqa: E402
from indexer.db import libpq_url  # noqa: E402
from indexer.store import Store  # noqa: E402
from indexer.testing import PostgresForTests  # noqa: E402
from protocol import Entry, Signer, sign_entry  # noqa: E402
from stack.anvil import anvil_argv, find_anvil  # noqa: E402

TARGET = 5_000.0
TARGET_SHARE = 0.5
REGISTER = keccak(text="register(bytes32)")[:4]
AUTHORS = 100


def body(i: int, payout: str) -> dict[str, Any]:
    return {
        "title": f"Registered take {i}",
        "description": "A loop registered on chain for the reconcile benchmark.",
        "tags": ["bench"],
        "media": {
            "cid": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
            "mime": "audio/wav",
            "size": 1_000_000 + i,
        },
        "license": {"type": "commercial", "price": {"amount": "12.50", "currency": "USD"}},
        "payout": {"evm": payout},
    }


def rpc(url: str, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    """One JSON-RPC batch; the results in order (raises on any error)."""
    payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
    answers = sorted(httpx.post(url, json=payload, timeout=120).json(), key=lambda a: a["id"])
    for a in answers:
        if "error" in a:
            raise RuntimeError(f"{calls[a['id']][0]}: {a['error']}")
    return [a["result"] for a in answers]


def start_anvil() -> tuple[subprocess.Popen[bytes], str]:
    binary = find_anvil()
    if binary is None:
        sys.exit("anvil is not installed: run ./dev test once (it installs it from npm into .tools/npm)")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(anvil_argv(binary, port=port), stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            rpc(url, [("eth_chainId", [])])
            return proc, url
        except httpx.TransportError:
            if time.monotonic() > deadline:
                proc.kill()
                sys.exit("anvil did not start")
            time.sleep(0.05)


def sign_entries(n: int, accounts: list[str]) -> list[Entry]:
    now = time.time_ns() // 1_000_000
    signers = [Signer(secrets.token_bytes(32)) for _ in range(AUTHORS)]
    heads: list[Entry | None] = [None] * AUTHORS
    out: list[Entry] = []
    for i in range(n):
        a = i % AUTHORS
        prev = heads[a]
        e = sign_entry(
            signers[a],
            seq=(prev.seq + 1) if prev else 1,
            prev=prev.hash if prev else None,
            ts=now,
            kind="asset.put",
            key=f"take-{i}",
            body=body(i, accounts[i % len(accounts)].lower()),
        )
        heads[a] = e
        out.append(e)
    return out  # signing order: entry i names accounts[i % 10], each author's seqs ascending


def register_all(url: str, registry: str, entries: list[Entry], accounts: list[str], per_block: int) -> int:
    """Send every register() in batches, mining a block per batch; returns the last block."""
    for lo in range(0, len(entries), per_block):
        calls: list[tuple[str, list[Any]]] = []
        for i, e in enumerate(entries[lo : lo + per_block], start=lo):
            tx = {
                "from": accounts[i % len(accounts)],
                "to": registry,
                "gas": hex(150_000),
                "data": "0x" + (REGISTER + e.hash.raw).hex(),
            }
            calls.append(("eth_sendTransaction", [tx]))
        rpc(url, calls)
        rpc(url, [("evm_mine", [])])
    last = int(rpc(url, [("eth_blockNumber", [])])[0], 16)
    return last


def raw_fetch_and_decode(url: str, registry: str, first: int, last: int, max_range: int) -> tuple[float, int]:
    """eth_getLogs through web3's HTTP provider as the source asks it (raw JSON answer), then slicing."""
    w3 = connect(url)
    t = time.perf_counter()
    n = 0
    for lo in range(first, last + 1, max_range):
        hi = min(last, lo + max_range - 1)
        q = {
            "fromBlock": hex(lo),
            "toBlock": hex(hi),
            "address": registry,
            "topics": [contract.EVENT_TOPIC_HEX],
        }
        for lg in w3.provider.make_request("eth_getLogs", [q])["result"]:
            contract.decode_registered(lg["topics"], lg["data"])
            n += 1
    return time.perf_counter() - t, n


def raw_write(
    db_url: str, entries: list[Entry], owners: list[bytes], batch: int
) -> tuple[float, dict[str, float]]:
    """The same rows, one statement per table per ``batch`` rows (as the source commits them), each
    batch a transaction rolled back; seconds in all and by table."""
    total = 0.0
    parts: dict[str, float] = {}
    for lo in range(0, len(entries), batch):
        secs, p = _raw_write(db_url, entries[lo : lo + batch], owners[lo : lo + batch])
        total += secs
        for k, v in p.items():
            parts[k] = parts.get(k, 0.0) + v
    return total, parts


def _raw_write(db_url: str, entries: list[Entry], owners: list[bytes]) -> tuple[float, dict[str, float]]:
    import psycopg

    n = len(entries)
    txs = [secrets.token_bytes(32) for _ in range(n)]
    data = [
        json.dumps({"chain": "eip155:31337", "asset_id": str(i + 1), "tx": "0x" + txs[i].hex()})
        for i in range(n)
    ]
    uris = [e.uri.text for e in entries]
    with psycopg.connect(libpq_url(db_url)) as conn:
        t = time.perf_counter()
        parts: dict[str, float] = {}
        cur = conn.cursor()
        cur.execute(
            "INSERT INTO registrations (source, tx_hash, log_index, block_number, block_hash, contract, asset_id, "
            "record_hash, owner, uri, entry_seq, status) SELECT 'bench', t, 0, 1, t, t, a, r, o, u, 1, 'verified' "
            "FROM unnest(%b::bytea[], %b::numeric[], %b::bytea[], %b::bytea[], %b::text[]) AS x(t, a, r, o, u)",
            (txs, list(range(1, n + 1)), [e.hash.raw for e in entries], owners, uris),
        )
        parts["registrations"] = time.perf_counter() - t - sum(parts.values())
        cur.execute(
            "INSERT INTO activity (kind, uri, did, entry_hash, seq, data) SELECT k, u, 'did', h, 1, d::jsonb "
            "FROM unnest(%b::text[], %b::text[], %b::bytea[], %b::text[]) AS x(k, u, h, d)",
            (
                ["registered", "verified"] * n,
                [u for u in uris for _ in (0, 1)],
                [e.hash.raw for e in entries for _ in (0, 1)],
                [d for d in data for _ in (0, 1)],
            ),
        )
        parts["activity"] = time.perf_counter() - t - sum(parts.values())
        cur.execute(
            "INSERT INTO attest_outbox (uri, subject, status, body) SELECT u, s, 'verified', d::jsonb "
            "FROM unnest(%b::text[], %b::bytea[], %b::text[]) AS x(u, s, d)",
            (uris, [e.hash.raw for e in entries], data),
        )
        parts["attest_outbox"] = time.perf_counter() - t - sum(parts.values())
        cur.execute(
            "UPDATE assets a SET onchain = x.d::jsonb, chain_status = 'verified', "
            "change_seq = nextval('asset_change_seq') FROM unnest(%b::text[], %b::text[]) AS x(u, d) "
            "WHERE a.uri = x.u",
            (uris, data),
        )
        parts["assets"] = time.perf_counter() - t - sum(parts.values())
        elapsed = time.perf_counter() - t
        conn.rollback()
    return elapsed, parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--registrations", type=int, default=10_000)
    ap.add_argument("--per-block", type=int, default=100)
    ap.add_argument("--max-range", type=int, default=2000)
    ap.add_argument("--apply-batch", type=int, default=evm.APPLY_BATCH, help="logs per transaction")
    args = ap.parse_args()
    n = args.registrations
    evm.APPLY_BATCH = args.apply_batch
    print(f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
        server = PostgresForTests.start(Path(tmp) / "pg")
        anvil, url = start_anvil()
        try:
            db_url = server.fresh_database()
            store = Store.connect(db_url)
            accounts = rpc(url, [("eth_accounts", [])])[0]
            dep = deploy_registry(url)
            rpc(url, [("evm_setAutomine", [False])])
            t = time.perf_counter()
            entries = sign_entries(n, accounts)
            for lo in range(0, n, 1000):
                store.ingest(entries[lo : lo + 1000])
            print(f"signed and indexed {n} asset.put entries in {time.perf_counter() - t:.1f} s")
            t = time.perf_counter()
            last = register_all(url, dep.address, entries, accounts, args.per_block)
            print(
                f"registered {n} on anvil in {time.perf_counter() - t:.1f} s "
                f"(blocks {dep.block + 1}..{last}, {args.per_block} a block)"
            )

            secs, got = raw_fetch_and_decode(url, dep.address, dep.block, last, args.max_range)
            raw_rate = got / secs
            print(
                f"(a) raw fetch-and-decode (eth_getLogs + slicing): {raw_rate:10,.0f} events/s ({got} logs)"
            )
            owners = [bytes.fromhex(accounts[i % len(accounts)][2:]) for i in range(n)]
            wsecs, parts = raw_write(db_url, entries, owners, args.apply_batch)
            print(f"(b) raw PostgreSQL write (same rows, unnest):      {n / wsecs:10,.0f} events/s")
            print("    by table: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items()))

            src = EvmSource(
                store=store,
                rpc_url=url,
                registry=dep.address,
                chain_id=dep.chain_id,
                confirmations=0,
                start_block=dep.block,
                max_range=args.max_range,
            )
            src.check()
            t = time.perf_counter()
            applied = 0
            while True:
                r = src.poll()
                applied += r.applied
                if not r.more:
                    break
            e2e = time.perf_counter() - t
            with store.engine.connect() as conn:
                cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                cur.execute("SELECT count(*) FROM assets WHERE chain_status = 'verified'")
                verified = cur.fetchone()[0]
                cur.execute("SELECT count(*) FROM attest_outbox")
                outbox = cur.fetchone()[0]
            rate = n / e2e
            print(
                f"(c) end to end (EvmSource.poll until caught up): {rate:10,.0f} events/s; "
                f"all {verified} verified after {e2e:.2f} s ({outbox} attestations queued)"
            )
            print(
                f"    target: >= {TARGET:,.0f} events/s and >= {TARGET_SHARE:.0%} of (a) = {raw_rate * TARGET_SHARE:,.0f}"
            )
            print(f"    (c)/(a) = {rate / raw_rate:.0%}; (c)/(b) = {rate / (n / wsecs):.0%}")
            store.close()
        finally:
            anvil.kill()
            anvil.wait()
            server.stop()


if __name__ == "__main__":
    main()
