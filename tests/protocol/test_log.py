"""Log rules (classify) and folding logs into asset state and attestations."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    AssetUri,
    AuthorLog,
    Classification,
    Entry,
    EntryHash,
    Gap,
    Head,
    Outcome,
    Signer,
    Verdict,
    apply,
    classify,
    fold,
    latest_attestations,
    lookups,
    parse_and_verify,
    plan,
    sign_entry,
)
from tests.vectors import AUTHOR2_SEED, AUTHOR_SEED, BRIDGE_SEED, TS0, valid_vectors

ALICE, BOB, BRIDGE = Signer(AUTHOR_SEED), Signer(AUTHOR2_SEED), Signer(BRIDGE_SEED)


def body(title: str) -> dict[str, Any]:
    return {
        "title": title,
        "description": "",
        "tags": [],
        "media": {
            "cid": "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
            "mime": "audio/wav",
            "size": 1,
        },
        "license": {"type": "personal"},
    }


class Log:
    """Appends correctly chained entries for one signer."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.entries: list[Entry] = []

    def add(
        self, kind: str, key: str, b: dict[str, Any] | None = None, *, prev: EntryHash | None = None
    ) -> Entry:
        seq = len(self.entries) + 1
        if prev is None and self.entries:
            prev = self.entries[-1].hash
        e = sign_entry(
            self.signer,
            seq=seq,
            prev=prev,
            ts=TS0 + seq * 1000,
            kind=kind,
            key=key,
            body=b if b is not None else {},
        )
        self.entries.append(e)
        return e

    def put(self, key: str, title: str) -> Entry:
        return self.add("asset.put", key, body(title))

    def delete(self, key: str) -> Entry:
        return self.add("asset.delete", key)

    def attest(self, target: Entry, status: str) -> Entry:
        b = {
            "subject": target.hash.raw,
            "asset": {"author": target.author.raw, "key": target.key},
            "status": status,
            "chain": "eip155:31337",
            "onchain_id": str(target.seq),
            "tx": "0x" + target.hash.raw.hex(),
        }
        return self.add("attest", target.uri.id_b32, b)


def head_of(e: Entry) -> Head:
    return Head(e.seq, e.hash)


# --------------------------------------------------------------------------- classify


def test_first_entry_appends_to_an_empty_log() -> None:
    e = Log(ALICE).put("a", "A")
    assert classify(e, None, None) == Classification(Verdict.APPEND)


def test_next_entry_appends() -> None:
    log = Log(ALICE)
    first, second = log.put("a", "A"), log.put("a", "A2")
    assert classify(second, head_of(first), None).verdict is Verdict.APPEND


def test_same_entry_again_is_a_duplicate() -> None:
    log = Log(ALICE)
    first, second = log.put("a", "A"), log.put("b", "B")
    assert classify(second, head_of(second), second.hash) == Classification(Verdict.DUPLICATE)
    assert classify(first, head_of(second), first.hash).verdict is Verdict.DUPLICATE


def test_gap_names_the_missing_range() -> None:
    log = Log(ALICE)
    entries = [log.put("a", f"v{i}") for i in range(6)]
    got = classify(entries[5], head_of(entries[1]), None)
    assert got == Classification(Verdict.GAP, missing_from=3, missing_to=5)
    assert classify(entries[2], None, None) == Classification(Verdict.GAP, missing_from=1, missing_to=2)


def test_second_entry_at_a_held_seq_is_a_fork() -> None:
    log = Log(ALICE)
    first = log.put("a", "A")
    log.put("a", "A2")
    rival = sign_entry(ALICE, seq=1, prev=None, ts=TS0, kind="asset.put", key="a", body=body("other"))
    got = classify(rival, head_of(log.entries[-1]), first.hash)
    assert got == Classification(Verdict.FORK, conflicting=first.hash)


def test_next_seq_chained_to_another_predecessor_is_a_fork() -> None:
    log = Log(ALICE)
    log.put("a", "A")
    second = log.put("a", "A2")
    stranger = EntryHash(bytes(32))
    rival = sign_entry(ALICE, seq=3, prev=stranger, ts=TS0, kind="asset.put", key="a", body=body("B"))
    assert classify(rival, head_of(second), None) == Classification(Verdict.FORK, conflicting=second.hash)


@given(st.integers(0, 40), st.integers(1, 40))
def test_verdict_depends_only_on_seq_relative_to_head(have: int, seq: int) -> None:
    """A reference rule, written out: ≤ head → duplicate/fork, head+1 → append, beyond → gap."""
    prev_hash = EntryHash(bytes([have % 256]) * 32)
    head = Head(have, prev_hash) if have else None
    e = sign_entry(
        ALICE,
        seq=seq,
        prev=None if seq == 1 else prev_hash if seq == have + 1 else EntryHash(bytes(32)),
        ts=0,
        kind="asset.delete",
        key="k",
        body={},
    )
    got = classify(e, head, e.hash if seq <= have else None)
    if seq <= have:
        assert got.verdict is Verdict.DUPLICATE
    elif seq == have + 1:
        assert got.verdict is Verdict.APPEND
    else:
        assert got == Classification(Verdict.GAP, missing_from=have + 1, missing_to=seq - 1)


