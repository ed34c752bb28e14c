"""Both pages checked by axe-core (from the npm registry, in .tools/npm) in a real browser.

axe-core's WCAG 2.0-2.2 A and AA rules, and its best practices (a level-one heading,
landmarks, heading order: :data:`TAGS`), run on each page in the states a person sees: the marketplace's search with results and facets, an asset page after
"Verify this record", and the demo creator's My Library signed in, with the publish
form open and a field's error shown; each at a desktop size and again at a phone's.
Every violation is a failure, listed with its rule, impact, help text and the nodes
it names. axe cannot judge a focus ring, so the test measures one on each page: its
contrast with the page (WCAG 1.4.11 asks 3:1). The stack is the one the other browser tests share; My Library is the
stack's demo creator's node (nothing is written to it: the form's one write is refused).

axe is added to the page by the test only: its script goes in through Playwright in a
context that bypasses the page's Content-Security-Policy (which refuses inline scripts
and is not loosened for this). Without npm (no axe-core) these tests skip, saying so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CID, RunningStack, cli_json, wait_for

from .conftest import TIMEOUT_MS, _artifact_name

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / ".tools" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}

needs_axe = pytest.mark.skipif(
    not AXE.is_file(),
    reason=f"no {AXE.relative_to(ROOT)}: ./dev installs axe-core with the npm tools (npm missing here?)",
)

RUN_AXE = """tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})
  .then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => n.target.join(' ') + (n.failureSummary ? ' — ' + n.failureSummary.replace(/\\s+/g, ' ') : ''))})))"""


class Audit:
    """axe's violations on one page, gathered over its states, asserted once at the end."""

    def __init__(self, page: Any, request: pytest.FixtureRequest) -> None:
        self.page, self.request = page, request
        self.found: list[str] = []

    def check(self, label: str) -> None:
        if not self.page.evaluate("() => 'axe' in window"):
            self.page.add_script_tag(path=str(AXE))
        for v in self.page.evaluate(RUN_AXE, TAGS):
            nodes = "".join(f"\n      {n}" for n in v["nodes"])
            self.found.append(f"[{label}] {v['id']} ({v['impact']}): {v['help']}{nodes}")
        self.page.screenshot(path=str(_artifact_name(self.request.node.nodeid, f"-{label}")), full_page=True)

    def phone(self) -> None:
        self.page.set_viewport_size(PHONE)

    def assert_clean(self) -> None:
        assert not self.found, f"{len(self.found)} accessibility violations:\n" + "\n".join(self.found)


FOCUS_COLOURS = """() => [getComputedStyle(document.activeElement).outlineColor,
  getComputedStyle(document.body).backgroundColor === 'rgba(0, 0, 0, 0)'
    ? getComputedStyle(document.documentElement).backgroundColor : getComputedStyle(document.body).backgroundColor]"""


def contrast(a: str, b: str) -> float:
    """WCAG's contrast ratio of two CSS ``rgb(…)`` colours."""

    def luminance(css: str) -> float:
        r, g, b = (int(v) / 255 for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3])
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def focus_shows(page: Any) -> float:
    """The contrast of the focused control's outline against the page (WCAG 1.4.11 asks 3:1)."""
    outline, background = page.evaluate(FOCUS_COLOURS)
    return contrast(outline, background)


def demo_searchable(stack: RunningStack) -> None:
    """Wait until the indexer's search holds the demo creator's assets (a fresh stack is still feeding it)."""
    wait_for(lambda: stack.get("/v1/assets", limit=1).json()["total"] > 0, what="the demo assets in search")


@pytest.fixture
def audit(browser: Any, request: pytest.FixtureRequest) -> Iterator[Audit]:
    """A page in a context that lets the test add axe's script (bypass_csp), with ``page.errors``."""
    context = browser.new_context(viewport=DESKTOP, bypass_csp=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.errors = errors
    try:
        yield Audit(page, request)
    finally:
        context.close()


@needs_axe
def test_the_marketplace_search_page_passes_axe(audit: Audit, stack: RunningStack) -> None:
    page = audit.page
    demo_searchable(stack)
    page.goto(stack.api_url + "/")
    page.wait_for_function(
        "() => !document.querySelector('#results').hasAttribute('aria-busy')"
        " && document.querySelectorAll('#results > li.card').length > 0"
        " && document.querySelectorAll('#facets fieldset').length > 0"
    )
    first = page.locator('#facets input[type="checkbox"]').first
    first.check()  # one filter chosen, as a person narrows a search
    page.wait_for_function(
        "() => !document.querySelector('#results').hasAttribute('aria-busy')"
        " && document.querySelector('#facets input:checked')"
    )
    page.locator("#q").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # focus as the keyboard moves it (:focus-visible)
    assert focus_shows(page) >= 3, "the search box's focus ring stands out from the page"
    audit.check("search")
    audit.phone()
    page.locator("#filter-box summary").click()  # folded on a phone: opened to check the filters too
    audit.check("search-phone")
    audit.assert_clean()
    assert page.errors == []


@needs_axe
def test_the_marketplace_asset_page_passes_axe_after_verify(audit: Audit, stack: RunningStack) -> None:
    page = audit.page
    demo_searchable(stack)
    page.goto(stack.api_url + "/")
    link = page.locator("#results > li.card h3 a").first
    href = link.get_attribute("href")
    page.goto(stack.api_url + href)
    page.locator("#asset h1").wait_for()
    page.get_by_role("button", name="Verify this record").click()
    page.locator("#verify-result[data-state=pass]").wait_for()
    audit.check("asset-verified")
    audit.phone()
    audit.check("asset-verified-phone")
    audit.assert_clean()
    assert page.errors == []


@needs_axe
def test_my_library_with_the_publish_form_and_a_field_error_passes_axe(
    audit: Audit, stack: RunningStack
) -> None:
    page = audit.page
    doc = cli_json("node", "open", "--data", stack.data / "demo-node", "--no-browser")
    page.goto(doc["url"])
    page.wait_for_selector("body[data-ready=yes]")
    page.locator(".item").first.wait_for()  # the demo creator's assets, with their edit and delete buttons
    page.get_by_role("button", name="Publish an asset").click()
    form = {
        "key": "a11y-check",
        "title": "Accessibility check",
        "cid": CID,
        "mime": "audio/mpeg",
        "price": "12,50",
    }
    for field, value in form.items():
        page.locator(f"#f-{field}").fill(value)
    page.get_by_role("button", name="Publish", exact=True).click()
    page.locator("#f-price[aria-invalid=true]").wait_for()  # refused: nothing is written
    assert page.evaluate("document.activeElement.id") == "f-price"
    assert focus_shows(page) >= 3, "the focused field's ring stands out from the page"
    # A delete asking to be confirmed (one click: nothing is deleted).
    page.locator(".item button.danger").first.click()
    page.locator(".item button.danger[data-confirm=yes]").wait_for()
    audit.check("library-form-error")
    audit.phone()
    audit.check("library-form-error-phone")
    audit.assert_clean()
    # The one error: the browser's note that the refused write answered 422.
    assert all("status of 422" in e for e in page.errors), page.errors
