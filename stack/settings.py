"""The settings of ``empressa up``: one pydantic-settings class, built in ``cli.py`` and passed in.

Built like every process's settings, by :func:`node.layered.load_layered`, with no
config file (``up`` has none). Sources, lowest to highest priority::

    defaults  <  DATABASE_URL, EMPRESSA_LOG_JSON  <  EMPRESSA_STACK_<FIELD>  <  CLI flags

The two plain variables are the ones every ``empressa`` service knows; the
``EMPRESSA_STACK_`` ones (``EMPRESSA_STACK_PORT``, ``…_P2P_PORT``, ``…_DEMO``, …)
set ``up``'s own fields. Empty values count as unset. An invalid value is a
:class:`~stack.errors.StackError` naming the setting and where it came from.

What the stack's services are configured with is theirs: the caller's
``EMPRESSA_INDEXER_*`` and ``EMPRESSA_BRIDGE_*`` reach them through their
environment (see :mod:`stack.services`), and they read those themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

import ipfsrpc
from indexer.db import check_database_url
from node.errors import ConfigError
from node.layered import LayeredSettings, load_layered

from .errors import StackError

__all__ = ["LOG_JSON_ENV", "StackSettings", "env_flag", "load_stack_settings"]

LOG_JSON_ENV = "EMPRESSA_LOG_JSON"
ENV_PREFIX = "EMPRESSA_STACK_"


def env_flag(text: str) -> bool:
    """An on/off environment variable: ``1``, ``true`` or ``yes`` (any case) is on, anything else off."""
    return text.lower() in ("1", "true", "yes")


class StackSettings(LayeredSettings):
    """Everything ``empressa up`` itself is configured with."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(
        description="Data directory: the embedded PostgreSQL, the services' data and logs, stack.json "
        "(flag: --data, default ~/.empressa/stack).",
    )
    port: int = Field(default=8000, description="Port of the indexer API, on 127.0.0.1 (flag: --port).")
    p2p_port: int = Field(
        default=4001, description="libp2p TCP port of the bridge, on 0.0.0.0 (flag: --p2p-port)."
    )
    database_url: str | None = Field(
        default=None,
        description="Use this PostgreSQL instead of the embedded one (flag: --database-url; env: "
        "DATABASE_URL).",
    )
    demo: bool = Field(default=False, description="Publish sample assets from a demo creator (flag: --demo).")
    chain: Literal["dev", "none"] | None = Field(
        default=None,
        description="`dev`: run a local EVM chain (anvil) with the AssetRegistry deployed and the reconciler "
        "following it; `none`: no chain of the stack's own (the indexer's DIR/indexer.env or "
        "EMPRESSA_INDEXER_EVM_* may still name one). Default: `dev` with --demo, else `none` (flag: --chain).",
    )
    chain_port: int = Field(
        default=8545,
        ge=1,
        le=65535,
        description="Port of the dev chain's JSON-RPC on 127.0.0.1 (flag: --chain-port).",
    )
    ipfs_api: str | None = Field(
        default=None,
        description="The operator's IPFS node (Kubo RPC API: /ip4/127.0.0.1/tcp/5001 or http://127.0.0.1:5001): "
        "run the pin worker (`indexer pin`) as a child, with EMPRESSA_INDEXER_IPFS_API set to it. An "
        "EMPRESSA_INDEXER_IPFS_API of the environment or DIR/indexer.env runs it too (flag: --ipfs-api).",
    )
    log_json: bool = Field(
        default=False,
        description="Log one JSON object per line: the supervisor, and the indexer services it starts, "
        "which read EMPRESSA_LOG_JSON too (env: EMPRESSA_LOG_JSON, on when 1, true or yes).",
    )

    @property
    def dev_chain(self) -> bool:
        """Whether a dev chain was asked for: ``--chain dev``, or ``--demo`` without ``--chain none``."""
        return self.chain == "dev" or (self.chain is None and self.demo)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        return check_database_url(value)

    @field_validator("ipfs_api")
    @classmethod
    def _check_ipfs_api(cls, value: str | None) -> str | None:
        return None if value is None else ipfsrpc.check_ipfs_api(value)

    @field_validator("data_dir")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("log_json", mode="before")
    @classmethod
    def _log_json_flag(cls, value: Any) -> Any:
        return env_flag(value) if isinstance(value, str) else value


def load_stack_settings(
    data_dir: Path, overrides: Mapping[str, Any], environ: Mapping[str, str]
) -> StackSettings:
    """Build the settings from their layered sources (see the module docstring).

    Args:
        data_dir: the stack's data directory (from ``--data``).
        overrides: settings from command-line flags; ``None`` and ``""`` mean "flag not given".
        environ: environment variables.

    Raises:
        StackError: a value is invalid (one line, naming the setting and where it came from).
    """
    flags = {name: None if value == "" else value for name, value in overrides.items()}
    try:
        return load_layered(
            StackSettings,
            data_dir,
            flags,
            environ,
            table=None,
            env_prefix=ENV_PREFIX,
            plain_env={"DATABASE_URL": "database_url", LOG_JSON_ENV: "log_json"},
        )
    except ConfigError as exc:
        raise StackError(str(exc)) from None
