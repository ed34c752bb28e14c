"""The one interface every chain source implements, and what a poll reports.

The reconciler (:mod:`indexer.reconciler`) owns the loop: it calls
:meth:`ChainSource.check` until it passes (bad configuration is a
:class:`~indexer.errors.ChainConfigError`: recorded, retried, readiness fails,
never a crash loop), then :meth:`ChainSource.poll` every interval. Each source
keeps its cursor in PostgreSQL (``chain_cursors``) and applies every step
idempotently, so a reconciler killed at any point resumes where it left off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class PollResult:
    """What one poll of a source did and where the source stands (the figures of /metrics and /readyz)."""

    applied: int = 0  # events applied by this poll (registrations, payments, rollbacks)
    head: int | None = None  # newest block/ledger the chain reports
    processed: int | None = None  # newest confirmed block/ledger fully processed
    lag_blocks: int | None = None  # head - processed
    lag_seconds: float | None = None  # age of the newest processed block/ledger (or of the last poll)
    reorgs: int = 0  # reorgs handled by this poll
    more: bool = False  # the source is behind and wants to be polled again at once
    extra: dict[str, Any] = field(default_factory=dict)


class ChainSource(Protocol):
    """One chain the reconciler follows (its third-party client confined to one file)."""

    name: str  # a CAIP-2 chain id, e.g. "eip155:31337", "stellar:testnet"

    def check(self) -> None:
        """Check the configuration against the live chain; raise ``ChainConfigError`` (one line) if it is wrong."""
        ...

    def poll(self) -> PollResult:
        """Read what is new past the stored cursor and apply it idempotently."""
        ...
