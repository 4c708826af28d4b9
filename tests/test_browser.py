"""A real browser (Debian's Chromium driven by Playwright) uses the app as a visitor would."""

from __future__ import annotations

import shutil

import pytest
from conftest import ARTIFACTS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def page(server):
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is not installed: run `make setup-dev` (scripts/install.sh --dev)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(server)
        yield page
        browser.close()


def test_visitor_generates_and_sees_every_card(page, comparison):
    page.get_by_label("Prompt", exact=True).fill("cartoon bird")
    page.get_by_role("button", name="Generate on every row").click()
    page.get_by_text("faster than baseline").wait_for(timeout=180_000)
    page.locator(".vega-embed").first.wait_for(timeout=30_000)  # the latency chart, drawn when the request ends
    page.wait_for_timeout(1000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-after-generate.png"), full_page=True)
    body = page.inner_text("body")
    for backend_id in comparison.rows.ready():
        assert comparison.rows.titles[backend_id] in body
    assert body.count(" s total") == len(comparison.rows.ready())
    assert body.count("faster") >= len(comparison.rows.ready()) - 1
    assert "images are noise, latencies are real" in body
    images = page.locator("img[src*='image']")
    assert images.count() >= len(comparison.rows.ready())


def test_visitor_sees_a_clear_error_for_bad_input(page):
    page.get_by_label("Prompt", exact=True).fill("   ")
    page.get_by_role("button", name="Generate on every row").click()
    page.get_by_text("prompt is empty").first.wait_for(timeout=30_000)
