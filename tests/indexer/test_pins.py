"""The pin queue on a real PostgreSQL: what the reconcile step derives from the assets, and the claims.

No IPFS here (see test_pin_worker.py for the worker against a real js-ipfs): these pin
the queue's rules, which the worker only executes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from indexer.store import Store
from indexer.store.pins import Pins, backoff_delay
from protocol.ids import parse_asset_uri
from tests.node.conftest import LogBuilder

A = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
B = "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
C = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


def media(cid: str, size: int = 1000, mime: str = "audio/wav") -> dict[str, Any]:
    return {"cid": cid, "mime": mime, "size": size}


def rows(store: Store) -> dict[str, dict[str, Any]]:
    with store.engine.connect() as conn:
        return {r.cid: dict(r._mapping) for r in conn.execute(text("SELECT * FROM pins ORDER BY cid")).all()}


def catch_up(pins: Pins, grace_s: float = 3600.0) -> None:
    while pins.reconcile(grace_s=grace_s):
        pass


def test_reconcile_queues_each_cid_that_current_assets_name_once(
    store: Store, new_log: Callable[..., LogBuilder], put_body: Callable[..., dict[str, Any]]
) -> None:
    log = new_log()
    log.next(
        key="song",
        body=put_body("Song", media=media(A), preview=media(B), artwork=media(C, mime="image/png")),
    )
    log.next(key="cover-reuse", body=put_body("Same art", media=media(C, mime="image/png")))
    store.ingest(log.entries, source="test")
    pins = Pins(store.engine)
    catch_up(pins)
    got = rows(store)
    assert set(got) == {A, B, C}
    assert all(r["status"] == "pending" and r["unwanted_since"] is None for r in got.values())
    catch_up(pins)  # running again changes nothing
    assert rows(store) == got


def test_edit_delete_and_moderation_make_cids_unwanted_but_a_shared_one_stays(
    store: Store, new_log: Callable[..., LogBuilder], put_body: Callable[..., dict[str, Any]]
) -> None:
    log = new_log()
    log.next(key="one", body=put_body("One", media=media(A), artwork=media(C, mime="image/png")))
    log.next(key="two", body=put_body("Two", media=media(B), artwork=media(C, mime="image/png")))
    store.ingest(log.entries, source="test")
    pins = Pins(store.engine)
    catch_up(pins)

    store.ingest(
        [log.next(key="one", body=put_body("One v2", media=media(B)))], source="test"
    )  # A, C dropped
    catch_up(pins)
    got = rows(store)
    assert got[A]["unwanted_since"] is not None
    assert got[C]["unwanted_since"] is None  # "two" still names it
    assert got[B]["unwanted_since"] is None

    store.ingest([log.next(kind="asset.delete", key="two")], source="test")
    catch_up(pins)
    got = rows(store)
    assert got[C]["unwanted_since"] is not None
    assert got[B]["unwanted_since"] is None  # "one" v2 names it

    uri = parse_asset_uri(f"empressa://{log.signer.public.did}/one")
    store.admin.add_label(uri=uri, label="spam", reason="test", created_by="test")
    catch_up(pins)
    assert rows(store)[B]["unwanted_since"] is not None  # a moderated asset is not pinned

    store.ingest([log.next(key="two", body=put_body("Two again", media=media(A)))], source="test")
    catch_up(pins)
    assert rows(store)[A]["unwanted_since"] is None  # named again: wanted again

    # Never pinned and unwanted past the grace period: the job goes.
    catch_up(pins, grace_s=0)
    assert set(rows(store)) == {A}


def test_claims_never_share_a_job_and_a_lost_lease_records_nothing(
    store: Store, new_log: Callable[..., LogBuilder], put_body: Callable[..., dict[str, Any]]
) -> None:
    log = new_log()
    for i, cid in enumerate((A, B, C)):
        log.next(key=f"k{i}", body=put_body(f"T{i}", media=media(cid)))
    store.ingest(log.entries, source="test")
    pins = Pins(store.engine)
    catch_up(pins)

    first = pins.claim(n=2, lease_s=3600, grace_s=3600)
    second = pins.claim(n=5, lease_s=3600, grace_s=3600)
    assert len(first) == 2 and len(second) == 1
    assert {j.cid for j in first} | {j.cid for j in second} == {A, B, C}
    assert pins.claim(n=5, lease_s=3600, grace_s=3600) == []  # all leased

    # A lease that ended (its worker died) is claimed again, with one more attempt counted...
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE pins SET lease_until = now() - interval '1 second' WHERE cid = :c"),
            {"c": second[0].cid},
        )
    again = pins.claim(n=5, lease_s=3600, grace_s=3600)
    assert [(j.cid, j.attempts) for j in again] == [(second[0].cid, 2)]
    # ...and the first claim's late outcome is not recorded: the job is done once, by the new claim.
    assert pins.pinned(second[0]) is False
    assert pins.pinned(again[0]) is True
    assert rows(store)[again[0].cid]["status"] == "pinned"


def test_failures_back_off_exponentially_then_fail(
    store: Store, new_log: Callable[..., LogBuilder], put_body: Callable[..., dict[str, Any]]
) -> None:
    log = new_log()
    log.next(key="k", body=put_body("T", media=media(A)))
    store.ingest(log.entries, source="test")
    pins = Pins(store.engine)
    catch_up(pins)
    for attempt in (1, 2, 3):
        with store.engine.begin() as conn:  # make it due now, whatever the backoff said
            conn.execute(text("UPDATE pins SET next_attempt_at = now()"))
        (job,) = pins.claim(n=1, lease_s=60, grace_s=60)
        assert job.attempts == attempt
        status = pins.failed(
            job, f"ipfs-unavailable: try {attempt}", max_attempts=3, backoff_s=2, backoff_max_s=5
        )
        with store.engine.connect() as conn:
            delay = conn.execute(
                text("SELECT extract(epoch FROM next_attempt_at - updated_at) FROM pins")
            ).scalar()
        assert float(delay) == backoff_delay(attempt, base=2, most=5) == min(5, 2 * 2 ** (attempt - 1))
        assert status == ("failed" if attempt == 3 else "pending")
    got = rows(store)[A]
    assert (got["status"], got["attempts"], got["failures"], got["last_error"]) == (
        "failed",
        3,
        3,
        "ipfs-unavailable: try 3",
    )
    assert pins.depth() == {
        "by_status": {"pending": 0, "pinned": 0, "failed": 1, "unpinning": 0},
        "failures": 3,
    }


def test_an_operator_retries_failed_pins_with_a_fresh_count(
    store: Store, new_log: Callable[..., LogBuilder], put_body: Callable[..., dict[str, Any]]
) -> None:
    log = new_log()
    log.next(key="a", body=put_body("A", media=media(A)))
    log.next(key="b", body=put_body("B", media=media(B)))
    store.ingest(log.entries, source="test")
    pins = Pins(store.engine)
    catch_up(pins)
    for job in pins.claim(n=2, lease_s=60, grace_s=60):
        assert (
            pins.failed(job, "ipfs-unavailable", max_attempts=1, backoff_s=60, backoff_max_s=60) == "failed"
        )
    assert pins.claim(n=2, lease_s=60, grace_s=60) == [], "a failed job is not claimed again by itself"
    assert pins.retry_failed([C, "nope"]) == [], "no such failed job: nothing changes"
    assert pins.retry_failed([A]) == [A]
    got = rows(store)
    assert (got[A]["status"], got[A]["attempts"], got[A]["failures"]) == ("pending", 0, 1)
    assert got[A]["last_error"] == "ipfs-unavailable", "the history stays"
    assert got[B]["status"] == "failed"
    (job,) = pins.claim(n=2, lease_s=60, grace_s=60)  # due at once, with the full count again
    assert (job.cid, job.attempts) == (A, 1)
    assert pins.pinned(job)
    assert pins.retry_failed() == [B]
    assert pins.retry_failed() == [], "nothing failed is left"
    assert {r["status"] for r in rows(store).values()} == {"pinned", "pending"}
