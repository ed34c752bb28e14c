"""The whole stack through the CLI: ``empressa up`` and a creator's ``node run``, real processes.

One module-wide stack (embedded PostgreSQL, migrations, feeder, API, bridge,
reconciler, the demo creator's node) serves every test here. A creator's node
bootstraps to the bridge address from ``stack.json``; what it publishes must be
found by ``GET /v1/assets?q=…``, then edited and deleted, through the API.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import (
    EMPRESSA,
    Daemons,
    child_env,
    cli,
    cli_json,
    free_port,
    init_node,
    one_line_error,
    publish,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.e2e

STACK_TIMEOUT = 120.0
VISIBLE_TIMEOUT = 60.0


class RunningStack:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.log_path = data.with_name("up.log")
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                EMPRESSA,
                "up",
                "--data",
                str(data),
                "--port",
                str(free_port()),
                "--p2p-port",
                str(free_port()),
                "--demo",
            ],
            env=child_env(EMPRESSA_PASSPHRASE=None, DATABASE_URL=None),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        self.info: dict[str, Any] = {}

    def logs(self) -> str:
        text = self.log_path.read_text(errors="replace")
        for child in sorted((self.data / "logs").glob("*.log")):
            text += f"\n--- {child.name} ---\n" + child.read_text(errors="replace")[-4000:]
        return text

    def wait_ready(self) -> None:
        def ready() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                pytest.fail(f"empressa up exited {self.proc.returncode}:\n{self.logs()}")
            try:
                return json.loads((self.data / "stack.json").read_text())  # type: ignore[no-any-return]
            except (OSError, ValueError):
                return None

        self.info = wait_for(ready, what="stack.json", timeout=STACK_TIMEOUT)

    def stop(self) -> int:
        code = stop_process(self.proc, signal.SIGINT)
        self._log.close()
        return code

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.info["api_url"] + path, params=params, timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    s = RunningStack(tmp_path_factory.mktemp("stack") / "data")
    try:
        s.wait_ready()
        yield s
    finally:
        code = s.stop()
        assert code == 0, f"empressa up did not stop cleanly (exit {code}):\n{s.logs()}"
        assert not (s.data / "stack.json").exists(), "stack.json should be removed on a clean stop"


def test_stack_json_names_every_part(stack: RunningStack) -> None:
    info = stack.info
    assert set(info) == {"api_url", "bridge_multiaddr", "bridge_did", "database_url"}
    assert info["bridge_did"].startswith("did:key:z6Mk")
    assert "/p2p/" in info["bridge_multiaddr"]
    assert stack.get("/readyz").status_code == 200
    assert stack.get("/healthz").status_code == 200


def test_demo_assets_are_searchable(stack: RunningStack) -> None:
    def found() -> list[dict[str, Any]]:
        r = stack.get("/v1/assets", limit=100)
        return r.json()["items"] if r.status_code == 200 and len(r.json()["items"]) >= 30 else []

    items = wait_for(found, what="the demo assets in search", timeout=VISIBLE_TIMEOUT)
    assert len({i["did"] for i in items}) == 1  # one demo creator


def test_publish_find_edit_delete_through_the_stack(
    stack: RunningStack, tmp_path: Path, daemons: Daemons
) -> None:
    data = tmp_path / "creator"
    did = init_node(data)
    daemon = daemons.start(data, bootstrap=[stack.info["bridge_multiaddr"]])
    out = publish(data, "aurora", "Aurora Borealis Drones", "--tag", "ambient", "--license", "personal")

    def hits(q: str) -> list[dict[str, Any]]:
        r = stack.get("/v1/assets", q=q)
        assert r.status_code == 200, r.text
        return [i for i in r.json()["items"] if i["did"] == did]

    found = wait_for(lambda: hits("borealis"), what="the published asset in search", timeout=VISIBLE_TIMEOUT)
    assert found[0]["key"] == "aurora" and found[0]["title"] == "Aurora Borealis Drones"
    detail = stack.get(f"/v1/assets/{did}/aurora").json()
    assert detail["entry_hash"] == out["hash"]
    raw = stack.get(f"/v1/entries/{out['hash']}")
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("application/cbor")

    cli_json("node", "edit", "--data", data, "--key", "aurora", "--title", "Aurora Polaris Drones")
    wait_for(lambda: hits("polaris"), what="the edited title in search", timeout=VISIBLE_TIMEOUT)
    assert hits("borealis") == []

    cli_json("node", "delete", "--data", data, "--key", "aurora")
    wait_for(lambda: not hits("polaris"), what="the deleted asset to leave search", timeout=VISIBLE_TIMEOUT)
    detail = stack.get(f"/v1/assets/{did}/aurora").json()
    assert detail["deleted"] is True
    history = stack.get(f"/v1/assets/{did}/aurora/history").json()
    assert [v["kind"] for v in history["versions"]] == ["asset.put", "asset.put", "asset.delete"]
    creator = stack.get(f"/v1/creators/{did}").json()
    assert creator["head"]["seq"] == 3 and creator["sync"]["status"] == "synced"
    daemon.stop()


def test_api_key_create_through_the_cli(stack: RunningStack) -> None:
    env = child_env(DATABASE_URL=stack.info["database_url"])
    out = cli_json("indexer", "api-key", "create", "--scope", "moderate", env=env)
    assert out["scopes"] == ["moderate"] and out["key"]
    bad = cli("indexer", "api-key", "create", "--scope", "root", env=env, ok=False)
    assert b"invalid choice" in bad.stderr


def test_indexer_commands_act_on_the_running_stack_through_its_data_dir(stack: RunningStack) -> None:
    env = child_env(DATABASE_URL=None)  # no URL: the stack's embedded PostgreSQL in DIR/postgres
    key = cli_json("indexer", "api-key", "create", "--data", stack.data, "--scope", "admin", env=env)
    r = httpx.get(
        stack.info["api_url"] + "/v1/admin/api-keys",
        headers={"Authorization": f"Bearer {key['key']}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert key["id"] in {k["id"] for k in r.json()["items"]}

    # The stack's feeder holds DIR/search: reindex refuses, in one line that says what to do,
    # and leaves the stack's PostgreSQL running.
    line = one_line_error(cli("indexer", "reindex", "--data", stack.data, env=env, ok=False))
    assert f"the search index at {stack.data / 'search'} is held by a running feeder" in line
    assert "stop that process, run this again" in line
    assert stack.get("/readyz").status_code == 200


# -- the stack's processes: what each holds, and who may reach its database ------------------------

SERVICES = {
    ("indexer", "feed"): "feeder",
    ("indexer", "run"): "api",
    ("bridge", "run"): "bridge",
    ("indexer", "reconcile"): "reconciler",
    ("node", "run"): "demo-node",
}


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]


def children_of(pid: int) -> dict[str, int]:
    """The direct child processes of ``pid``, by service name (``postgres`` for the server)."""
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            argv = cmdline(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
        if ppid != pid or not argv:
            continue
        if Path(argv[0]).name == "postgres":
            found["postgres"] = int(proc.name)
        for (a, b), name in SERVICES.items():
            if argv[2:4] == [a, b] or argv[3:5] == [a, b]:  # python + the script, or python -m cli
                found[name] = int(proc.name)
    return found


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def postmaster_pid(data: Path) -> int:
    return int((data / "postgres" / "pgdata" / "postmaster.pid").read_text().split("\n", 1)[0])


def pg_bin(name: str) -> str:
    from indexer.embedded import _bin_dir

    return str(_bin_dir() / name)


def test_only_the_signers_receive_the_key_encryption_key(stack: RunningStack) -> None:
    services = set(SERVICES.values())
    kids = wait_for(
        lambda: (k := children_of(stack.proc.pid)) and services <= set(k) and k,
        what=f"every service of the stack ({', '.join(sorted(services))})",
        timeout=STACK_TIMEOUT,
    )
    holders = {
        name for name, pid in kids.items() if {"EMPRESSA_KEK", "EMPRESSA_PASSPHRASE"} & set(environ_of(pid))
    }
    assert holders == {"bridge", "demo-node"}


def test_the_demo_node_does_not_announce_itself_on_the_lan(stack: RunningStack) -> None:
    kids = wait_for(
        lambda: children_of(stack.proc.pid).get("demo-node"), what="the demo node", timeout=STACK_TIMEOUT
    )
    assert "--no-mdns" in cmdline(kids)


def test_a_second_up_on_the_same_data_dir_is_refused_in_one_line(stack: RunningStack) -> None:
    p = cli(
        "up",
        "--data",
        stack.data,
        "--port",
        str(free_port()),
        "--p2p-port",
        str(free_port()),
        env=child_env(EMPRESSA_PASSPHRASE=None, DATABASE_URL=None),
        ok=False,
    )
    assert one_line_error(p) == f"empressa: a stack is already running in {stack.data} (pid {stack.proc.pid})"
    assert (stack.data / "stack.json").exists() and stack.get("/readyz").status_code == 200


def test_the_database_wants_a_password_and_the_services_are_not_superusers(stack: RunningStack) -> None:
    import os
    from urllib.parse import urlsplit

    import psycopg

    url = stack.info["database_url"]
    assert urlsplit(url).password is None, "no password in stack.json"
    with psycopg.connect(url) as conn:
        role, superuser = conn.execute(
            "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()  # type: ignore[misc]
    assert role != "postgres" and superuser is False

    if os.geteuid() != 0:
        pytest.skip("connecting as another OS user (nobody) needs root to switch users")
    port = str(urlsplit(url).port)
    for user in ("postgres", role):
        for host in ("127.0.0.1", str(stack.data / "postgres" / "sock")):
            p = subprocess.run(
                [
                    pg_bin("psql"),
                    "-w",
                    "-h",
                    host,
                    "-p",
                    port,
                    "-U",
                    user,
                    "-d",
                    "empressa",
                    "-c",
                    "SELECT count(*) FROM api_keys",
                ],
                user="nobody",
                capture_output=True,
                text=True,
                timeout=30,
                env={"PATH": "/usr/bin:/bin"},
            )
            assert p.returncode != 0, f"{user}@{host} without a password: {p.stdout}"
            assert "password" in p.stderr or "Permission denied" in p.stderr, p.stderr


def test_a_killed_postgresql_is_restarted_and_nothing_is_lost(
    stack: RunningStack, tmp_path: Path, daemons: Daemons
) -> None:
    """Last in this module: it kills the stack's PostgreSQL with SIGKILL (a crash, then recovery)."""
    import os

    data = tmp_path / "creator"
    did = init_node(data)
    daemons.start(data, bootstrap=[stack.info["bridge_multiaddr"]])
    before = publish(data, "before-crash", "Glacier Before Crash")

    def visible(q: str) -> bool:
        r = stack.get("/v1/assets", q=q)
        return r.status_code == 200 and any(i["did"] == did for i in r.json()["items"])

    wait_for(lambda: visible("glacier"), what="the asset published before the crash", timeout=VISIBLE_TIMEOUT)
    old = postmaster_pid(stack.data)
    os.kill(old, signal.SIGKILL)

    wait_for(
        lambda: "service exited service=postgres" in stack.log_path.read_text(errors="replace"),
        what="the supervisor to report the death of postgres",
        timeout=STACK_TIMEOUT,
    )
    wait_for(
        lambda: stack.get("/readyz").status_code == 200, what="/readyz back to 200", timeout=STACK_TIMEOUT
    )
    assert postmaster_pid(stack.data) != old
    assert stack.get(f"/v1/entries/{before['hash']}").status_code == 200, "an accepted entry was lost"
    publish(data, "after-crash", "Moraine After Crash")
    wait_for(lambda: visible("moraine"), what="an asset published after the restart", timeout=VISIBLE_TIMEOUT)
    assert visible("glacier")
    reconciler = stack.data / "logs" / "reconciler.log"
    wait_for(
        lambda: reconciler.read_text(errors="replace").count("reconciler active") >= 2,
        what="the reconciler to take its lock again",
        timeout=STACK_TIMEOUT,
    )
