"""Shared fixtures for the node tests: authors, valid bodies and signed logs."""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest

from protocol import Entry, EntryHash, Signer, sign_entry

_BASE_PUT: dict[str, Any] = {
    "title": "Night Drive",
    "description": "A slow synthwave loop at 92 BPM.",
    "tags": ["synthwave", "loop"],
    "media": {
        "cid": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
        "mime": "audio/wav",
        "size": 1_234_567,
        "duration_ms": 30_000,
    },
    "license": {"type": "commercial", "price": {"amount": "12.50", "currency": "USD"}},
}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def put_body() -> Callable[..., dict[str, Any]]:
    """``put_body(title=…, **fields)``: a fresh, valid ``asset.put`` body with fields replaced."""

    def make(title: str = "Night Drive", **fields: Any) -> dict[str, Any]:
        body = copy.deepcopy(_BASE_PUT)
        body["title"] = title
        body.update(fields)
        return body

    return make


@pytest.fixture
def new_signer() -> Callable[[], Signer]:
    """``new_signer()``: a fresh random author key."""
    return lambda: Signer(secrets.token_bytes(32))


CHAINED = object()
"""Default ``prev`` of :meth:`LogBuilder.next`: the hash of the author's previous entry."""


class LogBuilder:
    """Signs one author's log entry by entry, chaining ``seq`` and ``prev`` like a real node."""

    def __init__(self, signer: Signer, put_body: Callable[..., dict[str, Any]]) -> None:
        self.signer = signer
        self.entries: list[Entry] = []
        self._put_body = put_body

    @property
    def author(self) -> bytes:
        return self.signer.public.raw

    def next(
        self,
        *,
        kind: str = "asset.put",
        key: str = "night-drive",
        body: dict[str, Any] | None = None,
        ts: int | None = None,
        seq: int | None = None,
        prev: EntryHash | object | None = CHAINED,
    ) -> Entry:
        """Sign the next entry and record it (``seq``/``prev`` overrides sign without recording)."""
        head = self.entries[-1] if self.entries else None
        chained = seq is None and prev is CHAINED
        if seq is None:
            seq = (head.seq + 1) if head else 1
        if prev is CHAINED:
            prev = head.hash if head else None
        if body is None:
            body = {} if kind == "asset.delete" else self._put_body(f"{key} v{seq}")
        entry = sign_entry(
            self.signer,
            seq=seq,
            prev=prev,  # type: ignore[arg-type]
            ts=now_ms() if ts is None else ts,
            kind=kind,
            key=key,
            body=body,
        )
        if chained:
            self.entries.append(entry)
        return entry

    def extend(self, n: int, *, key_prefix: str = "asset") -> list[Entry]:
        """``n`` more ``asset.put`` entries, each naming its own key."""
        return [self.next(key=f"{key_prefix}-{len(self.entries) + 1}") for _ in range(n)]


@pytest.fixture
def new_log(
    new_signer: Callable[[], Signer], put_body: Callable[..., dict[str, Any]]
) -> Callable[..., LogBuilder]:
    """``new_log(signer=None)``: a :class:`LogBuilder` for a (fresh) author."""

    def make(signer: Signer | None = None) -> LogBuilder:
        return LogBuilder(signer or new_signer(), put_body)

    return make
