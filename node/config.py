"""The node's settings: one pydantic-settings class, built in ``cli.py`` and passed in.

Sources, lowest to highest priority::

    defaults  <  DATA_DIR/config.toml ([node] table)  <  EMPRESSA_NODE_<FIELD>  <  overrides (CLI flags)

:func:`load_node_settings` is the one way to build :class:`NodeSettings` from
those sources: :func:`node.layered.load_layered`, the loader every process's
settings are built by. It reads only the ``environ`` mapping it is given (no
process globals), so one test can run many nodes with different settings.
``NodeSettings(...)`` itself takes only its keyword arguments.

``data_dir`` is the directory the config file is read from, so it comes from the
caller (``--data``, else :func:`default_data_dir`: ``EMPRESSA_NODE_DATA_DIR`` or
``~/.empressa/node``), never from config.toml or the overrides.

Environment values are strings; list settings take a JSON array
(``["/ip4/…", "/ip4/…"]``) or a comma-separated list. Empty variables count as unset.

Errors, all :class:`~node.errors.ConfigError` with a one-line message naming the
setting and where its value came from (the loader's, :mod:`node.layered`)::

    ConfigError
    ├── PATH is not valid TOML: …
    ├── PATH: unknown top-level key 'x'; node settings go under [node]
    ├── PATH: data_dir cannot be set here; use --data or EMPRESSA_NODE_DATA_DIR
    ├── EMPRESSA_NODE_X must be a JSON list of strings or a comma-separated list
    ├── unknown setting 'x' (from …)
    └── invalid setting 'x' (from …): reason   bad multiaddr (a listen address that is not
                                              TCP, a bootstrap peer not dialable over TCP),
                                              did, port, interval, …
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w
from multiaddr import Multiaddr
from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

import ipfsrpc
from protocol import IdentifierError, parse_dids

from .errors import ConfigError
from .layered import LayeredSettings, data_dir_from, load_layered, one_line
from .paths import CONFIG_FILE

__all__ = [
    "CONFIG_FILE",
    "ENV_PREFIX",
    "NodeSettings",
    "check_ipfs_api",
    "check_listen_addr",
    "check_log_level",
    "check_peer_addr",
    "default_data_dir",
    "listen_endpoint",
    "load_layered",
    "load_node_settings",
    "render_config",
    "write_default_config",
]

ENV_PREFIX = "EMPRESSA_NODE_"
_TABLE = "node"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _home_data_dir() -> Path:
    return Path.home() / ".empressa" / "node"


class NodeSettings(LayeredSettings):
    """Everything the node daemon and the ``empressa node …`` commands are configured with."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    data_dir: Path = Field(
        default_factory=_home_data_dir,
        description="Data directory: config.toml, keystore.json, node.db. Set with --data or "
        "EMPRESSA_NODE_DATA_DIR, not in this file.",
    )
    listen: list[str] = Field(
        default_factory=lambda: ["/ip4/0.0.0.0/tcp/4001"],
        description="Multiaddrs the libp2p host listens on, TCP only: /ip4/<address>/tcp/<port> or "
        "/ip6/<address>/tcp/<port> (flag: --listen). An address in use is an error at start; "
        "no other process can share the port.",
    )
    bootstrap: list[str] = Field(
        default_factory=list,
        description="Peers to dial at start, over TCP; each multiaddr must end in /p2p/<peer id> "
        '(flag: --bootstrap, repeatable). Example: ["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW…"]',
    )
    api_host: str = Field(default="127.0.0.1", min_length=1, description="Host the local HTTP API binds to.")
    api_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the local HTTP API; 0 picks a free port (flag: --api-port).",
    )
    mdns: bool = Field(
        default=True,
        description="Discover peers on the local network with mDNS (skipped when every listen "
        "address is loopback: there is nothing to announce).",
    )
    anti_entropy_interval: float = Field(
        default=5.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds between anti-entropy rounds with each peer.",
    )
    gossip_rate: float = Field(
        default=50.0,
        gt=0,
        allow_inf_nan=False,
        description="Most gossip messages published per second; each carries a batch of own entries "
        "(up to 256 or 60 KiB), so a burst fills fewer, larger messages.",
    )
    trusted_bridges: list[str] = Field(
        default_factory=list, description="did:key identities of bridges whose attestations this node trusts."
    )
    evm_rpc_url: str | None = Field(
        default=None,
        description="JSON-RPC URL of the EVM chain that `empressa node register` sends to (flag: --rpc-url); "
        "`empressa up --chain dev` prints its own in stack.json. Unset by default.",
        examples=["http://127.0.0.1:8545"],
    )
    evm_registry: str | None = Field(
        default=None,
        description="Address of the AssetRegistry on that chain (flag: --registry), as `empressa chain "
        "deploy` printed it. Unset by default.",
        examples=["0x5FbDB2315678afecb367f032d93F642f64180aa3"],
    )
    ipfs_api: str | None = Field(
        default=None,
        description="The Kubo RPC API of this creator's IPFS node, as a multiaddr "
        "(/ip4/127.0.0.1/tcp/5001, Kubo's Addresses.API) or an http:// URL: `node publish --file` "
        "adds and pins the files there, and `node media push` what was published without it. "
        "Unset by default: publishing then works offline with the computed CIDs.",
        examples=["/ip4/127.0.0.1/tcp/5001"],
    )
    indexer_url: str | None = Field(
        default=None,
        description="Base URL of the marketplace's indexer API: My Library asks it "
        "(GET /v1/creators/<did>) whether this creator's latest write is searchable there. "
        "Unset by default: the page says no indexer is configured.",
        examples=["http://127.0.0.1:8000"],
    )
    max_clock_skew_ms: int = Field(
        default=600_000,
        ge=0,
        description="Reject entries whose ts is further than this ahead of our clock (ms).",
    )
    sync_request_timeout: float = Field(
        default=10.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a sync request may take before it is abandoned.",
    )
    log_level: str = Field(default="INFO", description="One of DEBUG, INFO, WARNING, ERROR, CRITICAL.")
    log_json: bool = Field(
        default=False, description="Log one JSON object per line instead of key=value text."
    )

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

    @field_validator("trusted_bridges")
    @classmethod
    def _check_dids(cls, value: list[str]) -> list[str]:
        try:
            return [key.did for key in parse_dids(value)]
        except IdentifierError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("evm_rpc_url")
    @classmethod
    def _check_rpc_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r:.80} is not an http:// or https:// URL")
        return value

    @field_validator("indexer_url")
    @classmethod
    def _check_indexer_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
            raise ValueError(f"{value!r:.80} is not an http:// or https:// URL")
        return value.rstrip("/") if value is not None else None

    @field_validator("evm_registry")
    @classmethod
    def _check_registry(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
            raise ValueError(f"{value!r:.60} is not a 0x-prefixed 20-byte hex address")
        return value

    @field_validator("ipfs_api")
    @classmethod
    def _check_ipfs_api(cls, value: str | None) -> str | None:
        return None if value is None else check_ipfs_api(value)

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        return check_log_level(value)


def check_log_level(value: str) -> str:
    """A log level's name in upper case; a ValueError unless it is one of DEBUG … CRITICAL."""
    level = value.strip().upper()
    if level not in _LOG_LEVELS:
        raise ValueError(f"{value!r:.40} is not one of {', '.join(_LOG_LEVELS)}")
    return level


_DIAL_HOSTS = ("ip4", "ip6", "dns", "dns4", "dns6")


def check_peer_addr(text: str) -> str:
    """A bootstrap peer's multiaddr in canonical text form (a ValueError naming the problem otherwise).

    It must be dialable over TCP, the node's only transport, and name the peer:
    ``/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>/p2p/<peer id>``.
    """
    addr = _parse_multiaddr(text)
    protocols = [p.name for p in addr.protocols()]
    if "p2p" not in protocols:
        raise ValueError(f"{text!r:.120} has no /p2p/<peer id>; bootstrap peers need one")
    if len(protocols) != 3 or protocols[0] not in _DIAL_HOSTS or protocols[1] != "tcp":
        raise ValueError(
            f"{text!r:.120} cannot be dialled: peers are reached over TCP only, "
            "as /ip4|ip6|dns4|dns6/<host>/tcp/<port>/p2p/<peer id>"
        )
    return str(addr)


def check_ipfs_api(text: str) -> str:
    """An IPFS RPC API address as the multiaddr ``node.ipfs`` dials, ending in ``/http`` or ``/https``.

    Takes Kubo's form (``/ip4/127.0.0.1/tcp/5001``, optionally with ``/http`` or
    ``/https``) or a URL (``http://127.0.0.1:5001``); a ValueError names the problem otherwise.
    The rule is :func:`ipfsrpc.check_ipfs_api`'s, shared with the indexer's ``ipfs_api``.
    """
    return ipfsrpc.check_ipfs_api(text)


def check_listen_addr(text: str) -> str:
    """A listen multiaddr in canonical text form; a ValueError unless :func:`listen_endpoint` accepts it."""
    listen_endpoint(text)
    return str(Multiaddr(text))


def listen_endpoint(text: str) -> tuple[str, int]:
    """The (IP address, TCP port) a listen multiaddr names.

    The node's host has one transport, TCP; an address of any other shape
    (``/udp/…``, ``/ws``, a name to resolve) would be skipped by libp2p with a
    log line and the node would run listening nowhere, so it is refused here.

    Raises:
        ValueError: not ``/ip4/<address>/tcp/<port>`` or ``/ip6/<address>/tcp/<port>``.
    """
    addr = _parse_multiaddr(text)
    protocols = [p.name for p in addr.protocols()]
    if protocols not in (["ip4", "tcp"], ["ip6", "tcp"]):
        raise ValueError(
            f"{text!r:.120} cannot be listened on: nodes listen on TCP only, "
            "as /ip4/<address>/tcp/<port> or /ip6/<address>/tcp/<port>"
        )
    return str(addr.value_for_protocol(protocols[0])), int(addr.value_for_protocol("tcp"))


def _parse_multiaddr(text: str) -> Multiaddr:
    try:
        addr = Multiaddr(text)
    except Exception as exc:
        raise ValueError(f"{text!r:.120} is not a multiaddr ({one_line(str(exc))})") from None
    if not list(addr.protocols()):
        raise ValueError("an empty multiaddr")
    return addr


# --- loading ---------------------------------------------------------------------


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """The data directory when ``--data`` is not given: ``EMPRESSA_NODE_DATA_DIR`` or ``~/.empressa/node``."""
    return data_dir_from(environ, ENV_PREFIX, _home_data_dir())


def load_node_settings(
    data_dir: Path,
    overrides: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> NodeSettings:
    """Build the settings: defaults < ``data_dir/config.toml`` < ``EMPRESSA_NODE_*`` < ``overrides``.

    Args:
        data_dir: the node's data directory (from ``--data``); config.toml is read from here.
        overrides: settings from command-line flags; ``None`` values mean "flag not given".
        environ: environment variables; ``None`` means ``os.environ``.

    Raises:
        ConfigError: a source is unreadable or a value is invalid (one line, naming the setting).
    """
    return load_layered(NodeSettings, data_dir, overrides, environ, table=_TABLE, env_prefix=ENV_PREFIX)


# --- writing ---------------------------------------------------------------------


def render_config(*, commented: bool) -> str:
    """A config.toml with every setting at its default, each under a comment saying what it does.

    Args:
        commented: write the settings commented out, so the defaults of a newer
            Empressa still apply until the user uncomments a line (what
            :func:`write_default_config` does); ``False`` gives the example in
            ``configs/node.toml``.
    """
    defaults = NodeSettings.model_construct()
    lines = [
        "# Empressa node settings (the [node] table of DATA_DIR/config.toml).",
        "#",
        f"# Each setting can also be given as an environment variable {ENV_PREFIX}<NAME> (upper case;",
        "# lists as a JSON array or comma-separated), which wins over this file; command-line",
        "# flags win over both.",
        "",
        f"[{_TABLE}]",
    ]
    for name, field in NodeSettings.model_fields.items():
        lines.append("")
        if name == "data_dir":
            lines.extend(f"# {line}" for line in textwrap.wrap(f"data_dir: {field.description}", width=96))
            continue
        lines.extend(f"# {line}" for line in textwrap.wrap(field.description or name, width=96))
        value = getattr(defaults, name)
        if value is None:  # no default (TOML has no null): an example, commented out either way
            text = tomli_w.dumps({name: (field.examples or [""])[0]}).rstrip("\n")
            lines.extend(f"# {line}" for line in text.splitlines())
            continue
        text = tomli_w.dumps({name: value}).rstrip("\n")
        lines.extend(f"# {line}" if commented else line for line in text.splitlines())
    return "\n".join(lines) + "\n"


def write_default_config(data_dir: Path) -> Path:
    """Write ``data_dir/config.toml`` with every setting commented out, unless it exists.

    Returns:
        The path of the config file (existing or new).

    Raises:
        ConfigError: the file cannot be written.
    """
    data_dir = Path(data_dir).expanduser()
    path = data_dir / CONFIG_FILE
    if path.exists():
        return path
    tmp = path.with_name(f".{CONFIG_FILE}.{os.getpid()}.tmp")
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp.write_text(render_config(commented=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
