"""The journey across both pages, as issue 12's first scenario tells it, with real processes through the CLI.

A creator publishes from My Library with no peers, goes online, and the asset
appears on the marketplace page: ``empressa node init``, then ``node run`` with
no bootstrap peers (and no mDNS) but with the stack's indexer configured
(``EMPRESSA_NODE_INDEXER_URL``), signed in through ``node open``'s one-time
link; the asset is published from the page's form, where My Library says the
marketplace is behind and the marketplace finds nothing; ``node run`` again with
``--bootstrap`` to the stack's bridge, and the asset is found by typing into the
marketplace's search box, its record verifies in the browser, and My Library
says "searchable". The stack is the one the marketplace tests use
(tests/browser/conftest.py); the title's words are the journey's own, so their
counts are untouched. Each step is screenshotted into the artifacts.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import CID, Daemon, Daemons, RunningStack, child_env, cli_json, free_port, init_node

from .conftest import screenshot, search

pytestmark = pytest.mark.e2e

KEY, TITLE, WORD = "quillwort-nocturne", "Quillwort Nocturne", "quillwort"
ONLINE_MS = 60_000  # the bridge's sync with the creator, its write, the search feeder, then the page's poll


def sign_in(page: Any, d: Daemon) -> None:
    """Open My Library through a one-time link from ``empressa node open``, as the creator would."""
    doc = cli_json("node", "open", "--data", d.data, "--no-browser")
    page.goto(doc["url"])
    page.wait_for_selector("body[data-ready=yes]")
    assert "Signed in" in page.locator("#session").text_content()


def test_publish_offline_from_my_library_go_online_and_find_it_on_the_marketplace(
    page: Any, stack: RunningStack, daemons: Daemons, tmp_path: Any, request: Any
) -> None:
    from playwright.sync_api import expect

    data = tmp_path / "creator"
    did = init_node(data)
    # One API port for both runs, so the open tab still names the node after the restart.
    env = child_env(EMPRESSA_NODE_INDEXER_URL=stack.api_url, EMPRESSA_NODE_API_PORT=str(free_port()))
    offline = daemons.start(data, env=env)

    # 1. No peers: publish from the page's form.
    library = page
    sign_in(library, offline)
    expect(library.locator("#st-peers")).to_have_text("0")
    expect(library.locator("#st-sync")).to_have_text("no peers (offline)")
    library.get_by_role("button", name="Publish an asset").click()
    for field, value in {"key": KEY, "title": TITLE, "tags": "night, field recording", "cid": CID}.items():
        library.locator(f"#f-{field}").fill(value)
    library.locator("#f-mime").fill("audio/mpeg")
    library.locator("#f-license").select_option("commercial")
    library.locator("#f-price").fill("7.50")
    library.locator("#f-currency").fill("USD")
    screenshot(library, request, "1-publish-form")
    library.get_by_role("button", name="Publish", exact=True).click()
    item = library.locator(f".item[data-key='{KEY}']")
    expect(item.locator(".title")).to_have_text(TITLE)
    expect(item.locator(".license")).to_have_text("commercial, 7.50 USD")
    expect(library.locator("#st-entries")).to_have_text("1")
    # The indexer is reachable but has nothing of this creator yet: one entry behind.
    expect(library.locator("#st-indexer")).to_have_text("1 behind")
    assert library.locator("#st-indexer").get_attribute("data-state") == "behind"
    screenshot(library, request, "2-published-offline")

    market = page.context.new_page()
    market_errors: list[str] = []
    market.on("pageerror", lambda exc: market_errors.append(f"pageerror: {exc}"))
    market.on("console", lambda m: market_errors.append(f"console: {m.text}") if m.type == "error" else None)
    search(market, stack.api_url, WORD)
    expect(market.locator("#status")).to_have_text("No assets match.")
    screenshot(market, request, "3-marketplace-not-yet")

    # 2. Online: the same node, run again with the stack's bridge as its bootstrap peer.
    assert library.errors == [] and market_errors == []
    assert offline.stop() == 0
    online = daemons.start(data, env=env, bootstrap=[stack.info["bridge_multiaddr"]])
    assert online.api_url == offline.api_url
    sign_in(library, online)  # the page's sessions live in the daemon's memory: a new link
    # While the node was down, the open tab lost its event stream and its polls: that, and only that.
    assert all("net::ERR_" in e for e in library.errors), library.errors
    library.errors.clear()
    expect(library.locator("#st-peers")).not_to_have_text("0")

    # 3. The marketplace finds it by the word typed into its search box (results update as typed).
    search(market, stack.api_url, WORD)
    card = market.locator("#results > li.card", has_text=TITLE)
    expect(card).to_have_count(1, timeout=ONLINE_MS)
    assert card.get_attribute("data-uri") == f"empressa://{did}/{KEY}"
    screenshot(market, request, "4-marketplace-found")

    # 4. Its asset page, and "verify this record" in the browser.
    card.locator("h3 a").click()
    expect(market.get_by_role("heading", name=TITLE, level=1)).to_be_visible()
    assert market.url == f"{stack.api_url}/a/{did}/{KEY}"
    market.get_by_role("button", name="Verify this record").click()
    expect(market.locator("#verify-result")).to_have_attribute("data-state", "pass")
    checks = market.locator("#verify-result li.check").evaluate_all(
        "els => Object.fromEntries(els.map(e => [e.dataset.check, e.dataset.status]))"
    )
    assert checks == {"hash": "pass", "signature": "pass", "author": "pass"}
    expect(market.locator("#verdict")).to_have_text("Verified: these are the creator’s signed bytes.")
    screenshot(market, request, "5-asset-verified")

    # 5. My Library now says the marketplace has the creator's latest write.
    expect(library.locator("#st-indexer")).to_have_text("searchable", timeout=ONLINE_MS)
    library.bring_to_front()
    screenshot(library, request, "6-library-searchable")
    assert library.errors == [] and market_errors == []
