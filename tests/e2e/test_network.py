"""Real ``empressa node run`` processes replicating over libp2p on 127.0.0.1.

A module-wide chain of three daemons, A ← B ← C (each bootstraps to the one
before it, so A and C only meet through B), carries the propagation tests;
the offline-first test runs its own pair.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from protocol import parse_and_verify, parse_did, split_sequence

from .conftest import (
    CID,
    Daemon,
    Daemons,
    child_env,
    cli_json,
    export,
    init_node,
    library,
    publish,
    start_error,
    wait_for,
)

pytestmark = pytest.mark.e2e

REPLICATION_TIMEOUT = 60.0


@dataclass
class Member:
    data: Path
    did: str
    daemon: Daemon


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, module_daemons: Daemons) -> list[Member]:
    root = tmp_path_factory.mktemp("chain")
    members: list[Member] = []
    bootstrap: list[str] = []
    for name in "abc":
        data = root / name
        did = init_node(data)
        d = module_daemons.start(data, bootstrap=bootstrap)
        members.append(Member(data, did, d))
        bootstrap = [d.addr]
    return members


def local_writes(d: Daemon) -> int:
    """How many writes the daemon's local API has accepted (from its log)."""
    return d.log().count("POST /v1/local/entries -> 201")


def _entries_by(blob: bytes, did: str) -> list[int]:
    author, now = parse_did(did), time.time_ns() // 1_000_000
    return [
        e.seq
        for e in (parse_and_verify(raw, now_ms=now) for raw in split_sequence(blob))
        if e.author == author
    ]


def test_publish_edit_delete_propagate_along_the_chain(chain: list[Member]) -> None:
    a, b, c = chain
    uri = f"empressa://{a.did}/song"

    # With A's daemon up, the CLI hands the write to it: no passphrase is needed.
    before = local_writes(a.daemon)
    r = publish(
        a.data,
        "song",
        "First take",
        "--tag",
        "demo",
        "--price",
        "12.50",
        "--currency",
        "USD",
        env=child_env(EMPRESSA_PASSPHRASE=None),
    )
    assert r["uri"] == uri and r["seq"] == 1
    assert local_writes(a.daemon) == before + 1

    for m in (b, c):
        item = wait_for(
            lambda m=m: library(m.data).get(uri), what=f"{uri} on {m.data.name}", timeout=REPLICATION_TIMEOUT
        )
        assert item["title"] == "First take" and item["hash"] == r["hash"]
        assert item["license"] == {"type": "personal", "price": {"amount": "12.50", "currency": "USD"}}
        assert item["tags"] == ["demo"] and item["mine"] is False
        assert uri not in library(m.data, all=False)

    edited = cli_json("node", "edit", "--data", a.data, "--key", "song", "--title", "Second take")
    assert edited["seq"] == 2
    for m in (b, c):
        item = wait_for(
            lambda m=m: (i := library(m.data).get(uri)) and i["hash"] == edited["hash"] and i,
            what=f"the edit on {m.data.name}",
            timeout=REPLICATION_TIMEOUT,
        )
        assert item["title"] == "Second take" and item["versions"] == 2
        assert item["license"]["price"] == {"amount": "12.50", "currency": "USD"}  # unchanged fields stay

    deleted = cli_json("node", "delete", "--data", a.data, "--key", "song")
    assert deleted["seq"] == 3
    assert local_writes(a.daemon) == before + 3
    for m in (b, c):
        wait_for(
            lambda m=m: uri not in library(m.data),
            what=f"the delete on {m.data.name}",
            timeout=REPLICATION_TIMEOUT,
        )
        assert _entries_by(export(m.data), a.did) == [1, 2, 3]

    # And the other way: C's asset reaches A through B.
    rc = publish(c.data, "reply", "From the end of the chain")
    item = wait_for(
        lambda: library(a.data).get(rc["uri"]), what="C's asset on A", timeout=REPLICATION_TIMEOUT
    )
    assert item["hash"] == rc["hash"]


