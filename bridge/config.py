"""The bridge's settings: one pydantic-settings class, built in ``cli.py`` and passed in.

Sources, lowest to highest priority::

    defaults  <  DATA_DIR/config.toml ([bridge] table)  <  DATABASE_URL
              <  EMPRESSA_BRIDGE_<FIELD>  <  overrides (CLI flags)

:func:`load_bridge_settings` is the one way to build :class:`BridgeSettings`
from those sources: :func:`node.layered.load_layered`, as for the node. It reads
only the ``environ`` mapping it is given. ``data_dir`` comes from the caller
(``--data``, else ``EMPRESSA_BRIDGE_DATA_DIR`` or ``~/.empressa/bridge``).

The bridge runs a :class:`node.daemon.Node`; :attr:`BridgeSettings.node` holds
that node's :class:`~node.config.NodeSettings`, not copies of its fields. The
node settings a bridge takes (:data:`NODE_KEYS`) are set flat like the bridge's
own: ``listen`` in ``[bridge]``, ``EMPRESSA_BRIDGE_LISTEN``, ``--listen``. The
node's data directory is the bridge's, and its mDNS is off unless ``mdns = true``.

Errors are :class:`node.errors.ConfigError` with a one-line message naming the
setting and where its value came from (the same messages as the node's).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from indexer.store import QuarantineSettings, check_database_url
from node.config import NodeSettings
from node.layered import LayeredSettings, data_dir_from, load_layered
from protocol import IdentifierError, parse_dids

__all__ = ["ENV_PREFIX", "NODE_KEYS", "BridgeSettings", "default_data_dir", "load_bridge_settings"]

ENV_PREFIX = "EMPRESSA_BRIDGE_"
_TABLE = "bridge"

# The settings of the bridge's node that the bridge takes (as [bridge] keys, EMPRESSA_BRIDGE_*, flags).
NODE_KEYS = (
    "listen",
    "bootstrap",
    "mdns",
    "anti_entropy_interval",
    "gossip_rate",
    "max_clock_skew_ms",
    "sync_request_timeout",
    "log_level",
    "log_json",
)


def _home_data_dir() -> Path:
    return Path.home() / ".empressa" / "bridge"


class BridgeSettings(QuarantineSettings, LayeredSettings):
    """Everything the bridge super-node is configured with."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)
    flattened: ClassVar[dict[str, tuple[str, ...]]] = {"node": NODE_KEYS}

    data_dir: Path = Field(
        default_factory=_home_data_dir,
        description="Data directory: config.toml, keystore.json, bridge.json. Set with --data or "
        "EMPRESSA_BRIDGE_DATA_DIR, not in this file.",
    )
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL of the indexer (flag: --database-url; env: DATABASE_URL).",
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Serve Prometheus /metrics on this port (unset: off)."
    )
    metrics_host: str = Field(
        default="127.0.0.1", min_length=1, description="Host the /metrics server binds to."
    )
    writer_batch: int = Field(default=1000, ge=1, le=100_000, description="Most entries per database write.")
    writer_linger: float = Field(
        default=0.05,
        ge=0,
        le=5,
        allow_inf_nan=False,
        description="Seconds a writer lets a batch fill when it starts one while another batch is being "
        "written (under load); with no write in progress, entries are written at once.",
    )
    verify_workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Processes verifying pulled ranges and building their rows; 0 verifies in a thread.",
    )
    db_pool_size: int = Field(default=8, ge=1, le=100, description="Database connections kept open.")
    reject_queue: int = Field(
        default=10_000,
        ge=1,
        description="Rejected entries waiting for the quarantine table; past this they are counted and dropped.",
    )
    trusted_bridges: list[str] = Field(
        default_factory=list,
        description="did:key identities of other bridges whose attestations the indexer's assets take "
        "(this bridge's own key is always trusted).",
    )
    attest_batch: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Most outbox rows published as attest entries in one transaction.",
    )
    attest_poll_interval: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds between checks of the attestation outbox when no NOTIFY wakes the publisher.",
    )
    node: NodeSettings = Field(
        default=None,  # type: ignore[assignment]  # built from data_dir and NODE_KEYS by _nest_node
        description="The settings of the node the bridge runs (listen, bootstrap, mdns, intervals, "
        "logging), set by their flat names.",
    )

    @model_validator(mode="before")
    @classmethod
    def _nest_node(cls, data: Any) -> Any:
        """Move the flat node keys into ``node``, with the bridge's data dir and mDNS off by default."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        node = {key: data.pop(key) for key in NODE_KEYS if key in data}
        if data.get("node") is None:
            node.setdefault("mdns", False)
            node["data_dir"] = data.get("data_dir") or _home_data_dir()
            data["node"] = node
        elif node:
            raise ValueError("set the node's settings by their flat names, not as node")
        return data

    @field_validator("data_dir")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("trusted_bridges")
    @classmethod
    def _check_dids(cls, value: list[str]) -> list[str]:
        try:
            return [key.did for key in parse_dids(value)]
        except IdentifierError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        return check_database_url(value)


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """``EMPRESSA_BRIDGE_DATA_DIR`` or ``~/.empressa/bridge``."""
    return data_dir_from(environ, ENV_PREFIX, _home_data_dir())


def load_bridge_settings(
    data_dir: Path, overrides: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> BridgeSettings:
    """Build the settings: defaults < config.toml < ``DATABASE_URL`` < ``EMPRESSA_BRIDGE_*`` < ``overrides``.

    Raises:
        ConfigError: a source is unreadable or a value is invalid (one line, naming the setting).
    """
    return load_layered(
        BridgeSettings,
        data_dir,
        overrides,
        environ,
        table=_TABLE,
        env_prefix=ENV_PREFIX,
        plain_env={"DATABASE_URL": "database_url"},
    )
