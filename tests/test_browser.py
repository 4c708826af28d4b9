"""A real browser (Debian's Chromium driven by Playwright) uses the app as a visitor would."""

from __future__ import annotations

import re
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


def row_images(page):
    return page.locator(".row-image img")


def test_the_page_opens_on_a_finished_comparison(page, comparison):
    """Before pressing anything: a finished comparison's images and figures, labelled with what ran where (the
    first built-in example, computed at start; never another visitor's request, even after the API tests)."""
    ready = comparison.rows.ready()
    page.goto(page.url)  # a page opening now, whatever the tests before this one did in it
    page.get_by_text(re.compile("Built-in example 1")).first.wait_for(timeout=60_000)
    page.wait_for_function(f"document.querySelectorAll('.row-image img').length >= {len(ready)}", timeout=30_000)
    body = page.inner_text("body")
    assert body.count(" s total") == len(ready) and "faster than baseline" in body
    assert row_images(page).count() == len(ready)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-opening-1400px.png"), full_page=True)


def test_visitor_generates_with_enter_and_sees_slider_stages_and_other_cpus(page, comparison):
    ready = comparison.rows.ready()
    prompt = page.get_by_label("Prompt", exact=True)
    prompt.fill("cartoon bird")
    prompt.press("Enter")  # the keyboard starts a run
    page.get_by_text("Your comparison").wait_for(timeout=180_000)
    page.get_by_text("“cartoon bird”").wait_for(timeout=10_000)
    page.locator(".vega-embed").nth(1).wait_for(timeout=30_000)  # latency and stage charts, drawn at the end
    page.wait_for_timeout(1000)
    body = page.inner_text("body")
    for backend_id in ready:
        assert comparison.rows.titles[backend_id] in body
    assert body.count(" s total") == len(ready) and body.count("× faster") + body.count("× slower") >= len(ready) - 1
    assert "images are noise, latencies are real" in body
    assert row_images(page).count() == len(ready)
    assert page.locator(".compare-slider img").count() == 2  # baseline and the chosen row
    assert "Where the time goes" in body and "denoising (UNet steps)" in page.content()
    assert "Figures (also returned" in body and '"latency_s"' not in body  # the JSON is folded away
    page.screenshot(path=str(ARTIFACTS / "page-desktop-1400px.png"), full_page=True)

    page.get_by_role("tab", name="Same comparison on other CPUs").click()
    page.get_by_text("Speed-up over the same run").wait_for(timeout=10_000)
    assert "amd-epyc-avx2" in page.inner_text("body")  # a committed result of another CPU kind
    page.get_by_role("tab", name="Compare").click()


def test_on_a_phone_the_answer_comes_first_two_rows_to_a_line(page, comparison):
    """At 390 px (a phone): the headline, then the rows' images two to a line, then the controls; nothing off
    screen."""
    phone = page.context.browser.new_page(viewport={"width": 390, "height": 844})
    phone.goto(page.url)
    ready = len(comparison.rows.ready())
    phone.wait_for_function(f"document.querySelectorAll('.row-image img').length >= {ready}", timeout=30_000)
    phone.locator(".vega-embed").nth(1).wait_for(timeout=30_000)
    phone.wait_for_timeout(1000)
    for i in range(ready):  # images below the fold load as they come into view
        row_images(phone).nth(i).scroll_into_view_if_needed()
    phone.wait_for_function("[...document.querySelectorAll('.row-image img')].every(i => i.width > 0)", timeout=30_000)
    phone.evaluate("window.scrollTo(0, 0)")  # boxes from here on are page coordinates
    boxes = [row_images(phone).nth(i).bounding_box() for i in range(ready)]
    card_boxes = [phone.locator(".row-card").nth(i).bounding_box() for i in range(phone.locator(".row-card").count())]
    cards = list(dict.fromkeys((round(b["x"]), round(b["y"]), round(b["width"])) for b in card_boxes))  # one per row
    assert len(cards) == len(comparison.rows.order)
    assert cards[1][0] >= cards[0][0] + cards[0][2] and cards[2][0] == cards[0][0]  # two to a line
    assert [b["y"] for b in boxes] == sorted(b["y"] for b in boxes)  # in the rows' order
    headline = phone.locator("h1:has-text('faster than baseline')").bounding_box()
    prompt = phone.get_by_label("Prompt", exact=True).bounding_box()
    assert headline["y"] < boxes[0]["y"] and boxes[-1]["y"] < prompt["y"]  # the answer first, the controls after
    assert boxes[0]["y"] < 844  # the first images on the first screen
    charts = [phone.locator(".vega-embed").nth(i).bounding_box() for i in range(2)]
    assert all(b["x"] >= 0 and b["x"] + b["width"] <= 390 for b in boxes + charts)  # nothing off screen
    phone.screenshot(path=str(ARTIFACTS / "page-phone-390px.png"), full_page=True)
    phone.close()


def test_visitor_sees_a_clear_error_for_bad_input(page):
    page.get_by_label("Prompt", exact=True).fill("   ")
    page.get_by_role("button", name="Generate on every row").click()
    page.get_by_text("prompt is empty").first.wait_for(timeout=30_000)


def test_the_quality_tab_shows_the_newest_report_and_what_it_was_made_on(page, app_page):
    """The quality report the repository holds (results/quality-*.json: the tiny stand-in's, made by `make quality`'s
    code) in its own tab: what it was made on first, the table, the grid."""
    report = app_page.quality
    assert report is not None, "results/ should hold the stand-in's quality report"
    page.goto(page.url)
    page.get_by_role("tab", name="Quality report").click()
    tab = page.locator(".prose.quality-report")
    tab.get_by_text("RANDOM-WEIGHT STAND-IN").first.wait_for(timeout=30_000)
    body = tab.inner_text()
    assert "CLIP image similarity" in body and "int8 recipe chosen" in body
    assert all(r["label"] in body for r in report["rows"])
    page.locator(".quality-grid img").first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "page-quality-tab-1400px.png"), full_page=True)
    page.get_by_role("tab", name="Compare").click()
