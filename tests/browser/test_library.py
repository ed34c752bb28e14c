"""My Library in a real browser, against real ``empressa node run`` processes started through the CLI.

One creator's node (``creator``) runs for the module, with no peers until the last
test starts a second node next to it. Each test signs in with its own one-time link
(``empressa node open``), as a person would.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.media import bytes_cid
from protocol import Signer, attest_body, parse_asset_uri, parse_entry_hash, sign_entry
from tests.e2e.conftest import CID, Daemon, Daemons, child_env, cli, cli_json, init_node, publish

from .conftest import screenshot

LIVE_MS = 20_000  # replication between two processes, then the page's live update


BRIDGE = Signer(bytes(range(32)))  # a bridge key the creator trusts (its attestations count)


@pytest.fixture(scope="module")
def creator(module_daemons: Daemons, tmp_path_factory: pytest.TempPathFactory) -> Daemon:
    data = tmp_path_factory.mktemp("library") / "creator"
    init_node(data)
    return module_daemons.start(data, env=child_env(EMPRESSA_NODE_TRUSTED_BRIDGES=BRIDGE.public.did))


def attest(d: Daemon, uri: str, put_hash: str, onchain_id: str, *, seq: int, prev: Any) -> Any:
    """A ``verified`` attestation by :data:`BRIDGE` of ``uri``'s entry ``put_hash``, imported with the CLI."""
    asset = parse_asset_uri(uri)
    e = sign_entry(
        BRIDGE, seq=seq, prev=prev, ts=int(time.time() * 1000), kind="attest", key=asset.id_b32,
        body=attest_body(asset, subject=parse_entry_hash(put_hash).raw, status="verified",
                         chain="eip155:31337", onchain_id=onchain_id, tx="0x01"),
    )  # fmt: skip
    path = Path(d.data).with_name(f"attest-{seq}.cbor")
    path.write_bytes(e.raw)
    cli("node", "import", "--data", d.data, path)
    return e.hash


def link(d: Daemon) -> str:
    doc = cli_json("node", "open", "--data", d.data, "--no-browser")
    assert doc["browser"] is False and doc["expires_in"] == 120
    return str(doc["url"])


def signed_in(page: Any, d: Daemon) -> Any:
    page.goto(link(d))
    page.wait_for_selector("body[data-ready=yes]")
    assert page.url == d.api_url + "/"  # the code has left the URL bar
    assert "Signed in" in page.locator("#session").text_content()
    return page


def listed(d: Daemon, *, all: bool = False) -> dict[str, dict[str, Any]]:
    """``empressa node list [--all] --json`` by key (a CLI process: about a second, so used sparingly)."""
    args = ["node", "list", "--data", d.data, *(["--all"] if all else [])]
    return {i["key"]: i for i in cli_json(*args)["items"]}


def held(d: Daemon, *, all: bool = False) -> dict[str, dict[str, Any]]:
    """The daemon's library (its local API's ``/v1/library``, what ``node list`` reads) by key."""
    r = httpx.get(d.api_url + "/v1/library", params={"all": "true" if all else "false"}, timeout=10)
    return {i["key"]: i for i in r.json()["items"]}


def fill(page: Any, **fields: str) -> None:
    for name, value in fields.items():
        if name == "license":
            page.locator("#f-license").select_option(value)
        else:
            page.locator(f"#f-{name}").fill(value)


def test_the_one_time_link_opens_my_library_once(page: Any, creator: Daemon, request: Any) -> None:
    from playwright.sync_api import expect

    url = link(creator)
    page.goto(url)
    page.wait_for_selector("body[data-ready=yes]")
    expect(page.locator("#session")).to_contain_text("Signed in")
    expect(page.get_by_role("button", name="Publish an asset")).to_be_visible()
    expect(page.locator("#st-peers")).to_have_text("0")
    expect(page.locator("#st-indexer")).to_have_text("no indexer configured")
    expect(page.locator("#st-sync")).to_have_text("no peers (offline)")
    assert page.errors == []
    screenshot(page, request, "signed-in")
    # The same link again, from another browser: refused, and no session with it.
    other = page.context.browser.new_context()
    try:
        again = other.new_page()
        response = again.goto(url)
        assert response is not None and response.status == 403
        expect(again.get_by_role("heading")).to_contain_text("used or has expired")
        again.goto(creator.api_url + "/")
        again.wait_for_selector("body[data-ready=yes]")
        expect(again.locator("#session")).to_contain_text("Read only")
        expect(again.get_by_role("button", name="Publish an asset")).to_be_hidden()
        again.screenshot(path=str(screenshot_path(request, "second-use-read-only")), full_page=True)
        cookies = page.context.cookies()
        [session] = [c for c in cookies if c["name"].startswith("empressa_session_")]
        assert session["httpOnly"] is True and session["sameSite"] == "Strict" and session["path"] == "/"
    finally:
        other.close()


