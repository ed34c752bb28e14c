"""Every environment variable that README.md and configs/ document works, as ``cli.py`` builds settings.

The documented names are read from the files themselves (each key of
``configs/node.toml`` and ``configs/bridge.toml`` as ``EMPRESSA_NODE_<KEY>`` /
``EMPRESSA_BRIDGE_<KEY>``, each variable of ``configs/indexer.env``, each
``EMPRESSA_*`` named in any of them or in the README), so a variable documented
later without a case here fails until it gets one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import cli
from node.keystore import kek_from_env
from protocol import Signer

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
PEER = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
BOOT = f"/ip4/203.0.113.7/tcp/4001/p2p/{PEER}"
DID = Signer(b"\x07" * 32).public.did
KEK = "ab" * 32
ISSUER = "GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN"  # a Stellar account (the docs')
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"

# What each variable is set to, and what the settings then hold (``{}``: a path under tmp_path).
NODE = {
    "DATA_DIR": ("{}", "data_dir", Path("{}")),
    "LISTEN": ("/ip4/127.0.0.1/tcp/4999", "listen", ["/ip4/127.0.0.1/tcp/4999"]),
    "BOOTSTRAP": (BOOT, "bootstrap", [BOOT]),
    "API_HOST": ("127.0.0.2", "api_host", "127.0.0.2"),
    "API_PORT": ("4242", "api_port", 4242),
    "MDNS": ("false", "mdns", False),
    "ANTI_ENTROPY_INTERVAL": ("2.5", "anti_entropy_interval", 2.5),
    "GOSSIP_RATE": ("75", "gossip_rate", 75.0),
    "TRUSTED_BRIDGES": (DID, "trusted_bridges", [DID]),
    "MAX_CLOCK_SKEW_MS": ("1000", "max_clock_skew_ms", 1000),
    "SYNC_REQUEST_TIMEOUT": ("3", "sync_request_timeout", 3.0),
    "EVM_RPC_URL": ("http://127.0.0.1:8545", "evm_rpc_url", "http://127.0.0.1:8545"),
    "EVM_REGISTRY": (REGISTRY, "evm_registry", REGISTRY),
    "IPFS_API": ("http://127.0.0.1:5001", "ipfs_api", "/ip4/127.0.0.1/tcp/5001/http"),
    "INDEXER_URL": ("http://127.0.0.1:8000/", "indexer_url", "http://127.0.0.1:8000"),
    "LOG_LEVEL": ("debug", "log_level", "DEBUG"),
    "LOG_JSON": ("true", "log_json", True),
}
BRIDGE = {
    "DATA_DIR": ("{}", "data_dir", Path("{}")),
    "DATABASE_URL": ("postgresql://bridge-env/db", "database_url", "postgresql://bridge-env/db"),
    "LISTEN": ("/ip4/127.0.0.1/tcp/4999", "node.listen", ["/ip4/127.0.0.1/tcp/4999"]),
    "BOOTSTRAP": (BOOT, "node.bootstrap", [BOOT]),
    "MDNS": ("true", "node.mdns", True),
    "METRICS_PORT": ("9101", "metrics_port", 9101),
    "METRICS_HOST": ("0.0.0.0", "metrics_host", "0.0.0.0"),
    "WRITER_BATCH": ("10", "writer_batch", 10),
    "WRITER_LINGER": ("0.5", "writer_linger", 0.5),
    "VERIFY_WORKERS": ("2", "verify_workers", 2),
    "DB_POOL_SIZE": ("3", "db_pool_size", 3),
    "REJECT_QUEUE": ("5", "reject_queue", 5),
    "TRUSTED_BRIDGES": (DID, "trusted_bridges", [DID]),
    "ATTEST_BATCH": ("7", "attest_batch", 7),
    "ATTEST_POLL_INTERVAL": ("0.5", "attest_poll_interval", 0.5),
    "QUARANTINE_MAX_SOURCE_BYTES": ("100", "quarantine_max_source_bytes", 100),
    "QUARANTINE_MAX_TOTAL_BYTES": ("200", "quarantine_max_total_bytes", 200),
    "QUARANTINE_RETENTION_HOURS": ("2", "quarantine_retention_hours", 2.0),
    "ANTI_ENTROPY_INTERVAL": ("2.5", "node.anti_entropy_interval", 2.5),
    "GOSSIP_RATE": ("75", "node.gossip_rate", 75.0),
    "MAX_CLOCK_SKEW_MS": ("1000", "node.max_clock_skew_ms", 1000),
    "SYNC_REQUEST_TIMEOUT": ("3", "node.sync_request_timeout", 3.0),
    "LOG_LEVEL": ("warning", "node.log_level", "WARNING"),
    "LOG_JSON": ("true", "node.log_json", True),
}
INDEXER = {
    "DATA_DIR": ("{}", "data_dir", Path("{}")),
    "DATABASE_URL": ("postgresql://indexer-env/db", "database_url", "postgresql://indexer-env/db"),
    "HOST": ("0.0.0.0", "host", "0.0.0.0"),
    "PORT": ("8123", "port", 8123),
    "INDEX_DIR": ("{}/idx", "index_dir", Path("{}/idx")),
    "DB_POOL_SIZE": ("3", "db_pool_size", 3),
    "RATE_LIMIT_ENABLED": ("false", "rate_limit_enabled", False),
    "RATE_LIMIT_READ": ("5/minute", "rate_limit_read", "5/minute"),
    "RATE_LIMIT_SUBMIT": ("6/minute", "rate_limit_submit", "6/minute"),
    "RATE_LIMIT_SUBMIT_KEY": ("7/minute", "rate_limit_submit_key", "7/minute"),
    "TRUSTED_PROXY": ("true", "trusted_proxy", True),
    "TRUSTED_BRIDGES": (f'["{DID}"]', "trusted_bridges", [DID]),
    "MAX_ENTRIES_PER_REQUEST": ("10", "max_body_bytes", 10 * 16384),
    "VERIFY_WORKERS": ("2", "verify_workers", 2),
    "MAX_BODY_BYTES": ("1000", "max_body_bytes", 1000),
    "QUARANTINE_MAX_SOURCE_BYTES": ("100", "quarantine_max_source_bytes", 100),
    "QUARANTINE_MAX_TOTAL_BYTES": ("200", "quarantine_max_total_bytes", 200),
    "QUARANTINE_RETENTION_HOURS": ("2", "quarantine_retention_hours", 2.0),
    "STELLAR_HORIZON_URL": ("http://127.0.0.1:8001", "stellar_horizon_url", "http://127.0.0.1:8001"),
    "STELLAR_NETWORK": ("pubnet", "stellar_network", "pubnet"),
    # Braces doubled: each value goes through str.format (for "{}" paths).
    "STELLAR_ASSETS": ('{{"USDC": "' + ISSUER + '"}}', "stellar_assets", {"USDC": ISSUER}),
    "SSE_HEARTBEAT_S": ("1.5", "sse_heartbeat_s", 1.5),
    "SSE_MAX_PER_CLIENT": ("2", "sse_max_per_client", 2),
    "LOG_LEVEL": ("error", "log_level", "ERROR"),
    "LOG_JSON": ("true", "log_json", True),
    "EVM_RPC_URL": ("http://127.0.0.1:9545", "evm_rpc_url", "http://127.0.0.1:9545"),
    "EVM_REGISTRY": ("0x" + "cd" * 20, "evm_registry", "0x" + "cd" * 20),
    "EVM_CHAIN_ID": ("5", "evm_chain_id", 5),
    "EVM_CONFIRMATIONS": ("3", "evm_confirmations", 3),
    "EVM_MAX_REORG_DEPTH": ("7", "evm_max_reorg_depth", 7),
    "EVM_START_BLOCK": ("42", "evm_start_block", 42),
    "EVM_MAX_RANGE": ("100", "evm_max_range", 100),
    "RECONCILE_INTERVAL": ("0.5", "reconcile_interval", 0.5),
    "IPFS_API": ("http://127.0.0.1:5001", "ipfs_api", "/ip4/127.0.0.1/tcp/5001/http"),
    "IPFS_GATEWAY": ("https://gw.example/", "ipfs_gateway", "https://gw.example"),
    "PIN_INTERVAL": ("0.5", "pin_interval", 0.5),
    "PIN_BATCH": ("4", "pin_batch", 4),
    "PIN_TIMEOUT_S": ("30", "pin_timeout_s", 30.0),
    "PIN_LEASE_S": ("900", "pin_lease_s", 900.0),
    "PIN_MAX_ATTEMPTS": ("3", "pin_max_attempts", 3),
    "PIN_BACKOFF_S": ("0.5", "pin_backoff_s", 0.5),
    "PIN_BACKOFF_MAX_S": ("60", "pin_backoff_max_s", 60.0),
    "PIN_UNPIN_GRACE_S": ("3600", "pin_unpin_grace_s", 3600.0),
}
# Variables that are only valid together: the partner set beside each, removed with it.
PAIRED = {
    "EMPRESSA_INDEXER_EVM_RPC_URL": {"EMPRESSA_INDEXER_EVM_REGISTRY": "0x" + "ab" * 20},
    "EMPRESSA_INDEXER_EVM_REGISTRY": {"EMPRESSA_INDEXER_EVM_RPC_URL": "http://127.0.0.1:8545"},
}
# Variables without a process's prefix: (command, value, attribute, expected).
PLAIN: dict[str, list[tuple[list[str], str, str, Any]]] = {
    "DATABASE_URL": [
        (["bridge", "run"], "postgresql://plain/db", "database_url", "postgresql://plain/db"),
        (["indexer", "run"], "postgresql://plain/db", "database_url", "postgresql://plain/db"),
    ],
    "EMPRESSA_LOG_JSON": [(["indexer", "run"], "1", "log_json", True)],
}
PREFIXED = {
    "EMPRESSA_NODE_": (["node", "run"], NODE),
    "EMPRESSA_BRIDGE_": (["bridge", "run"], BRIDGE),
    "EMPRESSA_INDEXER_": (["indexer", "run"], INDEXER),
}
SECRETS = {"EMPRESSA_PASSPHRASE": "pw", "EMPRESSA_KEK": KEK}  # the keystore's, not settings
DEPLOYER = "EMPRESSA_DEPLOYER_KEY"  # `chain deploy`'s signer, read from the environment only


def documented() -> list[str]:
    """Every variable the README and configs/ name, directly or as a config key."""
    names: set[str] = set()
    for path, prefix in (
        (CONFIGS / "node.toml", "EMPRESSA_NODE_"),
        (CONFIGS / "bridge.toml", "EMPRESSA_BRIDGE_"),
    ):
        text = path.read_text()
        names |= {prefix + key.upper() for key in re.findall(r"(?m)^(?:# )?([a-z_]+) = ", text)}
    env = (CONFIGS / "indexer.env").read_text()
    names |= set(re.findall(r"(?m)^# ([A-Z_]+)=", env))
    for path in (ROOT / "README.md", *(p for p in CONFIGS.iterdir() if p.is_file())):
        text = path.read_text()
        names |= {n for n in re.findall(r"EMPRESSA_[A-Z0-9_]+", text) if not n.endswith("_")}
        names |= set(re.findall(r"\bDATABASE_URL\b", text))
    return sorted(names)


def _settings(argv: list[str], environ: dict[str, str]) -> Any:
    args = cli.build_parser().parse_args(argv)
    build = {"node": cli.node_settings, "bridge": cli.bridge_settings, "indexer": cli.indexer_settings}
    return build[argv[0]](args, environ)


def _attr(settings: Any, path: str) -> Any:
    for name in path.split("."):
        settings = getattr(settings, name)
    return settings


def _fill(value: Any, tmp_path: Path) -> Any:
    return Path(str(value).format(tmp_path)) if isinstance(value, Path) else value


def test_the_documented_variables_are_found() -> None:
    names = documented()
    assert {
        "EMPRESSA_NODE_DATA_DIR",
        "EMPRESSA_BRIDGE_DATA_DIR",
        "EMPRESSA_INDEXER_PORT",
        "DATABASE_URL",
    } <= set(names)
    assert "EMPRESSA_NODE_LISTEN" in names and "EMPRESSA_BRIDGE_METRICS_PORT" in names


@pytest.mark.parametrize(
    "var", sorted({*documented(), *PLAIN})
)  # EMPRESSA_LOG_JSON: the stack's, to its children
def test_each_documented_variable_works(var: str, tmp_path: Path) -> None:
    if var in SECRETS:
        passphrase, kek = kek_from_env({var: SECRETS[var]})
        assert (passphrase, kek.hex() if kek else None) == (
            ("pw", None) if var == "EMPRESSA_PASSPHRASE" else (None, KEK)
        )
        return
    if var == DEPLOYER:
        key = "0x" + "11" * 32
        assert (cli.deployer_key({var: key}), cli.deployer_key({}), cli.deployer_key({var: " "})) == (
            key,
            None,
            None,
        )
        return
    if var in PLAIN:
        for argv, value, attr, expected in PLAIN[var]:
            base = {"DATABASE_URL": "postgresql://x/y"} if argv[0] == "bridge" else {}
            assert _attr(_settings(argv, {**base, var: value}), attr) == expected, argv
            assert _attr(_settings(argv, base), attr) != expected, f"{var} is not what set it"
        return
    prefix = next((p for p in PREFIXED if var.startswith(p)), None)
    assert prefix is not None, f"{var} is documented, but no process reads it"
    argv, cases = PREFIXED[prefix]
    key = var.removeprefix(prefix)
    assert key in cases, f"{var} is documented but has no case in this test"
    value, attr, expected = cases[key]
    partner = PAIRED.get(var, {})
    environ = {var: value.format(tmp_path), **partner}
    if prefix == "EMPRESSA_BRIDGE_" and key != "DATABASE_URL":
        environ["DATABASE_URL"] = "postgresql://x/y"
    if key != "DATA_DIR":  # the others are read from a data dir of the test's own, not $HOME
        argv = [*argv, "--data", str(tmp_path / "data")]
    got = _attr(_settings(argv, environ), attr)
    assert got == _fill(expected, tmp_path)
    without = {k: v for k, v in environ.items() if k != var and k not in partner}
    assert _attr(_settings(argv, without), attr) != got


def test_data_dir_flag_wins_over_the_variable(tmp_path: Path) -> None:
    for argv, var in (
        (["node", "run"], "EMPRESSA_NODE_DATA_DIR"),
        (["bridge", "run"], "EMPRESSA_BRIDGE_DATA_DIR"),
        (["indexer", "run"], "EMPRESSA_INDEXER_DATA_DIR"),
    ):
        s = _settings([*argv, "--data", str(tmp_path / "flag")], {var: str(tmp_path / "env")})
        assert s.data_dir == tmp_path / "flag", argv
    for argv in (["node", "list"], ["node", "publish", "--key", "k"], ["node", "init"]):
        args = cli.build_parser().parse_args(argv)
        assert cli._data_dir(args, {"EMPRESSA_NODE_DATA_DIR": str(tmp_path / "env")}) == tmp_path / "env"


def test_each_process_names_a_bad_value_and_its_source(tmp_path: Path) -> None:
    from node.errors import ConfigError

    data = ["--data", str(tmp_path)]
    for argv, var in (
        (["node", "run"], "EMPRESSA_NODE_API_PORT"),
        (["bridge", "run"], "EMPRESSA_BRIDGE_WRITER_BATCH"),
        (["indexer", "run"], "EMPRESSA_INDEXER_PORT"),
    ):
        with pytest.raises(ConfigError, match=rf"invalid setting '.*' \(from {var}\)"):
            _settings([*argv, *data], {var: "many"})
    with pytest.raises(ConfigError, match=r"invalid setting 'port' \(from command line\)"):
        _settings(["indexer", "run", "--port", "70000", *data], {})


def test_the_prefixed_database_url_wins_over_the_plain_one(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://plain/db"}
    for argv, var in (
        (["bridge", "run"], "EMPRESSA_BRIDGE_DATABASE_URL"),
        (["indexer", "run"], "EMPRESSA_INDEXER_DATABASE_URL"),
    ):
        s = _settings([*argv, "--data", str(tmp_path)], {**env, var: "postgresql://prefixed/db"})
        assert s.database_url == "postgresql://prefixed/db", argv
        s = _settings(
            [*argv, "--data", str(tmp_path), "--database-url", "postgresql://flag/db"], {**env, var: "x"}
        )
        assert s.database_url == "postgresql://flag/db", argv
