"""``empressa up``: the whole stack on one machine, under a small supervisor.

Order of start::

    PostgreSQL (embedded, unless a URL is given) → migrations →
    search feeder → indexer API → bridge → reconciler → (demo creator's node)

Each service is a child process started through the CLI (``empressa indexer
feed``, ``indexer run``, ``bridge run``, ``indexer reconcile``, ``node run``),
so what runs here is exactly what an operator runs by hand. A child that dies
is restarted with backoff; Ctrl-C (or SIGTERM) stops the children in reverse
order, each with SIGTERM and then SIGKILL after a grace period, and then the
embedded PostgreSQL. ``DIR/stack.json`` says where everything is once the API
is ready and the bridge listens.

Start-up fails with :class:`StackError` (one line naming the service and its
log file: a service exited, was not ready in time, or a port it needs is
taken); whatever had been started is stopped first. Ctrl-C or SIGTERM before
the stack is ready stops what was started and raises :class:`KeyboardInterrupt`.

Environment of the children: the caller's, with ``EMPRESSA_INDEXER_*``,
``EMPRESSA_BRIDGE_*`` and ``EMPRESSA_LOG_JSON`` passed through (settings of the
stack's services), but no other ``EMPRESSA_*``: not the caller's node settings
(the demo creator is the stack's node, not theirs), not data directories or
database URLs (the stack chooses those), and not the caller's keystore secret
unless it is the one the stack seals with (see :func:`dev_secrets`).

Secrets: the bridge and demo keystores are sealed with ``EMPRESSA_KEK`` (or
``EMPRESSA_PASSPHRASE``) when set; otherwise a development key-encryption key is
generated once in ``DIR/dev-kek`` (mode 0600) and a warning says so. It is
passed to children in their environment, never on a command line or in a log.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from indexer.db import migrate
from indexer.embedded import EmbeddedPostgres
from node.config import write_default_config
from node.demo import demo_assets
from node.errors import NodeError
from node.keystore import create_keystore, unlock_from
from node.runner import write_private
from node.store import Store as NodeStore

log = logging.getLogger(__name__)

STACK_JSON = "stack.json"
READY_TIMEOUT = 120.0
STOP_GRACE = 10.0

# What of the caller's EMPRESSA_* reaches the children: the settings of the stack's services...
PASSED_PREFIXES = ("EMPRESSA_INDEXER_", "EMPRESSA_BRIDGE_")
PASSED = frozenset({"EMPRESSA_LOG_JSON"})
# ...but not where their data lives: the stack decides that (--data, its own database).
WITHHELD_SUFFIXES = ("_DATA_DIR", "_DATABASE_URL", "_INDEX_DIR")


class StackError(NodeError):
    """``empressa up`` could not start: a service exited during start-up or was not ready in time,
    or a port it needs is taken. ``str(err)`` is one line naming the service and where its log is.
    """


def _empressa() -> list[str]:
    script = Path(sys.executable).with_name("empressa")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli"]


def dev_secrets(data_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The keystore secret for the stack's keystores, as environment variables for children."""
    if "EMPRESSA_KEK" in environ:
        return {"EMPRESSA_KEK": environ["EMPRESSA_KEK"]}
    if "EMPRESSA_PASSPHRASE" in environ:
        return {"EMPRESSA_PASSPHRASE": environ["EMPRESSA_PASSPHRASE"]}
    path = data_dir / "dev-kek"
    if not path.exists():
        write_private(path, secrets.token_bytes(32).hex() + "\n")
        log.warning("dev stack: generated a key-encryption key at %s; set EMPRESSA_KEK for real use", path)
    return {"EMPRESSA_KEK": path.read_text().strip()}


@dataclass
class Child:
    """One supervised service."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    stopping: bool = False
    _log_file: Any = field(default=None, repr=False)
    _log_start: int = field(default=0, repr=False)

    def start(self) -> None:
        self._close_log()
        self._log_file = self.log_path.open("ab")
        self._log_start = self._log_file.tell()
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops children in order
        )
        self.started_at = time.monotonic()
        log.info("started service=%s pid=%d log=%s", self.name, self.proc.pid, self.log_path)

    def stop(self) -> None:
        self.stopping = True
        p = self.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                log.warning("service did not stop in time, killing service=%s pid=%d", self.name, p.pid)
                p.kill()
                p.wait()
            log.info("stopped service=%s exit=%s", self.name, p.returncode)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def last_words(self, limit: int = 300) -> str:
        """The last line this run of the service wrote to its log ("" if none)."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_start)
                tail = f.read()[-8192:]
        except OSError:
            return ""
        lines = [line.strip() for line in tail.decode(errors="replace").splitlines() if line.strip()]
        return lines[-1][:limit] if lines else ""

    def failure(self) -> StackError:
        """The error for this service having exited during start-up."""
        assert self.proc is not None
        said = self.last_words()
        return StackError(
            f"{self.name} exited with {self.proc.returncode} during start-up"
            + (f" ({said})" if said else "")
            + f"; see {self.log_path}"
        )


