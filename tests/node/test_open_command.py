"""``empressa node open``: the one-time link to My Library, printed (and opened where a browser can be)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node import client, commands
from node.client import DaemonNotRunning, one_time_link
from tests.e2e.conftest import Daemons, cli, init_node, one_line_error

LINK = "http://127.0.0.1:5/open?code=abc"


def test_no_daemon_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunning, match=r"no node is running on .*; start it with: empressa node run"):
        one_time_link(tmp_path)
    # A stale node.json (the daemon died without cleaning up) says the same.
    (tmp_path / "node.json").write_text(json.dumps({"api_url": "http://127.0.0.1:1"}))
    (tmp_path / "api.token").write_text("t\n")
    with pytest.raises(DaemonNotRunning):
        one_time_link(tmp_path)


@pytest.mark.parametrize(
    ("browser", "environ", "opened"),
    [(True, {"DISPLAY": ":0"}, True), (False, {"DISPLAY": ":0"}, False), (True, {}, False)],
)
def test_the_browser_is_opened_only_when_asked_and_there_is_a_display(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, browser: bool, environ: dict[str, str], opened: bool
) -> None:
    monkeypatch.setattr(client, "one_time_link", lambda data_dir: LINK)
    monkeypatch.setattr(commands.sys, "platform", "linux")
    asked: list[str] = []
    r = commands.open_library(
        tmp_path, browser=browser, environ=environ, opener=lambda url: asked.append(url) or True
    )
    assert r.url == LINK and r.browser is opened and asked == ([LINK] if opened else [])
    assert r.text() == LINK and r.to_json() == {"url": LINK, "browser": opened, "expires_in": 120}


def test_a_failing_browser_still_prints_the_link(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(client, "one_time_link", lambda data_dir: LINK)

    def broken(url: str) -> bool:
        raise OSError("no browser")

    r = commands.open_library(tmp_path, browser=True, environ={"DISPLAY": ":0"}, opener=broken)
    assert r.url == LINK and r.browser is False


def test_the_cli_prints_the_link_and_json(tmp_path: Path) -> None:
    data = tmp_path / "n"
    init_node(data)
    stopped = cli("node", "open", "--data", data, "--no-browser", ok=False)
    assert "no node is running on" in one_line_error(stopped)
    ds = Daemons()
    try:
        d = ds.start(data)
        p = cli("node", "open", "--data", data, "--no-browser")
        [line] = p.stdout.decode().splitlines()
        assert line.startswith(d.api_url + "/open?code=")
        assert "works once, within 2 minutes" in p.stderr.decode()
        doc = json.loads(cli("node", "open", "--data", data, "--no-browser", "--json").stdout)
        assert doc["url"].startswith(d.api_url + "/open?code=") and doc["url"] != line
        assert doc["browser"] is False and doc["expires_in"] == 120
        assert one_time_link(data) != doc["url"]  # the function `empressa up` calls
    finally:
        ds.stop_all()