# --------------------------------------------------------------------------- folding


def test_put_edit_delete_reput() -> None:
    log = Log(ALICE)
    put = log.put("song", "First")
    uri = AssetUri.of(ALICE.public, "song")

    state = fold(log.entries)[uri]
    assert (state.put, state.last, state.deleted, state.versions) == (put, put, False, 1)
    assert state.created_ts == state.updated_ts == put.ts

    edit = log.put("song", "Second")
    state = fold(log.entries)[uri]
    assert (state.put, state.last, state.deleted, state.versions) == (edit, edit, False, 2)
    assert (state.created_ts, state.updated_ts) == (put.ts, edit.ts)
    assert state.put is not None and state.put.body["title"] == "Second"

    gone = log.delete("song")
    state = fold(log.entries)[uri]
    assert (state.put, state.last, state.deleted, state.versions) == (edit, gone, True, 3)
    assert state.updated_ts == gone.ts

    back = log.put("song", "Third")
    state = fold(log.entries)[uri]
    assert (state.put, state.last, state.deleted, state.versions) == (back, back, False, 4)
    assert state.created_ts == put.ts


def test_fold_is_independent_of_arrival_order() -> None:
    alice, bob = Log(ALICE), Log(BOB)
    for i in range(5):
        alice.put(f"k{i % 2}", f"a{i}")
        bob.put("k0", f"b{i}")
    alice.delete("k1")
    everything = alice.entries + bob.entries
    expected = fold(everything)
    assert len(expected) == 3
    assert expected[AssetUri.of(ALICE.public, "k1")].deleted
    assert not expected[AssetUri.of(ALICE.public, "k0")].deleted
    assert expected[AssetUri.of(BOB.public, "k0")].versions == 5
    rng = random.Random(7)
    for _ in range(20):
        shuffled = everything[:]
        rng.shuffle(shuffled)
        assert fold(shuffled) == expected


def test_delete_of_an_unknown_asset_is_a_tombstone() -> None:
    gone = Log(ALICE).delete("never-put")
    state = apply(None, gone)
    assert state is not None
    assert (state.put, state.last, state.deleted, state.versions) == (None, gone, True, 1)
    assert fold([gone])[gone.uri] == state


def test_attestations_are_not_assets() -> None:
    put = Log(ALICE).put("song", "A")
    att = Log(BRIDGE).attest(put, "verified")
    assert apply(None, att) is None
    assert fold([put, att]) == fold([put])


def test_latest_attestation_supersedes_earlier_ones() -> None:
    alice, bridge = Log(ALICE), Log(BRIDGE)
    song, other = alice.put("song", "A"), alice.put("other", "B")
    first = bridge.attest(song, "verified")
    bridge.attest(other, "verified")
    revoked = bridge.attest(song, "revoked")
    entries = alice.entries + bridge.entries
    for order in (entries, entries[::-1]):
        latest = latest_attestations(order)
        assert set(latest) == {song.uri, other.uri}
        assert latest[song.uri] == revoked and latest[song.uri].body["status"] == "revoked"
        assert latest[other.uri].body["status"] == "verified"
    assert latest_attestations([first]) == {song.uri: first}
    assert latest_attestations(alice.entries) == {}


def test_folding_the_golden_vectors() -> None:
    entries = [parse_and_verify(v.raw, now_ms=None) for v in valid_vectors()]
    states = fold(entries)
    night = states[AssetUri.of(ALICE.public, "night-drive")]
    assert (night.versions, night.deleted) == (4, False)
    assert night.put is not None and night.put.body["title"] == "Night Drive (back again)"
    att = latest_attestations(entries)[night.uri]
    assert att.author == BRIDGE.public and att.body["status"] == "revoked"
    assert att.key == night.uri.id_b32


def test_latest_attestations_only_from_trusted_keys() -> None:
    alice, bridge, rogue = Log(ALICE), Log(BRIDGE), Log(BOB)
    song = alice.put("song", "A")
    good = bridge.attest(song, "verified")
    rogue.attest(song, "revoked")
    entries = alice.entries + bridge.entries + rogue.entries
    assert latest_attestations(entries, trusted={BRIDGE.public}) == {song.uri: good}
    assert latest_attestations(entries, trusted=set()) == {}


# -- the ingest plan ---------------------------------------------------------------------


def outcomes(p: Any) -> list[tuple[int, Outcome]]:
    return [(s.entry.seq, s.outcome) for s in p.steps]


def chain(n: int, signer: Signer = ALICE) -> list[Entry]:
    log = Log(signer)
    for i in range(n):
        log.put(f"k{i % 2}", f"v{i}")
    return log.entries


