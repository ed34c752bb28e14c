"""Entries checked and their rows built, in any process: the part of ingest that needs no database.

Verifying an entry (decode, schema, canonical check, signature) and building
its encoded rows (:class:`.rows.Rows`) is most of what ingest costs in Python,
and none of it needs the database or the ingest lock. :func:`check_raws` does
it for ``POST /v1/entries`` (every input on its own: an invalid one is
reported, not raised) and the bridge's verify workers do it for pulled ranges
(:mod:`bridge.verify`). Either may run in a worker process: what crosses back
is plain tuples and bytes (:func:`entry_fields`, :data:`.rows.Prepared`),
which cost little to pickle and unpickle, where an :class:`~protocol.Entry`
pickles as dataclasses, several times dearer. :func:`entries_from_fields`
rebuilds the entries the worker verified, the same values
:func:`protocol.parse_and_verify` returned there; :meth:`.ingest.Store.ingest_checked`
ingests a :class:`Checked` through the one ingest path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol import AuthorKey, Entry, EntryHash, ProtocolError, now_ms, parse_and_verify
from protocol.schema import MAX_SKEW_MS

from .rows import Prepared, Rows

EntryFields = tuple[bytes, int, bytes | None, int, str, str, dict[str, Any], bytes, bytes, bytes]
"""A verified entry as plain values: author, seq, prev, ts, kind, key, body, sig, raw, hash."""


def entry_fields(e: Entry) -> EntryFields:
    prev = e.prev.raw if e.prev is not None else None
    return (e.author.raw, e.seq, prev, e.ts, e.kind, e.key, e.body, e.sig, e.raw, e.hash.raw)


def entries_from_fields(fields: Sequence[EntryFields]) -> list[Entry]:
    """The entries :func:`entry_fields` took apart (in a process that verified them)."""
    keys: dict[bytes, AuthorKey] = {}
    out: list[Entry] = []
    for author, seq, prev, ts, kind, key, body, sig, raw, h in fields:
        a = keys.get(author)
        if a is None:
            a = keys[author] = AuthorKey(author)
        out.append(
            Entry(
                a,
                seq,
                EntryHash(prev) if prev is not None else None,
                ts,
                kind,
                key,
                body,
                sig,
                raw,
                EntryHash(h),
            )
        )
    return out


@dataclass
class Checked:
    """Encoded entries parsed and verified, with the rows of the valid ones."""

    valid: list[tuple[int, EntryFields]] = field(default_factory=list)  # (input index, the entry)
    invalid: list[tuple[int, bytes, str, str]] = field(default_factory=list)  # (index, raw, code, reason)
    rows: Prepared = field(default_factory=dict)
    # The verified entries themselves, when checked in this process (never pickled: see check_raws).
    local_entries: list[Entry] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def merged(cls, parts: Sequence[Checked]) -> Checked:
        """One :class:`Checked` of consecutive parts of a request (checked in worker processes)."""
        if len(parts) == 1:
            return parts[0]
        out = cls()
        for part in parts:
            out.valid.extend(part.valid)
            out.invalid.extend(part.invalid)
            out.rows.update(part.rows)
        return out

    def entries(self) -> list[Entry]:
        if self.local_entries is not None:
            return self.local_entries
        return entries_from_fields([f for _, f in self.valid])


def check_raws(
    raws: Sequence[bytes],
    *,
    first_index: int = 0,
    now: int | None = None,
    max_skew_ms: int = MAX_SKEW_MS,
    in_process: bool = False,
) -> Checked:
    """Parse and verify every input on its own and build the rows of the valid ones.

    ``first_index`` numbers the inputs (a chunk of a larger request); ``now`` is
    the receiver's clock (unix ms), which is also each entry's receipt time.
    ``in_process``: the result is used in this process, so it keeps the
    entries themselves (:attr:`Checked.local_entries`) and ingest need not
    rebuild them from their fields; a worker process leaves it off, so that
    what it sends back stays plain tuples.
    """
    now = now_ms() if now is None else now
    out = Checked()
    entries: list[Entry] = []
    for i, raw in enumerate(raws, first_index):
        try:
            e = parse_and_verify(raw, now_ms=now, max_skew_ms=max_skew_ms)
        except ProtocolError as exc:
            out.invalid.append((i, raw, exc.code, exc.reason))
            continue
        entries.append(e)
        out.valid.append((i, entry_fields(e)))
    rows = Rows(dict.fromkeys((e.hash.raw for e in entries), now))
    rows.build(entries)
    out.rows = rows.export()
    if in_process:
        out.local_entries = entries
    return out
