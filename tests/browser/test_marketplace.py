"""The community marketplace in a real browser, against a real stack (``empressa up``) and a creator's node.

One stack (tests/browser/conftest.py's ``stack``, shared with the journey) serves every test: the demo creator's assets, plus a
creator (``node run`` bootstrapped to the bridge) who publishes a catalogue of
57 "Zephyrine" takes in one ``publish --from`` and a few single assets that
tests change. Each test drives Chromium through the pages as a person does and
reads what the page shows; screenshots of each page land in the artifacts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    CID,
    Daemon,
    Daemons,
    RunningStack,
    child_env,
    cli,
    cli_json,
    init_node,
    publish,
    wait_for,
)

from .conftest import NO_WEBCRYPTO_ED25519, screenshot, search
from .proxy import TamperProxy, flip_one_byte

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

WORD = "zephyrine"
TAKES = 57
DRONES = [i for i in range(TAKES) if i % 3 == 0]  # 19 takes tagged "drone": one page's worth
VISIBLE = 60.0


VENDORED = ROOT / "indexer" / "web" / "vendor" / "noble-ed25519.js"
needs_fallback = pytest.mark.skipif(
    not VENDORED.is_file(),
    reason=f"no {VENDORED.relative_to(ROOT)}: ./dev copies it from the npm tools (npm missing here?)",
)


class Creator:
    def __init__(self, data: Path, did: str, daemon: Daemon) -> None:
        self.data, self.did, self.daemon = data, did, daemon

    def path(self, key: str) -> str:
        return f"/a/{self.did}/{key}"


@pytest.fixture(scope="module")
def creator(
    stack: RunningStack, tmp_path_factory: pytest.TempPathFactory, module_daemons: Daemons
) -> Creator:
    data = tmp_path_factory.mktemp("creator") / "node"
    did = init_node(data)
    daemon = module_daemons.start(data, bootstrap=[stack.info["bridge_multiaddr"]])
    lines = [
        {
            "key": f"take-{i:02d}",
            "title": f"Zephyrine Take {i:02d}",
            "cid": CID,
            "mime": "audio/mpeg",
            "tags": ["drone"] if i in DRONES else ["loop"],
            "license": "commercial" if i % 2 else "personal",
            "price": f"{i}.50",
            "currency": "USD",
        }
        for i in range(TAKES)
    ]
    lines.append({"key": "aurora", "title": "Aurora Borealis Drones", "cid": CID, "mime": "audio/mpeg"})
    catalogue = data.with_name("catalogue.jsonl")
    catalogue.write_text("".join(json.dumps(line) + "\n" for line in lines))
    cli("node", "publish", "--data", data, "--from", catalogue, "--json")

    def indexed() -> bool:
        r = stack.get("/v1/assets", q=WORD, creator=did, limit=1)
        a = stack.get("/v1/assets", q="aurora", creator=did, limit=1)
        return r.status_code == 200 and r.json()["total"] == TAKES and a.json()["total"] == 1

    wait_for(indexed, what="the creator's catalogue in search", timeout=VISIBLE)
    return Creator(data, did, daemon)


def cards(page: Any) -> list[str]:
    return page.locator("#results > li.card").evaluate_all("els => els.map(e => e.dataset.uri)")  # type: ignore[no-any-return]


def settled(page: Any) -> None:
    """Wait until the search the page's URL names has been answered and drawn."""
    page.wait_for_function("() => !document.querySelector('#results').hasAttribute('aria-busy')")


def test_search_with_a_typo_finds_the_asset(
    page: Any, stack: RunningStack, creator: Creator, request: Any
) -> None:
    search(page, stack.api_url, "borealys")  # one letter wrong
    first = page.locator("#results > li.card h3 a").first
    first.wait_for()
    assert first.text_content() == "Aurora Borealis Drones"
    assert first.get_attribute("href") == creator.path("aurora")
    assert "q=borealys" in page.url, "the URL holds the query"
    screenshot(page, request, "search")
    assert page.errors == []


