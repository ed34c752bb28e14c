"""Per-author log rules, the ingest plan both stores execute, and folding a log into state.

An author's log is contiguous (seq 1, 2, 3 …) and hash-chained (each ``prev``
is the hash of the entry before). Given what a replica already holds, every
incoming verified entry falls into exactly one :class:`Verdict`
(:func:`classify`).

:func:`plan` applies that rule to a whole batch: given what the replica holds
(:class:`AuthorLog` per author, and the hashes at the seqs :func:`lookups`
names), it decides every entry's :class:`Outcome` (append, duplicate, held past
a gap, fork, refused after a fork), the new heads and fork marks, and the
missing ranges. The node's SQLite store and the indexer's PostgreSQL store read
what the plan needs, call :func:`plan`, then only execute it, and both report
with :meth:`Plan.report` (one :class:`IngestReport` type).

:func:`fold` / :func:`apply` give the current state of assets and
:func:`latest_attestations` the current attestation of each attested asset.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from .entry import Entry
from .ids import AssetUri, AuthorKey, EntryHash


def now_ms() -> int:
    """The receiver's clock in unix milliseconds (the unit of ``ts``).

    The one clock reading of the project, kept here so that every store and
    signer agrees on the unit; nothing else in ``protocol`` calls it (pure
    functions take the time as an argument, as :func:`parse_and_verify` does).
    """
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Head:
    """The newest contiguous entry a replica holds for one author."""

    seq: int
    hash: EntryHash


class Verdict(enum.Enum):
    APPEND = "append"  # extends the log by one
    DUPLICATE = "duplicate"  # already held, byte for byte
    GAP = "gap"  # seq is beyond head+1: the range between must be pulled first
    FORK = "fork"  # a second valid entry at a held seq, or a prev that contradicts the held log


@dataclass(frozen=True, slots=True)
class Classification:
    verdict: Verdict
    missing_from: int = 0  # for GAP: the first missing seq
    missing_to: int = 0  # for GAP: the last missing seq
    conflicting: EntryHash | None = None  # for FORK: the hash already held at that seq


def classify(entry: Entry, head: Head | None, held_at_seq: EntryHash | None) -> Classification:
    """Place ``entry`` relative to an author's log.

    Args:
        entry: a verified entry.
        head: the author's contiguous head in this replica, if any.
        held_at_seq: the hash held at ``entry.seq`` (needed when ``entry.seq <= head.seq``)
            or, when ``entry.seq == head.seq + 1``, ignored.
    """
    have = head.seq if head else 0
    if entry.seq <= have:
        if held_at_seq == entry.hash:
            return Classification(Verdict.DUPLICATE)
        return Classification(Verdict.FORK, conflicting=held_at_seq)
    if entry.seq == have + 1:
        if head is None or entry.prev == head.hash:
            return Classification(Verdict.APPEND)
        # The author signed an entry chained to a different predecessor.
        return Classification(Verdict.FORK, conflicting=head.hash)
    return Classification(Verdict.GAP, missing_from=have + 1, missing_to=entry.seq - 1)


@dataclass(frozen=True, slots=True)
class AuthorLog:
    """What a replica holds of one author's log, as far as a plan needs it."""

    head: Head | None = None
    forked_seq: int | None = None  # nothing at or past this seq is applied


class Outcome(enum.Enum):
    """What a plan does with one entry of a batch."""

    APPEND = "appended"  # extends the log: store it and fold it
    DUPLICATE = "duplicate"  # already held (or earlier in the batch): nothing to do
    HELD = "held"  # past a gap: the missing range must arrive first
    FORK = "fork"  # a second valid entry at a held seq: keep as proof, set the fork mark
    REFUSED = "refused"  # at or past the author's fork mark: never applied


AFTER_FORK_REASON = "author has a fork at seq {seq}; later entries are held back"


@dataclass(frozen=True, slots=True)
class Step:
    """One entry's place in a :class:`Plan`."""

    entry: Entry
    outcome: Outcome
    conflicting: EntryHash | None = None  # FORK: the hash held at that seq (or the head's)
    fork_seq: int = 0  # FORK: the seq of the fork mark this entry sets
    reason: str = ""  # REFUSED: why