def test_publish_with_no_peers_then_edit_and_delete(page: Any, creator: Daemon, request: Any) -> None:
    from playwright.sync_api import expect

    signed_in(page, creator)
    page.get_by_role("button", name="Publish an asset").click()
    expect(page.locator("#f-key")).to_be_focused()
    fill(page, key="night-drive", title="Night Drive", tags="synth, night")
    fill(page, license="commercial", price="12.50", currency="USD", description="A long drive.")
    audio = bytes(range(256)) * 16  # 4 KiB: the node hashes it (no IPFS configured: kept for media push)
    page.locator("#f-file").set_input_files({"name": "drive.mp3", "mimeType": "audio/mpeg", "buffer": audio})
    expect(page.locator("#f-cid")).to_have_value(bytes_cid(audio))
    expect(page.locator("#f-size")).to_have_value("4096")
    expect(page.locator("#f-mime")).to_have_value("audio/mpeg")
    expect(page.locator("#err-file")).to_contain_text("empressa node media push")
    screenshot(page, request, "publish-form")
    page.get_by_role("button", name="Publish", exact=True).click()
    item = page.locator(".item[data-key='night-drive']")
    expect(item.locator(".title")).to_have_text("Night Drive")
    expect(item.locator(".license")).to_have_text("commercial, 12.50 USD")
    expect(item.locator(".media")).to_have_text("audio/mpeg, 4.0 KiB")
    expect(item.locator(".versions")).to_have_text("1")
    expect(item.locator(".status")).to_have_text("unregistered")
    expect(item.locator(".tags li")).to_have_text(["synth", "night"])
    expect(page.locator("#st-entries")).to_have_text("1")
    mine = listed(creator)["night-drive"]  # the CLI sees it too
    assert mine["title"] == "Night Drive" and mine["media"]["cid"] == bytes_cid(audio)
    screenshot(page, request, "published")

    item.get_by_role("button", name="Edit Night Drive").click()
    expect(page.locator("#f-title")).to_have_value("Night Drive")
    fill(page, title="Night Drive (remaster)")
    page.get_by_role("button", name="Save changes").click()
    expect(item.locator(".title")).to_have_text("Night Drive (remaster)")
    expect(item.locator(".versions")).to_have_text("2")
    expect(item.locator(".license")).to_have_text("commercial, 12.50 USD")  # not given: kept
    assert held(creator)["night-drive"]["versions"] == 2
    screenshot(page, request, "edited")

    delete = item.get_by_role("button", name="Delete Night Drive (remaster)")
    delete.click()
    really = page.get_by_role("button", name="Really delete Night Drive (remaster)?")
    expect(really).to_be_focused()
    # A live update re-renders the list while the page asks: the question and the focus stay.
    publish(creator.data, "meanwhile", "Meanwhile Elsewhere")
    expect(page.locator(".item[data-key='meanwhile'] .title")).to_have_text("Meanwhile Elsewhere")
    expect(really).to_be_focused()
    really.click()
    expect(item).to_have_count(0)
    assert "night-drive" not in held(creator)
    assert page.errors == []
    screenshot(page, request, "deleted")


