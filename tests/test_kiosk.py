"""The booth screen (`/kiosk`): what it replays matches the kept comparison's figures, in Chromium at 1920x1080 and
3840x2160 nothing is cut off and the QR code decodes to the visitor page's address; an idle app computes the booth's
own comparison and the kiosk shows it; a visitor goes before any booth comparison."""

from __future__ import annotations

import io
import json
import shutil
import threading
import time
import urllib.request

import pytest
from conftest import ARTIFACTS, TINY_SIZE, fake_comparison, free_port

import ui.context
import ui.handlers
import ui.kiosk
import ui.layout
import ui.views
from backends import backend_class
from harness.records.booth import BoothLoop, booth_prompts, booth_runs, compute_booth_comparison
from harness.records.examples import EXAMPLES, compute_example
from harness.records.showcase import BOOTH_FIRST, Showcase
from harness.settings import Settings

# Each fake row takes its own time, so the race has an order to show: the baseline slowest.
DELAYS = {"baseline": 2.0, "ipex-bf16": 1.2, "pytorch-bf16": 1.0, "openvino-static": 0.8, "int8-tome": 0.5,
          "lcm-taesd": 0.3}  # fmt: skip


def fake_rows(tiny_model, cache_dir, delays):
    """Cheap fake rows taking `delays` seconds, titled as the real rows (a title's length matters on a screen)."""
    comparison = fake_comparison(tiny_model, cache_dir, load=False, **{b: {"delay": d} for b, d in delays.items()})
    for backend_id, fake in comparison.fakes.items():
        fake.title = backend_class(backend_id).title
    comparison.load_all()
    return comparison


def kiosk_page(tiny_model, cache_dir, tmp_path, delays=DELAYS, **settings):
    comparison = fake_rows(tiny_model, cache_dir, delays)
    page = ui.context.make_page(
        comparison, Showcase(tmp_path / "showcase", "test machine"), Settings(queue_size=4, **settings)
    )
    return page


@pytest.fixture(scope="module")
def served(tiny_model, cache_dir, tmp_path_factory):
    """A page of cheap rows with two examples kept, served on loopback; (page, its address)."""
    page = kiosk_page(tiny_model, cache_dir, tmp_path_factory.mktemp("kiosk"))
    for index in (0, 1):
        compute_example(page.comparison, page.showcase, index)
    demo = ui.layout.build_demo(page)
    port = free_port()
    ui.layout.launch(page, demo, port, prevent_thread_lock=True, quiet=True)
    yield page, f"http://127.0.0.1:{port}/"
    demo.close()


# The other machine's fake rows take other times than this one's: its bars must fill at its own.
OTHER_DELAYS = {"baseline": 1.6, "ipex-bf16": 0.7, "pytorch-bf16": 0.8, "openvino-static": 0.6, "int8-tome": 0.25,
                "lcm-taesd": 0.2}  # fmt: skip


@pytest.fixture(scope="module")
def served_with_another_machine(tiny_model, cache_dir, tmp_path_factory):
    """A second page standing for another machine (an instance of the app on loopback, its own rows and times), and a
    page naming it as its remote, with its first example kept (computed on both); (page, its address)."""
    tmp = tmp_path_factory.mktemp("kiosk-machines")
    comparison = fake_rows(tiny_model, cache_dir, OTHER_DELAYS)
    other = ui.context.make_page(comparison, Showcase(tmp / "other", "other machine"), Settings(queue_size=4))
    other_demo = ui.layout.build_demo(other)
    other_port = free_port()
    ui.layout.launch(other, other_demo, other_port, prevent_thread_lock=True, quiet=True)
    page = kiosk_page(tiny_model, cache_dir, tmp / "front", remotes=f"Second machine=http://127.0.0.1:{other_port}/")
    assert compute_example(page.comparison, page.showcase, 0, page.kept_alongside()) is not None
    demo = ui.layout.build_demo(page)
    port = free_port()
    ui.layout.launch(page, demo, port, prevent_thread_lock=True, quiet=True)
    yield page, f"http://127.0.0.1:{port}/"
    demo.close()
    other_demo.close()


def get_json(url: str) -> dict:
    return json.load(urllib.request.urlopen(url, timeout=30))