def test_plan_lands_a_shuffled_batch_in_seq_order() -> None:
    es = chain(5)
    shuffled = es[::-1]
    p = plan(shuffled, {}, {})
    assert outcomes(p) == [(i, Outcome.APPEND) for i in range(1, 6)]
    assert p.appends == es and p.heads == {ALICE.public.raw: es[-1]}
    assert not p.gaps and not p.forked
    r = p.report(parks_held=True)
    assert r.appended == es and r.duplicates == 0 and r.status[es[0].hash.raw] == "appended"


def test_plan_counts_held_entries_and_repeats_as_duplicates() -> None:
    es = chain(4)
    logs = {ALICE.public.raw: AuthorLog(head_of(es[1]))}
    assert lookups(es, logs) == {(ALICE.public.raw, 1), (ALICE.public.raw, 2)}
    held = {(ALICE.public.raw, 1): es[0].hash, (ALICE.public.raw, 2): es[1].hash}
    p = plan([*es, es[3]], logs, held)
    want = [(1, Outcome.DUPLICATE), (2, Outcome.DUPLICATE), (3, Outcome.APPEND), (4, Outcome.APPEND)]
    assert outcomes(p) == [*want, (4, Outcome.DUPLICATE)]
    assert p.report(parks_held=False).duplicates == 3


def test_plan_gap_ranges_for_a_store_that_parks_and_one_that_does_not() -> None:
    es = chain(8)
    logs = {ALICE.public.raw: AuthorLog(head_of(es[2]))}
    p = plan(es[5:], logs, {})
    assert [o for _, o in outcomes(p)] == [Outcome.HELD] * 3
    assert p.gaps == {ALICE.public: Gap(4, 5, 8)}
    parked, dropped = p.report(parks_held=True), p.report(parks_held=False)
    assert (parked.gaps, parked.held) == ({ALICE.public: (4, 5)}, 3)
    assert (dropped.gaps, dropped.held) == ({ALICE.public: (4, 8)}, 0)
    assert parked.status[es[5].hash.raw] == "held" and dropped.status[es[5].hash.raw] == "gap"
    # A gap in the middle of a batch: the part before it lands.
    mid = plan(es[:3] + es[4:], {}, {})
    assert [e.seq for e in mid.appends] == [1, 2, 3] and mid.gaps == {ALICE.public: Gap(4, 4, 8)}


def test_plan_fork_sets_the_mark_and_refuses_what_follows() -> None:
    es = chain(4)
    rival = sign_entry(ALICE, seq=2, prev=es[0].hash, ts=TS0, kind="asset.put", key="r", body=body("r"))
    p = plan([es[0], es[1], rival, es[2], es[3]], {}, {})
    assert outcomes(p) == [
        (1, Outcome.APPEND),
        (2, Outcome.APPEND),
        (2, Outcome.FORK),
        (3, Outcome.REFUSED),
        (4, Outcome.REFUSED),
    ]
    fork = p.of(Outcome.FORK)[0]
    assert (fork.conflicting, fork.fork_seq) == (es[1].hash, 2)
    assert p.forked == {ALICE.public.raw: 2} and p.heads == {ALICE.public.raw: es[1]}
    assert "fork at seq 2" in p.of(Outcome.REFUSED)[0].reason
    # A prev that contradicts the head: the mark is at the head's seq.
    wrong = sign_entry(ALICE, seq=4, prev=es[1].hash, ts=TS0, kind="asset.delete", key="k0", body={})
    q = plan([wrong], {ALICE.public.raw: AuthorLog(head_of(es[2]))}, {})
    assert outcomes(q) == [(4, Outcome.FORK)] and q.forked == {ALICE.public.raw: 3}
    assert q.of(Outcome.FORK)[0].conflicting == es[2].hash


def test_plan_after_a_fork_a_held_entry_is_a_duplicate_unless_the_store_refuses_it() -> None:
    es = chain(3)
    logs = {ALICE.public.raw: AuthorLog(head_of(es[2]), forked_seq=2)}
    held = {(ALICE.public.raw, s): e.hash for s, e in enumerate(es, start=1)}
    assert outcomes(plan(es, logs, held)) == [
        (1, Outcome.DUPLICATE),
        (2, Outcome.DUPLICATE),
        (3, Outcome.DUPLICATE),
    ]
    assert outcomes(plan(es, logs, held, refuse_held_after_fork=True)) == [
        (1, Outcome.DUPLICATE),
        (2, Outcome.REFUSED),
        (3, Outcome.REFUSED),
    ]


def test_plan_keeps_authors_apart_in_order_of_first_appearance() -> None:
    a, b = chain(2), chain(2, BOB)
    p = plan([b[1], a[0], b[0], a[1]], {}, {})
    assert [(s.entry.author, s.entry.seq) for s in p.steps] == [
        (BOB.public, 1),
        (BOB.public, 2),
        (ALICE.public, 1),
        (ALICE.public, 2),
    ]
