"""A real IPFS node for the tests and benchmarks: js-ipfs on 127.0.0.1, offline, in a repo of its own.

No Kubo binary can be had from the registries this project installs from, so the
IPFS node of the tests is js-ipfs (npm ``ipfs`` 0.66.1, deprecated but a complete
IPFS implementation that serves the Kubo-compatible RPC API). ``./dev`` installs it
from ``configs/npm/package-lock.json`` into ``.tools/npm`` with the Node it needs
(22, from the ``node-linux-*`` packages: on the machine's Node 20 it fails with
``Promise.withResolvers is not a function``). Measured here:

- ``jsipfs init --profile=test`` makes the repo (~5 s, most of it Node starting);
  the daemon then needs ``Addresses.Swarm`` = ``[]`` (else it stops on "no valid
  addresses were provided for transports"), and ``Addresses.RPC`` = ``""`` keeps
  its gRPC server from taking the fixed port 5003.
- With the API and gateway on ``/ip4/127.0.0.1/tcp/0`` the daemon picks free
  ports and prints them ("HTTP API listening on …", "Gateway (read only)
  listening on …", then "Daemon is ready"), so there is no race for a port.
- Every RPC call is a POST, and a multipart file part needs a Content-Type.

``start_jsipfs(repo)`` starts one, ``restart_jsipfs(daemon)`` starts a stopped one again on
its ports; ``find_jsipfs()`` says why there is none.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NPM_MODULES = ROOT / ".tools" / "npm" / "node_modules"
START_TIMEOUT_S = 120  # two shared cores and a cold Node: the daemon is ready in ~3 s when idle

_LISTENING = re.compile(r"^(HTTP API|Gateway \(read only\)) listening on (/ip4/\S+)$", re.MULTILINE)


class JsIpfsMissing(Exception):
    """js-ipfs or its Node 22 is not installed; the message says what to do."""


@dataclass(frozen=True)
class JsIpfsTool:
    node: Path  # the Node 22 binary
    cli: Path  # js-ipfs's ``src/cli.js``

    def argv(self, *args: str) -> list[str]:
        return [str(self.node), str(self.cli), *args]


def find_jsipfs() -> JsIpfsTool:
    """The installed js-ipfs and the Node that runs it.

    Raises:
        JsIpfsMissing: either is missing (npm was not there when ``./dev`` ran, or this
            platform has no ``node-linux-*`` package).
    """
    node = NPM_MODULES / ".bin" / "node"
    cli = NPM_MODULES / "ipfs" / "src" / "cli.js"
    if not cli.is_file():
        raise JsIpfsMissing(
            f"js-ipfs is not installed ({cli} is missing): ./dev installs it from npm into .tools/npm "
            "(npm was missing, or npm ci failed)"
        )
    if not (node.is_file() and os.access(node, os.X_OK)):
        raise JsIpfsMissing(f"Node 22 for js-ipfs is not installed ({node}): ./dev installs it from npm")
    return JsIpfsTool(node, cli)


@dataclass
class JsIpfs:
    """A running js-ipfs daemon: ``api`` (a multiaddr, what ``ipfs_api`` is set to), ``api_url``, ``gateway_url``."""

    repo: Path
    api: str
    api_url: str
    gateway_url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not stopped within 10 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def restart_jsipfs(daemon: JsIpfs, tool: JsIpfsTool | None = None) -> JsIpfs:
    """Start a stopped ``daemon`` again on the same repo and the same API and gateway ports.

    For tests of clients that must ride out a daemon that went away and came back. The
    ports are written into the repo's config (a free port was chosen at the first start);
    ``RuntimeError`` if the daemon still runs or does not start.
    """
    if daemon.process.poll() is None:
        raise RuntimeError("the daemon still runs: stop() it first")
    path = daemon.repo / "config"
    config = json.loads(path.read_text())
    config["Addresses"].update(API=daemon.api, Gateway=_multiaddr(daemon.gateway_url))
    path.write_text(json.dumps(config, indent=2))
    return start_jsipfs(daemon.repo, tool)


def init_repo(tool: JsIpfsTool, repo: Path) -> None:
    """A new js-ipfs repo in ``repo`` (test profile, no swarm, API and gateway on free 127.0.0.1 ports)."""
    env = {**os.environ, "IPFS_PATH": str(repo)}
    subprocess.run(
        tool.argv("init", "--profile=test"), env=env, check=True, capture_output=True, timeout=START_TIMEOUT_S
    )
    path = repo / "config"
    config = json.loads(path.read_text())
    config["Addresses"].update(Swarm=[], API="/ip4/127.0.0.1/tcp/0", Gateway="/ip4/127.0.0.1/tcp/0", RPC="")
    path.write_text(json.dumps(config, indent=2))


def start_jsipfs(repo: Path, tool: JsIpfsTool | None = None) -> JsIpfs:
    """Start ``jsipfs daemon --offline`` on ``repo`` (made first if it does not exist) and wait until it is ready.

    Its output goes to ``repo/daemon.log``. Raises ``JsIpfsMissing`` when it is not installed and
    ``RuntimeError`` (with the log's end) when it does not start.
    """
    tool = tool or find_jsipfs()
    if not (repo / "config").exists():
        init_repo(tool, repo)
    log_path = repo / "daemon.log"
    env = {**os.environ, "IPFS_PATH": str(repo)}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            tool.argv("daemon", "--offline"), env=env, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        text = log_path.read_text(errors="replace")
        if "Daemon is ready" in text:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"js-ipfs did not start: {text[-2000:]}")
        time.sleep(0.1)
    found = dict(_LISTENING.findall(text))
    api = found["HTTP API"].removesuffix("/http")
    gateway = found["Gateway (read only)"].removesuffix("/http")
    return JsIpfs(repo, api, _http_url(api), _http_url(gateway), proc)


def _multiaddr(url: str) -> str:
    host, port = url.removeprefix("http://").split(":")
    return f"/ip4/{host}/tcp/{port}"


def _http_url(multiaddr: str) -> str:
    _, _, host, _, port = multiaddr.split("/")[:5]
    return f"http://{host}:{port}"