def test_the_replay_is_the_kept_comparison_as_measured_and_cycles(served):
    page, url = served
    first = get_json(url + "kiosk.json")
    run = page.showcase.example(page.comparison.rows.model, 0)
    ok = [r for r in run.rows if r["status"] == "ok"]
    assert [r["backend"] for r in first["rows"]] == [r["backend"] for r in ok]  # the page's row order
    assert [r["latency_s"] for r in first["rows"]] == [r["latency_s"] for r in ok]  # at the measured speed
    assert [r["stages"] for r in first["rows"]] == [r["stages"] for r in ok]
    assert first["prompt"] == run.request.prompt and "Replayed at the measured speed" in first["replay"]
    assert "faster than the baseline" in first["headline"] and first["other_work"]  # the few-step row apart
    second = get_json(url + "kiosk.json?after=" + first["key"])
    assert (
        second["key"] != first["key"]
        and second["prompt"] == page.showcase.example(page.comparison.rows.model, 1).request.prompt
    )
    assert get_json(url + "kiosk.json?after=" + second["key"])["key"] == first["key"]  # round again
    assert get_json(url + "kiosk.json?after=../../etc/passwd")["key"] == first["key"]  # unknown: the first
    image = urllib.request.urlopen(url.rstrip("/") + first["rows"][0]["image"], timeout=30)
    assert image.status == 200 and image.read(8) == b"\x89PNG\r\n\x1a\n"


def test_another_machines_rows_are_kept_and_raced_at_their_own_measured_times(served_with_another_machine):
    page, url = served_with_another_machine
    run = page.showcase.example(page.comparison.rows.model, 0)
    assert [g.label for g in run.groups] == ["Second machine"] and run.groups[0].state == "done"
    kept = [r for r in run.groups[0].rows if r["status"] == "ok"]
    assert len(kept) == len(OTHER_DELAYS) and all(p.exists() for p in run.groups[0].images.values())
    shown = get_json(url + "kiosk.json")
    (group,) = shown["groups"]
    assert group["label"] == "Second machine" and group["machine"] and "same machine" in group["note"]
    assert [(r["backend"], r["latency_s"], r["stages"]) for r in group["rows"]] == [
        (r["backend"], r["latency_s"], r["stages"]) for r in kept
    ]
    assert "faster than its baseline" in group["headline"]
    # its own times, not this machine's: the other machine's fakes are faster
    here = {r["backend"]: r["latency_s"] for r in shown["rows"]}
    assert all(r["latency_s"] < here[r["backend"]] for r in group["rows"])
    image = urllib.request.urlopen(url.rstrip("/") + group["rows"][0]["image"], timeout=30)
    assert image.status == 200 and image.read(8) == b"\x89PNG\r\n\x1a\n"
    # the visitor page opens on the example with the other machine's kept rows, not an empty group
    outputs = page.outputs.read(ui.views.show_example(page, 0))
    (heading, *shown_group) = outputs["groups"][0]
    images = shown_group[: len(page.comparison.rows.order)]
    assert "Second machine" in heading and "done" in heading
    assert images == [str(run.groups[0].images[b]) for b in page.comparison.rows.order]
    assert [r["label"] for r in outputs["figures"]["remotes"]] == ["Second machine"]
    # kept on disk with it: a restart shows the other machine's rows too
    again = Showcase(page.showcase.root, page.showcase.machine).example(page.comparison.rows.model, 0)
    assert [(g.label, g.rows, g.images) for g in again.groups] == [(g.label, g.rows, g.images) for g in run.groups]


