"""Browser tests: Playwright (from PyPI) driving Debian's ``chromium``.

Playwright cannot download its own browsers here, so it is pointed at the
system binary: ``EMPRESSA_CHROMIUM`` if set, else ``chromium`` on ``PATH``
(``./dev test`` installs Debian's package where the machine allows it). With
no browser every test here skips, saying so; the rest of the suite runs.

Chromium is started as the machine's probe found it works here: headless, no
sandbox (tests may run as root), and without background networking, which this
machine's closed network would refuse many times a second.

The marketplace tests and the journey share one stack (``empressa up``, the
:func:`stack` fixture), started when a test here first asks and stopped when the
last test of this package has run.

Each test's page is screenshotted when the test ends, into
``EMPRESSA_ARTIFACTS`` (default ``.artifacts/browser/`` in the checkout), one
PNG per test, named after it; :func:`screenshot` saves named ones mid-test.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The e2e fixtures that stop every daemon a test started, however it ends (tests/e2e/conftest.py).
from tests.e2e.conftest import RunningStack, daemons, module_daemons  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("EMPRESSA_ARTIFACTS") or ROOT / ".artifacts" / "browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
TIMEOUT_MS = 15_000  # one action or expectation; a page on loopback answers in milliseconds


def chromium_path() -> str | None:
    """The Chromium binary the tests drive, or ``None`` if this machine has none."""
    given = os.environ.get("EMPRESSA_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session (each test gets its own context)."""
    exe = chromium_path()
    if exe is None:
        pytest.skip(
            "no Chromium on this machine: ./dev test installs Debian's chromium where it runs as root with apt-get"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _artifact_name(nodeid: str, suffix: str = "") -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1]).strip("_")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}{suffix}.png"


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context and page, screenshotted into the artifacts when the test ends.

    Console errors and uncaught page errors are collected in ``page.errors``
    (a list of strings) so a test can assert the page ran cleanly.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    pg.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    pg.errors = errors  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        with contextlib.suppress(Exception):  # a closed page has nothing to show
            pg.screenshot(path=str(_artifact_name(request.node.nodeid)), full_page=True)
        context.close()


def search(page: Any, base: str, text: str) -> None:
    """Open the marketplace, type ``text`` and wait for its results (typing fires the search)."""
    page.goto(base + "/")
    page.get_by_label("Search assets").fill(text)
    page.wait_for_function(
        "t => new URL(location).searchParams.get('q') === t"
        " && !document.querySelector('#results').hasAttribute('aria-busy')",
        arg=text,
    )


def screenshot(page: Any, request: pytest.FixtureRequest, label: str) -> Path:
    """Save the page now as ``<test>-<label>.png`` in the artifacts; returns the path."""
    path = _artifact_name(request.node.nodeid, f"-{label}")
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """One ``empressa up --demo --chain none`` for every browser test that wants a marketplace."""
    s = RunningStack(tmp_path_factory.mktemp("market") / "data", "--chain", "none")
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


# An init script that takes Ed25519 out of this browser's WebCrypto (as in browsers that lack it):
# importKey refuses it as an unknown algorithm, as such a browser does. Test-side: no hook in the product.
NO_WEBCRYPTO_ED25519 = """const real = crypto.subtle.importKey.bind(crypto.subtle);
crypto.subtle.importKey = (f, k, alg, ...rest) =>
  (alg && (alg === 'Ed25519' || alg.name === 'Ed25519'))
    ? Promise.reject(new DOMException('Unrecognized name.', 'NotSupportedError')) : real(f, k, alg, ...rest);"""
