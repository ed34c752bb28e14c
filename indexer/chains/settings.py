"""The reconciler's settings: which chains to follow, mixed into :class:`indexer.settings.IndexerSettings`.

A chain source runs when its URL is set: the EVM source when ``evm_rpc_url``
and ``evm_registry`` are, the Stellar source when ``stellar_horizon_url`` is.
"""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, Field, field_validator, model_validator

from protocol import IdentifierError, parse_dids

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_STELLAR_ACCOUNT = re.compile(r"^G[A-Z2-7]{55}$")
_ASSET_CODE = re.compile(r"^[A-Za-z0-9]{1,12}$")


class ChainSettings(BaseModel):
    """Chain sources of the reconciler and the attestations the indexer trusts."""

    evm_rpc_url: str | None = Field(
        default=None,
        description="JSON-RPC URL of the EVM chain with the AssetRegistry (http:// or https://).",
    )
    evm_registry: str | None = Field(
        default=None,
        description="Address of the AssetRegistry contract (written by `empressa chain deploy`).",
    )
    evm_chain_id: int | None = Field(
        default=None,
        ge=1,
        description="The chain id the RPC must report (written by `empressa chain deploy`); a different "
        "one is a configuration error.",
    )
    evm_confirmations: int = Field(
        default=12, ge=0, le=10_000, description="Blocks a log must be buried under before it is applied."
    )
    evm_max_reorg_depth: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="Deepest reorg the EVM source walks back; a deeper one stops it and fails readiness.",
    )
    evm_start_block: int = Field(
        default=0, ge=0, description="First block to read logs from (the deploy block)."
    )
    evm_max_range: int = Field(
        default=2000,
        ge=1,
        le=1_000_000,
        description="Most blocks asked of eth_getLogs at once (halved on refusal).",
    )
    stellar_horizon_url: str | None = Field(
        default=None, description="Horizon URL of the Stellar network whose payments license assets."
    )
    stellar_network: str = Field(
        default="testnet", description="CAIP-2 reference of that network: `testnet` or `pubnet`."
    )
    stellar_assets: dict[str, str] = Field(
        default_factory=dict,
        description='Issued assets a price currency maps to, as JSON {"CODE": "G…issuer"}; XLM is native.',
    )
    trusted_bridges: list[str] = Field(
        default_factory=list,
        description="did:key identities of the bridges whose attestations the indexer applies "
        '(JSON list: ["did:key:z6Mk…"]).',
    )
    reconcile_interval: float = Field(
        default=2.0, gt=0, le=3600, description="Seconds between the reconciler's polls of each source."
    )

    @field_validator("evm_rpc_url", "stellar_horizon_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("evm_registry")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        if value is not None and not _ADDRESS.match(value):
            raise ValueError("must be a 0x-prefixed 20-byte hex address")
        return value

    @field_validator("stellar_network")
    @classmethod
    def _check_network(cls, value: str) -> str:
        if value not in ("testnet", "pubnet"):
            raise ValueError("must be testnet or pubnet")
        return value

    @field_validator("stellar_assets", mode="before")
    @classmethod
    def _assets_from_text(cls, value: object) -> object:
        # An environment variable arrives as text (the layered loader splits only lists).
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError('must be a JSON object {"CODE": "G…issuer"}') from None
            if not isinstance(value, dict):
                raise ValueError('must be a JSON object {"CODE": "G…issuer"}')
        return value

    @field_validator("stellar_assets")
    @classmethod
    def _check_assets(cls, value: dict[str, str]) -> dict[str, str]:
        for code, issuer in value.items():
            if not _ASSET_CODE.match(code) or code.upper() == "XLM":
                raise ValueError(f"{code!r} is not an issued asset code (1-12 letters or digits, not XLM)")
            if not _STELLAR_ACCOUNT.match(issuer):
                raise ValueError(f"the issuer of {code} is not a Stellar account (G…, 56 characters)")
        return value

    @field_validator("trusted_bridges")
    @classmethod
    def _check_dids(cls, value: list[str]) -> list[str]:
        try:
            return [key.did for key in parse_dids(value)]
        except IdentifierError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _evm_pair(self) -> ChainSettings:
        if (self.evm_rpc_url is None) != (self.evm_registry is None):
            raise ValueError("evm_rpc_url and evm_registry are set together (or neither)")
        return self

    @property
    def chains_configured(self) -> bool:
        """Whether any chain source would run (``up`` starts the reconciler only then)."""
        return self.evm_rpc_url is not None or self.stellar_horizon_url is not None
