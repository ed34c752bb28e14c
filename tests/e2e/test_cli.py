"""The ``empressa`` command on its own: init, keystore errors, bad input, export/verify/import.

No daemon runs here except where a test says so; writes go straight to node.db.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol import Signer, sign_entry, split_sequence

from .conftest import (
    CID,
    PASSPHRASE,
    Daemons,
    child_env,
    cli,
    cli_json,
    export,
    init_node,
    library,
    one_line_error,
    publish,
    start_error,
)

pytestmark = pytest.mark.e2e

DID = re.compile(r"did:key:z6Mk[1-9A-HJ-NP-Za-km-z]+")
PEER = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"


# -- init ---------------------------------------------------------------------------------


def test_init_prints_a_did_and_refuses_to_overwrite(tmp_path: Path) -> None:
    data = tmp_path / "a"
    p = cli("node", "init", "--data", data)
    out = p.stdout.decode().splitlines()
    assert len(out) == 1 and DID.fullmatch(out[0]), out
    did = out[0]
    keystore = (data / "keystore.json").read_bytes()
    assert (data / "config.toml").is_file()
    assert did in keystore.decode()  # the public did is readable; the secrets are sealed
    assert PASSPHRASE.encode() not in keystore

    again = cli("node", "init", "--data", data, ok=False)
    assert "already exists" in one_line_error(again)
    assert again.stdout == b""
    assert (data / "keystore.json").read_bytes() == keystore, "a refused init must not touch the keystore"

    again_json = cli("node", "init", "--data", data, "--json", ok=False)
    assert "already exists" in one_line_error(again_json)


def test_init_json(tmp_path: Path) -> None:
    data = tmp_path / "a"
    out = cli_json("node", "init", "--data", data)
    assert set(out) >= {"did", "data_dir"}
    assert DID.fullmatch(out["did"])
    assert Path(out["data_dir"]) == data
    # The did is the author of what this node then publishes.
    r = publish(data, "k1", "Title")
    assert r["uri"] == f"empressa://{out['did']}/k1"
    assert r["seq"] == 1


def test_init_with_kek_and_unlock_rules(tmp_path: Path) -> None:
    data = tmp_path / "a"
    kek = secrets.token_hex(32)
    env = child_env(EMPRESSA_PASSPHRASE=None, EMPRESSA_KEK=kek)
    did = init_node(data, env=env)
    assert publish(data, "k1", "With a KEK", env=env)["uri"] == f"empressa://{did}/k1"

    wrong = cli(
        "node",
        "publish",
        "--data",
        data,
        "--key",
        "k2",
        "--title",
        "t",
        "--cid",
        CID,
        "--mime",
        "a/b",
        env=child_env(EMPRESSA_PASSPHRASE=None, EMPRESSA_KEK=secrets.token_hex(32)),
        ok=False,
    )
    assert "wrong EMPRESSA_KEK" in one_line_error(wrong)
    passphrase_only = cli(
        "node",
        "publish",
        "--data",
        data,
        "--key",
        "k2",
        "--title",
        "t",
        "--cid",
        CID,
        "--mime",
        "a/b",
        ok=False,
    )
    assert "EMPRESSA_KEK" in one_line_error(passphrase_only)
    assert list(library(data, all=False)) == [f"empressa://{did}/k1"]


def test_init_without_a_secret_and_no_tty_fails(tmp_path: Path) -> None:
    data = tmp_path / "a"
    p = cli("node", "init", "--data", data, env=child_env(EMPRESSA_PASSPHRASE=None), ok=False)
    assert "no passphrase" in one_line_error(p)
    assert not (data / "keystore.json").exists()


# -- keystore errors -----------------------------------------------------------------------


def test_wrong_passphrase(tmp_path: Path, daemons: Daemons) -> None:
    data = tmp_path / "a"
    init_node(data)
    env = child_env(EMPRESSA_PASSPHRASE="not the passphrase")
    p = cli(
        "node",
        "publish",
        "--data",
        data,
        "--key",
        "k",
        "--title",
        "t",
        "--cid",
        CID,
        "--mime",
        "a/b",
        env=env,
        ok=False,
    )
    line = one_line_error(p)
    assert "wrong passphrase" in line and str(data / "keystore.json") in line
    assert export(data) == b""

    d = daemons.spawn(data, env=env)
    assert d.proc.wait(30) != 0
    lines = [line for line in d.log().splitlines() if line.strip()]
    assert len(lines) == 1 and "wrong passphrase" in lines[0], lines
    assert not (data / "node.json").exists()


def test_locked_keystore_without_a_tty(tmp_path: Path, daemons: Daemons) -> None:
    data = tmp_path / "a"
    init_node(data)
    env = child_env(EMPRESSA_PASSPHRASE=None)
    p = cli(
        "node",
        "publish",
        "--data",
        data,
        "--key",
        "k",
        "--title",
        "t",
        "--cid",
        CID,
        "--mime",
        "a/b",
        env=env,
        ok=False,
    )
    line = one_line_error(p)
    assert "keystore is locked" in line and "EMPRESSA_PASSPHRASE" in line
    assert export(data) == b""

    d = daemons.spawn(data, env=env)
    assert d.proc.wait(30) != 0
    lines = [line for line in d.log().splitlines() if line.strip()]
    assert len(lines) == 1 and "keystore is locked" in lines[0], lines
    assert not (data / "node.json").exists()


# -- node run: start-up errors ----------------------------------------------------------------


@pytest.fixture
def listening() -> Iterator[int]:
    """A port on 127.0.0.1 that another process is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