@pytest.mark.parametrize(
    "pages, width, height",
    [("served", 1920, 1080), ("served", 3840, 2160), ("served_with_another_machine", 1920, 1080),
     ("served_with_another_machine", 3840, 2160)],
)  # fmt: skip
def test_the_kiosk_in_chromium_races_the_rows_and_shows_everything(request, pages, width, height):
    playwright = pytest.importorskip("playwright.sync_api")
    zxingcpp = pytest.importorskip("zxingcpp")
    from PIL import Image
    from test_browser import BROWSER_ARGS, CHROMIUM

    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is not installed: run `make setup-dev` (scripts/install.sh --dev)")
    page, url = request.getfixturevalue(pages)
    expected = get_json(url + "kiosk.json")
    machines = [expected["rows"], *(g["rows"] for g in expected["groups"])]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        screen = browser.new_page(viewport={"width": width, "height": height})
        screen.goto(url + "kiosk")
        screen.wait_for_function("document.querySelectorAll('#rows .row').length > 0", timeout=30_000)
        raced = screen.eval_on_selector_all(
            "#rows .row:not(.empty)",
            "cards => cards.map(c => [Number(c.dataset.group), c.dataset.backend, Number(c.dataset.duration)])",
        )
        # every machine's rows, each at its own measured seconds (one line per machine, in the page's row order)
        assert sorted(raced) == sorted(
            [g, r["backend"], r["latency_s"]] for g, rows in enumerate(machines) for r in rows
        )
        # Mid-race: the fastest row's picture is up while every baseline's bar still fills.
        screen.wait_for_selector("#rows .row.done", timeout=30_000)
        done = screen.eval_on_selector_all("#rows .row.done", "cards => cards.map(c => c.dataset.backend)")
        assert "baseline" not in done
        screen.wait_for_selector("#headline.shown", timeout=60_000)
        assert screen.eval_on_selector_all(
            "#rows .row:not(.empty)", "cards => cards.every(c => c.classList.contains('done'))"
        )
        overflow = screen.evaluate(
            """() => {
              const inside = (r) => r.left >= 0 && r.top >= 0 && r.right <= innerWidth + 0.5
                && r.bottom <= innerHeight + 0.5;
              const shown = '#prompt, .qr svg, .qr .try, #rows .row, #rows img, #rows .title, .machine-label, '
                + '#headline, #other';
              const parts = [...document.querySelectorAll(shown)];
              const below = (a, b) => a.getBoundingClientRect().bottom <= b.getBoundingClientRect().top + 0.5;
              const headline = document.getElementById('headline');
              const racing = [...document.querySelectorAll('#rows .row, .machine-label')];
              return {
                overlapping: racing.filter((e) => !below(e, headline)).map((e) => e.className),
                scroll: [document.documentElement.scrollWidth, document.documentElement.scrollHeight],
                outside: parts.filter((e) => !inside(e.getBoundingClientRect())).map((e) => e.id || e.className),
                images: [...document.querySelectorAll('#rows img')].map((i) => i.complete && i.naturalWidth > 0),
                sides: [...document.querySelectorAll('#rows .frame')].map((f) => f.getBoundingClientRect().height),
                headline: document.getElementById('headline').textContent,
                said: [...document.querySelectorAll('.machine-label .said.shown')].map((e) => e.textContent),
                clipped: [...document.querySelectorAll('#rows .title')]
                  .filter((e) => e.scrollHeight > e.clientHeight + 1).map((e) => e.textContent),
                cut: [...document.querySelectorAll('.machine-label')].filter((e) => {
                  const said = e.querySelector('.said').getBoundingClientRect();
                  return said.bottom > e.getBoundingClientRect().bottom + 0.5;
                }).map((e) => e.textContent),
              };
            }"""
        )
        assert overflow["scroll"] == [width, height] and not overflow["outside"], overflow
        assert not overflow["overlapping"], overflow  # the race stays above the headline
        assert not overflow["clipped"], overflow  # every row's title whole
        assert all(overflow["images"]) and "faster than the baseline" in overflow["headline"]
        assert min(overflow["sides"]) >= 0.15 * height, overflow["sides"]  # pictures large enough to see from afar
        if expected["groups"]:  # each other machine's line says its own headline once its rows are done, uncut
            assert len(overflow["said"]) == len(expected["groups"]) and not overflow["cut"], overflow
            assert all("faster than its baseline" in said for said in overflow["said"]), overflow["said"]
        ARTIFACTS.mkdir(exist_ok=True)
        screen.wait_for_timeout(1000)  # the headline's fade-in
        name = "kiosk-other-machines" if expected["groups"] else "kiosk"
        screen.screenshot(path=str(ARTIFACTS / f"{name}-{width}x{height}.png"))
        qr = Image.open(io.BytesIO(screen.locator(".qr svg").screenshot()))
        browser.close()
    decoded = [code.text for code in zxingcpp.read_barcodes(qr)]
    assert decoded == [url], decoded  # the visitor page, where the kiosk's browser reached it


def test_the_qr_code_gives_the_operators_address_and_a_closed_instance_has_no_kiosk(tiny_model, cache_dir, tmp_path):
    page = kiosk_page(tiny_model, cache_dir, tmp_path, kiosk_url="https://booth.example/try")

    class Request:
        base_url = "http://127.0.0.1:7860/"

    html = ui.kiosk.kiosk_page(page, Request())
    assert "https://booth.example/try" in html and "<svg" in html
    closed = kiosk_page(tiny_model, cache_dir, tmp_path / "closed", auth="operator:secret")
    kiosk, _json = ui.kiosk.kiosk_routes(closed)
    assert kiosk.endpoint(Request()).status_code == 403


