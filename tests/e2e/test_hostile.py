"""A hostile local user against a running stack: each attack of issue 7, replayed through the CLI.

One ``empressa up --demo`` stack (real processes: PostgreSQL, feeder, API, bridge,
reconciler, the demo creator's node) is attacked from 127.0.0.1 the way the
hostile test that found these defects did: oversize bodies into the quarantine,
an ``Idempotency-Key`` race, SSE abuse, searches with nothing to search, a P2P
port takeover, bad ``node run`` flags, huge ``verify``/``import`` inputs, a
password-less connection to PostgreSQL, a look at the children's environment,
``kill -KILL`` of PostgreSQL and of the supervisor itself, and two signals in a
row. Before the attacks the module records what the stack has accepted (the
demo creator's assets, entries submitted over HTTP, an asset a creator's node
published over P2P), and after every destructive one it checks that all of it
is still there.

Every attack is bounded in count, bytes and time, and only 127.0.0.1 is touched.
The tests run in file order and share the stack; the last ones kill it and start
it again on the same data directory.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cbor2
import httpx
import psycopg
import pytest

from indexer.embedded import _bin_dir
from protocol import Signer, sign_entry

from .conftest import (
    CLI_TIMEOUT,
    EMPRESSA,
    Daemons,
    RunningStack,
    alive,
    child_env,
    cli,
    cmdline,
    environ_of,
    init_node,
    one_line_error,
    postmaster_pid,
    publish,
    wait_for,
)

pytestmark = pytest.mark.e2e

VISIBLE_TIMEOUT = 60.0
CBOR_SEQ = {"content-type": "application/cbor-seq"}
SSE_PER_CLIENT = 4  # the stack below runs with this cap


def start_stack(data: Path) -> RunningStack:
    return RunningStack(
        data,
        # Reads are polled below; the attacks are on the other limits.
        EMPRESSA_INDEXER_RATE_LIMIT_READ="100000/minute",
        EMPRESSA_INDEXER_SSE_MAX_PER_CLIENT=str(SSE_PER_CLIENT),
    ).wait_ready()


@dataclass
class Accepted:
    """What the stack accepted before the attacks; none of it may be lost."""

    entries: list[str] = field(default_factory=list)  # entry hashes (CIDs) submitted over HTTP
    assets: dict[str, str] = field(default_factory=dict)  # "did/key" -> title, any source
    demo_count: int = 0


@dataclass
class Hostile:
    up: RunningStack
    data: Path
    accepted: Accepted
    creator: Path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    state = Hostile(start_stack(data), data, Accepted(), root / "creator")
    try:
        _accept_some(state)
        yield state
    finally:
        state.up.stop()


def _signed(n: int, *, title: str) -> tuple[Signer, list[bytes], list[str]]:
    """A fresh author's first ``n`` entries: their raw bytes and hashes."""
    signer = Signer(secrets.token_bytes(32))
    raws, hashes, prev = [], [], None
    for seq in range(1, n + 1):
        e = sign_entry(
            signer,
            seq=seq,
            prev=prev,
            ts=time.time_ns() // 1_000_000,
            kind="asset.put",
            key=f"k{seq}",
            body={
                "title": f"{title} {seq}",
                "description": "hostile test",
                "tags": ["hostile"],
                "media": {
                    "cid": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
                    "mime": "audio/wav",
                    "size": 1000,
                    "duration_ms": 1000,
                },
                "license": {"type": "personal"},
            },
        )
        raws.append(e.raw)
        hashes.append(e.hash.cid)
        prev = e.hash
    return signer, raws, hashes


def _accept_some(h: Hostile) -> None:
    """Record the demo creator's assets, submit a few entries over HTTP, publish one over P2P."""
    up = h.up

    def demo() -> list[dict[str, Any]]:
        r = up.get("/v1/assets", limit=100)
        return r.json()["items"] if r.status_code == 200 and len(r.json()["items"]) >= 30 else []

    for item in wait_for(demo, what="the demo assets in search", timeout=VISIBLE_TIMEOUT):
        h.accepted.assets[f"{item['did']}/{item['key']}"] = item["title"]
    h.accepted.demo_count = len(h.accepted.assets)

    signer, raws, hashes = _signed(5, title="Accepted Before")
    r = httpx.post(up.api_url + "/v1/entries", content=b"".join(raws), headers=CBOR_SEQ, timeout=30)
    assert r.status_code == 200, r.text
    h.accepted.entries += hashes
    for i in range(1, 6):
        h.accepted.assets[f"{signer.public.did}/k{i}"] = f"Accepted Before {i}"

    did = init_node(h.creator)
    daemons = Daemons()
    try:
        daemons.start(h.creator, bootstrap=[up.info["bridge_multiaddr"]])
        publish(h.creator, "over-p2p", "Published Over Gossip")
        h.accepted.assets[f"{did}/over-p2p"] = "Published Over Gossip"
        wait_for(
            lambda: up.get(f"/v1/assets/{did}/over-p2p").status_code == 200,
            what="the P2P-published asset in the indexer",
            timeout=VISIBLE_TIMEOUT,
        )
    finally:
        daemons.stop_all()