LOOPBACK = "/ip4/127.0.0.1/tcp/0"


def test_node_run_on_a_taken_api_port(tmp_path: Path, listening: int) -> None:
    data = tmp_path / "a"
    init_node(data)
    line = start_error("node", "run", "--data", data, "--listen", LOOPBACK, "--api-port", listening)
    assert f"127.0.0.1:{listening}" in line and "in use" in line, line
    assert not (data / "node.json").exists()


def test_node_run_on_a_taken_p2p_port(tmp_path: Path, listening: int) -> None:
    data = tmp_path / "a"
    init_node(data)
    line = start_error("node", "run", "--data", data, "--listen", f"/ip4/127.0.0.1/tcp/{listening}")
    assert f"/ip4/127.0.0.1/tcp/{listening}" in line and "in use" in line, line
    assert not (data / "node.json").exists()


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--listen", "/ip4/127.0.0.1/udp/4001"], ["/ip4/127.0.0.1/udp/4001", "TCP only"]),
        (["--listen", "/ip4/127.0.0.1/tcp/0/ws"], ["/ws", "TCP only"]),
        (["--listen", "/ip4/192.0.2.1/tcp/0"], ["cannot listen on /ip4/192.0.2.1/tcp/0"]),  # not ours
        (
            ["--listen", LOOPBACK, "--bootstrap", f"/ip4/127.0.0.1/udp/1/p2p/{PEER}"],
            ["bootstrap", "TCP only"],
        ),
        (["--listen", LOOPBACK, "--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/nope"], ["bootstrap", "multiaddr"]),
        (["--listen", LOOPBACK, "--api-port", "70000"], ["api_port", "65535"]),
    ],
    ids=["udp", "websocket", "not-a-local-address", "udp-bootstrap", "bad-peer-id", "api-port-range"],
)
def test_node_run_with_an_address_it_cannot_use(tmp_path: Path, flags: list[str], words: list[str]) -> None:
    data = tmp_path / "a"
    init_node(data)
    line = start_error("node", "run", "--data", data, *flags)
    assert all(w in line for w in words), line
    assert not (data / "node.json").exists()


def test_node_run_with_a_data_dir_it_cannot_use(tmp_path: Path) -> None:
    missing = tmp_path / "never-initialised"
    assert "node init" in start_error("node", "run", "--data", missing, "--listen", LOOPBACK)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    assert str(a_file) in start_error("node", "run", "--data", a_file, "--listen", LOOPBACK)
    data = tmp_path / "a"
    init_node(data)
    (data / "node.db").mkdir()  # the store's file is not a file
    line = start_error("node", "run", "--data", data, "--listen", LOOPBACK)
    assert "node.db" in line, line
    (data / "node.db").rmdir()
    (data / "node.db").write_bytes(b"not a database, just some bytes" * 100)
    line = start_error("node", "run", "--data", data, "--listen", LOOPBACK)
    assert "node.db" in line, line


# -- bad input -------------------------------------------------------------------------------

BAD_PUBLISHES = [
    (["--key", "has spaces", "--title", "t"], "key"),
    (["--key", "x" * 65, "--title", "t"], "key"),
    (["--key", "k", "--title", "x" * 201], "title"),
    (["--key", "k", "--title", "t", "--price", "abc", "--currency", "USD"], "price"),
    (["--key", "k", "--title", "t", "--price", "-3", "--currency", "USD"], "price"),
    (["--key", "k", "--title", "t", "--price", "12.50"], "--currency"),
    (["--key", "k", "--title", "t", *[a for i in range(21) for a in ("--tag", f"t{i}")]], "tags"),
]