def test_a_facet_narrows_the_results_to_its_count_and_a_reload_keeps_it(
    page: Any, stack: RunningStack, creator: Creator, request: Any
) -> None:
    search(page, stack.api_url, WORD)
    status = page.locator("#status")
    page.wait_for_function(f"() => document.querySelector('#status').dataset.total === '{TAKES}'")
    drone = page.locator('fieldset[data-facet="tag"] li', has=page.locator('input[value="drone"]'))
    count = int(drone.locator(".count").text_content())
    assert count == len(DRONES)
    drone.locator("label").click()
    page.wait_for_function(f"() => document.querySelector('#status').dataset.total === '{count}'")
    assert len(cards(page)) == count, "every one of the facet's count is shown, and nothing else"
    assert all(t.startswith("Zephyrine") for t in page.locator("#results h3 a").all_text_contents())
    assert page.locator('fieldset[data-facet="media_type"] input[value="audio"]').count() == 1
    assert (
        stack.get("/v1/assets", q=WORD, media_type="audio").json()["total"] == TAKES
    )  # the media type filter
    assert stack.get("/v1/assets", q=WORD, media_type="image").json()["total"] == 0
    page.get_by_label("Sort by").select_option("title")
    page.wait_for_function("() => new URL(location).searchParams.get('sort') === 'title'")
    settled(page)
    assert page.locator("#status").get_attribute("data-total") == str(count)
    titles = page.locator("#results h3 a").all_text_contents()
    assert titles == sorted(titles)
    url = page.url
    assert "tag=drone" in url and f"q={WORD}" in url and "sort=title" in url
    screenshot(page, request, "facet")

    page.reload()
    page.wait_for_function(f"() => document.querySelector('#status').dataset.total === '{count}'")
    assert page.get_by_label("Search assets").input_value() == WORD
    assert page.locator('fieldset[data-facet="tag"] input[value="drone"]').is_checked()
    assert page.get_by_label("Sort by").input_value() == "title"
    assert page.locator("#results h3 a").all_text_contents() == titles
    assert status.text_content().startswith(f"{count} assets match")
    assert page.errors == []


def test_paging_through_57_results_shows_each_exactly_once(
    page: Any, stack: RunningStack, creator: Creator, request: Any
) -> None:
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/v1/assets?" in r.url else None)
    page.goto(f"{stack.api_url}/?q={WORD}&creator={creator.did}&sort=newest")
    page.wait_for_function(f"() => document.querySelector('#status').dataset.total === '{TAKES}'")
    more = page.get_by_role("button", name="Show more")
    pages = 1
    while more.is_visible():
        before = len(cards(page))
        more.click()
        page.wait_for_function(f"() => document.querySelectorAll('#results > li.card').length > {before}")
        pages += 1
    shown = cards(page)
    assert pages == 3
    assert len(shown) == TAKES and len(set(shown)) == TAKES
    # 3 pages of at most 20 hold 57 distinct assets only if the cursors skipped and repeated nothing
    assert len(asked) == 3 and all("cursor=" in u for u in asked[1:]), asked
    assert {u.rsplit("/", 1)[1] for u in shown} == {f"take-{i:02d}" for i in range(TAKES)}
    screenshot(page, request, "paged")
    assert page.errors == []


def _verify(page: Any) -> dict[str, str]:
    page.get_by_role("button", name="Verify this record").click()
    page.wait_for_function(
        "() => ['pass', 'fail'].includes(document.querySelector('#verify-result').dataset.state)"
    )
    return {
        c["check"]: c["status"]
        for c in page.locator("#verify-result li.check").evaluate_all("els => els.map(e => ({...e.dataset}))")
    }


