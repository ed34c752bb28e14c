"""Per-author log rules and folding a log into current asset state.

An author's log is contiguous (seq 1, 2, 3 …) and hash-chained (each ``prev``
is the hash of the entry before). Given what a replica already holds, every
incoming verified entry falls into exactly one :class:`Verdict`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .entry import Entry
from .ids import AssetUri, AuthorKey, EntryHash


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


def latest_attestations(entries: list[Entry]) -> dict[AssetUri, Entry]:
    """The latest ``attest`` entry per attested asset, by the same folding rule."""
    out: dict[AssetUri, Entry] = {}
    for e in sorted(entries, key=lambda e: (e.author, e.seq)):
        if e.kind == "attest":
            subject = AssetUri(AuthorKey(e.body["asset"]["author"]), e.body["asset"]["key"])
            out[subject] = e
    return out
