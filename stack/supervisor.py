"""The ``empressa up`` supervisor: the whole stack on one machine.

Order of start::

    PostgreSQL (embedded, unless a URL is given) → migrations → (the dev chain: anvil, the
    registry) → search feeder → indexer API → bridge → reconciler → (the pin worker, when an
    IPFS API is configured: ``up --ipfs-api`` or the indexer's ``ipfs_api``) → (demo creator's node,
    its EVM account funded and its assets registered on the dev chain)

With ``--chain dev`` (or ``--demo`` without ``--chain none``) anvil is a child like the
others (:mod:`stack.chain`); the indexer's children get its settings in their environment,
and every indexer child gets ``EMPRESSA_INDEXER_TRUSTED_BRIDGES`` naming the stack's bridge.

The services are child processes started through the CLI (what each one is:
:mod:`stack.services`). The embedded PostgreSQL is a child too: its
``postgres`` server runs in the foreground (not daemonised by ``pg_ctl``), so
its death is seen like any other's; it gets only ``PATH`` in its environment.
A child that dies is logged and restarted with backoff (PostgreSQL with crash
recovery; the services reconnect by themselves). Ctrl-C (or SIGTERM) stops the
children in reverse order, each with its stop signal and then SIGKILL after a
grace period, PostgreSQL last; a second Ctrl-C/SIGTERM means "stop now": what
still runs is killed. ``DIR/stack.json`` says where everything is once the API
is ready and the bridge listens.

Children die with the supervisor, even if it is killed with SIGKILL (see
:mod:`stack.children`). ``DIR/stack.pid`` names the supervisor and its
children: ``up`` refuses a data dir whose recorded supervisor still runs ("a
stack is already running in DIR (pid N)"), and first stops what a dead one
left running. A PostgreSQL already serving the data dir under a one-shot
command (``indexer … --data``) that still runs is refused likewise; one whose
command is gone is stopped.

Start-up fails with :class:`~stack.errors.StackError` (one line naming the
service and its log file: a service exited, was not ready in time, or a port it
needs is taken); whatever had been started is stopped first. Ctrl-C or SIGTERM
before the stack is ready stops what was started and raises
:class:`KeyboardInterrupt`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from indexer.db import migrate
from indexer.embedded import EmbeddedPostgres
from node.logctx import ConfigureLogging
from node.paths import BRIDGE_JSON, KEYSTORE_FILE
from node.runner import write_private

from . import chain, probes, services, summary
from .anvil import find_anvil
from .children import Child, PidFile, Signals
from .errors import StackError
from .settings import StackSettings

__all__ = ["Stack", "run_stack"]

log = logging.getLogger(__name__)

STACK_JSON = "stack.json"
STACK_PID = "stack.pid"
READY_TIMEOUT = 120.0
POSTGRES_STOP_GRACE = 60.0  # a fast shutdown writes a checkpoint


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
    """The supervisor. ``run()`` blocks until Ctrl-C/SIGTERM, then stops everything.

    Args:
        settings: what ``up`` was asked for (:func:`stack.settings.load_stack_settings`).
        environ: the caller's environment, of which the services get a part
            (:func:`stack.services.child_env`) and from which the keystore secret comes.
        as_json: the first screen once the stack is ready (:mod:`stack.summary`) as one JSON
            object instead of text.
        out: where the first screen goes (stdout); ``None``: nowhere.
    """

    def __init__(
        self,
        settings: StackSettings,
        *,
        environ: Mapping[str, str],
        as_json: bool = False,
        out: IO[str] | None = None,
    ) -> None:
        self.settings = settings
        self.as_json, self.out = as_json, out  # the first screen (stack.summary): where, and as what
        self.dev_chain = settings.dev_chain  # resolved in run(): --demo without anvil runs without
        self.data_dir = settings.data_dir
        self.environ = dict(environ)
        self.pg: EmbeddedPostgres | None = None
        self.children: list[Child] = []
        self.signals = Signals()
        self.pid_file = PidFile(self.data_dir / STACK_PID)

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
        if self.settings.database_url:
            log.info("using the given database")
            return self.settings.database_url
        self.pg = pg = EmbeddedPostgres(self.data_dir / "postgres")
        pid = pg.server_pid()
        if pid is not None:
            user = pg.serving_pid()
            if user is not None and user != os.getpid() and probes.alive(user):
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
        """Refuse at once, before starting anything, if the API's, the bridge's or the chain's port is taken."""
        ports = [
            ("127.0.0.1", self.settings.port, "the indexer API", "--port"),
            ("0.0.0.0", self.settings.p2p_port, "the bridge", "--p2p-port"),
        ]
        if self.dev_chain:
            ports.append(("127.0.0.1", self.settings.chain_port, "the dev chain (anvil)", "--chain-port"))
        for host, port, who, flag in ports:
            if port and not probes.port_free(host, port):
                raise StackError(
                    f"port {port} is in use, {who} needs it; stop what holds it or choose another with {flag}"
                )

    def _child_env(
        self, url: str, kek: dict[str, str], *, signer: bool = False, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        """A service's environment: :func:`stack.services.child_env` for this stack."""
        return services.child_env(
            self.environ,
            database_url=url,
            metrics_dir=self.data_dir / "metrics",
            log_json=self.settings.log_json,
            kek=kek,
            signer=signer,
            extra=extra,
        )

    def _resolve_chain(self) -> bool:
        """Whether this stack runs a dev chain: asked for, and anvil installed (``--demo`` falls back)."""
        if not self.settings.dev_chain:
            return False
        if find_anvil() is not None:
            return True
        if self.settings.chain == "dev":
            raise StackError(chain.anvil_missing())
        log.warning("no dev chain: %s", chain.anvil_missing())
        return False

    def _dev_chain(self, logs: Path) -> tuple[chain.DevChain, chain.Deployment]:
        """Start anvil as a child, wait for its RPC, and make sure the registry is deployed on it."""
        rpc_url = f"http://127.0.0.1:{self.settings.chain_port}"
        child = Child(
            "anvil",
            chain.dev_chain_argv(self.data_dir, self.settings.chain_port),
            {"PATH": self.environ.get("PATH", os.defpath)},
            logs / "anvil.log",
        )
        self.children.append(child)
        self._start_child(child)
        self._wait_for(child, "the dev chain (anvil)", lambda: probes.rpc_ready(rpc_url))
        dev = chain.DevChain(self.data_dir, rpc_url)
        return dev, dev.ensure_registry()

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
        self.dev_chain = self._resolve_chain()
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
        kek = services.dev_secrets(self.data_dir, self.environ)
        dev: chain.DevChain | None = None
        indexer_extra: dict[str, str] = {}
        if self.dev_chain:
            dev, deployment = self._dev_chain(logs)
            indexer_extra.update(chain.indexer_env(dev.rpc_url, deployment))
            self._interrupted()
        metrics = self.data_dir / "metrics"
        shutil.rmtree(metrics, ignore_errors=True)
        metrics.mkdir(parents=True)
        exe = services.empressa_argv()
        api_url = f"http://127.0.0.1:{self.settings.port}"
        bridge_dir = self.data_dir / "bridge"
        (bridge_dir / BRIDGE_JSON).unlink(missing_ok=True)  # left by a bridge that was killed
        # The bridge's did, before it runs: the indexer applies attestations signed by it.
        bridge_did = services.ensure_keystore(bridge_dir / KEYSTORE_FILE, kek)
        trusted = json.dumps([bridge_did])
        indexer_extra["EMPRESSA_INDEXER_TRUSTED_BRIDGES"] = trusted
        if self.settings.ipfs_api is not None:
            indexer_extra["EMPRESSA_INDEXER_IPFS_API"] = self.settings.ipfs_api
        ipfs_api = services.pin_api(self.settings.ipfs_api, self.data_dir, self.environ)
        argvs = services.service_argvs(
            exe,
            port=self.settings.port,
            p2p_port=self.settings.p2p_port,
            index_dir=self.data_dir / "search",
            bridge_dir=bridge_dir,
            data_dir=self.data_dir,
            pin=ipfs_api is not None,
        )
        started: dict[str, Child] = {}
        for name, argv in argvs:
            extra = indexer_extra if name in services.INDEXER_SERVICES else None
            env = self._child_env(url, kek, signer=name in services.SIGNERS, extra=extra)
            child = Child(name, argv, env, logs / f"{name}.log")
            self.children.append(child)
            self._start_child(child)
            started[name] = child
        self._wait_for(started["api"], "the indexer API", lambda: probes.api_ready(api_url))
        bridge = self._wait_for(
            started["bridge"], "the bridge", lambda: probes.read_json(bridge_dir / BRIDGE_JSON)
        )
        bridge_addr = probes.loopback_addr(bridge["multiaddrs"], bridge["peer_id"])
        node_dir: Path | None = None
        demo: Child | None = None
        if self.settings.demo:
            node_dir = self.data_dir / "demo-node"
            creator = services.seed_demo_node(node_dir, kek, evm=dev is not None)
            services.trust_bridge(node_dir, bridge_did)  # so `node list --data DIR/demo-node` shows it too
            self._interrupted()
            if dev is not None:
                self._register_demo(dev, deployment, creator)
            child = Child(
                "demo-node",
                services.demo_node_argv(exe, node_dir, bridge_addr),
                self._child_env(
                    url,
                    kek,
                    signer=True,
                    # Its My Library says whether the stack's indexer has its latest write.
                    extra={"EMPRESSA_NODE_TRUSTED_BRIDGES": trusted, "EMPRESSA_NODE_INDEXER_URL": api_url},
                ),
                logs / "demo-node.log",
            )
            self.children.append(child)
            self._start_child(child)
            demo = child
        info: dict[str, Any] = {
            "api_url": api_url,
            "bridge_multiaddr": bridge_addr,
            "bridge_did": bridge["did"],
            "database_url": url,
        }
        if dev is not None:
            info["chain"] = {
                "rpc_url": dev.rpc_url,
                "registry": deployment.registry,
                "chain_id": deployment.chain_id,
            }
        # Before stack.json: ready means the demo creator's node answers too (its link is printed).
        link = self._library_link(demo, node_dir) if demo is not None and node_dir is not None else None
        write_private(self.data_dir / STACK_JSON, json.dumps(info, indent=2) + "\n")
        log.info("stack ready api_url=%s bridge=%s logs=%s", api_url, bridge_addr, logs)
        if self.out is not None:
            doc = summary.summary(
                info,
                data_dir=self.data_dir,
                logs_dir=logs,
                pid=os.getpid(),
                library_link=link,
                demo_dir=node_dir,
            )
            summary.emit(doc, as_json=self.as_json, out=self.out)

    def _library_link(self, child: Child, node_dir: Path) -> str | None:
        """The demo creator's one-time My Library link, once its daemon answers; ``None`` if it does
        not in time (the stack runs on: the first screen says how to get one later)."""
        from node.client import one_time_link
        from node.errors import NodeError

        def ask() -> str | None:
            try:
                return one_time_link(node_dir)
            except NodeError:
                return None

        try:
            link: str = self._wait_for(child, "the demo creator's node", ask)
        except StackError as exc:
            log.warning("no My Library link err=%s", exc)
            return None
        return link

    def _register_demo(self, dev: chain.DevChain, deployment: chain.Deployment, creator: Any) -> None:
        """Fund the demo creator's EVM account and register its assets (see :mod:`stack.chain`)."""
        from node.demo import demo_registrations
        from node.evm import account_address

        assert creator.evm_key is not None
        dev.fund(account_address(creator.evm_key))
        mine, others, unregistered = demo_registrations(list(creator.hashes))
        sent = dev.register_demo(deployment.registry, creator.evm_key, creator.hashes, (mine, others))
        log.info(
            "demo registrations sent=%d by_creator=%d by_other=%d unregistered=%s",
            sent,
            len(mine),
            len(others),
            ",".join(unregistered),
        )

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


def run_stack(
    settings: StackSettings,
    *,
    environ: Mapping[str, str],
    configure_logging: ConfigureLogging,
    as_json: bool = False,
    out: IO[str] | None = None,
) -> None:
    """``empressa up``: run the stack of ``settings`` until Ctrl-C/SIGTERM (see :meth:`Stack.run`).

    Args:
        configure_logging: ``(level, as_json)``: cli.py's (:func:`node.logctx.configure_logging`),
            the one rule every service logs by; the supervisor logs at INFO, as JSON with ``log_json``.
        as_json, out: the first screen once the stack is ready (:mod:`stack.summary`).
    """
    configure_logging("INFO", settings.log_json)
    Stack(settings, environ=environ, as_json=as_json, out=out).run()