def test_an_idle_app_computes_a_booth_comparison_and_the_kiosk_shows_it(tiny_model, cache_dir, tmp_path):
    page = kiosk_page(tiny_model, cache_dir, tmp_path)
    compute_example(page.comparison, page.showcase, 0)
    assert ui.kiosk.next_comparison(page)["label"] == "Built-in example 1"
    idle_s = 1.0
    loop = BoothLoop(page.comparison, page.showcase, page.booth_prompts, idle_s, lambda: None, lambda: False, 0.1)
    started = time.monotonic()
    loop.start()
    try:
        deadline = started + idle_s + 60
        while not booth_runs(page.showcase, page.comparison.rows.model, page.booth_prompts):
            assert time.monotonic() < deadline, "no booth comparison within the idle time"
            time.sleep(0.1)
    finally:
        loop.stop.set()
    first_booth = page.showcase.example(page.comparison.rows.model, BOOTH_FIRST)
    assert first_booth.request.prompt == booth_prompts()[0]
    # The booth comparison started only once the app had been idle for the stated time.
    booth_start = min(start for prompt, start, _end in page.comparison.fakes["baseline"].runs
                      if prompt == booth_prompts()[0])  # fmt: skip
    assert booth_start - started >= idle_s * 0.9
    example = ui.kiosk.next_comparison(page)
    shown = ui.kiosk.next_comparison(page, example["key"])
    assert shown["label"] == "Booth prompt 1" and shown["prompt"] == booth_prompts()[0]


def test_a_visitor_goes_before_any_booth_comparison(tiny_model, cache_dir, tmp_path):
    """While a visitor's comparison runs or waits, no booth comparison starts; one under way when a visitor comes
    is dropped between two rows, so the visitor's rows run next; after a visitor, a full idle time passes first."""
    page = kiosk_page(tiny_model, cache_dir, tmp_path)
    waiting = {"now": True}
    last_visitor = {"at": None}
    loop = BoothLoop(page.comparison, page.showcase, page.booth_prompts, 0.0, lambda: last_visitor["at"],
                     lambda: waiting["now"], 0.05)  # fmt: skip
    loop.last_booth = None
    assert not loop.idle()  # a visitor waits
    waiting["now"] = False
    last_visitor["at"] = time.monotonic()
    loop.idle_s = 30.0
    assert not loop.idle()  # a visitor asked a moment ago
    loop.idle_s = 0.001
    time.sleep(0.01)
    assert loop.idle()
    calls = {"n": 0}

    def visitor_arrives() -> bool:  # asked after each booth row: a visitor comes after the first
        calls["n"] += 1
        return True

    assert compute_booth_comparison(page.comparison, page.showcase, page.booth_prompts, 0, visitor_arrives) is None
    assert calls["n"] == 1 and page.showcase.example(page.comparison.rows.model, BOOTH_FIRST) is None
    ran = [prompt for prompt, _s, _e in page.comparison.fakes["ipex-bf16"].runs if prompt != "warm-up"]
    assert booth_prompts()[0] not in ran  # dropped after the first row: the second row never ran for it


def test_the_booth_list_is_the_operators_file(tmp_path):
    listed = tmp_path / "prompts.txt"
    listed.write_text("# our booth\n\na teapot\n  a kettle  \n")
    assert booth_prompts(listed) == ["a teapot", "a kettle"]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="no prompt"):
        booth_prompts(tmp_path / "empty.txt")
    assert len(booth_prompts()) >= 20 and TINY_SIZE


def visitor_comparison(page, prompt: str) -> list:
    """A visitor's comparison through the page's own handler (as `/generate` runs it)."""
    generate = ui.handlers.make_generate(page)
    return list(generate(prompt, "", 11, False, 4, 7.5, f"{TINY_SIZE}x{TINY_SIZE}", "dpm++",
                         progress=lambda *a, **k: None))  # fmt: skip


def every_prompt_the_kiosk_shows(page) -> set[str]:
    seen, after, fresh = set(), "", ""
    for _ in range(12):
        entry = ui.kiosk.next_comparison(page, after, fresh)
        seen.add(entry["prompt"])
        after, fresh = (after, entry["key"]) if entry["fresh"] else (entry["key"], fresh)
    return seen