def _bad_publishes_write_nothing(data: Path, cases: list[tuple[list[str], str]]) -> None:
    before = export(data)
    for args, word in cases:
        p = cli("node", "publish", "--data", data, *args, "--cid", CID, "--mime", "audio/mpeg", ok=False)
        line = one_line_error(p)
        assert word in line, (args[:4], line)
        assert p.stdout == b""
    assert export(data) == before, "a refused publish must write nothing"


def test_bad_publish_input_writes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "a"
    init_node(data)
    publish(data, "keep", "Kept")
    _bad_publishes_write_nothing(data, BAD_PUBLISHES)
    # Edits are checked the same way before anything is signed.
    p = cli("node", "edit", "--data", data, "--key", "keep", "--title", "x" * 201, ok=False)
    assert "title" in one_line_error(p)
    assert [i["versions"] for i in library(data).values()] == [1]


def test_bad_publish_through_the_daemon_writes_nothing(tmp_path: Path, daemons: Daemons) -> None:
    data = tmp_path / "a"
    init_node(data)
    publish(data, "keep", "Kept")
    d = daemons.start(data)
    # The daemon signs these, so its refusal is what the CLI reports.
    _bad_publishes_write_nothing(data, [BAD_PUBLISHES[i] for i in (0, 2, 3, 6)])
    assert "POST /v1/local/entries -> 422" in d.log()


def test_edit_and_delete_of_missing_or_deleted_asset(tmp_path: Path) -> None:
    data = tmp_path / "a"
    did = init_node(data)
    p = cli("node", "edit", "--data", data, "--key", "nope", "--title", "t", ok=False)
    line = one_line_error(p)
    assert "no asset" in line and "nope" in line
    p = cli("node", "delete", "--data", data, "--key", "nope", ok=False)
    assert "nope" in one_line_error(p)

    publish(data, "k", "Before")
    edited = cli_json("node", "edit", "--data", data, "--key", "k", "--title", "After")
    assert edited["seq"] == 2
    assert library(data)[f"empressa://{did}/k"]["title"] == "After"
    assert cli_json("node", "delete", "--data", data, "--key", "k")["seq"] == 3
    assert library(data) == {}
    p = cli("node", "edit", "--data", data, "--key", "k", "--title", "t", ok=False)
    assert "deleted" in one_line_error(p)
    p = cli("node", "delete", "--data", data, "--key", "k", ok=False)
    assert "deleted" in one_line_error(p)
    assert len(list(split_sequence(export(data)))) == 3


# -- export / verify / import ---------------------------------------------------------------


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Path, str, list[dict], bytes]:
    """A node with four entries (three puts, one edit), and its export."""
    data = tmp_path / "src"
    did = init_node(data)
    written = [publish(data, f"x{i}", f"Title {i}", "--tag", "e2e") for i in range(3)]
    written.append(cli_json("node", "edit", "--data", data, "--key", "x1", "--title", "Title 1b"))
    return data, did, written, export(data, all=False)


def test_export_verify_import_round_trip(
    tmp_path: Path, exported: tuple[Path, str, list[dict], bytes]
) -> None:
    src, did, written, blob = exported
    assert export(src, all=True) == blob  # nothing but our own entries here
    items = list(split_sequence(blob))
    assert len(items) == 4

    file = tmp_path / "backup.cbor"
    file.write_bytes(blob)
    p = cli("verify", file)
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 4
    for i, (line, w) in enumerate(zip(lines, written, strict=True)):
        assert line.startswith(f"{i}: ok {w['hash']} {did} #{w['seq']} asset.put "), line

    fresh = tmp_path / "fresh"
    init_node(fresh)
    p = cli("node", "import", "--data", fresh, file, "--json")
    assert json.loads(p.stdout) == {"stored": 4, "duplicates": 0, "rejected": 0}
    assert export(fresh, all=True) == blob
    assert export(fresh, all=False) == b""  # someone else's entries, not ours
    lib = library(fresh)
    assert {i["key"] for i in lib.values()} == {"x0", "x1", "x2"}
    assert lib[f"empressa://{did}/x1"]["title"] == "Title 1b"
    assert not any(i["mine"] for i in lib.values())

    again = cli("node", "import", "--data", fresh, file, "--json")
    assert json.loads(again.stdout) == {"stored": 0, "duplicates": 4, "rejected": 0}
    # stdin works too
    assert cli("verify", "-", input=blob).stdout.decode().splitlines() == lines


def _flip_title_byte(raw: bytes, title: str) -> bytes:
    i = raw.index(title.encode())
    return raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]


