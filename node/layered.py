"""The one way every process's settings are built: sources layered, each value's source remembered.

Sources, lowest to highest priority::

    defaults  <  DATA_DIR/config.toml ([table])  <  plain variables (DATABASE_URL, …)
              <  {ENV_PREFIX}<FIELD>  <  overrides (CLI flags)

:func:`load_layered` builds any pydantic-settings class this way: the node's, the
bridge's and the indexer's (``cli.py`` calls it for each and passes the settings
in). It reads only the ``environ`` mapping it is given, so one test can build many
processes' settings side by side; the classes themselves take only keyword
arguments (their ``settings_customise_sources`` returns the init source alone).

``data_dir`` is the directory the config file is read from, so it comes from the
caller (``--data``, else :func:`data_dir_from`: ``{ENV_PREFIX}DATA_DIR`` or a home
directory), never from the file, the prefixed variables or the overrides.

A class may contain another's settings (the bridge contains the node it runs): it
names the field and the keys it takes from it in a ``flattened`` class variable,
``{"node": ("listen", …)}``. Those keys are set flat, as ``listen`` in the file, as
``{ENV_PREFIX}LISTEN`` and as a flag, exactly like the class's own fields, and a
``mode="before"`` validator of the class moves them into the contained settings.

Environment values are strings; list settings take a JSON array
(``["/ip4/…", "/ip4/…"]``) or a comma-separated list. Empty variables count as unset.

Errors, all :class:`~node.errors.ConfigError` with a one-line message naming the
setting and where its value came from::

    ConfigError
    ├── PATH is not valid TOML: …  /  cannot read PATH: …
    ├── PATH: unknown top-level key 'x'; node settings go under [node]
    ├── PATH: data_dir cannot be set here; use --data or EMPRESSA_NODE_DATA_DIR
    ├── EMPRESSA_NODE_X must be a JSON list of strings or a comma-separated list
    ├── unknown setting 'x' (from …)
    └── invalid setting 'x' (from …): reason
"""

from __future__ import annotations

import json
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from .errors import ConfigError
from .paths import CONFIG_FILE

__all__ = ["LayeredSettings", "data_dir_from", "flat_fields", "load_layered"]

SettingsT = typing.TypeVar("SettingsT", bound=BaseSettings)


class LayeredSettings(BaseSettings):
    """A settings class that :func:`load_layered` builds: it takes only keyword arguments.

    Nothing is read from the process (environment, dotenv, secrets) by pydantic-settings itself;
    the loader layers the sources and passes the result in.
    """

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def data_dir_from(environ: Mapping[str, str], env_prefix: str, home: Path) -> Path:
    """The data directory when ``--data`` is not given: ``{env_prefix}DATA_DIR``, else ``home``."""
    text = environ.get(env_prefix + "DATA_DIR", "").strip()
    return Path(text).expanduser() if text else home


def flat_fields(cls: type[BaseSettings]) -> dict[str, FieldInfo]:
    """The names a settings class is set by (in a file, the environment, flags), with their fields.

    Its own fields, except that a field named in ``cls.flattened`` is replaced by the
    keys it lists of the contained class.
    """
    flattened: Mapping[str, tuple[str, ...]] = getattr(cls, "flattened", {})
    out: dict[str, FieldInfo] = {}
    for name, field in cls.model_fields.items():
        keys = flattened.get(name)
        if keys is None:
            out[name] = field
            continue
        inner = field.annotation
        assert isinstance(inner, type) and issubclass(inner, BaseSettings), f"{name} is not settings"
        out.update({key: inner.model_fields[key] for key in keys})
    return out