def test_a_visitors_prompt_reaches_the_big_screen_only_when_the_operator_turns_it_on(tiny_model, cache_dir, tmp_path):
    quick = dict.fromkeys(DELAYS, 0.01)
    page = kiosk_page(tiny_model, cache_dir, tmp_path / "off", quick)
    compute_example(page.comparison, page.showcase, 0)
    visitor_comparison(page, "a stranger's words")
    assert every_prompt_the_kiosk_shows(page) == {EXAMPLES[0][0]}  # off: the operator's comparisons only
    assert page.visitors_shown is None and not any("stranger" in p.read_text() for p in tmp_path.rglob("run.json"))

    page = kiosk_page(tiny_model, cache_dir, tmp_path / "on", quick, kiosk_visitors=True)
    compute_example(page.comparison, page.showcase, 0)
    example = ui.kiosk.next_comparison(page)
    assert not example["fresh"] and example["label"] == "Built-in example 1"
    visitor_comparison(page, "a visitor's lighthouse")
    shown = ui.kiosk.next_comparison(page, example["key"])
    assert shown["fresh"] and shown["label"] == "A visitor's prompt" and shown["prompt"] == "a visitor's lighthouse"
    assert [r["backend"] for r in shown["rows"]] == [b for b in page.comparison.rows.order]
    # shown once as fresh, then in the cycle after the example the kiosk was at
    after = ui.kiosk.next_comparison(page, example["key"], shown["key"])
    assert not after["fresh"] and after["key"] == shown["key"]  # the cycle: example 1, then the visitor's
    assert every_prompt_the_kiosk_shows(page) == {EXAMPLES[0][0], "a visitor's lighthouse"}
    # kept outside the cache, where the page serves it from
    kept = page.visitors_shown.latest(page.comparison.rows.model)[0]
    assert all(page.visitors_shown.showcase.root in p.parents for p in kept.images.values())
    assert str(page.visitors_shown.showcase.root.resolve()) in ui.layout.kept_directories(page)
    assert not str(page.visitors_shown.showcase.root).startswith(str(cache_dir))

    # one the safety checker flags never reaches the big screen
    page.comparison.safety = lambda image: (image, True)
    visitor_comparison(page, "something flagged")
    assert "something flagged" not in every_prompt_the_kiosk_shows(page)
    shown_now = [r.request.prompt for r in page.visitors_shown.latest(page.comparison.rows.model)]
    assert shown_now == ["a visitor's lighthouse"]  # it took no slot: none is kept for it
    # the newest few only
    page.comparison.safety = lambda image: (image, False)
    for n in range(page.visitors_shown.KEPT + 1):
        visitor_comparison(page, f"visitor {n}")
    latest = [r.request.prompt for r in page.visitors_shown.latest(page.comparison.rows.model)]
    assert latest == [f"visitor {n}" for n in range(page.visitors_shown.KEPT, 0, -1)]


