"""``empressa up``: the whole stack on one machine, under a small supervisor.

Order of start::

    PostgreSQL (embedded, unless a URL is given) → migrations →
    search feeder → indexer API → bridge → reconciler → (demo creator's node)

Each service is a child process started through the CLI (``empressa indexer
feed``, ``indexer run``, ``bridge run``, ``indexer reconcile``, ``node run``),
so what runs here is exactly what an operator runs by hand. The embedded
PostgreSQL is a child too: its ``postgres`` server runs in the foreground
(not daemonised by ``pg_ctl``), so its death is seen like any other's. A child
that dies is logged and restarted with backoff (PostgreSQL with crash recovery;
the services reconnect by themselves). Ctrl-C (or SIGTERM) stops the children
in reverse order, each with its stop signal and then SIGKILL after a grace
period, PostgreSQL last; a second Ctrl-C/SIGTERM means "stop now": what still
runs is killed. ``DIR/stack.json`` says where everything is once the API is
ready and the bridge listens.

Children die with the supervisor, even if it is killed with SIGKILL (see
:mod:`bridge.children`). ``DIR/stack.pid`` names the supervisor and its
children: ``up`` refuses a data dir whose recorded supervisor still runs ("a
stack is already running in DIR (pid N)"), and first stops what a dead one
left running. A PostgreSQL already serving the data dir under a one-shot
command (``indexer … --data``) that still runs is refused likewise; one whose
command is gone is stopped.

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
PostgreSQL gets only ``PATH``.

Secrets: the bridge and demo keystores are sealed with ``EMPRESSA_KEK`` (or
``EMPRESSA_PASSPHRASE``) when set; otherwise a development key-encryption key is
generated once in ``DIR/dev-kek`` (mode 0600) and a warning says so. It is
passed in the environment of the processes that unlock a keystore (the bridge,
the demo node) and of no other (least privilege: the API, feeder and
reconciler never hold key material), never on a command line or in a log.
The database URL they get names a libpq password file (``passfile=``), not a
password.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from bridge.children import Child, PidFile, Signals
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
STACK_PID = "stack.pid"
READY_TIMEOUT = 120.0
STOP_GRACE = 10.0
POSTGRES_STOP_GRACE = 60.0  # a fast shutdown writes a checkpoint
SIGNERS = frozenset({"bridge", "demo-node"})  # the children that unlock a keystore

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


def _failure(child: Child) -> StackError:
    """The error for ``child`` having exited during start-up."""
    assert child.proc is not None
    said = child.last_words()
    return StackError(
        f"{child.name} exited with {child.proc.returncode} during start-up"
        + (f" ({said})" if said else "")
        + f"; see {child.log_path}"
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
        self.signals = Signals()
        self.pid_file = PidFile(data_dir / STACK_PID)

    # -- set-up --------------------------------------------------------------------------------

    def _claim(self) -> None:
        """Refuse a data dir whose stack still runs; stop what a killed one left running."""
        if not self.pid_file.path.exists():
            return
        pid = self.pid_file.live_supervisor()
        if pid is not None:
            raise StackError(f"a stack is already running in {self.data_dir} (pid {pid})")
        self.pid_file.stop_leftovers()

    def _start_child(self, child: Child) -> None:
        child.start()
        self.pid_file.write(self.children)

    def _database(self, logs: Path) -> str:
        """The database URL: the given one, or the embedded PostgreSQL started as a child."""
        if self.database_url:
            log.info("using the given database")
            return self.database_url
        self.pg = pg = EmbeddedPostgres(self.data_dir / "postgres")
        pid = pg.server_pid()
        if pid is not None:
            user = pg.serving_pid()
            if user is not None and user != os.getpid() and _alive(user):
                raise StackError(
                    f"the PostgreSQL of {self.data_dir} is in use by another command (pid {user}); "
                    "let it finish, or stop it, and run this again"
                )
            log.warning("stopping a PostgreSQL left running on this data dir pid=%d", pid)
            pg.stop()
        pg.prepare()
        self._interrupted()
        child = Child(
            "postgres",
            pg.server_argv(),
            {"PATH": self.environ.get("PATH", os.defpath)},
            logs / "postgres.log",
            user=pg.server_user(),
            stop_signal=signal.SIGINT,  # fast shutdown
            grace=POSTGRES_STOP_GRACE,
        )
        self.children.append(child)
        self._start_child(child)
        self._wait_for(child, "the embedded postgresql", pg.accepting)
        url = pg.provision()
        log.info("embedded postgresql ready port=%d", pg.port)
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

    def _child_env(self, url: str, kek: dict[str, str], *, signer: bool = False) -> dict[str, str]:
        """A service's environment (see the module docstring for what of ``EMPRESSA_*`` passes).

        Args:
            signer: it unlocks a keystore (the bridge, the demo node): it gets ``kek``; no other does.
        """
        env = {k: v for k, v in self.environ.items() if _passed(k)}
        if signer:
            env.update(kek)
        env["DATABASE_URL"] = url
        env["PYTHONUNBUFFERED"] = "1"
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.data_dir / "metrics")
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
        if self.signals.stop:
            raise KeyboardInterrupt

    def _fds(self) -> list[int]:
        return [fd for c in self.children for fd in c.fds()]

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
                if c.exited():
                    raise _failure(c)
            if time.monotonic() > deadline:
                raise StackError(f"{what} was not ready in {READY_TIMEOUT:.0f} s; see {child.log_path}")
            self.signals.wait(0.1, self._fds())

    # -- running -------------------------------------------------------------------------------

    def run(self) -> None:
        """Start everything, supervise until Ctrl-C/SIGTERM, stop everything.

        Raises:
            StackError: start-up failed (what had started is stopped first), or a stack already
                runs in the data dir (nothing is touched then).
            KeyboardInterrupt: Ctrl-C or SIGTERM before the stack was ready (likewise).
        """
        self.signals.install()
        self._claim()
        self._check_ports()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.write(self.children)
        (self.data_dir / STACK_JSON).unlink(missing_ok=True)
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        try:
            try:
                self._start(logs)
            except Exception:
                # Ctrl-C also reaches initdb (same process group): its failure is the interrupt.
                self._interrupted()
                raise
            self._supervise()
        finally:
            self.shutdown()

    def _start(self, logs: Path) -> None:
        url = self._database(logs)
        self._interrupted()
        migrate(url)
        self._interrupted()
        kek = dev_secrets(self.data_dir, self.environ)
        metrics = self.data_dir / "metrics"
        shutil.rmtree(metrics, ignore_errors=True)
        metrics.mkdir(parents=True)
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
            child = Child(name, argv, self._child_env(url, kek, signer=name in SIGNERS), logs / f"{name}.log")
            self.children.append(child)
            self._start_child(child)
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
                    "--no-mdns",  # it listens on loopback: nothing to announce on the LAN
                    "--bootstrap",
                    bridge_addr,
                ],
                self._child_env(url, kek, signer=True),
                logs / "demo-node.log",
            )
            self.children.append(child)
            self._start_child(child)
        info = {
            "api_url": api_url,
            "bridge_multiaddr": bridge_addr,
            "bridge_did": bridge["did"],
            "database_url": url,
        }
        write_private(self.data_dir / STACK_JSON, json.dumps(info, indent=2) + "\n")
        log.info("stack ready api_url=%s bridge=%s logs=%s", api_url, bridge_addr, logs)

    def _supervise(self) -> None:
        """Restart what dies (with backoff), until a signal comes."""
        due: dict[str, float] = {}  # service -> when to restart it
        while not self.signals.stop:
            now = time.monotonic()
            for c in self.children:
                if c.name in due:
                    if now >= due[c.name]:
                        del due[c.name]
                        self._start_child(c)
                    continue
                if not c.exited():
                    continue
                assert c.proc is not None
                c.restarts += 1
                uptime = now - c.started_at
                backoff = 0.5 if uptime > 30 else min(30.0, 0.5 * 2 ** min(c.restarts, 6))
                log.warning(
                    "service exited service=%s exit=%s uptime_s=%.1f restart_in_s=%.1f log=%s",
                    c.name,
                    c.proc.returncode,
                    uptime,
                    backoff,
                    c.log_path,
                )
                due[c.name] = now + backoff
            waiting = [c for c in self.children if c.name not in due and c.running()]
            timeout = min((t - time.monotonic() for t in due.values()), default=5.0)
            self.signals.wait(min(timeout, 5.0), [fd for c in waiting for fd in c.fds()])

    def shutdown(self) -> None:
        log.info("stopping the stack")
        for c in reversed(self.children):
            c.stop(self.signals)
        (self.data_dir / STACK_JSON).unlink(missing_ok=True)
        if (self.pid_file.read() or {}).get("pid") == os.getpid():
            self.pid_file.remove()
        log.info("stack stopped")


def _passed(name: str) -> bool:
    """Whether the caller's environment variable ``name`` reaches the children."""
    if not name.startswith("EMPRESSA_"):
        return True
    if name in PASSED:
        return True
    return name.startswith(PASSED_PREFIXES) and not name.endswith(WITHHELD_SUFFIXES)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