def test_verify_this_record_passes_in_the_browser(
    page: Any, stack: RunningStack, creator: Creator, request: Any
) -> None:
    page.goto(stack.api_url + creator.path("take-07"))
    page.get_by_role("heading", name="Zephyrine Take 07", level=1).wait_for()
    article = page.locator("#asset")
    for text in ("commercial", "USD", creator.did, "Versions", "Files", "Take 07"):
        assert text in article.text_content(), text
    assert page.locator(".versions li").count() == 1
    assert _verify(page) == {"hash": "pass", "signature": "pass", "author": "pass"}
    assert page.locator("#verdict").text_content().startswith("Verified")
    screenshot(page, request, "asset-verified")
    assert page.errors == []


def test_verify_fails_visibly_when_a_proxy_flips_one_byte(
    page: Any, stack: RunningStack, creator: Creator, request: Any
) -> None:
    def tamper(method: str, path: str, status: int, body: bytes) -> bytes:
        return flip_one_byte(body) if path.startswith("/v1/entries/") and status == 200 else body

    with TamperProxy(stack.api_url, tamper) as proxy:
        page.goto(proxy.url + creator.path("take-08"))
        page.get_by_role("heading", name="Zephyrine Take 08", level=1).wait_for()
        checks = _verify(page)
        assert proxy.tampered, "the proxy changed the entry's bytes"
        assert checks["hash"] == "fail" and checks["signature"] == "fail"
        assert page.locator("#verdict").text_content().startswith("Verification FAILED")
        assert page.locator("#verify-result").get_attribute("data-state") == "fail"
        screenshot(page, request, "asset-tampered")
    assert page.errors == []


def test_new_assets_appear_and_a_delete_removes_one_live(
    page: Any, stack: RunningStack, creator: Creator, request: Any
) -> None:
    publish(creator.data, "quokka-lament", "Quokka Lament")
    wait_for(lambda: stack.get("/v1/assets", q="quokka").json()["total"] == 1, what="quokka in search")
    asset_page = page.context.new_page()
    asset_page.goto(stack.api_url + creator.path("quokka-lament"))
    asset_page.get_by_role("heading", name="Quokka Lament", level=1).wait_for()

    search(page, stack.api_url, "quokka")
    page.wait_for_function("() => document.querySelector('#status').dataset.total === '1'")
    page.locator("#activity-state[data-state=live]").wait_for()
    publish(creator.data, "quokka-sunrise", "Quokka Sunrise")
    fresh = page.locator("#results > li.card", has_text="Quokka Sunrise")
    fresh.wait_for(timeout=VISIBLE * 1000)
    assert fresh.locator(".badge").text_content() == "new"
    page.locator("#activity-list li", has_text="Quokka Sunrise").wait_for()
    screenshot(page, request, "live-new")

    cli_json("node", "delete", "--data", creator.data, "--key", "quokka-lament")
    page.locator("#results > li.card", has_text="Quokka Lament").wait_for(
        state="detached", timeout=VISIBLE * 1000
    )
    assert [u.rsplit("/", 1)[1] for u in cards(page)] == ["quokka-sunrise"]
    page.locator("#activity-list li.ev-deleted").wait_for()
    screenshot(page, request, "live-deleted")
    asset_page.locator("#status[data-state=unavailable]").wait_for()
    assert "not available" in asset_page.locator("#status").text_content()
    assert asset_page.locator("#asset").is_hidden()
    asset_page.reload()
    asset_page.locator("#status[data-state=unavailable]").wait_for()
    assert "Quokka Lament" not in asset_page.content()
    assert page.errors == []


