"""BridgeSettings: sources in order, DATABASE_URL, one-line errors; the node settings it contains."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import BridgeSettings, default_data_dir, load_bridge_settings
from node.errors import ConfigError


def test_defaults_and_layers(tmp_path: Path) -> None:
    s = load_bridge_settings(tmp_path, {}, {})
    assert (s.writer_batch, s.writer_linger, s.verify_workers, s.metrics_port) == (1000, 0.05, 0, None)
    assert s.database_url is None and s.data_dir == tmp_path

    (tmp_path / "config.toml").write_text(
        '[bridge]\nwriter_batch = 500\ndatabase_url = "postgresql://file/db"\n'
    )
    env = {"DATABASE_URL": "postgresql://env/db", "EMPRESSA_BRIDGE_VERIFY_WORKERS": "2"}
    s = load_bridge_settings(tmp_path, {"bootstrap": None}, env)
    assert (s.writer_batch, s.verify_workers, s.database_url) == (500, 2, "postgresql://env/db")

    env["EMPRESSA_BRIDGE_DATABASE_URL"] = "postgresql://bridge-env/db"
    s = load_bridge_settings(
        tmp_path, {"database_url": "postgresql://flag/db", "listen": ["/ip4/127.0.0.1/tcp/0"]}, env
    )
    # The node settings are the bridge's own (BridgeSettings.node), set by their flat names.
    node = s.node
    assert s.database_url == "postgresql://flag/db" and node.listen == ["/ip4/127.0.0.1/tcp/0"]
    assert node.data_dir == tmp_path and node.anti_entropy_interval == 5.0 and node.mdns is False


def test_bad_values_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"writer_linger.*EMPRESSA_BRIDGE_WRITER_LINGER"):
        load_bridge_settings(tmp_path, {}, {"EMPRESSA_BRIDGE_WRITER_LINGER": "-1"})
    with pytest.raises(ConfigError, match="bootstrap"):
        load_bridge_settings(tmp_path, {"bootstrap": ["/ip4/127.0.0.1/tcp/1"]}, {})
    (tmp_path / "config.toml").write_text("[node]\nlisten = []\n")
    with pytest.raises(ConfigError, match=r"\[bridge\]"):
        load_bridge_settings(tmp_path, {}, {})


def test_data_dir_default(tmp_path: Path) -> None:
    assert default_data_dir({}) == Path.home() / ".empressa" / "bridge"
    assert default_data_dir({"EMPRESSA_BRIDGE_DATA_DIR": str(tmp_path)}) == tmp_path
    assert BridgeSettings().data_dir == Path.home() / ".empressa" / "bridge"


@pytest.mark.parametrize("url", ["notaurl", "mysql://u:secret@db/x", "http://127.0.0.1:5432/x"])
def test_a_database_url_that_is_not_postgresql_is_a_config_error(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match=r"database_url.*DATABASE_URL.*PostgreSQL URL") as info:
        load_bridge_settings(tmp_path, {}, {"DATABASE_URL": url})
    assert "secret" not in str(info.value), "a URL may hold a password: it is never echoed"
    for good in ("postgresql://u:p@127.0.0.1:5432/x", "postgres://h/db", "postgresql+psycopg://h/db"):
        assert load_bridge_settings(tmp_path, {"database_url": good}, {}).database_url == good


def test_the_node_settings_are_set_by_their_flat_names_in_every_source(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[bridge]\nmdns = true\ngossip_rate = 75.0\nlog_level = "debug"\n')
    env = {"EMPRESSA_BRIDGE_SYNC_REQUEST_TIMEOUT": "3", "EMPRESSA_BRIDGE_LISTEN": "/ip4/127.0.0.1/tcp/7"}
    s = load_bridge_settings(tmp_path, {"listen": ["/ip4/127.0.0.1/tcp/8"]}, env)
    assert (s.node.mdns, s.node.gossip_rate, s.node.log_level) == (True, 75.0, "DEBUG")
    assert s.node.sync_request_timeout == 3.0 and s.node.listen == ["/ip4/127.0.0.1/tcp/8"]
    assert s.node.data_dir == s.data_dir == tmp_path
    assert BridgeSettings(data_dir=tmp_path).node.mdns is False, "a bridge's mDNS is off unless asked for"
    with pytest.raises(
        ConfigError, match=r"invalid setting 'gossip_rate' \(from EMPRESSA_BRIDGE_GOSSIP_RATE\)"
    ):
        load_bridge_settings(tmp_path, {}, {"EMPRESSA_BRIDGE_GOSSIP_RATE": "0"})


@pytest.mark.parametrize("key", ["api_port", "node"])
def test_node_settings_the_bridge_does_not_take_stay_unknown(tmp_path: Path, key: str) -> None:
    (tmp_path / "config.toml").write_text(f"[bridge]\n{key} = 1\n")
    with pytest.raises(ConfigError, match=rf"unknown setting '{key}' \(from .*config.toml\)"):
        load_bridge_settings(tmp_path, {}, {})


def test_trusted_bridges_are_did_keys(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[bridge]\ntrusted_bridges = ["did:web:example.com"]\n')
    with pytest.raises(ConfigError, match=r"invalid setting 'trusted_bridges' \(from .*config.toml\)"):
        load_bridge_settings(tmp_path, {}, {})
