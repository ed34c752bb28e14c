"""The ``empressa node …`` commands as functions (:mod:`node.commands`), called without the CLI,
and the one log format every service is handed (:mod:`node.logctx`)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from node import commands
from node.archive import input_chunks
from node.client import AssetFields
from node.errors import NodeError, NotFoundError
from node.logctx import configure_logging, correlation_id

ENV = {"EMPRESSA_KEK": "ab" * 32}
CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def test_a_library_made_exported_verified_and_imported_through_the_functions(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    did = commands.init_node(a, environ=ENV).did
    fields = AssetFields(title="Tide", tags=("ambient",), cid=CID, mime="audio/wav", license_type="personal")
    put = commands.publish(a, "tide", fields, environ=ENV)
    assert (put.seq, put.via, put.text()) == (1, "store", f"empressa://{did}/tide {put.hash}")
    assert list(put.to_json()) == ["uri", "hash", "seq"]
    edited = commands.edit(a, "tide", AssetFields(title="High Tide"), environ=ENV)
    assert edited.seq == 2
    with pytest.raises(NotFoundError):
        commands.delete(a, "nope", environ=ENV)

    listing = commands.list_library(a, include_others=False, environ=ENV)
    assert [i["title"] for i in listing.to_json()["items"]] == ["High Tide"]
    assert listing.text() == "tide  High Tide  [personal, free]  v2  ambient"

    out = io.BytesIO()
    commands.export_entries(a, out, include_others=False)
    lines = io.StringIO()
    checked = commands.verify([out.getvalue()], lines, as_json=True)
    assert (checked.ok, checked.failed) == (2, 0)
    assert json.loads(lines.getvalue())["ok"] == 2

    commands.init_node(b, environ=ENV)
    assert commands.list_library(b, include_others=True, environ=ENV).text().startswith("no assets")
    report = commands.import_entries(b, [out.getvalue()])
    assert (report.to_json(), report.failed, report.notes()) == (
        {"stored": 2, "duplicates": 0, "rejected": 0},
        False,
        [],
    )
    assert "by did:key:" in commands.list_library(b, include_others=True, environ=ENV).text()


def test_an_empty_or_unreadable_input_is_one_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.cbor"
    empty.write_bytes(b"")
    with pytest.raises(NodeError, match=r"^no entries in the input$"):
        commands.verify(input_chunks(str(empty)), io.StringIO(), as_json=False)
    commands.init_node(tmp_path / "n", environ=ENV)
    with pytest.raises(NodeError, match=r"^no entries in the input$"):
        commands.import_entries(tmp_path / "n", input_chunks(str(empty)))
    with pytest.raises(NodeError, match=r"^cannot read .*nope.cbor: No such file or directory$"):
        input_chunks(str(tmp_path / "nope.cbor"))


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_every_service_logs_one_line_per_record_with_its_correlation_id(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    token = correlation_id.set("c0ffee")
    try:
        configure_logging("INFO", False)
        logging.getLogger("empressa.test").info('said "hi"')
        logging.getLogger("empressa.test").debug("not at INFO")
        configure_logging("INFO", True)
        logging.getLogger("empressa.test").warning("as json")
    finally:
        correlation_id.reset(token)
    kv, js = capsys.readouterr().err.splitlines()
    assert kv.startswith("ts=") and kv.endswith(
        " level=info logger=empressa.test cid=c0ffee msg=\"said 'hi'\""
    )
    assert {k: v for k, v in json.loads(js).items() if k != "ts"} == {
        "level": "warning",
        "logger": "empressa.test",
        "cid": "c0ffee",
        "msg": "as json",
    }