def test_a_bad_field_shows_its_reason_and_nothing_is_written(
    page: Any, creator: Daemon, request: Any
) -> None:
    from playwright.sync_api import expect

    signed_in(page, creator)
    before = held(creator)
    page.get_by_role("button", name="Publish an asset").click()
    fill(page, key="bad-price", title="Bad Price", cid=CID, mime="audio/mpeg", price="12,50", currency="USD")
    page.get_by_role("button", name="Publish", exact=True).click()
    expect(page.locator("#err-price")).to_have_text("must be a decimal string like '12.50'")
    expect(page.locator("#f-price")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-price")).to_be_focused()
    screenshot(page, request, "bad-price")
    # The CLI says the same of the same field.
    p = cli("node", "publish", "--data", creator.data, "--key", "bad-price", "--title", "Bad Price",
            "--cid", CID, "--mime", "audio/mpeg", "--price", "12,50", "--currency", "USD", ok=False)  # fmt: skip
    assert "must be a decimal string like '12.50'" in p.stderr.decode()
    fill(page, price="12.50", title=" ")
    page.get_by_role("button", name="Publish", exact=True).click()
    expect(page.locator("#err-title")).to_have_text("must not be blank")
    expect(page.locator("#err-price")).to_have_text("")
    assert held(creator) == before  # nothing was written
    screenshot(page, request, "blank-title")


def test_verification_shows_verified_then_mismatch(page: Any, creator: Daemon, request: Any) -> None:
    from playwright.sync_api import expect

    signed_in(page, creator)
    put = cli_json("node", "publish", "--data", creator.data, "--key", "registered", "--title", "Registered",
                   "--cid", CID, "--mime", "audio/flac")  # fmt: skip
    item = page.locator(".item[data-key='registered']")
    expect(item.locator(".status")).to_have_text("unregistered")
    first = attest(creator, put["uri"], put["hash"], "7", seq=1, prev=None)
    page.reload()
    expect(item.locator(".status")).to_have_text("verified eip155:31337 #7")
    expect(item.locator(".status")).to_have_class(re.compile(r"\bverified\b"))
    screenshot(page, request, "verified")
    cli("node", "edit", "--data", creator.data, "--key", "registered", "--title", "Registered (edited)")
    expect(item.locator(".status")).to_have_text(
        "mismatch: eip155:31337 #7 names an earlier version", timeout=LIVE_MS
    )  # live, from the event stream
    assert first is not None and page.errors == []
    screenshot(page, request, "mismatch")


def test_a_replicated_asset_appears_live_with_the_toggle(
    page: Any, creator: Daemon, module_daemons: Daemons, request: Any
) -> None:
    from playwright.sync_api import expect

    signed_in(page, creator)
    page.locator("#show-all").check()
    other_data = Path(creator.data).with_name("other")
    init_node(other_data)
    other = module_daemons.start(other_data, bootstrap=[creator.addr])
    hostile = '<img src=x onerror="document.body.dataset.pwned=1">Tape Loop'
    cli("node", "publish", "--data", other.data, "--key", "tape", "--title", hostile,
        "--cid", CID, "--mime", "audio/wav", "--size", "2000000")  # fmt: skip
    item = page.locator(".item[data-key='tape']")
    expect(item.locator(".title")).to_have_text(hostile, timeout=LIVE_MS)  # shown as text, live
    expect(item.locator(".by")).to_have_text(f"by {other.info['did']}")
    expect(item.locator(".media")).to_have_text("audio/wav, 1.9 MiB")
    expect(item.get_by_role("button")).to_have_count(0)  # not ours: no edit, no delete
    expect(page.locator("#st-peers")).to_have_text("1", timeout=LIVE_MS)
    assert page.locator("body").get_attribute("data-pwned") is None
    assert page.locator(".title img").count() == 0
    assert "tape" in held(creator, all=True) and "tape" not in held(creator)
    screenshot(page, request, "replicated")
    page.locator("#show-all").uncheck()
    expect(item).to_have_count(0)
    status = json.loads(page.evaluate("fetch('/v1/status').then(r => r.text())"))
    assert status["entries"] >= 4 and status["last_sync_ms"]
    expect(page.locator("#st-sync")).to_contain_text("ago", timeout=LIVE_MS)
    assert page.errors == []


def test_my_library_fits_a_phone(browser: Any, creator: Daemon, request: Any) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(link(creator))
        page.wait_for_selector("body[data-ready=yes]")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the page scrolls sideways on a phone ({width}px)"
        page.keyboard.press("Tab")
        expect(page.locator(".skip")).to_be_focused()
        page.get_by_role("button", name="Publish an asset").click()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        page.screenshot(path=str(screenshot_path(request, "phone")), full_page=True)
    finally:
        context.close()


def screenshot_path(request: Any, label: str) -> Path:
    from .conftest import _artifact_name

    return _artifact_name(request.node.nodeid, f"-{label}")
