"""The bridge's attestation publisher with real libp2p nodes and a real PostgreSQL.

Queued outbox rows become ``attest`` entries of the bridge's log, woken by the
outbox's NOTIFY (the poll interval here is an hour, so nothing else could wake it);
nodes receive them over gossip and sync, store them like any entry, and show them
only for the keys they trust.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import psycopg.types.json
import trio

from bridge.testing import spawn_bridge
from indexer.db import libpq_url, migrate
from indexer.embedded import EmbeddedPostgres
from indexer.store.outbox import queue_attestation
from node.store import Store as NodeStore
from node.testing import spawn_network
from protocol import AssetUri, Entry, Signer

from .conftest import wait_for

DEADLINE = 60.0  # an upper bound to wait, never a performance target
CHAIN = "eip155:31337"


def queue(url: str, put: Entry, status: str, onchain_id: str = "3") -> None:
    queue_for(url, put.uri, put.hash.raw, status, onchain_id)


def queue_for(url: str, uri: AssetUri, subject: bytes, status: str, onchain_id: str = "3") -> None:
    with psycopg.connect(libpq_url(url)) as conn, conn.cursor() as cur:
        queue_attestation(
            cur, uri=uri, subject=subject, status=status, chain=CHAIN, onchain_id=onchain_id,
            tx="0x" + "ef" * 32,
        )  # fmt: skip


def verification(url: str, uri: AssetUri) -> dict[str, Any]:
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SELECT verification FROM assets WHERE uri = %s", (uri.text,)).fetchone()
    return dict(row[0]) if row else {}


def bridge_seq(store: NodeStore, bridge: Signer) -> int:
    head = store.head(bridge.public)
    return head.seq if head else 0


async def test_queued_attestations_reach_the_nodes_and_count_only_where_trusted(
    db_url: str, put_body: Callable[..., dict[str, Any]]
) -> None:
    async with (
        spawn_network(2) as net,
        spawn_bridge(db_url, net=net, attest_poll_interval=3600.0) as bridge,
    ):
        me = bridge.keys.author
        creator, other = net.nodes
        put = await creator.publish(kind="asset.put", key="song", body=put_body("Song"))
        await wait_for(
            lambda: verification(db_url, put.uri) == {} and _held(db_url, put),
            timeout=DEADLINE,
            what="the asset in PostgreSQL",
        )
        await net.stop(1)  # offline: it misses the gossip of what follows

        await trio.to_thread.run_sync(queue, db_url, put, "verified")
        await wait_for(
            lambda: bridge_seq(creator.store, me) == 1,  # type: ignore[arg-type]
            timeout=DEADLINE,
            what="the attest entry on the creator's node (NOTIFY woke the publisher)",
        )
        store: NodeStore = creator.store  # type: ignore[assignment]
        (shown,) = store.verifications([put.uri], trusted={me.public}).values()
        assert (shown.status, shown.chain, shown.onchain_id, shown.by) == ("verified", CHAIN, "3", me.public)
        assert shown.subject == put.hash
        assert store.verifications([put.uri], trusted={Signer(secrets.token_bytes(32)).public}) == {}
        assert store.verifications([put.uri], trusted=()) == {}
        (item,) = store.library(local_only=True, trusted={me.public})
        assert item["verification"]["status"] == "verified" and item["verification"]["onchain_id"] == "3"
        assert store.library(local_only=True)[0]["verification"] is None
        v = verification(db_url, put.uri)
        assert (v["status"], v["by"], v["onchain_id"]) == ("verified", me.public.did, "3")

        await trio.to_thread.run_sync(queue, db_url, put, "revoked")
        await wait_for(
            lambda: bridge_seq(store, me) == 2, timeout=DEADLINE, what="the revocation on the creator's node"
        )
        assert store.verifications([put.uri], trusted={me.public}) == {}, "a revoked attestation undoes it"
        assert verification(db_url, put.uri)["status"] == "revoked"
        assert bridge.publisher.published == 2

        # The node that was offline gets the bridge's entries from the bridge itself, over sync.
        await net.stop(0)
        restarted = await net.start(1)
        await restarted.p2p.connect(bridge.addrs()[0])
        late: NodeStore = other.store  # type: ignore[assignment]
        await wait_for(
            lambda: bridge_seq(late, me) == 2, timeout=DEADLINE, what="the bridge's log served over sync"
        )
        assert late.range_raw(me.public.raw, 1, 2) == bridge.store.range_raw(me.public.raw, 1, 2)


def _held(url: str, put: Entry) -> bool:
    with psycopg.connect(libpq_url(url)) as conn:
        return conn.execute("SELECT 1 FROM entries WHERE hash = %s", (put.hash.raw,)).fetchone() is not None


async def test_the_poll_publishes_a_row_no_notify_announced(db_url: str) -> None:
    async with spawn_bridge(db_url, attest_poll_interval=0.2) as bridge:
        uri = AssetUri(Signer(secrets.token_bytes(32)).public, "quiet")
        with psycopg.connect(libpq_url(db_url)) as conn:  # a row written without queue_attestation's NOTIFY
            conn.execute(
                "INSERT INTO attest_outbox (uri, subject, status, body) VALUES (%s, %s, 'verified', %s)",
                (
                    uri.text,
                    b"\x01" * 32,
                    psycopg.types.json.Jsonb({"chain": CHAIN, "onchain_id": "1", "tx": "0x1"}),
                ),
            )
        await wait_for(lambda: bridge.publisher.published == 1, timeout=DEADLINE, what="the poll's pass")
        assert bridge.store.outbox_depth() == 0


async def test_the_publisher_rides_out_a_postgresql_restart(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    url = await trio.to_thread.run_sync(pg.start)
    try:
        await trio.to_thread.run_sync(migrate, url)
        async with spawn_bridge(url, attest_poll_interval=3600.0) as bridge:
            uri = AssetUri(Signer(secrets.token_bytes(32)).public, "song")
            await trio.to_thread.run_sync(pg.stop)
            await trio.sleep(1.0)  # the publisher's LISTEN connection meets the dead database
            await trio.to_thread.run_sync(pg.start)
            await trio.to_thread.run_sync(queue_for, url, uri, b"\x02" * 32, "verified")
            await wait_for(
                lambda: bridge.publisher.published == 1, timeout=DEADLINE, what="published after the restart"
            )
            assert bridge.store.head(bridge.keys.author.public).seq == 1  # type: ignore[union-attr]
    finally:
        await trio.to_thread.run_sync(pg.destroy)
