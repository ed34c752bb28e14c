"""The bridge's settings: one pydantic-settings class, built by the caller and passed in.

Sources, lowest to highest priority::

    defaults  <  DATA_DIR/config.toml ([bridge] table)  <  DATABASE_URL
              <  EMPRESSA_BRIDGE_<FIELD>  <  overrides (CLI flags)

:func:`load_bridge_settings` is the one way to build :class:`BridgeSettings`
from those sources; like :func:`node.config.load_node_settings` it reads only
the ``environ`` mapping it is given. ``data_dir`` comes from the caller
(``--data``, else ``EMPRESSA_BRIDGE_DATA_DIR`` or ``~/.empressa/bridge``).

Errors are :class:`node.errors.ConfigError` with a one-line message naming the
setting and where its value came from (the same messages as the node's).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from node.config import NodeSettings, check_listen_addr, check_peer_addr, load_layered

__all__ = ["ENV_PREFIX", "BridgeSettings", "default_data_dir", "load_bridge_settings"]

ENV_PREFIX = "EMPRESSA_BRIDGE_"
_TABLE = "bridge"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _home_data_dir() -> Path:
    return Path.home() / ".empressa" / "bridge"


class BridgeSettings(BaseSettings):
    """Everything the bridge super-node is configured with."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    data_dir: Path = Field(
        default_factory=_home_data_dir,
        description="Data directory: config.toml, keystore.json, bridge.json. Set with --data or "
        "EMPRESSA_BRIDGE_DATA_DIR, not in this file.",
    )
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL of the indexer (flag: --database-url; env: DATABASE_URL).",
    )
    listen: list[str] = Field(
        default_factory=lambda: ["/ip4/0.0.0.0/tcp/4001"],
        description="Multiaddrs the libp2p host listens on, TCP only: /ip4/<address>/tcp/<port> or "
        "/ip6/<address>/tcp/<port> (flag: --listen). An address in use is an error at start; "
        "no other process can share the port.",
    )
    bootstrap: list[str] = Field(
        default_factory=list,
        description="Peers to dial at start, over TCP, each ending in /p2p/<peer id> "
        "(flag: --bootstrap, repeatable).",
    )
    mdns: bool = Field(
        default=False,
        description="Discover peers on the local network with mDNS (skipped when every listen "
        "address is loopback: there is nothing to announce).",
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
        description="Seconds the writer waits for a batch to fill after its first entry.",
    )
    verify_workers: int = Field(
        default=0, ge=0, le=64, description="Processes verifying pulled ranges; 0 verifies in a thread."
    )
    db_pool_size: int = Field(default=8, ge=1, le=100, description="Database connections kept open.")
    reject_queue: int = Field(
        default=10_000,
        ge=1,
        description="Rejected entries waiting for the quarantine table; past this they are counted and dropped.",
    )
    anti_entropy_interval: float = Field(
        default=5.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds between anti-entropy rounds with each peer.",
    )
    gossip_rate: float = Field(
        default=200.0, gt=0, allow_inf_nan=False, description="Most gossip messages published per second."
    )
    max_clock_skew_ms: int = Field(
        default=600_000,
        ge=0,
        description="Reject entries whose ts is further than this ahead of our clock (ms).",
    )
    sync_request_timeout: float = Field(
        default=10.0, gt=0, allow_inf_nan=False, description="Seconds a sync request may take."
    )
    log_level: str = Field(default="INFO", description="One of DEBUG, INFO, WARNING, ERROR, CRITICAL.")
    log_json: bool = Field(
        default=False, description="Log one JSON object per line instead of key=value text."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # load_bridge_settings layers the sources itself

    @field_validator("data_dir")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: list[str]) -> list[str]:
        return [check_listen_addr(s) for s in value]

    @field_validator("bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: list[str]) -> list[str]:
        return [check_peer_addr(s) for s in value]

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        # Checked here so a typo is a config error naming its source, not a traceback from the
        # database driver; the value is never echoed, as it may hold a password.
        if value is not None and urlsplit(value).scheme.split("+")[0] not in ("postgresql", "postgres"):
            raise ValueError("must be a PostgreSQL URL, postgresql://user:password@host:port/database")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in _LOG_LEVELS:
            raise ValueError(f"{value!r:.40} is not one of {', '.join(_LOG_LEVELS)}")
        return level

    def node_settings(self) -> NodeSettings:
        """The settings of the :class:`node.daemon.Node` the bridge runs."""
        return NodeSettings(
            data_dir=self.data_dir,
            listen=list(self.listen),
            bootstrap=list(self.bootstrap),
            mdns=self.mdns,
            anti_entropy_interval=self.anti_entropy_interval,
            gossip_rate=self.gossip_rate,
            max_clock_skew_ms=self.max_clock_skew_ms,
            sync_request_timeout=self.sync_request_timeout,
            log_level=self.log_level,
            log_json=self.log_json,
        )


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """``EMPRESSA_BRIDGE_DATA_DIR`` or ``~/.empressa/bridge``."""
    text = environ.get(ENV_PREFIX + "DATA_DIR", "").strip()
    return Path(text).expanduser() if text else _home_data_dir()


def load_bridge_settings(
    data_dir: Path, overrides: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> BridgeSettings:
    """Build the settings: defaults < config.toml < ``DATABASE_URL`` < ``EMPRESSA_BRIDGE_*`` < ``overrides``.

    Raises:
        ConfigError: a source is unreadable or a value is invalid (one line, naming the setting).
    """
    return load_layered(
        BridgeSettings, data_dir, overrides, environ, table=_TABLE, env_prefix=ENV_PREFIX, database_url=True
    )