def test_verify_and_import_reject_a_tampered_file(
    tmp_path: Path, exported: tuple[Path, str, list[dict], bytes]
) -> None:
    _src, did, _written, blob = exported
    items = list(split_sequence(blob))
    bad = tmp_path / "bad.cbor"
    # entry 2 altered after signing; entry 3 is fine on its own but follows it; then junk.
    bad.write_bytes(items[0] + items[1] + _flip_title_byte(items[2], "Title 2") + items[3] + b"\xff\x00junk")

    p = cli("verify", bad, ok=False)
    assert p.returncode == 1
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 5, lines
    assert lines[0].startswith("0: ok ") and lines[1].startswith("1: ok ") and lines[3].startswith("3: ok ")
    assert lines[2].startswith("2: ") and "signature" in lines[2], lines[2]
    assert lines[4].startswith("4: ") and "CBOR" in lines[4], lines[4]
    p = cli("verify", "--json", bad, ok=False)
    assert p.returncode == 1
    report = json.loads(p.stdout)
    assert (report["ok"], report["failed"]) == (3, 2)
    assert [r["ok"] for r in report["entries"]] == [True, True, False, True, False]
    assert report["entries"][0]["author"] == did and "signature" in report["entries"][2]["error"]

    fresh = tmp_path / "fresh"
    init_node(fresh)
    p = cli("node", "import", "--data", fresh, bad, ok=False)
    assert p.returncode == 1
    errs = p.stderr.decode().splitlines()
    assert any(e.startswith("entry 2:") and "signature" in e for e in errs), errs
    assert any(e.startswith("entry 3:") and "gap" in e for e in errs), errs
    assert any(e.startswith("entry 4:") and "CBOR" in e for e in errs), errs
    assert "stored 2" in p.stdout.decode()
    assert export(fresh) == items[0] + items[1], "only the valid prefix of the log is stored"

    # The tampered entry last: everything before it is stored.
    last = tmp_path / "last.cbor"
    last.write_bytes(b"".join(items[:3]) + _flip_title_byte(items[3], "Title 1b"))
    p = cli("verify", last, ok=False)
    assert [line.split(" ")[1] for line in p.stdout.decode().splitlines()] == ["ok", "ok", "ok", "signature:"]
    fresh2 = tmp_path / "fresh2"
    init_node(fresh2)
    p = cli("node", "import", "--data", fresh2, last, ok=False)
    assert [e.split(":")[0] for e in p.stderr.decode().splitlines()] == ["entry 3"]
    assert export(fresh2) == b"".join(items[:3])
    assert f"empressa://{did}/x1" in library(fresh2)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "no entries"),
        (b"\x9f\x01\x02junk junk junk", "CBOR"),
        (b"\xa1\x61v\x01", "schema"),  # well-formed CBOR, not an entry
    ],
    ids=["empty", "junk", "not-an-entry"],
)
def test_verify_and_import_reject_a_file_without_entries(tmp_path: Path, content: bytes, reason: str) -> None:
    file = tmp_path / "f.cbor"
    file.write_bytes(content)
    p = cli("verify", file, ok=False)
    assert p.returncode == 1
    assert reason in (p.stdout + p.stderr).decode()

    fresh = tmp_path / "fresh"
    init_node(fresh)
    p = cli("node", "import", "--data", fresh, file, ok=False)
    assert p.returncode == 1
    assert p.stderr.strip(), "import must say why"
    assert export(fresh) == b""


# -- verify / import: large and hostile files ------------------------------------------------

REPORT_LIMIT = 100  # failures listed one per line; past it, one "… and N more" line


def signed_log(n: int, *, seed: int = 1) -> list[bytes]:
    """``n`` chained ``asset.put`` entries of one author, each its own asset."""
    signer, prev, out = Signer(bytes([seed]) * 32), None, []
    now = time.time_ns() // 1_000_000
    for seq in range(1, n + 1):
        body = {"title": f"Track {seq}", "description": "", "tags": [],
                "media": {"cid": CID, "mime": "audio/mpeg", "size": 1}, "license": {"type": "personal"}}  # fmt: skip
        e = sign_entry(signer, seq=seq, prev=prev, ts=now, kind="asset.put", key=f"t{seq}", body=body)
        out.append(e.raw)
        prev = e.hash
    return out