def test_a_burst_of_publishes_arrives_complete(chain: list[Member]) -> None:
    a, b, c = chain
    n_api = 300
    headers = {"Authorization": f"Bearer {a.daemon.token()}"}
    body = {
        "title": "",
        "description": "burst",
        "tags": ["burst"],
        "media": {"cid": CID, "mime": "audio/wav", "size": 1},
        "license": {"type": "personal"},
    }
    seqs: list[int] = []
    with httpx.Client(base_url=a.daemon.api_url, headers=headers, timeout=30) as api:
        for i in range(n_api):
            r = api.post(
                "/v1/local/entries",
                json={"kind": "asset.put", "key": f"b{i:04d}", "body": {**body, "title": f"Burst {i}"}},
            )
            assert r.status_code == 201, r.text
            seqs.append(r.json()["seq"])
            if i % 100 == 50:
                seqs.append(publish(a.data, f"cli{i}", f"Through the CLI {i}")["seq"])
        unauthorized = api.post(
            "/v1/local/entries",
            headers={"Authorization": "Bearer nope"},
            json={"kind": "asset.put", "key": "x", "body": body},
        )
        assert unauthorized.status_code == 401
    assert len(seqs) == n_api + 3
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "the daemon is the single writer of A's log"

    want = export(a.data)
    assert _entries_by(want, a.did)[-1] == seqs[-1]
    for m in (b, c):
        wait_for(
            lambda m=m: export(m.data) == want,
            what=f"all of A's burst on {m.data.name}",
            timeout=REPLICATION_TIMEOUT,
            interval=0.5,
        )
    titles = {i["title"] for i in library(c.data).values() if i["did"] == a.did}
    assert {f"Burst {i}" for i in range(n_api)} <= titles


def test_offline_first_publish_reaches_a_peer_when_the_daemon_starts(
    tmp_path: Path, daemons: Daemons
) -> None:
    peer, me = tmp_path / "peer", tmp_path / "me"
    init_node(peer)
    did = init_node(me)
    p = daemons.start(peer)

    # Daemon not running: the write goes straight to node.db.
    first = publish(me, "offline", "Written offline")
    assert not (me / "node.json").exists()
    assert _entries_by(export(me), did) == [1]
    assert first["uri"] not in library(peer)

    d = daemons.start(me, bootstrap=[p.addr])
    wait_for(
        lambda: first["uri"] in library(peer),
        what="the offline entry on the peer",
        timeout=REPLICATION_TIMEOUT,
    )

    # A daemon that died without cleaning up leaves a stale node.json: writes still work.
    d.stop(signal.SIGKILL)
    assert (me / "node.json").exists()
    second = publish(me, "after-crash", "Written after a crash")
    assert second["seq"] == 2
    d = daemons.start(me, bootstrap=[p.addr])
    item = wait_for(
        lambda: library(peer).get(second["uri"]),
        what="the post-crash entry on the peer",
        timeout=REPLICATION_TIMEOUT,
    )
    assert item["hash"] == second["hash"]
    assert export(peer) == export(me)

    # A clean stop (SIGTERM, or Ctrl-C) exits 0 and removes node.json.
    assert d.stop(signal.SIGTERM) == 0, d.log()
    assert p.stop(signal.SIGINT) == 0, p.log()
    for data in (me, peer):
        assert not (data / "node.json").exists()
    assert "node stopped" in d.log()


def test_a_second_node_on_a_taken_port_fails_and_the_first_keeps_its_peers(
    tmp_path: Path, daemons: Daemons
) -> None:
    first, second, third = tmp_path / "first", tmp_path / "second", tmp_path / "third"
    for data in (first, second, third):
        init_node(data)
    a = daemons.start(first)
    port = a.addr.split("/tcp/")[1].split("/")[0]
    line = start_error("node", "run", "--data", second, "--listen", f"/ip4/127.0.0.1/tcp/{port}", "--no-mdns")
    assert f"/ip4/127.0.0.1/tcp/{port}" in line and "in use" in line, line
    assert not (second / "node.json").exists()

    # Every connection to the port still reaches the first node: a peer that dials it gets its entries.
    c = daemons.start(third, bootstrap=[a.addr])
    r = publish(third, "after-refusal", "Published after the refused start")
    wait_for(
        lambda: r["uri"] in library(first), what="the entry on the first node", timeout=REPLICATION_TIMEOUT
    )
    assert a.proc.poll() is None and c.proc.poll() is None


def test_sigterm_stops_every_daemon_cleanly(chain: list[Member]) -> None:
    for m in reversed(chain):
        assert m.daemon.proc.poll() is None, f"{m.data.name} died early:\n{m.daemon.log()}"
        assert m.daemon.stop(signal.SIGTERM) == 0, m.daemon.log()
        assert not (m.data / "node.json").exists()
    # With the daemons gone, the CLI writes to the store again.
    a = chain[0]
    r = publish(a.data, "after-stop", "After the daemon stopped")
    assert r["uri"] in library(a.data, all=False)