class Stack:
    """The supervisor. ``run()`` blocks until Ctrl-C/SIGTERM, then stops everything."""

    def __init__(
        self,
        *,
        data_dir: Path,
        port: int,
        p2p_port: int,
        database_url: str | None,
        demo: bool,
        environ: Mapping[str, str],
        log_json: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.p2p_port = p2p_port
        self.database_url = database_url
        self.demo = demo
        self.environ = dict(environ)
        self.log_json = log_json
        self.pg: EmbeddedPostgres | None = None
        self.children: list[Child] = []
        self._stop = threading.Event()

    # -- set-up --------------------------------------------------------------------------------

    def _database(self) -> str:
        if self.database_url:
            log.info("using the given database")
            return self.database_url
        self.pg = EmbeddedPostgres(self.data_dir / "postgres")
        url = self.pg.start()
        log.info("embedded postgresql ready port=%d", self.pg.port)
        return url

    def _check_ports(self) -> None:
        """Refuse at once, before starting anything, if the API's or the bridge's port is taken."""
        for host, port, who, flag in (
            ("127.0.0.1", self.port, "the indexer API", "--port"),
            ("0.0.0.0", self.p2p_port, "the bridge", "--p2p-port"),
        ):
            if port and not _port_free(host, port):
                raise StackError(
                    f"port {port} is in use, {who} needs it; stop what holds it or choose another with {flag}"
                )

    def _child_env(self, url: str, kek: dict[str, str]) -> dict[str, str]:
        """The children's environment (see the module docstring for what of ``EMPRESSA_*`` passes)."""
        env = {k: v for k, v in self.environ.items() if _passed(k)}
        env.update(kek)
        env["DATABASE_URL"] = url
        env["PYTHONUNBUFFERED"] = "1"
        metrics = self.data_dir / "metrics"
        shutil.rmtree(metrics, ignore_errors=True)
        metrics.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        if self.log_json:
            env["EMPRESSA_LOG_JSON"] = "1"
        return env

    def _demo_node(self, kek: dict[str, str]) -> Path:
        """The demo creator: a node data dir holding the sample assets (published offline)."""
        node_dir = self.data_dir / "demo-node"
        node_dir.mkdir(parents=True, exist_ok=True)
        keystore = node_dir / "keystore.json"
        if not keystore.exists():
            kek_bytes = bytes.fromhex(kek["EMPRESSA_KEK"]) if "EMPRESSA_KEK" in kek else None
            create_keystore(keystore, passphrase=kek.get("EMPRESSA_PASSPHRASE"), kek=kek_bytes)
            write_default_config(node_dir)
        keys = unlock_from(keystore, environ=kek, prompt=None)
        store = NodeStore.open(node_dir / "node.db")
        try:
            have = {r.uri.key for r in store.assets(local_only=True, include_deleted=True)}
            added = 0
            for key, body in demo_assets():
                if key not in have:
                    store.append_local(keys.author, kind="asset.put", key=key, body=body)
                    added += 1
        finally:
            store.close()
        log.info("demo creator did=%s assets_added=%d", keys.author.public.did, added)
        return node_dir

    def _interrupted(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C or SIGTERM came during start-up."""
        if self._stop.is_set():
            raise KeyboardInterrupt

    def _wait_for(self, child: Child, what: str, check: Any) -> Any:
        """Poll ``check`` until it returns something truthy, and return that.

        Raises:
            StackError: a service exited meanwhile, or ``child`` was not ready in READY_TIMEOUT s.
            KeyboardInterrupt: Ctrl-C or SIGTERM came first.
        """
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            self._interrupted()
            result = check()
            if result:
                return result
            for c in self.children:
                if c.proc is not None and c.proc.poll() is not None and not c.stopping:
                    raise c.failure()
            if time.monotonic() > deadline:
                raise StackError(f"{what} was not ready in {READY_TIMEOUT:.0f} s; see {child.log_path}")
            self._stop.wait(0.1)

    # -- running -------------------------------------------------------------------------------

    def run(self) -> None:
        """Start everything, supervise until Ctrl-C/SIGTERM, stop everything.

        Raises:
            StackError: start-up failed (what had started is stopped first).
            KeyboardInterrupt: Ctrl-C or SIGTERM before the stack was ready (likewise).
        """
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stop.set())
        self._check_ports()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / STACK_JSON).unlink(missing_ok=True)
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        try:
            try:
                self._start(logs)
            except Exception:
                # Ctrl-C also reaches initdb/pg_ctl (same process group): their failure is the interrupt.
                self._interrupted()
                raise
            self._supervise()
        finally:
            self.shutdown()

    def _start(self, logs: Path) -> None:
        url = self._database()
        self._interrupted()
        migrate(url)
        self._interrupted()
        kek = dev_secrets(self.data_dir, self.environ)
        env = self._child_env(url, kek)
        exe = _empressa()
        api_url = f"http://127.0.0.1:{self.port}"
        bridge_dir = self.data_dir / "bridge"
        (bridge_dir / "bridge.json").unlink(missing_ok=True)  # left by a bridge that was killed
        index_dir = self.data_dir / "search"
        services = [
            ("feeder", [*exe, "indexer", "feed", "--index-dir", str(index_dir)]),
            (
                "api",
                [
                    *exe,
                    "indexer",
                    "run",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--index-dir",
                    str(index_dir),
                ],
            ),
            (
                "bridge",
                [
                    *exe,
                    "bridge",
                    "run",
                    "--data",
                    str(bridge_dir),
                    "--listen",
                    f"/ip4/0.0.0.0/tcp/{self.p2p_port}",
                ],
            ),
            ("reconciler", [*exe, "indexer", "reconcile"]),
        ]
        started: dict[str, Child] = {}
        for name, argv in services:
            child = Child(name, argv, env, logs / f"{name}.log")
            self.children.append(child)
            child.start()
            started[name] = child
        self._wait_for(started["api"], "the indexer API", lambda: _ready(api_url))
        bridge = self._wait_for(
            started["bridge"], "the bridge", lambda: _read_json(bridge_dir / "bridge.json")
        )
        bridge_addr = _loopback_addr(bridge["multiaddrs"], bridge["peer_id"])
        if self.demo:
            node_dir = self._demo_node(kek)
            self._interrupted()
            child = Child(
                "demo-node",
                [
                    *exe,
                    "node",
                    "run",
                    "--data",
                    str(node_dir),
                    "--listen",
                    "/ip4/127.0.0.1/tcp/0",
                    "--api-port",
                    "0",
                    "--bootstrap",
                    bridge_addr,
                ],
                env,
                logs / "demo-node.log",
            )
            self.children.append(child)
            child.start()
        info = {
            "api_url": api_url,
            "bridge_multiaddr": bridge_addr,
            "bridge_did": bridge["did"],
            "database_url": url,
        }
        write_private(self.data_dir / STACK_JSON, json.dumps(info, indent=2) + "\n")
        log.info("stack ready api_url=%s bridge=%s logs=%s", api_url, bridge_addr, logs)

    def _supervise(self) -> None:
        while not self._stop.wait(0.5):
            for c in self.children:
                if c.proc is None or c.proc.poll() is None or c.stopping:
                    continue
                c.restarts += 1
                uptime = time.monotonic() - c.started_at
                backoff = 0.5 if uptime > 30 else min(30.0, 0.5 * 2 ** min(c.restarts, 6))
                log.warning(
                    "service exited service=%s exit=%s uptime_s=%.1f restart_in_s=%.1f log=%s",
                    c.name,
                    c.proc.returncode,
                    uptime,
                    backoff,
                    c.log_path,
                )
                if self._stop.wait(backoff):
                    return
                c.start()

    def shutdown(self) -> None:
        log.info("stopping the stack")
        for c in reversed(self.children):
            c.stop()
        (self.data_dir / STACK_JSON).unlink(missing_ok=True)
        if self.pg is not None:
            self.pg.stop()
        log.info("stack stopped")


def _passed(name: str) -> bool:
    """Whether the caller's environment variable ``name`` reaches the children."""
    if not name.startswith("EMPRESSA_"):
        return True
    if name in PASSED:
        return True
    return name.startswith(PASSED_PREFIXES) and not name.endswith(WITHHELD_SUFFIXES)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # SO_REUSEADDR as uvicorn and trio set it: a port in TIME_WAIT is no conflict, a listener is.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _ready(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def _loopback_addr(addrs: list[str], peer_id: str) -> str:
    """The bridge's address for peers on this machine (a full multiaddr with /p2p/)."""
    for a in addrs:
        if a.startswith("/ip4/127.0.0.1/"):
            return a if "/p2p/" in a else f"{a}/p2p/{peer_id}"
    a = addrs[0]
    return a if "/p2p/" in a else f"{a}/p2p/{peer_id}"


def run_stack(
    *,
    data_dir: Path,
    port: int,
    p2p_port: int,
    database_url: str | None,
    demo: bool,
    environ: Mapping[str, str] = os.environ,
) -> None:
    Stack(
        data_dir=data_dir, port=port, p2p_port=p2p_port, database_url=database_url, demo=demo, environ=environ
    ).run()
