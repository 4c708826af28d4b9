"""The app left running in public, tried as a careless or hostile visitor would, through the real server (Gradio
client on loopback, Debian's Chromium): nobody changes what the next visitor sees, holds the machine, fills its
disk or reads its internals."""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request

import pytest
from conftest import TINY_SIZE, FakeBackend, fake_comparison, free_port

import harness.settings
import ui.cards
import ui.context
import ui.layout
import ui.system
from backends import backend_class, backend_ids
from core.cpu import this_cpu
from core.request import GenerationRequest, LoadSettings
from harness.settings import Settings

SIZE = f"{TINY_SIZE}x{TINY_SIZE}"
MARKUP = (
    "# Big heading [a link](http://example.com/) ![remote](http://example.com/x.png) "
    "<img src=x onerror=window.__alerted=1> <b>bold</b> **strong** `code` $$x^2$$"
)


class FailsToWarmUp(FakeBackend):
    """A row that loads, then fails its warm-up (and so every run) with an engine's message holding a path."""

    def generate(self, request, latents, on_step, on_stage):
        if request.prompt == "warm-up":
            raise RuntimeError("oneDNN: /secret/path/primitive could not be created")
        return super().generate(request, latents, on_step, on_stage)


def overlapping(intervals_a, intervals_b) -> list[tuple[str, str]]:
    """Pairs of named (name, start, end) intervals that overlap."""
    return [(a, b) for a, s1, e1 in intervals_a for b, s2, e2 in intervals_b if s1 < e2 and s2 < e1]