@dataclass(frozen=True, slots=True)
class Gap:
    """An author's missing range after a batch: seq ``first_missing..last_missing``.

    ``last_held`` is the highest seq seen past the gap. A store that parks the
    held entries pulls ``first_missing..last_missing``; a store that drops them
    (the node) must pull them again too, ``first_missing..last_held``.
    """

    first_missing: int
    last_missing: int
    last_held: int

    def to_pull(self, *, parks_held: bool) -> tuple[int, int]:
        return (self.first_missing, self.last_missing if parks_held else self.last_held)


@dataclass
class IngestReport:
    """What one ingest call did with each entry it was given (the node's and the indexer's).

    ``gaps`` maps an author to the range to pull (see :meth:`Gap.to_pull`);
    ``held`` counts entries parked past a gap (always 0 for a store that drops
    them); ``status`` maps an entry hash to its :class:`Outcome` value, or
    ``"gap"`` for an entry past a gap that the store did not keep.
    """

    appended: list[Entry] = field(default_factory=list)
    duplicates: int = 0
    gaps: dict[AuthorKey, tuple[int, int]] = field(default_factory=dict)
    forks: list[Entry] = field(default_factory=list)
    refused: list[tuple[Entry, str]] = field(default_factory=list)
    held: int = 0
    status: dict[bytes, str] = field(default_factory=dict)

    def merge(self, other: IngestReport) -> None:
        """Add ``other`` (a later, disjoint part of the same batch) to this report."""
        self.appended += other.appended
        self.duplicates += other.duplicates
        self.gaps.update(other.gaps)
        self.forks += other.forks
        self.refused += other.refused
        self.held += other.held
        self.status.update(other.status)


@dataclass
class Plan:
    """What to do with a batch, decided by :func:`plan`; a store only executes it.

    ``steps`` are in the order to execute them (per author by seq, authors in
    order of first appearance). ``heads`` holds the new head entry of every
    author whose log grew, ``forked`` the new fork mark of every author whose
    mark was set or lowered, ``gaps`` the missing range of every author with
    entries held past one.
    """

    steps: list[Step] = field(default_factory=list)
    heads: dict[bytes, Entry] = field(default_factory=dict)
    forked: dict[bytes, int] = field(default_factory=dict)
    gaps: dict[AuthorKey, Gap] = field(default_factory=dict)

    def of(self, outcome: Outcome) -> list[Step]:
        return [s for s in self.steps if s.outcome is outcome]

    @property
    def appends(self) -> list[Entry]:
        return [s.entry for s in self.steps if s.outcome is Outcome.APPEND]

    def report(self, *, parks_held: bool) -> IngestReport:
        """The :class:`IngestReport` of executing this plan (``parks_held``: held entries are kept)."""
        r = IngestReport()
        for s in self.steps:
            o = s.outcome
            r.status[s.entry.hash.raw] = o.value if parks_held or o is not Outcome.HELD else "gap"
            if o is Outcome.APPEND:
                r.appended.append(s.entry)
            elif o is Outcome.DUPLICATE:
                r.duplicates += 1
            elif o is Outcome.HELD:
                r.held += 1 if parks_held else 0
            elif o is Outcome.FORK:
                r.forks.append(s.entry)
            else:
                r.refused.append((s.entry, s.reason))
        r.gaps = {a: g.to_pull(parks_held=parks_held) for a, g in self.gaps.items()}
        return r


def lookups(entries: Iterable[Entry], logs: Mapping[bytes, AuthorLog]) -> set[tuple[bytes, int]]:
    """The (author, seq) pairs whose held hash :func:`plan` needs: entries at or below their head."""
    out: set[tuple[bytes, int]] = set()
    for e in entries:
        a = e.author.raw
        held = logs.get(a)
        if held is not None and held.head is not None and e.seq <= held.head.seq:
            out.add((a, e.seq))
    return out