@pytest.mark.parametrize(
    "content",
    [bytes(3 * 1024 * 1024), random.Random(7).randbytes(3 * 1024 * 1024)],
    ids=["3MB-of-zeros", "3MB-of-random-bytes"],
)
def test_verify_and_import_stop_early_on_a_file_that_is_not_entries(tmp_path: Path, content: bytes) -> None:
    file = tmp_path / "f.cbor"
    file.write_bytes(content)
    p = cli("verify", file, ok=False)
    lines = p.stdout.decode().splitlines()
    assert 1 <= len(lines) <= REPORT_LIMIT + 2, (len(lines), lines[:3])
    assert "not a CBOR sequence of entries" in lines[-1] or "CBOR" in lines[-1], lines[-1]
    assert all(line.split(":")[0].isdigit() or line.startswith("…") for line in lines), lines[:5]

    report = cli_json_failing("verify", file, "--json")
    assert report["ok"] == 0 and report["failed"] >= 1
    assert len(report["entries"]) <= REPORT_LIMIT + 1

    fresh = tmp_path / "fresh"
    init_node(fresh)
    p = cli("node", "import", "--data", fresh, file, ok=False)
    errs = p.stderr.decode().splitlines()
    assert 1 <= len(errs) <= REPORT_LIMIT + 2, (len(errs), errs[:3])
    assert "stored 0" in p.stdout.decode()
    assert export(fresh) == b""


def cli_json_failing(*args: str | Path) -> dict:
    """A command that exits 1 but still prints its one JSON object."""
    out = cli(*args, ok=False).stdout.decode()
    assert len(out.strip().splitlines()) == 1, out[:300]
    return json.loads(out)


def test_a_long_run_of_non_entries_stops_reading(tmp_path: Path) -> None:
    good = signed_log(2)
    file = tmp_path / "f.cbor"
    file.write_bytes(b"".join(good) + bytes(1024 * 1024) + good[1])
    lines = cli("verify", file, ok=False).stdout.decode().splitlines()
    assert lines[0].startswith("0: ok ") and lines[1].startswith("1: ok ")
    assert len(lines) <= REPORT_LIMIT + 3, len(lines)
    assert "not a CBOR sequence of entries" in lines[-1], lines[-1]


def test_many_failures_are_listed_up_to_a_limit_then_counted(tmp_path: Path) -> None:
    log = signed_log(150)
    bad = [raw[:-1] + bytes([raw[-1] ^ 1]) for raw in log]  # every signature broken, each still a map
    file = tmp_path / "f.cbor"
    file.write_bytes(b"".join(bad))
    lines = cli("verify", file, ok=False).stdout.decode().splitlines()
    assert len(lines) == REPORT_LIMIT + 1, len(lines)
    assert all("signature" in line for line in lines[:REPORT_LIMIT])
    assert "50 more" in lines[-1], lines[-1]
    report = cli_json_failing("verify", file, "--json")
    assert (report["ok"], report["failed"], len(report["entries"])) == (0, 150, REPORT_LIMIT)

    fresh = tmp_path / "fresh"
    init_node(fresh)
    p = cli("node", "import", "--data", fresh, file, ok=False)
    errs = p.stderr.decode().splitlines()
    assert len(errs) == REPORT_LIMIT + 1 and "50 more" in errs[-1], errs[-2:]
    assert "rejected 150" in p.stdout.decode()


def test_a_large_valid_export_imports_and_verifies_fully(tmp_path: Path) -> None:
    n = 5000  # several import batches
    log = signed_log(n, seed=2)
    file = tmp_path / "big.cbor"
    file.write_bytes(b"".join(log))
    lines = cli("verify", file).stdout.decode().splitlines()
    assert len(lines) == n and all(f"{i}: ok " in line for i, line in enumerate(lines))
    report = cli_json("verify", file)
    assert (report["ok"], report["failed"], len(report["entries"])) == (n, 0, n)

    fresh = tmp_path / "fresh"
    init_node(fresh)
    p = cli("node", "import", "--data", fresh, file, "--json")
    assert json.loads(p.stdout) == {"stored": n, "duplicates": 0, "rejected": 0}
    assert export(fresh) == b"".join(log)

    # Newest first: every entry waits for the one before it, across import batches.
    backwards = tmp_path / "backwards.cbor"
    backwards.write_bytes(b"".join(reversed(log[:2500])))
    other = tmp_path / "other"
    init_node(other)
    p = cli("node", "import", "--data", other, backwards, "--json")
    assert json.loads(p.stdout) == {"stored": 2500, "duplicates": 0, "rejected": 0}
    assert export(other) == b"".join(log[:2500])


def test_verify_and_import_of_a_missing_file(tmp_path: Path) -> None:
    p = cli("verify", tmp_path / "nope.cbor", ok=False)
    assert "cannot read" in one_line_error(p)
    p = cli("node", "import", "--data", tmp_path / "n", tmp_path / "nope.cbor", ok=False)
    assert "cannot read" in one_line_error(p)