def assert_nothing_lost(h: Hostile) -> None:
    """Every entry and asset accepted before the attacks is still served."""
    up = h.up
    wait_for(lambda: up.get("/readyz").status_code == 200, what="/readyz", timeout=VISIBLE_TIMEOUT)
    for cid in h.accepted.entries:
        r = up.get(f"/v1/entries/{cid}")
        assert r.status_code == 200, f"entry {cid} lost: {r.status_code}"
    for uri, title in h.accepted.assets.items():
        r = up.get(f"/v1/assets/{uri}")
        assert r.status_code == 200, f"asset {uri} lost: {r.status_code} {r.text}"
        assert r.json()["title"] == title


def _db(h: Hostile) -> psycopg.Connection[Any]:
    return psycopg.connect(h.up.info["database_url"], autocommit=True, connect_timeout=10)


# -- 1. the quarantine cannot fill the disk -----------------------------------------------------


def test_oversize_bodies_do_not_fill_the_quarantine(hostile: Hostile) -> None:
    api = hostile.up.api_url
    with _db(hostile) as conn:
        before = conn.execute(
            "SELECT count(*), coalesce(sum(octet_length(raw)), 0) FROM quarantine"
        ).fetchone()
    # The attack as found: 16 random 1 MB items in one body, without a key (refused as a body
    # holding an item over the entry limit, or as too large: either way a problem, nothing kept).
    body = b"".join(cbor2.dumps(os.urandom(1_000_000)) for _ in range(16))
    r = httpx.post(api + "/v1/entries", content=body, headers=CBOR_SEQ, timeout=60)
    assert r.status_code in (400, 413), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    # Items over the 16 KiB entry limit in a body that fits: rejected, kept as digest and size only.
    for _ in range(5):
        body = b"".join(cbor2.dumps(os.urandom(60_000)) for _ in range(8))
        r = httpx.post(api + "/v1/entries", content=body, headers=CBOR_SEQ, timeout=60)
        assert r.status_code in (400, 422), r.text
    with _db(hostile) as conn:
        count, raw_bytes = conn.execute(
            "SELECT count(*), coalesce(sum(octet_length(raw)), 0) FROM quarantine"
        ).fetchone()
    added_bytes = raw_bytes - before[1]
    # A small forged entry (a valid one with its signature's last byte flipped) is kept whole, as proof.
    _, raws, _ = _signed(1, title="Forged")
    forged = raws[0][:-1] + bytes([raws[0][-1] ^ 1])
    r = httpx.post(api + "/v1/entries", content=forged, headers=CBOR_SEQ, timeout=30)
    assert r.status_code == 422, r.text
    with _db(hostile) as conn:
        kept = conn.execute("SELECT raw FROM quarantine WHERE raw = %s", (forged,)).fetchall()
    assert len(kept) == 1, "the forged entry was not quarantined"
    assert added_bytes <= (count - before[0]) * 16 * 1024, "rejected items over 16 KiB were stored whole"
    assert added_bytes < 1_000_000, f"{added_bytes} bytes of rejects stored for ~18 MB of attack"
    assert_nothing_lost(hostile)


# -- 4. Idempotency-Key: a 409 means nothing of that body was applied ----------------------------