def plan(
    entries: Iterable[Entry],
    logs: Mapping[bytes, AuthorLog],
    held: Mapping[tuple[bytes, int], EntryHash],
    *,
    refuse_held_after_fork: bool = False,
) -> Plan:
    """Decide what a replica does with a batch of verified entries.

    Args:
        entries: verified entries, any order, many authors; an entry given twice
            is planned twice (the second time it is a duplicate).
        logs: what the replica holds per author key (absent: nothing).
        held: the hash held at each of the (author, seq) pairs that
            :func:`lookups` names (absent: nothing held there).
        refuse_held_after_fork: an entry at or past its author's fork mark is
            refused even when the replica already holds it (the node's rule);
            by default such an entry counts as a duplicate (the indexer's).

    Entries are taken per author in seq order, so a contiguous batch lands in
    one pass whatever order it came in; the first fork sets the author's mark
    (the seq of the contradicted entry) and every later entry at or past it is
    refused.
    """
    by_author: dict[bytes, list[Entry]] = {}
    for e in entries:
        by_author.setdefault(e.author.raw, []).append(e)
    out = Plan()
    steps = out.steps
    for a, es in by_author.items():
        state = logs.get(a) or AuthorLog()
        head, forked = state.head, state.forked_seq
        grown: dict[int, EntryHash] = {}  # seq → hash appended by this plan
        first_held = last_held = 0
        for e in sorted(es, key=lambda e: e.seq):
            at = grown.get(e.seq) or held.get((a, e.seq))
            if forked is not None and e.seq >= forked:
                if not refuse_held_after_fork and at == e.hash:
                    steps.append(Step(e, Outcome.DUPLICATE))
                else:
                    steps.append(Step(e, Outcome.REFUSED, reason=AFTER_FORK_REASON.format(seq=forked)))
                continue
            c = classify(e, head, at)
            if c.verdict is Verdict.APPEND:
                head = Head(e.seq, e.hash)
                grown[e.seq] = e.hash
                out.heads[a] = e
                steps.append(Step(e, Outcome.APPEND))
            elif c.verdict is Verdict.DUPLICATE:
                steps.append(Step(e, Outcome.DUPLICATE))
            elif c.verdict is Verdict.GAP:
                first_held = first_held or e.seq
                last_held = e.seq
                steps.append(Step(e, Outcome.HELD))
            else:
                have = head.seq if head else 0
                fork_seq = e.seq if e.seq <= have else e.seq - 1
                forked = fork_seq if forked is None else min(forked, fork_seq)
                out.forked[a] = forked
                steps.append(Step(e, Outcome.FORK, conflicting=c.conflicting, fork_seq=fork_seq))
        if first_held:
            first_missing = (head.seq if head else 0) + 1
            out.gaps[es[0].author] = Gap(first_missing, first_held - 1, last_held)
    return out


@dataclass(frozen=True, slots=True)
class AssetState:
    """The current state of one asset after folding its author's log.

    ``put`` is the latest ``asset.put`` (kept after a delete so history can show
    what was deleted); ``deleted`` is true when a later ``asset.delete`` exists.
    """

    uri: AssetUri
    put: Entry | None
    last: Entry
    deleted: bool
    versions: int
    created_ts: int

    @property
    def updated_ts(self) -> int:
        return self.last.ts


def apply(state: AssetState | None, entry: Entry) -> AssetState | None:
    """Fold one entry (in log order) into the state of the asset it names.

    Returns the new state, or ``state`` unchanged for entries that do not
    describe assets (``attest``).
    """
    if entry.kind == "asset.put":
        if state is None:
            return AssetState(entry.uri, entry, entry, False, 1, entry.ts)
        return AssetState(state.uri, entry, entry, False, state.versions + 1, state.created_ts)
    if entry.kind == "asset.delete":
        if state is None:
            return AssetState(entry.uri, None, entry, True, 1, entry.ts)
        return AssetState(state.uri, state.put, entry, True, state.versions + 1, state.created_ts)
    return state


def fold(entries: list[Entry]) -> dict[AssetUri, AssetState]:
    """Current state of every asset in a set of logs (entries in any order)."""
    states: dict[AssetUri, AssetState] = {}
    for e in sorted(entries, key=lambda e: (e.author, e.seq)):
        if e.kind in ("asset.put", "asset.delete"):
            new = apply(states.get(e.uri), e)
            if new is not None:
                states[e.uri] = new
    return states


def latest_attestations(
    entries: Iterable[Entry], *, trusted: Collection[AuthorKey] | None = None
) -> dict[AssetUri, Entry]:
    """The latest ``attest`` entry per attested asset, by the same folding rule as assets.

    The one rule for attestations, for every node and the indexer: entries are
    taken in (author, seq) order and a later one supersedes an earlier one for
    the same asset (``body.asset``), so within one bridge's log its latest
    word stands. ``trusted`` limits which author keys count (a node applies
    attestations only from the bridge keys it is configured to trust); ``None``
    counts every author.
    """
    out: dict[AssetUri, Entry] = {}
    for e in sorted(entries, key=lambda e: (e.author.raw, e.seq)):
        if e.kind == "attest" and (trusted is None or e.author in trusted):
            subject = AssetUri(AuthorKey(e.body["asset"]["author"]), e.body["asset"]["key"])
            out[subject] = e
    return out
