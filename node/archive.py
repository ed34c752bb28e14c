"""Files of signed entries (``node export``'s CBOR sequences): ``verify`` and ``import`` in bounded memory.

Both read the input as it comes (:func:`protocol.split_chunks`), so memory holds
one chunk, one item and, for an import, one batch of entries, whatever the size
of the file. Measured on a 3 MB file of zero bytes (each byte is a CBOR item:
the integer 0), before this module: ``verify`` 15 s, 773 MB peak RSS and
3,145,728 output lines; ``import`` 15 s and 996 MB. Now both stop at the first
item (see :func:`check_stream`) and report one line.

What is reported is bounded too: the first :data:`REPORT_LIMIT` failures (by
position in the file) are listed, the rest only counted.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import Entry, EntryHash, ProtocolError, is_map_item, now_ms, parse_and_verify, split_chunks

from .errors import NodeError
from .paths import NODE_DB
from .store import Store

INPUT_CHUNK = 64 * 1024  # bytes read at a time from a file or stdin
REPORT_LIMIT = 100  # failures listed one by one; past it they are counted
MAX_NON_ENTRIES_IN_A_ROW = 100  # items in a row that are not maps before reading stops
IMPORT_BATCH = 1000  # entries per store transaction
MAX_HELD = 10_000  # entries waiting across batches for an earlier seq of their author


def input_chunks(path: str) -> Iterator[bytes]:
    """The file (``-``: stdin) as it is read, in chunks of :data:`INPUT_CHUNK` bytes.

    Raises:
        NodeError: the file cannot be opened (at once) or read (as the chunks are taken).
    """
    try:
        f = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise NodeError(f"cannot read {path}: {exc.strerror}") from None

    def chunks() -> Iterator[bytes]:
        try:
            while chunk := f.read(INPUT_CHUNK):
                yield chunk
        except OSError as exc:
            raise NodeError(f"cannot read {path}: {exc.strerror}") from None
        finally:
            if f is not sys.stdin.buffer:
                f.close()

    return chunks()


@dataclass(frozen=True)
class CheckedItem:
    """One item of the input: its verified entry, or why it is not one.

    ``last`` marks the item after which reading stopped (the rest of the input is not read).
    """

    index: int
    entry: Entry | None
    error: str | None
    last: bool = False


def check_stream(chunks: Iterable[bytes]) -> Iterator[CheckedItem]:
    """Verify each item of a CBOR sequence (RFC 8742) on its own, as the chunks arrive.

    Reading stops early, at an item marked ``last``, on input that is not a
    sequence of entries: bytes that are not CBOR (or an item over 1 MiB), a
    first item that is not a map (every entry is one), or
    :data:`MAX_NON_ENTRIES_IN_A_ROW` items in a row that are not maps.
    """
    clock = now_ms()
    seen = 0
    in_a_row = 0
    try:
        for index, raw in enumerate(split_chunks(chunks)):
            seen = index + 1
            try:
                item = CheckedItem(index, parse_and_verify(raw, now_ms=clock), None)
            except ProtocolError as exc:
                item = CheckedItem(index, None, f"{exc.code}: {exc}")
            in_a_row = 0 if is_map_item(raw) else in_a_row + 1
            if in_a_row and (index == 0 or in_a_row >= MAX_NON_ENTRIES_IN_A_ROW):
                why = (
                    "its first item is not a map" if index == 0 else f"{in_a_row} items in a row are not maps"
                )
                yield CheckedItem(
                    index,
                    None,
                    f"{item.error}; not a CBOR sequence of entries ({why}), the rest is not read",
                    True,
                )
                return
            yield item
    except ProtocolError as exc:
        yield CheckedItem(seen, None, f"{exc.code}: {exc} (the rest of the input is unreadable)", True)


@dataclass
class Rejections:
    """Failures by position: every one counted, the first :data:`REPORT_LIMIT` (lowest index) kept,
    and the one that stopped the reading (``last``) always kept."""

    limit: int = REPORT_LIMIT
    count: int = 0
    _kept: list[tuple[int, str]] = field(default_factory=list)  # a max-heap on index, as (-index, why)
    _last: tuple[int, str] | None = None

    def add(self, index: int, why: str, *, last: bool = False) -> None:
        self.count += 1
        if last:
            self._last = (index, why)
            return
        heapq.heappush(self._kept, (-index, why))
        if len(self._kept) > self.limit:
            heapq.heappop(self._kept)

    @property
    def listed(self) -> list[tuple[int, str]]:
        kept = sorted((-i, why) for i, why in self._kept)
        return kept if self._last is None else [*kept, self._last]

    @property
    def unlisted(self) -> int:
        return self.count - len(self.listed)


@dataclass
class ImportReport:
    """What ``node import`` did: ``--json`` prints :meth:`to_json`; the rejections listed go to stderr."""

    items: int  # items read from the input
    stored: int
    duplicates: int
    rejected: Rejections

    @property
    def failed(self) -> bool:
        """Some entry was rejected: the command exits non-zero (the others are stored all the same)."""
        return self.rejected.count > 0

    def notes(self) -> list[str]:
        """One line per rejection listed, then the count of those not listed."""
        lines = [f"entry {index}: rejected: {why}" for index, why in self.rejected.listed]
        if self.rejected.unlisted:
            lines.append(f"… and {self.rejected.unlisted} more rejected entries not listed")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {"stored": self.stored, "duplicates": self.duplicates, "rejected": self.rejected.count}

    def text(self) -> str:
        return f"stored {self.stored}, already held {self.duplicates}, rejected {self.rejected.count}"


def import_entries(data_dir: Path, chunks: Iterable[bytes]) -> ImportReport:
    """Validate a CBOR sequence as it is read and store its valid entries; invalid ones change nothing.

    Entries go to the store in batches of :data:`IMPORT_BATCH`. One whose
    predecessor comes later in the file (a file not in ``export``'s (author, seq)
    order) is held back and offered again with the next batches (at most
    :data:`MAX_HELD` at a time); what still waits for a missing entry at the
    end is rejected as a gap.
    """
    rejected = Rejections()
    items = stored = duplicates = 0
    batch: list[tuple[int, Entry]] = []
    held: dict[EntryHash, tuple[int, Entry]] = {}
    store = Store.open(data_dir / NODE_DB)

    def flush(*, final: bool) -> None:
        nonlocal stored, duplicates, held
        offered = [*held.values(), *batch]
        batch.clear()
        report = store.ingest([e for _, e in offered])
        stored += len(report.appended)
        duplicates += report.duplicates
        index_of = {e.hash: i for i, e in offered}
        appended = {e.hash for e in report.appended}
        waiting: dict[EntryHash, tuple[int, Entry]] = {}
        for i, e in offered:
            gap = report.gaps.get(e.author)
            if gap is not None and gap[0] <= e.seq <= gap[1] and e.hash not in appended:
                waiting[e.hash] = (i, e)
        for e in report.forks:
            rejected.add(
                index_of[e.hash], f"fork: a different entry is already held at {e.author.did} seq {e.seq}"
            )
        for e, why in report.refused:
            rejected.add(index_of[e.hash], why)
        if final or len(waiting) > MAX_HELD:
            for i, e in waiting.values():
                lo = report.gaps[e.author][0]
                rejected.add(i, f"gap: {e.author.did} seq {lo}..{e.seq - 1} is missing before it")
            waiting = {}
        held = waiting

    try:
        for c in check_stream(chunks):
            items += 1
            if c.entry is None:
                rejected.add(c.index, c.error or "", last=c.last)
                continue
            batch.append((c.index, c.entry))
            if len(batch) >= IMPORT_BATCH:
                flush(final=False)
        flush(final=True)
    finally:
        store.close()
    return ImportReport(items, stored, duplicates, rejected)