def test_idempotency_key_race_applies_one_body(hostile: Hostile) -> None:
    api = hostile.up.api_url

    def send(i: int, key: str, bodies: list[Any], go: threading.Barrier, results: dict[int, Any]) -> None:
        raws, _ = bodies[i]
        go.wait()
        results[i] = httpx.post(
            api + "/v1/entries",
            content=b"".join(raws),
            headers={**CBOR_SEQ, "Idempotency-Key": key},
            timeout=30,
        )

    for trial in range(6):
        key = f"race-{trial}-{secrets.token_hex(4)}"
        bodies = [_signed(1, title=f"Race {trial} {side}")[1:] for side in "ab"]
        results: dict[int, httpx.Response] = {}
        go = threading.Barrier(2)
        threads = [threading.Thread(target=send, args=(i, key, bodies, go, results)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        codes = sorted(results[i].status_code for i in (0, 1))
        assert codes == [200, 409], [results[i].text for i in (0, 1)]
        for i in (0, 1):
            _, hashes = bodies[i]
            stored = hostile.up.get(f"/v1/entries/{hashes[0]}").status_code
            assert stored == (200 if results[i].status_code == 200 else 404), (trial, i, stored)


# -- SSE: a resume point past the end, and a cap per client ------------------------------------


def test_sse_last_event_id_beyond_the_newest_is_answered(hostile: Hostile) -> None:
    url = hostile.up.api_url + "/v1/events"
    with (
        httpx.Client(timeout=httpx.Timeout(10, read=10)) as client,
        client.stream("GET", url, headers={"Last-Event-ID": str(2**60)}) as r,
    ):
        if r.status_code == 200:
            # Resumed from the newest instead: the stream must then carry what comes next.
            _, raws, _ = _signed(1, title="After The Resume")
            httpx.post(hostile.up.api_url + "/v1/entries", content=raws[0], headers=CBOR_SEQ, timeout=30)
            for line in r.iter_lines():
                if line.startswith("id:"):
                    break
        else:
            assert 400 <= r.status_code < 500
            assert r.headers["content-type"].startswith("application/problem+json")


def test_sse_connections_are_capped_per_client(hostile: Hostile) -> None:
    url = hostile.up.api_url + "/v1/events"
    with httpx.Client(
        timeout=httpx.Timeout(10, read=None), limits=httpx.Limits(max_connections=50)
    ) as client:
        streams = []
        try:
            for _ in range(SSE_PER_CLIENT):
                s = client.stream("GET", url)
                r = s.__enter__()
                streams.append(s)
                assert r.status_code == 200
            over = client.get(url)
            assert over.status_code == 429, over.text
            assert over.headers["content-type"].startswith("application/problem+json")
        finally:
            for s in streams:
                s.__exit__(None, None, None)

    # The slots are given back when the clients go.
    def admitted() -> bool:
        with httpx.Client(timeout=httpx.Timeout(10, read=None)) as c, c.stream("GET", url) as r:
            return r.status_code == 200

    wait_for(admitted, what="an SSE slot to be released", timeout=30)


# -- a search with nothing to search is not the whole listing -----------------------------------


@pytest.mark.parametrize("q", ['"', "/.*/", " ".join(["a"] * 200), "the of and", "!!! ???", "*"])
def test_search_without_searchable_terms_is_not_everything(hostile: Hostile, q: str) -> None:
    r = hostile.up.get("/v1/assets", q=q, limit=100)
    if r.status_code == 200:
        assert r.json()["items"] == [], f"q={q!r} returned the unfiltered listing"
    else:  # refused as saying nothing searchable (400), or as too long a query (422)
        assert r.status_code in (400, 422), r.text
        assert r.headers["content-type"].startswith("application/problem+json")


# -- 5. verify and import stream their input -----------------------------------------------------


# Runs ARGV in a child forked from this small interpreter and writes that child's peak RSS (KiB) to
# the file named first. Not straight from the test process: Python starts children with vfork, and
# Linux carries the parent's high-water RSS into the child's ru_maxrss at exec, so a test process
# of 500 MB (an xdist worker, say) would make any command look 500 MB.
_MEASURE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _run_measured(argv: list[str], env: dict[str, str], tmp: Path) -> tuple[int, str, int]:
    """Run a command to its end; its exit code, its output (stdout and stderr) and its peak RSS in KiB."""
    out_path, rss_path = tmp / "out.txt", tmp / "rss.txt"
    with out_path.open("wb") as out:
        p = subprocess.Popen(
            [sys.executable, "-c", _MEASURE, str(rss_path), *argv],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # so a timeout kills the command too, not only its parent
        )
        try:
            code = p.wait(CLI_TIMEOUT * 3)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            pytest.fail(f"{argv[1:3]} did not finish in {CLI_TIMEOUT * 3:.0f} s")
    return code, out_path.read_text(errors="replace"), int(rss_path.read_text())


@pytest.mark.parametrize("command", ["verify", "import"])
def test_verify_and_import_of_megabytes_of_garbage_are_bounded(
    hostile: Hostile, tmp_path: Path, command: str
) -> None:
    junk = tmp_path / "zeros.cbor"
    junk.write_bytes(bytes(3_000_000))
    env = child_env()
    if command == "verify":
        argv = [EMPRESSA, "verify", str(junk)]
    else:
        argv = [EMPRESSA, "node", "import", "--data", str(hostile.creator), str(junk)]
    code, out, rss_kib = _run_measured(argv, env, tmp_path)
    assert code != 0
    lines = out.splitlines()
    assert len(lines) <= 200, f"{len(lines)} lines of output for one bad file"
    assert rss_kib < 400 * 1024, f"peak RSS {rss_kib // 1024} MiB for a 3 MB file"


# -- 6, 7. the P2P port cannot be taken over; node run start-up errors are one line ---------------


def test_bridge_p2p_port_cannot_be_taken_over(hostile: Hostile, tmp_path: Path) -> None:
    port = int(hostile.up.info["bridge_multiaddr"].split("/tcp/")[1].split("/")[0])
    data = tmp_path / "squatter"
    init_node(data)
    p = subprocess.run(
        [EMPRESSA, "node", "run", "--data", str(data), "--listen", f"/ip4/127.0.0.1/tcp/{port}", "--no-mdns"],
        env=child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=CLI_TIMEOUT,
    )
    assert p.returncode != 0, "a second process listens on the bridge's port"
    line = one_line_error(p)
    assert str(port) in line and "in use" in line
    # The bridge still takes connections on its port: a new creator's asset arrives.
    did = init_node(tmp_path / "after")
    daemons = Daemons()
    try:
        daemons.start(tmp_path / "after", bootstrap=[hostile.up.info["bridge_multiaddr"]])
        publish(tmp_path / "after", "after-squat", "After The Squatter")
        wait_for(
            lambda: hostile.up.get(f"/v1/assets/{did}/after-squat").status_code == 200,
            what="an asset published after the takeover attempt",
            timeout=VISIBLE_TIMEOUT,
        )
    finally:
        daemons.stop_all()


@pytest.mark.parametrize("flag", ["api-port", "udp-listen"])
def test_node_run_start_up_errors_are_one_line(hostile: Hostile, tmp_path: Path, flag: str) -> None:
    data = tmp_path / "node"
    init_node(data)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        if flag == "api-port":
            extra = ["--listen", "/ip4/127.0.0.1/tcp/0", "--api-port", str(taken.getsockname()[1])]
        else:
            extra = ["--listen", "/ip4/127.0.0.1/udp/4999"]
        p = cli("node", "run", "--data", data, "--no-mdns", *extra, ok=False)
    line = one_line_error(p)
    assert "Traceback" not in p.stderr.decode()
    assert ("in use" in line) if flag == "api-port" else ("udp" in line.lower())


# -- 3. PostgreSQL: no password-less connections, no superuser services ---------------------------


def test_postgresql_refuses_connections_without_a_password(hostile: Hostile) -> None:
    url = hostile.up.info["database_url"]
    assert urlsplit(url).password is None, "stack.json holds a database password"
    port = urlsplit(url).port
    for user in ("postgres", "empressa", "nobody"):
        # No password from anywhere: not given, no passfile (libpq would read ~/.pgpass or PGPASSFILE).
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(
                host="127.0.0.1",
                port=port,
                user=user,
                dbname="empressa",
                passfile="/dev/null",
                connect_timeout=10,
            ).close()
    with _db(hostile) as conn:
        (superuser,) = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        assert superuser is False, "the services connect as a superuser"


def test_another_local_user_cannot_reach_the_database(hostile: Hostile) -> None:
    """The attack as found: psql as user ``nobody``, over TCP and over the server's Unix socket."""
    if os.geteuid() != 0:
        pytest.skip("switching to another OS user (nobody) needs root")
    psql = str(_bin_dir() / "psql")
    port = str(urlsplit(hostile.up.info["database_url"]).port)
    for user in ("postgres", "empressa"):
        for host in ("127.0.0.1", str(hostile.data / "postgres" / "sock")):
            p = subprocess.run(
                [
                    psql,
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
            assert p.returncode != 0, f"nobody reached {user}@{host}: {p.stdout}"
            assert "password" in p.stderr or "Permission denied" in p.stderr, p.stderr


# -- least privilege: only signing processes hold the key-encryption key ------------------------


def test_only_signing_processes_receive_the_kek(hostile: Hostile) -> None:
    children = hostile.up.services()
    assert {"api", "feeder", "reconciler", "bridge", "demo-node"} <= set(children), children
    for name, pid in children.items():
        env = environ_of(pid)
        holds = {k for k in ("EMPRESSA_KEK", "EMPRESSA_PASSPHRASE") if k in env}
        if name in ("bridge", "demo-node"):
            assert holds, f"{name} needs the keystore secret"
        else:
            assert not holds, f"{name} (pid {pid}) holds {holds}"


def test_demo_node_on_loopback_does_not_announce_on_the_lan(hostile: Hostile) -> None:
    pid = hostile.up.services()["demo-node"]
    argv = cmdline(pid)
    assert "--no-mdns" in argv, argv


# -- 2. a killed PostgreSQL is restarted, and the services recover ------------------------------


def _server_pid(data: Path) -> int | None:
    """The running server's pid, or None while there is none (postmaster.pid is absent or half written)."""
    try:
        return postmaster_pid(data)
    except (OSError, ValueError):
        return None


def test_killed_postgresql_is_restarted_and_nothing_is_lost(hostile: Hostile, tmp_path: Path) -> None:
    up = hostile.up
    old = postmaster_pid(hostile.data)
    os.kill(old, signal.SIGKILL)
    wait_for(
        lambda: "service exited service=postgres" in up.log_path.read_text(errors="replace"),
        what="the supervisor to report the death of postgres",
        timeout=VISIBLE_TIMEOUT,
    )
    wait_for(
        lambda: _server_pid(hostile.data) not in (None, old) and up.get("/readyz").status_code == 200,
        what="PostgreSQL restarted and the API ready",
        timeout=VISIBLE_TIMEOUT * 2,
    )
    assert_nothing_lost(hostile)
    # New writes are accepted again over HTTP and over P2P (the bridge reconnected), and reach
    # search through the feeder; the reconciler takes its lock again.
    signer, raws, hashes = _signed(1, title="Zanzibar After Restart")
    r = httpx.post(up.api_url + "/v1/entries", content=raws[0], headers=CBOR_SEQ, timeout=30)
    assert r.status_code == 200, r.text
    hostile.accepted.entries += hashes
    hostile.accepted.assets[f"{signer.public.did}/k1"] = "Zanzibar After Restart 1"
    did = init_node(tmp_path / "after")
    daemons = Daemons()
    try:
        daemons.start(tmp_path / "after", bootstrap=[up.info["bridge_multiaddr"]])
        publish(tmp_path / "after", "moraine", "Moraine After Crash")
        hostile.accepted.assets[f"{did}/moraine"] = "Moraine After Crash"
        for q in ("zanzibar", "moraine"):
            wait_for(
                lambda q=q: up.get("/v1/assets", q=q).json()["items"],
                what=f"{q!r} in search after the restart",
                timeout=VISIBLE_TIMEOUT,
            )
    finally:
        daemons.stop_all()
    reconciler = hostile.data / "logs" / "reconciler.log"
    wait_for(
        lambda: reconciler.read_text(errors="replace").count("reconciler active") >= 2,
        what="the reconciler to take its lock again",
        timeout=VISIBLE_TIMEOUT,
    )


# -- 8, 9. the supervisor killed: no orphans, a clean restart; two signals stop it ---------------


def test_sigkill_of_the_supervisor_takes_its_children_and_up_starts_again(hostile: Hostile) -> None:
    up = hostile.up
    pids = [*up.services().values(), postmaster_pid(hostile.data)]
    up.stop(signal.SIGKILL)
    wait_for(
        lambda: not any(alive(p) for p in pids), what="every child to die with the supervisor", timeout=60
    )
    hostile.up = start_stack(hostile.data)  # same data dir: a stale stack of its own is no obstacle
    assert_nothing_lost(hostile)


def test_two_signals_in_a_row_stop_the_stack(hostile: Hostile) -> None:
    up = hostile.up
    pids = [*up.services().values(), postmaster_pid(hostile.data)]
    up.proc.send_signal(signal.SIGINT)
    up.proc.send_signal(signal.SIGINT)
    try:
        up.proc.wait(60)  # a bound, not a measurement: a deadlocked supervisor never exits
    except subprocess.TimeoutExpired:
        up.stop(signal.SIGKILL)
        pytest.fail(f"empressa up did not exit after two SIGINTs:\n{up.logs()}")
    up.stop()  # already ended: closes its log
    wait_for(lambda: not any(alive(p) for p in pids), what="the children to stop", timeout=60)
    # And the data survive a stop-now: a fresh stack serves everything accepted.
    hostile.up = start_stack(hostile.data)
    assert_nothing_lost(hostile)