def serve(page) -> tuple[object, str]:
    demo = ui.layout.build_demo(page)
    port = free_port()
    ui.layout.launch(page, demo, port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


def client(url: str, address: str | None = None):
    from gradio_client import Client

    return Client(url, verbose=False, headers={"X-Forwarded-For": address} if address else None)


def test_a_prompt_written_as_markup_renders_as_text_and_reaches_no_other_visitor(server, comparison, browser):
    visitor = browser.new_page(viewport={"width": 1400, "height": 1400})
    visitor.goto(server)
    visitor.get_by_text("Built-in example 1").first.wait_for(timeout=60_000)
    prompt = visitor.get_by_label("Prompt", exact=True)
    prompt.fill(MARKUP)
    prompt.press("Enter")
    visitor.get_by_text("Your comparison").wait_for(timeout=180_000)
    visitor.wait_for_timeout(500)
    body = visitor.inner_text("body")
    assert "# Big heading [a link](http://example.com/)" in body and "<b>bold</b> **strong** `code` $$x^2$$" in body
    markup = visitor.locator(
        "h1:has-text('Big heading'), a[href='http://example.com/'], img[src*='example.com'], img[src='x'], b, .katex"
    )
    assert markup.count() == 0, "the visitor's prompt was rendered as Markdown, HTML or maths"
    assert visitor.evaluate("() => window.__alerted === undefined")  # the payload's handler never ran

    stranger = browser.new_page(viewport={"width": 1400, "height": 1400})
    stranger.goto(server)
    stranger.get_by_text("Built-in example 1").first.wait_for(timeout=60_000)
    stranger.wait_for_timeout(3000)  # a status timer tick or two
    assert "Big heading" not in stranger.content() and "Big heading" not in stranger.inner_text("body")
    assert "Big heading" not in str(client(server).predict(api_name="/health"))


def upload(url: str, size: int) -> int:
    """POST a file of `size` bytes to Gradio's upload route; the HTTP status, or 413 when the server cut the
    connection before reading it all (it refuses on the declared length)."""
    body = b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.bin"\r\n\r\n'
    body += b"\0" * size + b"\r\n--b--\r\n"
    request = urllib.request.Request(
        url + "gradio_api/upload", data=body, headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    try:
        return urllib.request.urlopen(request, timeout=60).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError as exc:
        assert isinstance(exc.reason, ConnectionResetError), exc
        return 413


def test_an_upload_of_64_mb_is_refused(server):
    assert upload(server, 512) == 200  # the route is there: what it takes is capped at 1 kB (the page takes none)
    assert upload(server, 4096) == 413
    assert upload(server, 64 * 2**20) == 413


def test_one_client_holds_at_most_one_comparison_while_another_is_served(tiny_model, cache_dir):
    comparison = fake_comparison(tiny_model, cache_dir, **{b: {"delay": 1.0} for b in backend_ids()})
    # behind a local proxy the operator trusts: the forwarded address is the visitor's
    demo, url = serve(ui.context.make_page(comparison, settings=Settings(trusted_proxies="127.0.0.1")))
    try:
        first = client(url, "203.0.113.7").submit("one", "", 1, False, 2, 7.5, SIZE, "dpm++", api_name="/generate")
        time.sleep(1.0)  # running now
        with pytest.raises(Exception, match="You already have a comparison running"):
            client(url, "203.0.113.7").predict("two", "", 2, False, 2, 7.5, SIZE, "dpm++", api_name="/generate")
        other = client(url, "198.51.100.9").submit("three", "", 3, False, 2, 7.5, SIZE, "dpm++", api_name="/generate")
        time.sleep(0.5)  # queued behind the first
        with pytest.raises(Exception, match="You already have a comparison queued: place 1"):
            client(url, "198.51.100.9").predict("four", "", 4, False, 2, 7.5, SIZE, "dpm++", api_name="/generate")
        assert first.result(timeout=120)[4]["rows"] and other.result(timeout=120)[4]["rows"]  # both served
        again = client(url, "203.0.113.7").predict("five", "", 5, False, 2, 7.5, SIZE, "dpm++", api_name="/generate")
        assert [r["status"] for r in again[4]["rows"]] == ["ok"] * len(backend_ids())  # done: may ask again
    finally:
        demo.close()


def test_public_mode_caps_steps_and_sizes_naming_the_limit(tiny_model, cache_dir):
    settings = LoadSettings(sizes=(TINY_SIZE, 2 * TINY_SIZE), threads=2, cache_dir=cache_dir)
    comparison = fake_comparison(tiny_model, cache_dir, load=False)
    comparison.rows.settings = settings
    public = Settings(public=True, max_steps=10, max_size=TINY_SIZE)
    comparison.limits = public.limits(settings.sizes)
    comparison.load_all()
    demo, url = serve(ui.context.make_page(comparison, settings=public))
    try:
        visitor = client(url)
        with pytest.raises(Exception, match="steps must be at most 10 on this public demo"):
            visitor.predict("bird", "", 1, False, 20, 7.5, SIZE, "dpm++", api_name="/generate")
        big = f"{2 * TINY_SIZE}x{2 * TINY_SIZE}"
        with pytest.raises(Exception, match=f"above {TINY_SIZE}x{TINY_SIZE}, the largest on this public demo"):
            visitor.predict("bird", "", 1, False, 4, 7.5, big, "dpm++", api_name="/generate")
        assert visitor.predict("bird", "", 1, False, 10, 7.5, SIZE, "dpm++", api_name="/generate")[4]["rows"]
    finally:
        demo.close()


def test_an_internal_error_reaches_the_visitor_as_a_short_message_with_an_id(tiny_model, cache_dir, caplog):
    comparison = fake_comparison(tiny_model, cache_dir, **{"ipex-bf16": {"fail_on": {1}}})
    comparison.public = True
    page = ui.context.make_page(comparison, settings=Settings(public=True))
    demo, url = serve(page)
    try:
        with caplog.at_level(logging.ERROR):
            out = client(url).predict("bird", "", 1, False, 2, 7.5, SIZE, "dpm++", api_name="/generate")
        card = out[5 + len(backend_ids()) + 1]
        error_id = card.split("(error ")[1].split(",")[0]
        assert "injected failure" not in card and "failed (error" in card  # the row's card: short, with its id
        assert f"error {error_id}" in caplog.text and "injected failure" in caplog.text  # the log: the traceback

        def broken(request):
            raise RuntimeError("/secret/path/weights.bin is unreadable")

        comparison.truncation = broken  # a failure outside any row
        with caplog.at_level(logging.ERROR), pytest.raises(Exception) as raised:
            client(url).predict("bird", "", 1, False, 2, 7.5, SIZE, "dpm++", api_name="/generate")
        shown = str(raised.value)
        assert "Something went wrong here (error " in shown and "/secret/path" not in shown
        error_id = shown.split("(error ")[1].split(",")[0]
        assert f"error {error_id}" in caplog.text and "/secret/path/weights.bin" in caplog.text
    finally:
        demo.close()


def test_strict_loading_in_public_mode_never_serves_the_stand_in(tmp_path):
    settings = Settings(model="no-such-org/no-such-model-for-tests", cache_dir=str(tmp_path), public=True, threads=2)
    page = ui.context.make_page(harness.settings.build_comparison(settings), settings=settings)
    page.comparison.load_in_background(retry_s=0.5)
    deadline = time.monotonic() + 60
    while "retrying in" not in page.comparison.rows.status["baseline"].detail and time.monotonic() < deadline:
        time.sleep(0.2)
    status = page.comparison.rows.status["baseline"]
    assert status.state == "unavailable" and "could not load" in status.detail and "retrying in" in status.detail
    assert "(error " in status.detail and "no-such-org" not in status.detail  # a short line; the log has the rest
    assert page.comparison.rows.model is None and "tiny" not in ui.system.model_line(page.comparison)
    time.sleep(1.5)
    assert page.comparison.rows.model is None  # tried again, still no stand-in


def test_a_visitor_pressing_generate_the_moment_a_fresh_page_opens_gets_every_row(tiny_settings, browser, monkeypatch):
    """A fresh start on a slow machine (each row's loading takes 2 s more): the rows load in the background
    (ipex.optimize included) while a visitor presses Generate at once; the request times nothing until every row
    this CPU runs is loaded and warm (the progress says what it waits for), then gets each row's image and clean
    figures, and a headline drawn from them."""
    from harness.compare import rows as harness_rows

    create_backend = harness_rows.create_backend

    def create_slowly(backend_id):
        time.sleep(2.0)
        return create_backend(backend_id)

    monkeypatch.setattr(harness_rows, "create_backend", create_slowly)  # the rows' default factory
    settings = Settings(**{**tiny_settings.__dict__, "port": free_port()})
    page = ui.context.make_page(harness.settings.build_comparison(settings), settings=settings)
    demo = ui.layout.build_demo(page)
    ui.layout.launch(page, demo, prevent_thread_lock=True, quiet=True)
    page.comparison.load_in_background()
    try:
        visitor = browser.new_page(viewport={"width": 1400, "height": 1400})
        visitor.goto(f"http://127.0.0.1:{settings.port}/")
        visitor.get_by_role("button", name="Generate on every row").click()
        visitor.get_by_text("Nothing is timed until every row is loaded and warm").first.wait_for(timeout=30_000)
        visitor.get_by_text("Your comparison").wait_for(timeout=600_000)
        visitor.wait_for_timeout(500)
        rows = page.comparison.rows
        runs_here = [b for b in rows.order if rows.status[b].state != "unavailable"]
        body = visitor.inner_text("body")
        assert body.count(" s total") == len(runs_here), body
        assert "failed" not in body and "Skipped" not in body
        assert "inflated" not in body and "not clean" not in body, body
        assert visitor.locator("h1:has-text('faster than baseline')").count() == 1, body
        assert visitor.locator(".row-image img").count() == len(runs_here)
        assert not overlapping(page.comparison.timed_sections, rows.load_log)
    finally:
        demo.close()


def test_a_pytorch_row_runs_while_ipex_optimize_traces_in_another_thread(tiny_model, cache_dir):
    """ipex.optimize traces with torch.fx, which patches torch.nn.Module.__call__ for the whole process while it
    runs: a PyTorch row running meanwhile failed (`NameError: module is not installed as a submodule`)."""
    from conftest import make_comparison, ready_or_skip

    support = backend_class("ipex-bf16").support(this_cpu())
    if not support.runs:  # it is never loaded here, so nothing traces
        pytest.skip(f"hardware: ipex-bf16 cannot run on this CPU: {support.reason}")
    comparison = make_comparison(tiny_model, ["baseline", "ipex-bf16"], LoadSettings((TINY_SIZE,), 2, cache_dir))
    comparison.rows.load_row("baseline")
    from core.request import GenerationRequest

    request = GenerationRequest("bird", steps=2, height=TINY_SIZE, width=TINY_SIZE)
    results, loading = [], threading.Thread(target=comparison.rows.load_row, args=("ipex-bf16",))
    loading.start()
    while loading.is_alive():
        results += list(comparison.run(request, backend_ids=["baseline"]))
        time.sleep(0.01)  # a visitor's next row: the loader may take the lock in between
    loading.join()
    assert len(results) >= 1 and all(r.status == "ok" for r in results), [r.message for r in results]
    ready_or_skip(comparison, "ipex-bf16")
    assert [r.status for r in comparison.run(request)] == ["ok", "ok"]


def test_nothing_heavy_runs_beside_a_timed_section_while_pages_load_and_a_client_polls(server, app_page, browser):
    """The safety checker, fidelity, image saving and the examples run under the row lock after a row's timed call;
    page loads, timer ticks and polls only read state (images are PNG files written once). Recorded while a
    visitor's comparison runs, tabs stay open (their timers ticking), pages load and another client polls: no heavy
    activity overlaps a timed section. (A heavy timer handler, recorded, made this fail: see the closing note.)"""
    comparison = app_page.comparison
    sections_before, activities_before = len(comparison.timed_sections), len(comparison.activities)
    done = threading.Event()

    def poll():
        poller = client(server)
        while not done.is_set():
            poller.predict(api_name="/health")

    polling = threading.Thread(target=poll)
    polling.start()
    open_tabs = [browser.new_page() for _ in range(3)]  # open throughout: their timers tick every 2 s
    for tab in open_tabs:
        tab.goto(server)
    try:
        job = client(server).submit("a lighthouse at dusk", "", 5, False, 20, 7.5, SIZE, "dpm++", api_name="/generate")
        while not job.done():  # pages opening meanwhile (Playwright's pages live in this thread)
            tab = browser.new_page()
            tab.goto(server)
            tab.get_by_text("Built-in example 1").first.wait_for(timeout=60_000)
            tab.close()
        statuses = {r["backend"]: r["status"] for r in job.result()[4]["rows"]}
        assert [statuses[b] for b in comparison.rows.order if comparison.rows.runs_here(b)] == ["ok"] * len(
            comparison.rows.ready()
        ), statuses
    finally:
        done.set()
        polling.join()
        for tab in open_tabs:
            tab.close()
    sections = comparison.timed_sections[sections_before:]
    activities = comparison.activities[activities_before:]
    assert len(sections) == len(comparison.rows.ready()) and {name for name, *_ in activities} >= {
        "fidelity",
        "safety checker",
        "saving the image",
    }
    for name, start, end in activities:
        for row, timed_start, timed_end in sections:
            assert end <= timed_start or start >= timed_end, f"{name} overlapped {row}'s timed section"


def test_a_failed_warm_up_shows_the_row_failed_with_its_reason(tiny_model, cache_dir):

    comparison = fake_comparison(tiny_model, cache_dir, load=False)
    comparison.rows._factory = lambda b: FailsToWarmUp(b) if b == "int8-tome" else comparison.fakes[b]
    comparison.load_all()
    status = comparison.rows.status["int8-tome"]
    assert status.state == "failed" and "warm-up at 128x128 failed" in status.detail and "oneDNN" in status.detail
    assert "failed: warm-up at 128x128 failed" in ui.cards.status_line(comparison, "int8-tome")
    rows = {r.backend: r for r in comparison.run(GenerationRequest("bird", steps=2, height=TINY_SIZE, width=TINY_SIZE))}
    assert rows["int8-tome"].status == "skipped" and "oneDNN" in rows["int8-tome"].message
    assert all(rows[b].status == "ok" for b in backend_ids() if b != "int8-tome")


def test_visitors_behind_a_trusted_local_proxy_each_hold_one_place_and_spoofing_changes_nothing(tiny_model, cache_dir):
    import local_proxy

    comparison = fake_comparison(tiny_model, cache_dir, **{b: {"delay": 1.0} for b in backend_ids()})
    demo, url = serve(ui.context.make_page(comparison, settings=Settings(trusted_proxies=local_proxy.SOURCE)))
    proxy, proxy_port = local_proxy.start(int(url.rstrip("/").rsplit(":", 1)[1]))
    through_v4, through_v6 = f"http://127.0.0.1:{proxy_port}/", f"http://[::1]:{proxy_port}/"  # two visitors
    try:
        first = client(through_v4).submit("a", "", 1, False, 2, 7.5, SIZE, "dpm++", api_name="/generate")
        time.sleep(1.0)  # running now
        second = client(through_v6).submit("b", "", 2, False, 2, 7.5, SIZE, "dpm++", api_name="/generate")
        time.sleep(0.5)  # queued behind the first: another visitor, another place
        with pytest.raises(Exception, match="You already have a comparison running"):  # a header of its own: same
            client(through_v4, "192.0.2.1").predict("c", "", 3, False, 2, 7.5, SIZE, "dpm++", api_name="/generate")
        with pytest.raises(Exception, match="You already have a comparison queued: place 1"):
            client(through_v6, "192.0.2.2, 192.0.2.3").predict(
                "d", "", 4, False, 2, 7.5, SIZE, "dpm++", api_name="/generate"
            )
        assert first.result(timeout=120)[4]["rows"] and second.result(timeout=120)[4]["rows"]  # both served
    finally:
        proxy.shutdown()
        demo.close()


def test_a_client_no_proxy_is_trusted_for_cannot_become_another_visitor_by_header(tiny_model, cache_dir):
    """No proxy named (the default): the connection's address is the visitor's, loopback's headers included (the
    server's own default would believe loopback's X-Forwarded-For)."""
    comparison = fake_comparison(tiny_model, cache_dir, **{b: {"delay": 1.0} for b in backend_ids()})
    demo, url = serve(ui.context.make_page(comparison, settings=Settings()))
    try:
        first = client(url, "203.0.113.7").submit("a", "", 1, False, 2, 7.5, SIZE, "dpm++", api_name="/generate")
        time.sleep(1.0)
        with pytest.raises(Exception, match="You already have a comparison running"):
            client(url, "198.51.100.9").predict("b", "", 2, False, 2, 7.5, SIZE, "dpm++", api_name="/generate")
        assert first.result(timeout=120)[4]["rows"]
    finally:
        demo.close()


def test_the_visitor_key_behind_a_hop_count_and_for_ipv6():
    from starlette.requests import Request

    from harness.visitors.client_keys import ClientKeys, network_key

    def request(peer: str, *forwarded: str) -> Request:
        headers = [(b"x-forwarded-for", line.encode()) for line in forwarded]
        return Request({"type": "http", "headers": headers, "client": (peer, 1234)})

    space = ClientKeys("1")  # one appending proxy whose address is unknown
    assert space.key(request("10.1.2.3", "192.0.2.1, 203.0.113.7")) == "203.0.113.7"  # the proxy's own entry
    assert space.key(request("10.1.2.3", "192.0.2.1", "203.0.113.7")) == "203.0.113.7"  # every header line read
    assert ClientKeys("2").key(request("10.1.2.3", "192.0.2.1, 203.0.113.7, 10.0.0.5")) == "203.0.113.7"
    assert space.key(request("10.1.2.3")) == "10.1.2.3"  # not through the proxy: the connection
    assert ClientKeys("").key(request("10.1.2.3", "203.0.113.7")) == "10.1.2.3"
    assert network_key("2001:db8:1:2:aaaa::1") == network_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert network_key("2001:db8:1:3::1") != network_key("2001:db8:1:2::1")
    assert network_key("::ffff:192.0.2.9") == "192.0.2.9" and network_key("[2001:db8::1]:443") == "2001:db8::/64"
    with pytest.raises(ValueError):
        ClientKeys("10.0.0.0/8,not-an-address")


def test_in_public_mode_load_and_warm_up_failures_reach_strangers_as_a_short_line_and_an_id(
    tiny_model, cache_dir, caplog
):

    class FailsToLoad(FakeBackend):
        def load(self, model, settings, progress):
            raise RuntimeError("/secret/path/unet.xml cannot be opened")

    broken = {"openvino-static": FailsToLoad, "int8-tome": FailsToWarmUp}
    comparison = fake_comparison(tiny_model, cache_dir, load=False)
    comparison.rows._factory = lambda b: broken[b](b) if b in broken else comparison.fakes[b]
    comparison.public = True
    with caplog.at_level(logging.ERROR):
        comparison.load_all()
    page = ui.context.make_page(comparison, settings=Settings(public=True))
    demo, url = serve(page)
    try:
        out = client(url).predict("bird", "", 1, False, 2, 7.5, SIZE, "dpm++", api_name="/generate")
        health = client(url).predict(api_name="/health")
    finally:
        demo.close()
    order = comparison.rows.order
    cards = dict(zip(order, out[5 + len(order) : 5 + 2 * len(order)], strict=True))
    for backend_id in broken:
        shown = [ui.cards.status_line(comparison, backend_id), cards[backend_id], health["rows"][backend_id], out[1]]
        assert not any("/secret" in text or "RuntimeError" in text for text in shown), shown
        error_id = health["rows"][backend_id].split("(error ")[1].split(",")[0]
        assert f"(error {error_id}, in the log)" in cards[backend_id]  # the same id on the card
        assert f"error {error_id}" in caplog.text  # and in the log, with the full text
    assert "/secret/path/unet.xml cannot be opened" in caplog.text and "/secret/path/primitive" in caplog.text


def test_the_operator_is_told_when_every_request_comes_from_one_address(caplog):
    from starlette.requests import Request

    from harness.visitors.client_keys import ONE_ADDRESS_WARNING_AFTER, ClientKeys

    keys = ClientKeys("")
    with caplog.at_level(logging.WARNING):
        for _ in range(ONE_ADDRESS_WARNING_AFTER - 1):
            keys.observe("10.0.2.2", forwarded=False)
        assert "trusted-proxies" not in caplog.text
        keys.observe("10.0.2.2", forwarded=False)  # a container network's gateway, say: every visitor is it
    assert "every request so far comes from 10.0.2.2" in caplog.text and "--trusted-proxies" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ClientKeys("").observe("127.0.0.1", forwarded=True)  # a proxy nobody named sends the header
        ClientKeys("127.0.0.1").observe("203.0.113.7", forwarded=True)  # a named one: nothing to say
    assert caplog.text.count("--trusted-proxies") == 1 and "X-Forwarded-For" in caplog.text
    request = Request({"type": "http", "headers": [], "client": ("10.0.2.2", 1)})
    assert ClientKeys("1").key(request) == "10.0.2.2"