def test_a_visitor_through_gradios_queue_runs_before_the_booth_comparison_under_way(tiny_model, cache_dir, tmp_path):
    """End to end, as the app runs it: a launched page with the booth started as `app.py` starts it and a kiosk
    tab open; a visitor's `/generate` call, made while a booth comparison runs, goes through Gradio's queue and
    its rows run next (at most the booth row under way finishes first); the booth comparison is dropped, and the
    next waits a full idle time after the visitor."""
    from gradio_client import Client

    idle_s = 2.0
    page = kiosk_page(tiny_model, cache_dir, tmp_path, kiosk_idle_s=idle_s)
    compute_example(page.comparison, page.showcase, 0)
    demo = ui.layout.build_demo(page)
    port = free_port()
    ui.layout.launch(page, demo, port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    kiosk_open = threading.Event()

    def kiosk_tab() -> None:  # a kiosk asking for its comparisons meanwhile, as a booth screen does
        after = ""
        while not kiosk_open.is_set():
            after = get_json(url + "kiosk.json?after=" + after)["key"] or ""
            kiosk_open.wait(0.5)

    threading.Thread(target=kiosk_tab, daemon=True).start()
    booth = ui.kiosk.start_booth(page, demo)
    fakes, first = page.comparison.fakes, booth_prompts()[0]
    client = Client(url, verbose=False, download_files=False)  # connected before: the call itself is timed
    try:
        deadline = time.monotonic() + idle_s + 60
        while not any(prompt == first for prompt, _s, _e in fakes["baseline"].runs):  # its first row is done
            assert time.monotonic() < deadline, "no booth comparison started"
            time.sleep(0.02)
        asked = time.perf_counter()
        size = f"{TINY_SIZE}x{TINY_SIZE}"
        client.predict("a visitor's teapot", "", 3, False, 4, 7.5, size, "dpm++", None, api_name="/generate")
        answered = time.perf_counter()
        time.sleep(idle_s / 2)  # within the idle time after the visitor: no booth comparison yet
        ran = sorted((start, end, prompt) for f in fakes.values() for prompt, start, end in f.runs)
        visitor = [(s, e) for s, e, prompt in ran if prompt == "a visitor's teapot"]
        assert len(visitor) == len(fakes)
        booth_after = [(s, e, p) for s, e, p in ran if p != "a visitor's teapot" and s > asked]
        # at most the booth row under way when the visitor asked ran before the visitor's rows; none after them
        assert len([b for b in booth_after if b[0] < visitor[0][0]]) <= 1, ran
        assert all(s >= max(e for _s, e in visitor) for s, _e, _p in booth_after if s > visitor[0][0]), ran
        assert not [b for b in booth_after if b[0] > answered], ran  # a full idle time after the visitor first
        assert page.showcase.example(page.comparison.rows.model, BOOTH_FIRST) is None  # dropped, not kept
        # the next booth comparison once the app is idle again, and the kiosk shows it
        deadline = time.monotonic() + idle_s + 60
        while not booth_runs(page.showcase, page.comparison.rows.model, page.booth_prompts):
            assert time.monotonic() < deadline, "no booth comparison after the visitor"
            time.sleep(0.1)
        later = [s for f in fakes.values() for p, s, _e in f.runs if p not in ("a visitor's teapot", "warm-up")]
        assert min(s for s in later if s > answered) - answered >= idle_s * 0.9
        shown = [ui.kiosk.next_comparison(page)]
        shown.append(ui.kiosk.next_comparison(page, shown[0]["key"]))
        assert shown[1]["label"] == "Booth prompt 2" and shown[1]["prompt"] == booth_prompts()[1]
    finally:
        kiosk_open.set()
        if booth is not None:
            booth.stop.set()
        demo.close()


def test_this_machines_rows_are_kept_at_once_and_a_visitor_cancels_the_other_machines_part(
    tiny_model, cache_dir, tmp_path
):
    """The other machines may take up to their deadline: the page opens on this machine's rows meanwhile; a visitor
    who comes then goes first there too (their booth call is cancelled, its rows stop)."""
    slow = fake_comparison(tiny_model, cache_dir, **{b: {"delay": 2.0} for b in DELAYS})
    other = ui.context.make_page(slow, Showcase(tmp_path / "other", "other machine"), Settings(queue_size=4))
    other_demo = ui.layout.build_demo(other)
    other_port = free_port()
    ui.layout.launch(other, other_demo, other_port, prevent_thread_lock=True, quiet=True)
    page = kiosk_page(tiny_model, cache_dir, tmp_path / "front", dict.fromkeys(DELAYS, 0.01),
                      remotes=f"Slow machine=http://127.0.0.1:{other_port}/")  # fmt: skip
    visitor = threading.Event()
    kept = {}
    booth = threading.Thread(
        target=lambda: kept.update(run=compute_booth_comparison(page.comparison, page.showcase, page.booth_prompts, 0,
                                                                visitor.is_set, page.kept_alongside())),
    )  # fmt: skip
    try:
        booth.start()
        deadline = time.monotonic() + 60
        while (run := page.showcase.example(page.comparison.rows.model, BOOTH_FIRST)) is None:
            assert time.monotonic() < deadline, "this machine's rows were not kept"
            time.sleep(0.05)
        assert not run.groups and booth.is_alive()  # kept before the other machine is done
        while not slow.fakes["baseline"].runs:  # the other machine is at work on it
            assert time.monotonic() < deadline
            time.sleep(0.05)
        visitor.set()
        booth.join(30)
        assert not booth.is_alive() and kept["run"] is not None and not kept["run"].groups
        time.sleep(5)  # the other machine stopped between two rows
        ran = [p for f in slow.fakes.values() for p, _s, _e in f.runs if p == booth_prompts()[0]]
        assert 1 <= len(ran) < len(DELAYS), ran
    finally:
        visitor.set()
        booth.join(60)
        other_demo.close()
