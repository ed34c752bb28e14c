"""The indexer's settings: one pydantic-settings class, built in ``cli.py`` and passed in.

Sources, lowest to highest priority: defaults < ``DATA_DIR/indexer.env`` (the
indexer's config file, below) < ``DATABASE_URL`` (the name every PostgreSQL tool
knows; ``EMPRESSA_LOG_JSON``, the stack's switch for its children, sets
``log_json`` the same way) < ``EMPRESSA_INDEXER_<FIELD>`` environment variables
< command-line flags.

``DATA_DIR/indexer.env`` (:class:`EnvFile`) holds dotenv lines, ``NAME=value``
(``#`` comments, blank lines, an optional ``export``, values optionally in
single or double quotes), of the same variables: ``EMPRESSA_INDEXER_*`` and
``DATABASE_URL``. Its values are taken as if they were in the environment, under
it: a variable that is set wins over the file's line. ``empressa chain deploy``
writes the EVM registry's lines there (:func:`write_env_file`: the other lines
kept, the file replaced atomically with mode 0600). A line that is not a
setting, or ``EMPRESSA_INDEXER_DATA_DIR`` (the directory the file is in), is a
:class:`~indexer.errors.SettingsFileError` naming the file and the line.
``cli.py`` layers them with the loader every process's settings are built by
(``node.layered.load_layered``; the indexer does not import the node, so the
loader is called from ``cli.py`` and the result passed in);
``IndexerSettings(...)`` itself takes only its keyword arguments and reads no
environment, so one test can build many.

Directories: ``data_dir`` (``--data``, else ``EMPRESSA_INDEXER_DATA_DIR``, else
``~/.empressa/indexer``) holds the embedded PostgreSQL in ``postgres/`` when no
database URL is set, and the search index in ``search/`` unless ``index_dir``
says otherwise. So the indexer commands given ``--data DIR`` of an ``empressa up``
stack act on that stack's database and index. ``~`` is expanded in both.

Rate limits use the ``limits`` notation (``"600/minute"``, ``"10/second;1000/hour"``).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from limits import parse_many
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from protocol import MAX_ENTRY_BYTES

from .chains.settings import ChainSettings
from .db import check_database_url
from .errors import SettingsFileError
from .pin_settings import PinSettings
from .store.quarantine import QuarantineSettings

__all__ = ["ENV_FILE", "ENV_PREFIX", "PLAIN_ENV", "EnvFile", "IndexerSettings", "write_env_file"]

ENV_PREFIX = "EMPRESSA_INDEXER_"
# Variables without the prefix that set a setting, below the prefixed ones.
PLAIN_ENV = {"DATABASE_URL": "database_url", "EMPRESSA_LOG_JSON": "log_json"}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ENV_FILE = "indexer.env"
_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def _default_data_dir() -> Path:
    return Path.home() / ".empressa" / "indexer"


class IndexerSettings(ChainSettings, PinSettings, QuarantineSettings, BaseSettings):
    """Everything the indexer's HTTP API process is configured with."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql://user:pass@host/db); DATABASE_URL sets it too. "
        "Required to serve.",
    )
    host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port the API listens on.")
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Data directory: the embedded PostgreSQL (postgres/) when no database URL is set, "
        "and the search index (search/) unless index_dir is set (flag: --data).",
    )
    index_dir: Path = Field(
        default=None,  # type: ignore[assignment]  # filled in from data_dir by _index_dir_default
        description="Directory of this machine's Tantivy search index; default DATA_DIR/search "
        "(flag: --index-dir).",
    )
    db_pool_size: int = Field(default=10, ge=1, le=200, description="SQLAlchemy connection pool size.")
    rate_limit_enabled: bool = Field(default=True, description="Apply the per-client-IP rate limits below.")
    rate_limit_read: str = Field(default="600/minute", description="Public reads, per client IP.")
    rate_limit_submit: str = Field(
        default="120/minute", description="POST /v1/entries without an API key, per client IP."
    )
    rate_limit_submit_key: str = Field(
        default="3000/minute", description="POST /v1/entries with an `ingest` API key, per key."
    )
    trusted_proxy: bool = Field(
        default=False,
        description="Take the client address from X-Forwarded-For (only behind a proxy you run).",
    )
    max_entries_per_request: int = Field(default=1000, ge=1, description="Most entries in one POST.")
    verify_workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Processes verifying POST /v1/entries bodies and building their rows, while the "
        "previous part of the body is ingested; 0 verifies in the ingest thread.",
    )
    max_body_bytes: int = Field(
        default=None,  # type: ignore[assignment]  # filled in from max_entries_per_request by _defaults
        ge=1,
        description="Largest POST /v1/entries body; default and most: MAX_ENTRIES_PER_REQUEST x 16 KiB "
        "(the largest legal batch).",
    )
    sse_heartbeat_s: float = Field(default=15.0, gt=0, description="Seconds between SSE comment heartbeats.")
    sse_max_per_client: int = Field(
        default=8,
        ge=1,
        description="Most GET /v1/events streams one client address holds open at once (per API "
        "process); one more is a 429 problem.",
    )
    log_level: str = Field(default="INFO", description="Log level of the API process.")
    log_json: bool = Field(default=False, description="Log one JSON object per line.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # cli.py layers the environment and the flags itself

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("index_dir") in (None, ""):
            data_dir = data.get("data_dir") or _default_data_dir()
            data = {**data, "index_dir": Path(data_dir).expanduser() / "search"}
        if isinstance(data, dict) and data.get("max_body_bytes") in (None, ""):
            n = data.get("max_entries_per_request", cls.model_fields["max_entries_per_request"].default)
            if isinstance(n, int) or (isinstance(n, str) and n.strip().isdigit()):
                data = {**data, "max_body_bytes": int(n) * MAX_ENTRY_BYTES}
        return data

    @model_validator(mode="after")
    def _body_limit(self) -> IndexerSettings:
        largest = self.max_entries_per_request * MAX_ENTRY_BYTES
        if self.max_body_bytes > largest:
            raise ValueError(
                f"max_body_bytes ({self.max_body_bytes}) is more than the largest legal batch "
                f"(max_entries_per_request x 16 KiB = {largest})"
            )
        return self

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        return check_database_url(value)

    @field_validator("data_dir", "index_dir")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("rate_limit_read", "rate_limit_submit", "rate_limit_submit_key")
    @classmethod
    def _check_limit(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit ({exc})") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        if value.upper() not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return value.upper()


# -- DATA_DIR/indexer.env -------------------------------------------------------------------------


def _file_variable(name: str) -> bool:
    return (name.startswith(ENV_PREFIX) and name != ENV_PREFIX + "DATA_DIR") or name in PLAIN_ENV


@dataclass(frozen=True)
class EnvFile:
    """The settings of ``DATA_DIR/indexer.env`` (see the module docstring); empty when there is no file."""

    path: Path
    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, data_dir: Path) -> EnvFile:
        """Parse ``data_dir/indexer.env``.

        Raises:
            SettingsFileError: unreadable, or a line that is not ``NAME=value`` of an indexer variable.
        """
        path = Path(data_dir).expanduser() / ENV_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsFileError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
        values: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            m = _LINE.match(line)
            if m is None:
                raise SettingsFileError(f"{path} line {number}: not NAME=value")
            name, value = m.groups()
            if not _file_variable(name):
                raise SettingsFileError(
                    f"{path} line {number}: {name} is not an indexer setting (EMPRESSA_INDEXER_*, DATABASE_URL; "
                    "not EMPRESSA_INDEXER_DATA_DIR)"
                )
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[name] = value
        return cls(path, values)

    def under(self, environ: Mapping[str, str]) -> dict[str, str]:
        """``environ`` with the file's values added below it (a variable that is set wins)."""
        return {**self.values, **{k: v for k, v in environ.items() if v.strip() or k not in self.values}}

    def source_of(self, message: str, environ: Mapping[str, str]) -> str:
        """A settings error's message with ``(from VAR)`` made ``(from VAR in PATH)`` where the file set it."""
        for name in self.values:
            if not environ.get(name, "").strip():
                message = message.replace(f"(from {name})", f"(from {name} in {self.path})")
        return message


def write_env_file(data_dir: Path, updates: Mapping[str, str]) -> Path:
    """Set ``updates`` (variable -> value) in ``data_dir/indexer.env``, keeping its other lines.

    A variable's existing line is replaced in place; new ones are appended. The new file
    is written beside the old one with mode 0600, fsynced, and renamed over it.

    Raises:
        SettingsFileError: a name that is not an indexer variable, a value with a newline,
            or the file cannot be read or written.
    """
    for name, value in updates.items():
        if not _file_variable(name) or "\n" in value or "\r" in value:
            raise SettingsFileError(f"cannot write {name}={value!r:.40} into {ENV_FILE}")
    data_dir = Path(data_dir).expanduser()
    path = data_dir / ENV_FILE
    EnvFile.read(data_dir)  # refuse to rewrite a file we cannot parse
    try:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    except OSError as exc:
        raise SettingsFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    todo = dict(updates)
    out = []
    for line in lines:
        m = _LINE.match(line) if line.strip() and not line.lstrip().startswith("#") else None
        if m is not None and m.group(1) in todo:
            name = m.group(1)
            out.append(f"{name}={todo.pop(name)}")
        else:
            out.append(line)
    if todo and not lines:
        out.append(
            "# Empressa indexer settings (dotenv lines; see configs/indexer.env). Variables set in the"
        )
        out.append("# environment win over these lines; flags win over both.")
    out.extend(f"{name}={value}" for name, value in todo.items())
    tmp = path.with_name(f".{ENV_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, ("\n".join(out) + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise SettingsFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path