def test_moderated_assets_do_not_show(page: Any, stack: RunningStack, creator: Creator, request: Any) -> None:
    publish(creator.data, "wombat-hymn", "Wombat Hymn")
    wait_for(lambda: stack.get("/v1/assets", q="wombat").json()["total"] == 1, what="wombat in search")
    env = child_env(DATABASE_URL=None)
    key = cli_json("indexer", "api-key", "create", "--data", stack.data, "--scope", "moderate", env=env)[
        "key"
    ]
    r = httpx.put(
        f"{stack.api_url}/v1/admin/moderation/{creator.did}/wombat-hymn",
        json={"label": "spam", "reason": "test"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert r.status_code in (200, 201), r.text
    wait_for(lambda: stack.get("/v1/assets", q="wombat").json()["total"] == 0, what="wombat to leave search")

    search(page, stack.api_url, "wombat")
    page.wait_for_function("() => document.querySelector('#status').dataset.total === '0'")
    assert cards(page) == []
    assert page.locator("#status").text_content() == "No assets match."
    page.goto(stack.api_url + creator.path("wombat-hymn"))
    page.locator("#status[data-state=unavailable]").wait_for()
    assert "not available" in page.locator("#status").text_content()
    assert "Wombat Hymn" not in page.content()
    screenshot(page, request, "moderated")
    assert page.errors == []


def test_readable_on_a_phone_and_usable_by_keyboard(
    page: Any, stack: RunningStack, creator: Creator, request: Any
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{stack.api_url}/?q={WORD}")
    page.wait_for_function(f"() => document.querySelector('#status').dataset.total === '{TAKES}'")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scrolling"
    page.keyboard.press("Tab")  # the skip link first
    assert page.evaluate("document.activeElement.textContent") == "Skip to results"
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "q":
            break
    assert page.evaluate("document.activeElement.id") == "q", "the search box is reachable by keyboard"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "focus is visible"
    screenshot(page, request, "phone")
    page.goto(stack.api_url + creator.path("take-03"))
    page.get_by_role("heading", name="Zephyrine Take 03", level=1).wait_for()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, request, "phone-asset")
    assert page.errors == []


def test_a_bad_search_says_why(page: Any, stack: RunningStack, request: Any) -> None:
    search(page, stack.api_url, '"/.*/"')
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert re.search(r"no searchable term", alert.text_content())
    assert cards(page) == [], "no stale results beside the error"
    assert page.errors == [] or all("400" in e for e in page.errors)


VERIFY_ALL = """async (cases) => {
  const { verifyEntry } = await import('/web/js/verify.js');
  const out = [];
  for (const c of cases) {
    const raw = Uint8Array.from(c.hex.match(/../g).map((b) => parseInt(b, 16)));
    const v = await verifyEntry(raw, { cid: c.cid, did: c.did, key: c.key });
    out.push({ name: c.name, ok: v.ok, ...Object.fromEntries(v.checks.map((x) => [x.id, x.status])) });
  }
  return out;
}"""


@pytest.mark.parametrize("ed25519", ["webcrypto", pytest.param("fallback", marks=needs_fallback)])
def test_the_pages_verifier_agrees_with_the_shared_vectors(
    page: Any, stack: RunningStack, ed25519: str
) -> None:
    """verify.js over tests/vectors/: every valid entry passes; every bad signature fails (b).

    Both ways: with WebCrypto's Ed25519, and with the fallback library (WebCrypto's taken away).
    """
    from protocol.ids import EntryHash

    if ed25519 == "fallback":
        page.add_init_script(NO_WEBCRYPTO_ED25519)

    root = Path(__file__).resolve().parents[1] / "vectors"
    valid = json.loads((root / "valid.json").read_text())
    bad_sig = [v for v in json.loads((root / "invalid.json").read_text()) if v["error"] == "SignatureError"]
    page.goto(stack.api_url + "/")

    def case(v: dict[str, Any]) -> dict[str, Any]:
        cid = EntryHash.of(bytes.fromhex(v["hex"])).cid
        return {"name": v["name"], "hex": v["hex"], "cid": v.get("hash_cid", cid), "did": v.get("author_did", ""),
                "key": v.get("key", "")}  # fmt: skip

    results = page.evaluate(VERIFY_ALL, [case(v) for v in valid])
    assert [r["name"] for r in results if not r["ok"]] == []
    checked_with = page.evaluate(
        "async () => (await (await import('/web/js/verify.js')).ed25519Verifier()).name"
    )
    assert checked_with == {"webcrypto": "WebCrypto", "fallback": "@noble/ed25519"}[ed25519]
    results = page.evaluate(VERIFY_ALL, [case(v) for v in bad_sig])
    assert results and all(r["signature"] == "fail" and r["hash"] == "pass" for r in results), results
    assert page.errors == []


@needs_fallback
def test_a_browser_without_webcrypto_ed25519_verifies_with_the_fallback_library(
    page: Any, stack: RunningStack, creator: Creator, request: Any
) -> None:
    page.add_init_script(NO_WEBCRYPTO_ED25519)
    loaded: list[str] = []
    page.on("request", lambda r: loaded.append(r.url) if "/web/vendor/" in r.url else None)
    page.goto(stack.api_url + creator.path("take-06"))
    page.get_by_role("heading", name="Zephyrine Take 06", level=1).wait_for()
    assert loaded == [], "the fallback is loaded only when it is needed"
    assert _verify(page) == {"hash": "pass", "signature": "pass", "author": "pass"}
    assert loaded == [stack.api_url + "/web/vendor/noble-ed25519.js"]
    assert "checked with @noble/ed25519" in page.locator("#verify-result").text_content()
    assert page.locator("#verdict").text_content().startswith("Verified")
    screenshot(page, request, "fallback-verified")
    assert page.errors == []


@needs_fallback
def test_the_fallback_library_fails_visibly_when_a_proxy_flips_one_byte(
    page: Any, stack: RunningStack, creator: Creator, request: Any
) -> None:
    def tamper(method: str, path: str, status: int, body: bytes) -> bytes:
        # a byte of the signature itself: the hash fails, and only the library can fail the signature
        if not (path.startswith("/v1/entries/") and status == 200):
            return body
        return flip_one_byte(body, body.index(b"\x63sig\x58\x40") + 6 + 10)

    page.add_init_script(NO_WEBCRYPTO_ED25519)
    with TamperProxy(stack.api_url, tamper) as proxy:
        page.goto(proxy.url + creator.path("take-09"))
        page.get_by_role("heading", name="Zephyrine Take 09", level=1).wait_for()
        checks = _verify(page)
        assert proxy.tampered, "the proxy changed the entry's bytes"
        assert checks == {"hash": "fail", "signature": "fail", "author": "pass"}
        text = page.locator("#verify-result").text_content()
        assert "does not match these bytes" in text and "checked with @noble/ed25519" in text
        assert page.locator("#verdict").text_content().startswith("Verification FAILED")
        screenshot(page, request, "fallback-tampered")
    assert page.errors == []


def test_a_browser_without_ed25519_is_told_so_not_shown_a_pass(
    page: Any, stack: RunningStack, creator: Creator, request: Any
) -> None:
    """No WebCrypto Ed25519 and a marketplace without the fallback file (a bare pip install).

    The stack here has the file (./dev put it there), so the browser is given what a server
    without it answers for that URL: its 404 (test_marketplace_pages checks that an unknown
    file is a 404).
    """
    page.add_init_script(NO_WEBCRYPTO_ED25519)
    page.route("**/web/vendor/noble-ed25519.js", lambda route: route.fulfill(status=404, body="not found"))
    page.goto(stack.api_url + creator.path("take-05"))
    page.get_by_role("heading", name="Zephyrine Take 05", level=1).wait_for()
    checks = _verify(page)
    assert checks == {"hash": "pass", "signature": "unchecked", "author": "pass"}
    text = page.locator("#verify-result").text_content()
    assert "this browser cannot check Ed25519 signatures" in text and "NOT checked" in text
    assert not page.locator("#verdict").text_content().startswith("Verified")
    screenshot(page, request, "no-ed25519")
    # the one error: the browser's note that the fallback's URL answered 404
    assert all("404" in e for e in page.errors), page.errors
