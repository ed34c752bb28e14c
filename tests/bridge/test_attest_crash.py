"""A real ``empressa bridge run`` SIGKILLed while it publishes a large outbox, then restarted.

Every row must be published exactly once: the bridge's log holds one ``attest``
entry per row, contiguous from seq 1, each row marked with its entry's hash, and
nothing twice, whatever batch the kill interrupted.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
from pathlib import Path

import psycopg
import trio

from indexer.db import libpq_url
from indexer.store.outbox import queue_attestation
from node.testing import spawn_network
from protocol import AssetUri, Signer, parse_and_verify, parse_asset_uri, parse_did

from .conftest import wait_for
from .test_recovery import start_bridge_process, wait_listening

DEADLINE = 120.0  # an upper bound to wait, never a performance target
ROWS = 4000
BATCH = 50  # small batches: many transactions, so the kill lands between or inside one


def queue_many(url: str, n: int) -> list[tuple[str, bytes, str]]:
    """Queue ``n`` verified attestations in one transaction; returns (uri, subject, onchain id) each."""
    creator = Signer(secrets.token_bytes(32)).public
    rows = [(AssetUri(creator, f"k{i}"), secrets.token_bytes(32), str(i + 1)) for i in range(n)]
    with psycopg.connect(libpq_url(url)) as conn, conn.cursor() as cur:
        for uri, subject, onchain_id in rows:
            queue_attestation(
                cur, uri=uri, subject=subject, status="verified", chain="eip155:31337",
                onchain_id=onchain_id, tx="0x" + "aa" * 32,
            )  # fmt: skip
    return [(u.text, s, o) for u, s, o in rows]


def published(url: str) -> int:
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SELECT count(*) FROM attest_outbox WHERE published_hash IS NOT NULL").fetchone()
    return int(row[0]) if row else 0


async def test_sigkill_while_publishing_publishes_every_row_exactly_once(db_url: str, tmp_path: Path) -> None:
    data_dir, log = tmp_path / "bridge", tmp_path / "bridge.log"
    kek = secrets.token_hex(32)
    queued = await trio.to_thread.run_sync(queue_many, db_url, ROWS)
    extra = {"EMPRESSA_BRIDGE_ATTEST_BATCH": str(BATCH)}
    async with spawn_network(1) as net:
        boot = net.nodes[0].addrs()[0]
        proc = start_bridge_process(data_dir, db_url=db_url, bootstrap=boot, kek=kek, log=log, extra=extra)
        try:
            info = await wait_listening(proc, data_dir, log)
            await wait_for(
                lambda: published(db_url) >= ROWS // 10,
                timeout=DEADLINE,
                what=f"the bridge publishes part of the outbox\n{log}",
                poll=0.02,
            )
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            at_kill = published(db_url)
            assert at_kill < ROWS, "the bridge was not killed while publishing"

            proc = start_bridge_process(
                data_dir, db_url=db_url, bootstrap=boot, kek=kek, log=log, extra=extra
            )
            await wait_listening(proc, data_dir, log)
            await wait_for(
                lambda: published(db_url) == ROWS, timeout=DEADLINE, what="every row after the restart"
            )
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    bridge = parse_did(str(info["did"]))
    with psycopg.connect(libpq_url(db_url)) as conn:
        entries = [
            parse_and_verify(bytes(raw), now_ms=None)
            for (raw,) in conn.execute(
                "SELECT raw FROM entries WHERE author = %s ORDER BY seq", (bridge.raw,)
            )
        ]
        rows = conn.execute(
            "SELECT uri, subject, body, published_hash FROM attest_outbox ORDER BY id"
        ).fetchall()
        (attested,) = conn.execute("SELECT count(*) FROM activity WHERE kind = 'attested'").fetchone()  # type: ignore[misc]
        (head,) = conn.execute("SELECT head_seq FROM authors WHERE author = %s", (bridge.raw,)).fetchone()  # type: ignore[misc]
    assert [e.seq for e in entries] == list(range(1, ROWS + 1)), "the log is contiguous, one entry per row"
    assert head == ROWS and attested == ROWS
    assert len({(e.body["subject"], e.body["onchain_id"]) for e in entries}) == ROWS, "no attest entry twice"
    by_hash = {e.hash.raw: e for e in entries}
    assert len({bytes(r[3]) for r in rows}) == ROWS
    for (uri, subject, onchain_id), (row_uri, row_subject, body, h) in zip(queued, rows, strict=True):
        e = by_hash[bytes(h)]  # each row's hash names its own entry
        assert (row_uri, bytes(row_subject), body["onchain_id"]) == (uri, subject, onchain_id)
        assert (e.body["subject"], e.body["onchain_id"]) == (subject, onchain_id)
        assert e.key == parse_asset_uri(uri).id_b32
    # Rows were taken in id order: the log's order is the outbox's order.
    assert [e.body["onchain_id"] for e in entries] == [o for _, _, o in queued]
