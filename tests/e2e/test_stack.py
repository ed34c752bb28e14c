"""The whole stack through the CLI: ``empressa up`` and a creator's ``node run``, real processes.

One module-wide stack (embedded PostgreSQL, migrations, feeder, API, bridge,
reconciler, the demo creator's node) serves every test here. A creator's node
bootstraps to the bridge address from ``stack.json``; what it publishes must be
found by ``GET /v1/assets?q=…``, then edited and deleted, through the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import (
    Daemons,
    RunningStack,
    child_env,
    cli,
    cli_json,
    free_port,
    init_node,
    one_line_error,
    publish,
    wait_for,
)

pytestmark = pytest.mark.e2e

VISIBLE_TIMEOUT = 60.0


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
    # `chain` when the demo's dev chain runs (anvil installed): tests/e2e/test_stack_chain.py
    assert set(info) - {"chain"} == {"api_url", "bridge_multiaddr", "bridge_did", "database_url"}
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


def test_the_first_screen_says_where_everything_is_and_its_link_opens_my_library(stack: RunningStack) -> None:
    screen = stack.first_screen()
    assert screen.lstrip().startswith("Empressa is running."), screen
    assert "Traceback" not in screen and " level=" not in screen, "log lines belong on stderr"
    rows = {
        line.split(None, 1)[0]: line for line in screen.splitlines() if line.startswith("  ") and line.strip()
    }
    assert f"{stack.api_url}/" in rows["Marketplace"]
    assert f"{stack.api_url}/docs" in screen
    assert str(stack.data / "logs") in rows["Logs"] and str(stack.data) in rows["Data"]
    assert "Ctrl-C" in rows["Stop"]
    page = httpx.get(f"{stack.api_url}/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]

    # The demo creator's one-time link: it opens My Library with a session, once.
    link = next(w for w in rows["My"].split() if w.startswith("http://"))
    assert "/open?code=" in link
    first = httpx.get(link, timeout=10)
    assert first.status_code == 303 and "HttpOnly" in first.headers["set-cookie"]
    assert httpx.get(link, timeout=10).status_code == 403, "a one-time link opens once"
    assert f"empressa node open --data {stack.data / 'demo-node'}" in screen

    # The demo node was given the stack's indexer: its page says the marketplace has its writes.
    base = link.split("/open?", 1)[0]

    def searchable() -> dict[str, Any] | None:
        state = httpx.get(f"{base}/v1/local/indexer", timeout=10).json()
        return state if state.get("state") == "searchable" else None

    state = wait_for(searchable, what="the demo node's indexer state", timeout=VISIBLE_TIMEOUT)
    assert state["indexer_url"] == stack.api_url