def load_layered(
    cls: type[SettingsT],
    data_dir: Path,
    overrides: Mapping[str, Any],
    environ: Mapping[str, str] | None,
    *,
    table: str | None,
    env_prefix: str,
    plain_env: Mapping[str, str] | None = None,
) -> SettingsT:
    """Build ``cls`` from its layered sources (see the module docstring).

    Args:
        cls: the settings class.
        data_dir: the process's data directory; config.toml is read from here.
        overrides: settings from command-line flags; ``None`` values mean "flag not given".
        environ: environment variables; ``None`` means ``os.environ``.
        table: the config file's table for this process; ``None``: no config file is read.
        env_prefix: the prefix of this process's variables, ``EMPRESSA_NODE_``.
        plain_env: variables without the prefix that set a field, below the prefixed
            ones (``{"DATABASE_URL": "database_url"}``).

    Raises:
        ConfigError: a source is unreadable or a value is invalid (one line, naming the setting).
    """
    environ = os.environ if environ is None else environ
    data_dir = Path(data_dir).expanduser()
    fields = flat_fields(cls)
    values: dict[str, Any] = {"data_dir": data_dir}
    origin: dict[str, str] = {"data_dir": "the data_dir argument"}

    if table is not None:
        config_path = data_dir / CONFIG_FILE
        for key, value in _read_toml(config_path, table=table, env_prefix=env_prefix).items():
            values[key], origin[key] = value, str(config_path)
    for var, key in (plain_env or {}).items():
        if environ.get(var, "").strip():
            values[key], origin[key] = environ[var].strip(), var
    for key, value in _read_env(fields, environ, env_prefix).items():
        values[key], origin[key] = value, env_prefix + key.upper()
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "data_dir":
            raise ConfigError("data_dir cannot be overridden; pass it as the data_dir argument")
        values[key], origin[key] = value, "command line"
    for key in getattr(cls, "flattened", {}):
        if key in values:  # a contained class is set by its flat keys only
            raise ConfigError(f"unknown setting {key!r} (from {origin[key]})")

    try:
        return cls(**values)
    except ValidationError as exc:
        raise _config_error(exc, origin, getattr(cls, "flattened", {})) from None


def _read_toml(path: Path, *, table: str, env_prefix: str) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {one_line(str(exc))}") from None
    for key in doc:
        if key != table:
            raise ConfigError(f"{path}: unknown top-level key {key!r}; {table} settings go under [{table}]")
    found = doc.get(table, {})
    if not isinstance(found, dict):
        raise ConfigError(f"{path}: {table} must be a table ([{table}])")
    if "data_dir" in found:
        raise ConfigError(f"{path}: data_dir cannot be set here; use --data or {env_prefix}DATA_DIR")
    return dict(found)


def _read_env(fields: Mapping[str, FieldInfo], environ: Mapping[str, str], env_prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in fields.items():
        if name == "data_dir":
            continue  # read by data_dir_from; the caller already chose the directory
        var = env_prefix + name.upper()
        text = environ.get(var)
        if text is None or not text.strip():
            continue
        if typing.get_origin(field.annotation) is list:
            out[name] = _env_list(var, text)
        else:
            out[name] = text.strip()
    return out


def _env_list(var: str, text: str) -> list[str]:
    text = text.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            items = None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{var} must be a JSON list of strings or a comma-separated list")
        return items
    return [part.strip() for part in text.split(",") if part.strip()]


def _config_error(
    exc: ValidationError, origin: Mapping[str, str], flattened: Mapping[str, tuple[str, ...]]
) -> ConfigError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = first["loc"]
    if len(loc) > 1 and loc[0] in flattened:
        loc = loc[1:]  # a contained class's field is named as it is set: flat
    msg = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if not loc:  # a rule between settings (a model validator)
        return ConfigError(one_line(f"invalid settings: {msg}{more}"))
    name = str(loc[0]) if loc else "?"
    where = name + "".join(f"[{p}]" for p in loc[1:])
    source = origin.get(name, "default")
    if first["type"] == "extra_forbidden":
        return ConfigError(f"unknown setting {name!r} (from {source}){more}")
    if first["type"] != "value_error":  # our validators already quote the value
        msg += f", got {first['input']!r:.60}"
    return ConfigError(one_line(f"invalid setting {where!r} (from {source}): {msg}{more}"))


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())
