"""Attestations in the indexer's store, against a real PostgreSQL.

The outbox published as ``attest`` entries of the bridge's log (each row once, in one
transaction with its entry), and ``assets.verification`` set from trusted bridges' entries only.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from indexer.store import Store
from indexer.store.outbox import queue_attestation
from protocol import AssetUri, Signer, parse_and_verify
from tests.node.conftest import LogBuilder

CHAIN = "eip155:31337"


def q(store: Store, sql: str, **params: Any) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def queue(store: Store, items: list[tuple[AssetUri, bytes, str, str]]) -> None:
    """Queue (uri, subject, status, onchain id) rows in one transaction, as a chain source does."""
    with store.engine.begin() as conn:
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        for uri, subject, status, onchain_id in items:
            queue_attestation(
                cur,
                uri=uri,
                subject=subject,
                status=status,
                chain=CHAIN,
                onchain_id=onchain_id,
                tx="0x" + "ab" * 32,
            )


def own_log(store: Store, signer: Signer) -> list[Any]:
    rows = q(store, "SELECT seq, raw FROM entries WHERE author = :a ORDER BY seq", a=signer.public.raw)
    return [parse_and_verify(bytes(r.raw), now_ms=None) for r in rows]


def outbox(store: Store) -> list[Any]:
    return q(store, "SELECT id, published_hash, published_at, data FROM attest_outbox ORDER BY id")


def verification(store: Store, uri: AssetUri) -> dict[str, Any]:
    rows = q(store, "SELECT verification FROM assets WHERE uri = :u", u=uri.text)
    assert rows, f"no asset {uri}"
    return dict(rows[0][0])


@pytest.fixture
def bridge() -> Signer:
    return Signer(secrets.token_bytes(32))


@pytest.fixture
def trusting(db_url: str, bridge: Signer) -> Any:
    s = Store.connect(db_url, trusted_attesters=[bridge.public])
    yield s
    s.close()


def test_outbox_rows_become_a_contiguous_run_of_attest_entries_each_once(
    trusting: Store, bridge: Signer, new_log: Callable[..., LogBuilder]
) -> None:
    creator = new_log()
    puts = [creator.next(key=f"k{i}") for i in range(7)]
    trusting.ingest(creator.entries)
    trusting.append_local(bridge, kind="attest", key=puts[0].uri.id_b32, body=_body(puts[0], "verified", "0"))
    queue(trusting, [(p.uri, p.hash.raw, "verified", str(i + 1)) for i, p in enumerate(puts)])

    first = trusting.publish_attestations(bridge, limit=4)
    second = trusting.publish_attestations(bridge, limit=4)
    assert [e.seq for e in first.entries] == [2, 3, 4, 5]
    assert [e.seq for e in second.entries] == [6, 7, 8]
    assert trusting.publish_attestations(bridge, limit=4).entries == [], "publishing again does nothing"

    log = own_log(trusting, bridge)
    assert [e.seq for e in log] == list(range(1, 9))
    assert all(e.prev == p.hash for p, e in itertools.pairwise(log)), "chained on the head"
    rows = outbox(trusting)
    assert [bytes(r.published_hash) for r in rows] == [e.hash.raw for e in log[1:]]
    assert all(r.published_at is not None for r in rows)
    for put, e in zip(puts, log[1:], strict=True):
        assert e.kind == "attest" and e.key == put.uri.id_b32
        assert e.body["subject"] == put.hash.raw
        assert e.body["asset"] == {"author": put.author.raw, "key": put.key}
        assert (e.body["status"], e.body["chain"], e.body["tx"]) == ("verified", CHAIN, "0x" + "ab" * 32)
    assert [e.body["onchain_id"] for e in log[1:]] == [str(i + 1) for i in range(7)]
    assert trusting.outbox_depth() == 0
    (head,) = q(trusting, "SELECT head_seq, head_hash FROM authors WHERE author = :a", a=bridge.public.raw)
    assert (head.head_seq, bytes(head.head_hash)) == (8, log[-1].hash.raw)


def test_a_failure_inside_the_transaction_leaves_nothing_half_done(
    trusting: Store, bridge: Signer, new_log: Callable[..., LogBuilder]
) -> None:
    creator = new_log()
    puts = [creator.next(key=f"k{i}") for i in range(3)]
    trusting.ingest(creator.entries)
    queue(trusting, [(p.uri, p.hash.raw, "verified", str(i)) for i, p in enumerate(puts)])
    activity = q(trusting, "SELECT count(*) FROM activity")[0][0]
    # PostgreSQL itself refuses the last step (marking the third row published).
    with trusting.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN IF NEW.published_hash IS NOT NULL AND NEW.uri = '"
                + puts[2].uri.text
                + "' THEN RAISE EXCEPTION 'refused by test'; END IF; RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER refuse BEFORE UPDATE ON attest_outbox FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        )
    with pytest.raises(Exception, match="refused by test"):
        trusting.publish_attestations(bridge, limit=10)
    assert own_log(trusting, bridge) == [], "no attest entry without its row marked"
    assert q(trusting, "SELECT count(*) FROM authors WHERE author = :a", a=bridge.public.raw)[0][0] == 0
    assert all(r.published_hash is None for r in outbox(trusting)), "no row marked without its entry"
    assert q(trusting, "SELECT count(*) FROM activity")[0][0] == activity
    assert all(verification(trusting, p.uri) == {} for p in puts)

    with trusting.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER refuse ON attest_outbox"))
    assert [e.seq for e in trusting.publish_attestations(bridge, limit=10).entries] == [1, 2, 3]
    assert all(verification(trusting, p.uri)["status"] == "verified" for p in puts)


def test_a_trusted_attestation_verifies_the_asset_and_a_revocation_supersedes_it(
    trusting: Store, bridge: Signer, new_log: Callable[..., LogBuilder]
) -> None:
    creator = new_log()
    put = creator.next(key="song")
    trusting.ingest(creator.entries)
    (seq0,) = q(trusting, "SELECT change_seq FROM assets WHERE uri = :u", u=put.uri.text)[0]

    queue(trusting, [(put.uri, put.hash.raw, "verified", "3")])
    (att,) = trusting.publish_attestations(bridge, limit=10).entries
    assert verification(trusting, put.uri) == {
        "status": "verified",
        "by": bridge.public.did,
        "chain": CHAIN,
        "onchain_id": "3",
        "tx": "0x" + "ab" * 32,
        "subject": put.hash.cid,
        "attestation": att.hash.cid,
    }
    (seq1,) = q(trusting, "SELECT change_seq FROM assets WHERE uri = :u", u=put.uri.text)[0]
    assert seq1 > seq0, "a fresh change_seq, so the search feeder re-reads the row"
    kinds = [r[0] for r in q(trusting, "SELECT kind FROM activity ORDER BY id")]
    assert kinds == ["published", "attested"]

    queue(trusting, [(put.uri, put.hash.raw, "revoked", "3")])
    (rev,) = trusting.publish_attestations(bridge, limit=10).entries
    v = verification(trusting, put.uri)
    assert (v["status"], v["attestation"]) == ("revoked", rev.hash.cid)

    # An old attestation arriving again (a replayed sync) changes nothing: the later word stands.
    assert trusting.ingest([att]).duplicates == 1
    assert verification(trusting, put.uri)["status"] == "revoked"


def test_an_untrusted_bridge_is_shown_as_activity_but_changes_no_asset(
    trusting: Store, new_log: Callable[..., LogBuilder]
) -> None:
    stranger = Signer(secrets.token_bytes(32))
    creator = new_log()
    put = creator.next(key="song")
    trusting.ingest(creator.entries)
    (before,) = q(trusting, "SELECT change_seq FROM assets WHERE uri = :u", u=put.uri.text)[0]
    queue(trusting, [(put.uri, put.hash.raw, "verified", "9")])
    (att,) = trusting.publish_attestations(stranger, limit=10).entries
    assert own_log(trusting, stranger) == [att], "its entry is stored"
    assert verification(trusting, put.uri) == {}
    assert q(trusting, "SELECT change_seq FROM assets WHERE uri = :u", u=put.uri.text)[0][0] == before
    (row,) = q(trusting, "SELECT kind, did, data FROM activity WHERE kind = 'attested'")
    assert row.did == stranger.public.did and row.data["status"] == "verified"


def test_an_attestation_that_arrives_before_its_asset_is_applied_when_the_asset_arrives(
    trusting: Store, bridge: Signer, new_log: Callable[..., LogBuilder]
) -> None:
    creator = new_log()
    put = creator.next(key="early")
    creator.next(key="other")
    att = trusting.append_local(bridge, kind="attest", key=put.uri.id_b32, body=_body(put, "verified", "5"))
    assert q(trusting, "SELECT count(*) FROM assets")[0][0] == 0
    trusting.ingest(creator.entries)
    v = verification(trusting, put.uri)
    assert (v["status"], v["onchain_id"], v["attestation"]) == ("verified", "5", att.hash.cid)
    assert verification(trusting, creator.entries[1].uri) == {}, "only the attested asset"


def test_bad_attestations_are_refused_when_queued_and_a_bad_row_does_not_block_the_queue(
    trusting: Store, bridge: Signer, new_log: Callable[..., LogBuilder]
) -> None:
    creator = new_log()
    put = creator.next(key="song")
    trusting.ingest(creator.entries)
    for kwargs, why in (
        ({"status": "maybe"}, "status"),
        ({"subject": b"short"}, "32-byte"),
        ({"chain": "not a chain"}, r"body\.chain"),
        ({"tx": "x" * 200}, r"body\.tx"),
    ):
        args: dict[str, Any] = {
            "uri": put.uri, "subject": put.hash.raw, "status": "verified", "chain": CHAIN,
            "onchain_id": "1", "tx": "0x01", **kwargs,
        }  # fmt: skip
        with trusting.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with pytest.raises(ValueError, match=why):
                queue_attestation(cur, **args)
    assert outbox(trusting) == []
    # A row written by hand that no entry can be made of is set aside with its reason.
    with trusting.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO attest_outbox (uri, subject, status, body) VALUES "
                "('empressa://nobody/x', :s, 'verified', '{}'::jsonb)"
            ),
            {"s": put.hash.raw},
        )
    queue(trusting, [(put.uri, put.hash.raw, "verified", "1")])
    done = trusting.publish_attestations(bridge, limit=10)
    assert [e.seq for e in done.entries] == [1] and len(done.set_aside) == 1
    bad, good = outbox(trusting)
    assert bad.published_hash is None and "cannot be published" in bad.data["error"]
    assert bytes(good.published_hash) == done.entries[0].hash.raw
    assert trusting.outbox_depth() == 0
    assert trusting.publish_attestations(bridge, limit=10).entries == []


def _body(put: Any, status: str, onchain_id: str) -> dict[str, Any]:
    from protocol import attest_body

    return attest_body(
        put.uri, subject=put.hash.raw, status=status, chain=CHAIN, onchain_id=onchain_id, tx="0x" + "cd" * 32
    )


def test_many_attestations_queue_in_one_call_and_one_bad_item_queues_none(
    trusting: Store, bridge: Signer, new_log: Callable[..., LogBuilder]
) -> None:
    from indexer.store.outbox import Queued, queue_attestations

    creator = new_log()
    puts = [creator.next(key=f"k{i}") for i in range(5)]
    trusting.ingest(creator.entries)
    items = [Queued(p.uri, p.hash.raw, "verified", CHAIN, str(i), "0x01") for i, p in enumerate(puts)]
    with trusting.engine.begin() as conn:
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with pytest.raises(ValueError, match=r"body\.onchain_id"):
            queue_attestations(
                cur, [*items, Queued(puts[0].uri, puts[0].hash.raw, "verified", CHAIN, "", "0x01")]
            )
        assert outbox(trusting) == []
        queue_attestations(cur, items)
    assert [e.body["onchain_id"] for e in trusting.publish_attestations(bridge, limit=10).entries] == [
        str(i) for i in range(5)
    ]
