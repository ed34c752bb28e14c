"""The pin worker's settings and the media the API shows, mixed into :class:`indexer.settings.IndexerSettings`.

The worker (``empressa indexer pin``, :mod:`indexer.pins`) runs when ``ipfs_api`` is
set; ``empressa up`` starts it then. ``ipfs_gateway`` is the base of the gateway URL
the API gives each file (``{ipfs_gateway}/ipfs/{cid}``).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, field_validator, model_validator

import ipfsrpc


class PinSettings(BaseModel):
    """The operator's IPFS node, the pin queue's timing, and the gateway media links point at."""

    ipfs_api: str | None = Field(
        default=None,
        description="The operator's IPFS node (Kubo RPC API: /ip4/127.0.0.1/tcp/5001 or "
        "http://127.0.0.1:5001); when set, the pin worker pins every CID that current assets name.",
    )
    ipfs_gateway: str = Field(
        default="http://127.0.0.1:8080",
        description="Base of the gateway URL the API shows for each file: {ipfs_gateway}/ipfs/{cid}.",
    )
    pin_interval: float = Field(
        default=2.0, gt=0, le=3600, description="Seconds the pin worker sleeps when it has nothing to do."
    )
    pin_batch: int = Field(default=8, ge=1, le=1000, description="Jobs one claim of the pin worker takes.")
    pin_timeout_s: float = Field(
        default=60.0, gt=0, description="Seconds one pin or unpin call to the IPFS node may take."
    )
    pin_lease_s: float = Field(
        default=600.0,
        gt=0,
        description="Seconds a claimed job is the worker's; past it (a killed worker) it is claimed again. "
        "Must be more than pin_timeout_s x pin_batch.",
    )
    pin_max_attempts: int = Field(
        default=8, ge=1, le=1000, description="Attempts at a pin before it is recorded failed."
    )
    pin_backoff_s: float = Field(
        default=2.0, gt=0, description="Seconds before the second attempt; doubled for each one after."
    )
    pin_backoff_max_s: float = Field(default=600.0, gt=0, description="Longest wait between attempts.")
    pin_unpin_grace_s: float = Field(
        default=86400.0,
        ge=0,
        description="Seconds a pinned CID that no current asset names stays pinned before it is unpinned.",
    )

    @field_validator("ipfs_api")
    @classmethod
    def _check_ipfs_api(cls, value: str | None) -> str | None:
        return None if value is None else ipfsrpc.check_ipfs_api(value)

    @field_validator("ipfs_gateway")
    @classmethod
    def _check_gateway(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _lease_outlasts_a_batch(self) -> PinSettings:
        if self.pin_lease_s <= self.pin_timeout_s * self.pin_batch:
            raise ValueError(
                f"pin_lease_s ({self.pin_lease_s:g}) must be more than pin_timeout_s x pin_batch "
                f"({self.pin_timeout_s * self.pin_batch:g}): a live worker must finish its claim within the lease"
            )
        return self
