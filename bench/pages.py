"""The marketplace pages in Chromium: first render time and page weight, beside the limits.

    ./dev bench pages [--url http://127.0.0.1:8000] [--samples 20]

Prints figures only; it never passes or fails. Without ``--url`` it starts the
real stack as a child process (``empressa up --demo --chain none`` on a fresh
data dir) and waits for the demo creator's assets to be searchable; with
``--url`` it measures an indexer that already runs and holds data.

Each sample is a cold load in a fresh browser context (no cache, no cookies)
of Debian's chromium driven by Playwright, headless, over loopback:

* **first render**: navigation start → the results drawn (the page's
  ``performance.mark('results-rendered')``, set once the first answer of
  ``GET /v1/assets?facets=true`` is on screen; ``asset-rendered`` for an
  asset's page). It covers the HTML, the CSS and the ES modules, the API
  call with its facet counts, and building the list.
* **page weight**: the body bytes of the HTML, JS and CSS the page loaded
  (Resource Timing ``encodedBodySize``; the API's JSON is data, not weight).

Limits (issue 12): first render under 300 ms on loopback; HTML + JS + CSS under 150 KB.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[0] = str(Path(__file__).resolve().parents[1])

import httpx  # noqa: E402

from bench.latency import free_port, start_stack  # noqa: E402

RENDER_LIMIT_MS = 300.0
WEIGHT_LIMIT_B = 150_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
]

WEIGHT_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource')
    .filter(r => /\\.(js|css)(\\?|$)/.test(new URL(r.name).pathname));
  return {html: nav.encodedBodySize, files: res.length,
          js: res.filter(r => r.name.includes('.js')).reduce((n, r) => n + r.encodedBodySize, 0),
          css: res.filter(r => r.name.includes('.css')).reduce((n, r) => n + r.encodedBodySize, 0)};
}"""


def wait_for_data(url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url + "/v1/assets", params={"limit": 1}, timeout=5)
            if r.status_code == 200 and r.json()["total"] >= 10:
                return r.json()  # type: ignore[no-any-return]
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"no assets searchable at {url} within 120 s")


def sample(browser: Any, url: str, mark: str) -> tuple[float, dict[str, int]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("m => performance.getEntriesByName(m).length > 0", arg=mark, timeout=15_000)
        ms = page.evaluate("m => performance.getEntriesByName(m)[0].startTime", mark)
        return float(ms), page.evaluate(WEIGHT_JS)
    finally:
        context.close()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def report(name: str, times: list[float], weight: dict[str, int]) -> None:
    total = weight["html"] + weight["js"] + weight["css"]
    print(
        f"{name:<28} first render p50 {statistics.median(times):6.1f} ms  p95 {pct(times, 95):6.1f} ms"
        f"  max {max(times):6.1f} ms   (limit {RENDER_LIMIT_MS:.0f} ms)"
    )
    print(
        f"{'':<28} page weight {total / 1000:6.1f} KB  (html {weight['html']} B, js {weight['js']} B "
        f"in {weight['files'] - 1} modules, css {weight['css']} B)   (limit {WEIGHT_LIMIT_B / 1000:.0f} KB)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--url", help="a running indexer with data (default: start empressa up --demo)")
    ap.add_argument("--samples", type=int, default=20)
    args = ap.parse_args()
    exe = os.environ.get("EMPRESSA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("no chromium on this machine (./dev test installs Debian's package where it can)")

    proc = None
    tmp = None
    url = args.url
    if url is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-pages-")
        proc, info = start_stack(
            Path(tmp.name) / "data", free_port(), free_port(), "--demo", "--chain", "none"
        )
        url = info["api_url"]
    try:
        first = wait_for_data(url.rstrip("/"))
        url = url.rstrip("/")
        item = first["items"][0]
        word = next((w for w in (item.get("title") or "").split() if len(w) >= 4), "")
        from playwright.sync_api import sync_playwright

        print(
            f"# bench/pages.py  {platform.machine()} {platform.python_version()}  {url}  total assets {first['total']}"
        )
        print(f"# {args.samples} cold loads each (fresh browser context), headless chromium, loopback")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
            try:
                sample(browser, url + "/", "results-rendered")  # warm the server (and the OS's file cache)
                pages = [
                    ("marketplace /", url + "/", "results-rendered"),
                    (f"search /?q={word}", f"{url}/?q={word}", "results-rendered"),
                    ("asset page /a/…", f"{url}/a/{item['did']}/{item['key']}", "asset-rendered"),
                ]
                for name, page_url, mark in pages:
                    runs = [sample(browser, page_url, mark) for _ in range(args.samples)]
                    report(name, [t for t, _ in runs], runs[-1][1])
            finally:
                browser.close()
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
