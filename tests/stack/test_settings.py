"""``empressa up``'s settings: its flags, ``DATABASE_URL`` and ``EMPRESSA_LOG_JSON``, as cli.py builds them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cli import build_parser
from stack import StackError, StackSettings, load_stack_settings
from stack.services import child_env

ROOT = Path(__file__).resolve().parents[2]


def up_flags(*argv: str) -> tuple[Path, dict[str, object]]:
    """What cmd_up hands load_stack_settings for ``empressa up ARGV``."""
    args = build_parser().parse_args(["up", *argv])
    flags = {
        "port": args.port,
        "p2p_port": args.p2p_port,
        "database_url": args.database_url,
        "demo": args.demo or None,
    }
    return Path(args.data).expanduser(), flags


def test_defaults_are_the_documented_ones() -> None:
    data_dir, flags = up_flags()
    s = load_stack_settings(data_dir, flags, {})
    assert s == StackSettings(
        data_dir=Path("~/.empressa/stack").expanduser(),
        port=8000,
        p2p_port=4001,
        database_url=None,
        demo=False,
        log_json=False,
    )


def test_flags_are_taken() -> None:
    data_dir, flags = up_flags(
        "--data",
        "/srv/stack",
        "--port",
        "8100",
        "--p2p-port",
        "4101",
        "--database-url",
        "postgresql://a/b",
        "--demo",
    )
    s = load_stack_settings(data_dir, flags, {"DATABASE_URL": "postgresql://env/db"})
    assert (s.data_dir, s.port, s.p2p_port, s.database_url, s.demo) == (
        Path("/srv/stack"),
        8100,
        4101,
        "postgresql://a/b",
        True,
    )


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        (None, None, None),
        (None, "postgresql://env/db", "postgresql://env/db"),
        ("", "postgresql://env/db", "postgresql://env/db"),  # an empty flag is no flag
        (None, "", None),  # an empty variable is unset: the embedded PostgreSQL
        ("postgresql://flag/db", "postgresql://env/db", "postgresql://flag/db"),
    ],
)
def test_database_url_flag_over_database_url_env(
    flag: str | None, env: str | None, expected: str | None
) -> None:
    environ = {} if env is None else {"DATABASE_URL": env}
    s = load_stack_settings(Path("/d"), {"database_url": flag}, environ)
    assert s.database_url == expected


@pytest.mark.parametrize(
    ("value", "on"),
    [("1", True), ("true", True), ("YES", True), ("True", True), ("0", False), ("no", False), ("on", False),
     ("x", False), ("", False)],
)  # fmt: skip
def test_log_json_env_is_on_for_1_true_yes_only(value: str, on: bool) -> None:
    s = load_stack_settings(Path("/d"), {}, {"EMPRESSA_LOG_JSON": value})
    assert s.log_json is on
    env = child_env(
        {"EMPRESSA_LOG_JSON": value},
        database_url="postgresql://stack/db",
        metrics_dir=Path("/d/metrics"),
        log_json=s.log_json,
        kek={},
        signer=False,
    )
    # The services are told in the one form they all read.
    assert env.get("EMPRESSA_LOG_JSON") == ("1" if on else None)


def test_an_invalid_setting_is_one_stack_error_naming_it_and_its_source() -> None:
    with pytest.raises(StackError) as e:
        load_stack_settings(Path("/d"), {"port": "eighty"}, {})
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("invalid setting 'port' (from command line): ")


@pytest.mark.parametrize("package", ["protocol", "node", "bridge", "indexer"])
def test_no_package_imports_the_stack(package: str) -> None:
    """stack/ may import everything; nothing but cli.py (and tests) imports it."""
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            assert not [n for n in names if n == "stack" or n.startswith("stack.")], path


def test_the_stack_variables_sit_between_the_plain_ones_and_the_flags() -> None:
    environ = {
        "DATABASE_URL": "postgresql://plain/db",
        "EMPRESSA_STACK_DATABASE_URL": "postgresql://stack/db",
        "EMPRESSA_STACK_PORT": "8200",
        "EMPRESSA_STACK_P2P_PORT": "4201",
        "EMPRESSA_STACK_DEMO": "true",
    }
    data_dir, flags = up_flags()
    s = load_stack_settings(data_dir, flags, environ)
    assert (s.database_url, s.port, s.p2p_port, s.demo) == ("postgresql://stack/db", 8200, 4201, True)
    data_dir, flags = up_flags("--port", "8300")
    assert load_stack_settings(data_dir, flags, environ).port == 8300
    with pytest.raises(StackError, match=r"invalid setting 'p2p_port' \(from EMPRESSA_STACK_P2P_PORT\)"):
        load_stack_settings(data_dir, flags, {"EMPRESSA_STACK_P2P_PORT": "many"})
