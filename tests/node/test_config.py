"""Node settings: defaults < config.toml < EMPRESSA_NODE_* < overrides, and clear ConfigErrors."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from node.config import (
    NodeSettings,
    default_data_dir,
    load_node_settings,
    render_config,
    write_default_config,
)
from node.errors import ConfigError, NodeError
from protocol import Signer

PEER = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
BOOT = f"/ip4/203.0.113.7/tcp/4001/p2p/{PEER}"
EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "node.toml"


def did(n: int) -> str:
    return Signer(bytes([n]) * 32).public.did


def write_toml(data_dir: Path, text: str) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "config.toml"
    path.write_text(text)
    return path


def test_defaults(tmp_path: Path) -> None:
    s = load_node_settings(tmp_path, {}, environ={})
    assert s.data_dir == tmp_path
    assert s.listen == ["/ip4/0.0.0.0/tcp/4001"]
    assert s.bootstrap == []
    assert (s.api_host, s.api_port) == ("127.0.0.1", 0)
    assert s.mdns is True
    assert s.anti_entropy_interval == 5.0
    assert s.gossip_rate == 50.0
    assert s.trusted_bridges == []
    assert s.max_clock_skew_ms == 600_000
    assert s.sync_request_timeout == 10.0
    assert (s.log_level, s.log_json) == ("INFO", False)


def test_precedence_toml_env_overrides(tmp_path: Path) -> None:
    write_toml(
        tmp_path,
        "[node]\napi_port = 1111\nlog_level = 'DEBUG'\ngossip_rate = 75.0\nmdns = false\n"
        f"bootstrap = ['{BOOT}']\n",
    )
    env = {"EMPRESSA_NODE_API_PORT": "2222", "EMPRESSA_NODE_LOG_LEVEL": "warning", "EMPRESSA_NODE_MDNS": ""}
    s = load_node_settings(tmp_path, {"api_port": 3333, "listen": None, "bootstrap": None}, environ=env)
    assert s.api_port == 3333  # override > env > toml
    assert s.log_level == "WARNING"  # env > toml (and normalised)
    assert s.gossip_rate == 75.0  # toml > default
    assert s.mdns is False  # an empty env var counts as unset
    assert s.bootstrap == [BOOT]  # a None override means "flag not given"
    assert s.listen == ["/ip4/0.0.0.0/tcp/4001"]  # nothing set it

    s = load_node_settings(tmp_path, {}, environ=env)
    assert s.api_port == 2222
    s = load_node_settings(tmp_path, {}, environ={})
    assert s.api_port == 1111
    assert s.log_level == "DEBUG"


def test_env_types_and_lists(tmp_path: Path) -> None:
    other = f"/ip4/198.51.100.1/tcp/4001/p2p/{PEER}"
    env = {
        "EMPRESSA_NODE_BOOTSTRAP": f"{BOOT}, {other}",
        "EMPRESSA_NODE_LISTEN": '["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"]',
        "EMPRESSA_NODE_TRUSTED_BRIDGES": did(1),
        "EMPRESSA_NODE_LOG_JSON": "true",
        "EMPRESSA_NODE_ANTI_ENTROPY_INTERVAL": "0.25",
        "EMPRESSA_NODE_MAX_CLOCK_SKEW_MS": "1000",
    }
    s = load_node_settings(tmp_path, {}, environ=env)
    assert s.bootstrap == [BOOT, other]
    assert s.listen == ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"]
    assert s.trusted_bridges == [did(1)]
    assert s.log_json is True
    assert s.anti_entropy_interval == 0.25
    assert s.max_clock_skew_ms == 1000


def test_env_json_list_clears_a_toml_list(tmp_path: Path) -> None:
    write_toml(tmp_path, f"[node]\nbootstrap = ['{BOOT}']\n")
    s = load_node_settings(tmp_path, {}, environ={"EMPRESSA_NODE_BOOTSTRAP": "[]"})
    assert s.bootstrap == []


def test_reads_os_environ_only_when_no_environ_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMPRESSA_NODE_API_PORT", "4242")
    assert load_node_settings(tmp_path, {}).api_port == 4242
    assert load_node_settings(tmp_path, {}, environ={}).api_port == 0
    # The class itself never reads the process environment.
    assert NodeSettings(data_dir=tmp_path).api_port == 0


def test_many_nodes_in_one_process(tmp_path: Path) -> None:
    write_toml(tmp_path / "a", "[node]\napi_port = 1001\n")
    write_toml(tmp_path / "b", "[node]\napi_port = 1002\n")
    a = load_node_settings(tmp_path / "a", {}, environ={})
    b = load_node_settings(tmp_path / "b", {}, environ={})
    assert (a.api_port, b.api_port) == (1001, 1002)
    assert (a.data_dir, b.data_dir) == (tmp_path / "a", tmp_path / "b")


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = load_node_settings(tmp_path, {}, environ={})
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        s.api_port = 5  # type: ignore[misc]


def test_default_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir({}) == tmp_path / ".empressa" / "node"
    assert default_data_dir({"EMPRESSA_NODE_DATA_DIR": "~/elsewhere"}) == tmp_path / "elsewhere"
    assert NodeSettings().data_dir == tmp_path / ".empressa" / "node"


def test_valid_values_are_accepted(tmp_path: Path) -> None:
    s = load_node_settings(
        tmp_path,
        {
            "listen": ["/ip4/127.0.0.1/tcp/4001", "/ip6/::/tcp/4001"],
            "bootstrap": [BOOT, f"/dns4/boot.example.org/tcp/4001/p2p/{PEER}"],
            "trusted_bridges": [did(1), did(2)],
            "api_port": 65535,
            "max_clock_skew_ms": 0,
        },
        environ={},
    )
    assert s.trusted_bridges == [did(1), did(2)]
    assert len(s.bootstrap) == 2


# --- errors ------------------------------------------------------------------------

BAD = [
    # (field, value as TOML text, value for env, value for overrides, expected text)
    ("listen", "['not-a-multiaddr']", "not-a-multiaddr", ["not-a-multiaddr"], "not a multiaddr"),
    (
        "listen",
        "['/ip4/1.2.3.4/tcp/99999']",
        "/ip4/1.2.3.4/tcp/99999",
        ["/ip4/1.2.3.4/tcp/99999"],
        "multiaddr",
    ),
    ("listen", "['']", '[""]', [""], "empty multiaddr"),
    # libp2p would skip these with a log line and run listening nowhere: only TCP is listened on.
    (
        "listen",
        "['/ip4/127.0.0.1/udp/4001']",
        "/ip4/127.0.0.1/udp/4001",
        ["/ip4/127.0.0.1/udp/4001"],
        "TCP only",
    ),
    (
        "listen",
        "['/ip4/0.0.0.0/tcp/4001/ws']",
        "/ip4/0.0.0.0/tcp/4001/ws",
        ["/ip4/0.0.0.0/tcp/4001/ws"],
        "TCP only",
    ),
    (
        "listen",
        "['/dns4/localhost/tcp/4001']",
        "/dns4/localhost/tcp/4001",
        ["/dns4/localhost/tcp/1"],
        "TCP only",
    ),
    (
        "bootstrap",
        f"['/ip4/1.2.3.4/udp/4001/p2p/{PEER}']",
        f"/ip4/1.2.3.4/udp/4001/p2p/{PEER}",
        [f"/ip4/1.2.3.4/udp/4001/p2p/{PEER}"],
        "TCP only",
    ),
    (
        "bootstrap",
        f"['/ip4/1.2.3.4/tcp/4001/ws/p2p/{PEER}']",
        f"/ip4/1.2.3.4/tcp/4001/ws/p2p/{PEER}",
        [f"/ip4/1.2.3.4/tcp/4001/ws/p2p/{PEER}"],
        "TCP only",
    ),
    ("bootstrap", "['/ip4/1.2.3.4/tcp/4001']", "/ip4/1.2.3.4/tcp/4001", ["/ip4/1.2.3.4/tcp/4001"], "/p2p/"),
    (
        "bootstrap",
        "['/ip4/1.2.3.4/tcp/1/p2p/QmBAD']",
        "/ip4/1.2.3.4/tcp/1/p2p/QmBAD",
        ["/p2p/QmBAD"],
        "multiaddr",
    ),
    ("trusted_bridges", "['did:key:zabc']", "did:key:zabc", ["did:key:zabc"], "did:key"),
    ("trusted_bridges", "['did:web:example.com']", "did:web:example.com", ["did:web:x"], "did:key"),
    ("api_port", "70000", "70000", 70000, "65535"),
    ("api_port", "-1", "-1", -1, "greater than or equal to 0"),
    ("api_port", "'http'", "http", "http", "integer"),
    ("anti_entropy_interval", "0.0", "0", 0, "greater than 0"),
    ("anti_entropy_interval", "-5.0", "-5", -5.0, "greater than 0"),
    ("sync_request_timeout", "0", "0", 0.0, "greater than 0"),
    ("gossip_rate", "nan", "nan", float("inf"), "finite"),
    ("max_clock_skew_ms", "-1", "-1", -1, "greater than or equal to 0"),
    ("mdns", "'maybe'", "maybe", "maybe", "boolean"),
    ("log_level", "'LOUD'", "LOUD", "LOUD", "DEBUG, INFO"),
    ("api_host", "''", None, "", "at least 1"),
]


def _check(err: ConfigError, field: str, source: str, expected: str) -> None:
    text = str(err)
    assert f"'{field}'" in text, text
    assert source in text, text
    assert expected in text, text
    assert "\n" not in text
    assert err.__cause__ is None
    assert isinstance(err, NodeError)


@pytest.mark.parametrize(("field", "toml", "env", "override", "expected"), BAD)
def test_bad_value_in_toml(
    tmp_path: Path, field: str, toml: str, env: Any, override: Any, expected: str
) -> None:
    path = write_toml(tmp_path, f"[node]\n{field} = {toml}\n")
    with pytest.raises(ConfigError) as info:
        load_node_settings(tmp_path, {}, environ={})
    _check(info.value, field, str(path), expected)


@pytest.mark.parametrize(
    ("field", "toml", "env", "override", "expected"),
    [row for row in BAD if row[2] is not None],  # an empty variable counts as unset
)
def test_bad_value_in_env(
    tmp_path: Path, field: str, toml: str, env: Any, override: Any, expected: str
) -> None:
    var = f"EMPRESSA_NODE_{field.upper()}"
    with pytest.raises(ConfigError) as info:
        load_node_settings(tmp_path, {}, environ={var: env})
    _check(info.value, field, var, expected)


@pytest.mark.parametrize(("field", "toml", "env", "override", "expected"), BAD)
def test_bad_value_in_overrides(
    tmp_path: Path, field: str, toml: str, env: Any, override: Any, expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_node_settings(tmp_path, {field: override}, environ={})
    _check(info.value, field, "command line", expected)


def test_an_override_fixes_a_bad_toml_value(tmp_path: Path) -> None:
    write_toml(tmp_path, "[node]\napi_port = 70000\n")
    assert load_node_settings(tmp_path, {"api_port": 8080}, environ={}).api_port == 8080


def test_several_errors_report_the_first_and_count(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"and 1 more"):
        load_node_settings(tmp_path, {"api_port": -1, "gossip_rate": 0}, environ={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[node]\napi_prot = 1\n", "unknown setting 'api_prot'"),
        ("api_port = 1\n", "unknown top-level key 'api_port'; node settings go under [node]"),
        ("node = 5\n", "must be a table"),
        ("[node]\ndata_dir = '/tmp'\n", "data_dir cannot be set here"),
        ("[node\napi_port = 1\n", "is not valid TOML"),
        ("[node]\nlisten = '/ip4/0.0.0.0/tcp/1'\n", "valid list"),
    ],
)
def test_bad_config_file(tmp_path: Path, text: str, expected: str) -> None:
    path = write_toml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_node_settings(tmp_path, {}, environ={})
    assert expected in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'colour' \(from command line\)"):
        load_node_settings(tmp_path, {"colour": "blue"}, environ={})
    with pytest.raises(ConfigError, match="data_dir"):
        load_node_settings(tmp_path, {"data_dir": tmp_path / "x"}, environ={})


def test_bad_env_list(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="EMPRESSA_NODE_LISTEN must be a JSON list of strings"):
        load_node_settings(tmp_path, {}, environ={"EMPRESSA_NODE_LISTEN": "[1, 2]"})
    with pytest.raises(ConfigError, match="EMPRESSA_NODE_BOOTSTRAP must be a JSON list"):
        load_node_settings(tmp_path, {}, environ={"EMPRESSA_NODE_BOOTSTRAP": "[not json"})


def test_unknown_env_vars_are_ignored(tmp_path: Path) -> None:
    env = {"EMPRESSA_NODE_COLOUR": "blue", "EMPRESSA_NODE_DATA_DIR": "/elsewhere"}
    assert load_node_settings(tmp_path, {}, environ=env).data_dir == tmp_path


# --- writing the default config ------------------------------------------------------


def test_write_default_config(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "node"
    path = write_default_config(data_dir)
    assert path == data_dir / "config.toml"
    text = path.read_text()
    assert tomllib.loads(text) == {"node": {}}  # every setting commented out
    for name in NodeSettings.model_fields:
        assert name in text
    s = load_node_settings(data_dir, {}, environ={})
    assert s == load_node_settings(tmp_path / "empty", {}, environ={}).model_copy(
        update={"data_dir": data_dir}
    )
    assert os.listdir(data_dir) == ["config.toml"]


def test_write_default_config_keeps_an_existing_file(tmp_path: Path) -> None:
    write_toml(tmp_path, "[node]\napi_port = 9999\n")
    assert write_default_config(tmp_path) == tmp_path / "config.toml"
    assert (tmp_path / "config.toml").read_text() == "[node]\napi_port = 9999\n"
    assert load_node_settings(tmp_path, {}, environ={}).api_port == 9999


def test_uncommented_default_config_loads_as_defaults(tmp_path: Path) -> None:
    write_toml(tmp_path, render_config(commented=False))
    assert load_node_settings(tmp_path, {}, environ={}) == NodeSettings(data_dir=tmp_path)


def test_example_config_has_every_field_and_loads(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    table = tomllib.loads(text)["node"]
    unset = {n for n, f in NodeSettings.model_fields.items() if f.default is None}  # TOML has no null
    assert set(table) == set(NodeSettings.model_fields) - {"data_dir"} - unset
    for name in unset:
        assert f"\n# {name} = " in text, f"{name} has no commented-out example"
    lines = text.splitlines()
    for name in table:
        (i,) = [n for n, line in enumerate(lines) if line.startswith(f"{name} =")]
        assert lines[i - 1].startswith("# "), f"{name} has no comment"
    assert "data_dir" in text  # explained in a comment
    write_toml(tmp_path, text)
    assert load_node_settings(tmp_path, {}, environ={}) == NodeSettings(data_dir=tmp_path)
