"""The Gradio app: handlers called directly, then the real server through gradio_client on loopback."""

from __future__ import annotations

import concurrent.futures
import time

import gradio as gr
import pytest
from conftest import TINY_SIZE, fake_comparison, free_port
from PIL import Image

import ui.cards
import ui.charts
import ui.context
import ui.handlers
import ui.layout
import ui.other_cpus
import ui.system
import ui.views
from backends import backend_class, backend_ids
from core.cpu import this_cpu

SIZE = f"{TINY_SIZE}x{TINY_SIZE}"


RUN_ARGS = dict(
    prompt="cartoon bird",
    negative_prompt="",
    seed=42,
    random_seed=False,
    steps=4,
    guidance=7.5,
    size=SIZE,
    scheduler="dpm++",
)


def run_handler(comparison, **overrides):
    page = ui.context.make_page(comparison)
    return list(ui.handlers.make_generate(page)(**{**RUN_ARGS, **overrides}, progress=lambda *a, **k: None))


def test_handler_streams_one_update_per_row_then_the_chart(comparison):
    updates = run_handler(comparison)
    n = len(backend_ids())
    assert len(updates) == n + 2  # start, one per row, final (with the chart)
    seed, message, title, chart, figures, *rest = updates[-1]
    images, cards = rest[:n], rest[n : 2 * n]
    assert seed == 42 and [r["backend"] for r in figures["rows"]] == list(backend_ids())
    for backend_id, image, card in zip(backend_ids(), images, cards, strict=True):
        if backend_id in comparison.rows.ready():
            assert Image.open(image).size == (TINY_SIZE, TINY_SIZE) and " s** total" in card
        elif not comparison.rows.runs_here(backend_id):  # a fact of this CPU, said in words on the card
            reason = backend_class(backend_id).support(this_cpu()).reason
            assert image is None and f"**Not on this CPU**: {reason}" in card and "Not on this CPU: " in message
            assert "Skipped" not in message and "Error" not in card
        else:
            assert image is None and "skipped" in card and "Skipped, not ready" in message
    assert "faster than baseline" in title
    titles = [comparison.rows.titles[b] for b in comparison.rows.ready()]
    assert [row[0] for row in chart.value["data"]] == titles and chart.sort == [
        comparison.rows.titles[b] for b in backend_ids()
    ]
    # Cards fill as rows finish: after the first row only the first image is there.
    assert updates[1][5] is not None and all(image is None for image in updates[1][6 : 5 + n])


def test_a_request_made_while_the_rows_load_waits_for_every_row_and_says_which(tiny_model, cache_dir):
    comparison = fake_comparison(tiny_model, cache_dir, load=False, **{b: {"load_delay": 0.3} for b in backend_ids()})
    comparison.load_in_background()  # as the app starts: the page serves while the rows load
    said = []
    page = ui.context.make_page(comparison)
    updates = list(ui.handlers.make_generate(page)(**RUN_ARGS, progress=lambda *a, desc=None, **k: said.append(desc)))
    assert [r["status"] for r in updates[-1][4]["rows"]] == ["ok"] * len(backend_ids())  # none skipped
    # The request came before the rows were loaded: it said what it waited for, and timed nothing before all were.
    waited = [d for d in said if d and d.startswith("Nothing is timed until every row is loaded and warm. Now: ")]
    assert any("fake int8-tome: loading" in d for d in waited), said
    assert said.index(waited[-1]) < min(i for i, d in enumerate(said) if d and d.startswith("row 1/"))


def test_random_seed_draws_a_new_seed_that_the_rows_use(comparison):
    first = run_handler(comparison, random_seed=True, seed=1)[-1]
    second = run_handler(comparison, random_seed=True, seed=1)[-1]
    assert first[0] != 1 and first[0] != second[0]  # the typed seed is not used; each run draws (p = 2**-32)
    assert f"Random seed: **{first[0]}**" in first[1] and first[4]["seed"] == first[0]
    fixed = run_handler(comparison, seed=first[0])[-1]  # the same seed typed in gives the same image
    assert Image.open(first[5]).tobytes() == Image.open(fixed[5]).tobytes()


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"prompt": " "}, "prompt is empty"),
        ({"steps": 500}, "between 1 and 50"),
        ({"size": "256x256"}, "not offered"),
        ({"seed": -3}, "between 0 and"),
    ],
)
def test_bad_input_is_a_clear_error_and_the_next_request_works(comparison, overrides, fragment):
    with pytest.raises(gr.Error, match=fragment):
        run_handler(comparison, **overrides)
    assert run_handler(comparison)[-1][4]["rows"][0]["status"] == "ok"


def test_long_prompt_note_names_what_was_dropped(comparison):
    prompt = " ".join(f"w{i}" for i in range(100)) + " lastword"
    message = run_handler(comparison, prompt=prompt, steps=1)[-1][1]
    assert "dropped" in message and "lastword" in message


def test_the_status_timer_never_touches_the_result_cards(tiny_model, cache_dir):
    """A row's figures stay until the next comparison replaces them: the 2-second timer updates status lines
    only (it used to redraw a card whose row had just been warmed up, wiping that row's latency and PSNR)."""
    comparison = fake_comparison(tiny_model, cache_dir)
    comparison.rows.status["int8-tome"].set("loading", "building int8 + ToMe IR")
    lines = ui.cards.status_lines(comparison)
    int8 = comparison.rows.order.index("int8-tome")
    assert "loading: building int8 + ToMe IR" in lines[int8] and "status: ready" in lines[0]
    page = ui.context.make_page(comparison)
    demo = ui.layout.build_demo(page)
    cards = {b._id for b in demo.blocks.values() if "row-card" in (getattr(b, "elem_classes", None) or [])}
    timers = {b._id for b in demo.blocks.values() if isinstance(b, gr.Timer)}
    assert len(cards) == len(backend_ids()) and timers
    timer_deps = [dep for dep in demo.config["dependencies"] if {t[0] for t in dep["targets"]} & timers]
    assert not [dep for dep in timer_deps if cards & set(dep["outputs"])]  # the timer touches no card
    # The one exception: a page opened before its example existed is filled once it does, and only then: the timer
    # sets a hidden number to the awaited example's index once it exists (`example_ready`), whose change fills it.
    states = {o for dep in timer_deps for o in dep["outputs"] if isinstance(demo.blocks[o], gr.Number)}
    filling = [dep for dep in demo.config["dependencies"] if {t[0] for t in dep["targets"]} & states]
    assert len(states) == 1 and len(filling) == 1 and cards <= set(filling[0]["outputs"])
    assert ui.handlers.example_ready(page, None) is None  # a page awaiting nothing
    n = len(filling[0]["outputs"])
    skips = ui.handlers.fill_when_ready(page, None)
    assert len(skips) == n and all(isinstance(u, type(gr.skip())) for u in skips)


def test_the_examples_are_computed_kept_and_shown_on_opening_and_after_a_restart(tiny_model, cache_dir, tmp_path):
    from PIL import Image

    from harness.records.examples import compute_example
    from harness.records.showcase import Showcase

    delays = {"baseline": {"delay": 0.4}, **{b: {"delay": 0.05} for b in backend_ids() if b != "baseline"}}
    comparison = fake_comparison(tiny_model, cache_dir, **delays)
    page = ui.context.make_page(comparison, Showcase(tmp_path / "showcase", "test machine"))
    opened_early = ui.views.show_example(page, 0)
    assert opened_early[1].startswith("_Example 1 is computed") and opened_early[-1] == 0  # nothing yet
    skips = ui.handlers.fill_when_ready(page, 0)
    assert len(skips) == len(opened_early) and all(isinstance(u, type(gr.skip())) for u in skips)
    compute_example(comparison, page.showcase, 0)
    assert ui.handlers.example_ready(page, 0) == 0  # the early page's timer now says so, and the page shows it
    filled = ui.handlers.fill_when_ready(page, 0)
    assert "Built-in example 1" in filled[1] and filled[-1] is None
    assert all(isinstance(u, type(gr.skip())) for u in ui.handlers.fill_when_ready(page, None))
    calls = {b: fake.calls for b, fake in comparison.fakes.items()}
    seed, label, title, _chart, figures, *rest = ui.views.show_example(page, 0)
    images, cards = rest[: len(backend_ids())], rest[len(backend_ids()) : 2 * len(backend_ids())]
    assert seed == ui.handlers.EXAMPLES[0][2] and "test machine" in label and ui.handlers.EXAMPLES[0][0] in label
    assert "faster than baseline" in title
    assert all(Image.open(image).size == (TINY_SIZE, TINY_SIZE) for image in images)  # PNG files, written once
    assert all(" s** total" in card for card in cards) and len(figures["rows"]) == len(backend_ids())
    assert ui.views.show_example(page, 1)[1].startswith("_Example 2 is computed")  # the others: when no visitor waits
    restarted = ui.context.make_page(comparison, Showcase(tmp_path / "showcase", "test machine"))  # a new process
    compute_example(comparison, restarted.showcase, 0)  # finds the stored example: runs nothing
    assert {b: fake.calls for b, fake in comparison.fakes.items()} == calls
    again = ui.views.show_example(restarted, 0)
    assert again[4] == figures and again[5 : 5 + len(images)] == images
    assert Showcase(tmp_path / "showcase", "another CPU").example(comparison.rows.model, 0) is None


def test_a_visitors_comparison_is_never_kept_and_sets_the_wait_estimate(tiny_model, cache_dir, tmp_path):
    from harness.records.showcase import Showcase

    comparison = fake_comparison(tiny_model, cache_dir, **{b: {"delay": 0.2} for b in backend_ids()})
    page = ui.context.make_page(comparison, Showcase(tmp_path / "showcase", "test machine"))
    assert "No run at" in page.timings.text(comparison, SIZE, 4)
    updates = list(ui.handlers.make_generate(page)(**RUN_ARGS, progress=lambda *a, **k: None))
    assert page.showcase.example(comparison.rows.model, 0) is None  # what a visitor ran reaches no other page
    assert not (tmp_path / "showcase").exists()
    assert "Your comparison" in updates[-1][1] and updates[-1][-1] is None
    measured = sum(r["latency_s"] for r in updates[-1][4]["rows"])
    seconds, unknown = page.timings.estimate(comparison.rows.ready(), TINY_SIZE, 4)
    assert not unknown and seconds == pytest.approx(measured, rel=0.05)  # the stages add up to each latency
    doubled, _ = page.timings.estimate(comparison.rows.ready(), TINY_SIZE, 8)
    assert doubled > 1.7 * seconds  # the fakes' time is all in their steps
    assert f"{seconds:.0f} s" in page.timings.text(comparison, SIZE, 4)


def test_slider_compares_the_baseline_with_the_chosen_row(comparison):
    *_, slider, choice, kept, awaiting = run_handler(comparison)[-1]
    ready = comparison.rows.ready()
    assert set(kept) == set(ready) and awaiting is None
    assert [value for _label, value in choice.choices] == [b for b in ready if b != "baseline"]
    assert choice.value in ready and choice.value != "baseline"
    assert ui.charts.slider_pair(kept, "baseline", choice.value) == (kept["baseline"], kept[choice.value])


def test_stage_chart_has_three_stages_per_ready_row(comparison):
    figures = run_handler(comparison)[-1][4]
    chart = ui.charts.stage_chart(figures["rows"])
    assert len(chart) == 3 * len(comparison.rows.ready())
    for title, bars in chart.groupby("row"):
        row = next(r for r in figures["rows"] if r["title"] == title)
        assert bars["seconds"].sum() == pytest.approx(sum(row["stages"].values()), abs=0.003)  # rounded to ms
        assert list(bars["stage"]) == list(ui.charts.STAGE_LABELS.values())


def test_a_row_slower_than_the_baseline_is_called_slower():
    assert ui.cards.ratio_words(2.5) == "2.5× faster" and ui.cards.ratio_words(0.8) == "1.2× slower"


def test_other_cpus_tab_reads_every_committed_result():
    from harness.records.results import NOT_RECORDED, latency_tables, read_results

    reports = read_results()
    tables = latency_tables()
    assert reports and len(tables) == len(reports)
    assert all(NOT_RECORDED not in (t.date, t.command, t.cpu, t.isa) for t in tables)  # committed files: complete
    table = ui.other_cpus.other_cpus_table(tables)
    assert len(table) == sum(len(r["rows"]) for r in reports)
    assert {d.split(",")[0] for d in table["date, commit"]} == {r["date"] for r in reports}
    chart = ui.other_cpus.other_cpus_chart(
        table
    )  # one bar per CPU kind and row: no two share an x position (no stacking)
    measured = table.dropna(subset=["speed-up"])
    assert chart["CPU kind · row"].is_unique and len(chart) == len(measured.groupby(["CPU kind", "row"]))
    assert all(r["command"] in ui.other_cpus.other_cpus_sources(tables) for r in reports)
    # A row of other work (the few-step row) says so with how soon its image came, and is never a bar of speed-up.
    other = [(r["backend"], r["sooner"]) for rep in reports for r in rep["rows"] if r.get("different_work")]
    assert other, "the committed results hold a few-step row"
    for backend, sooner in other:
        lines = table[table["row"] == backend]
        assert lines["speed-up"].isna().all() and backend not in " ".join(chart["CPU kind · row"])
        assert any(r.startswith("other work") and f"{sooner:.1f}× sooner" in r for r in lines["recipe"]), lines


def test_a_results_file_of_an_older_shape_never_stops_the_page(tmp_path, monkeypatch, comparison):
    """A file with the keys the checked reader requires (cpu_kind; rows with backend and status) and nothing else of
    today's shape, or with odd types: the page is built and shows what the file has."""
    import json

    from harness.records import results

    (tmp_path / "old.json").write_text(
        json.dumps({"cpu_kind": "older-xeon", "rows": [{"backend": "baseline", "status": "ok"},
                    {"backend": "int8-tome", "status": "ok", "median_s": "12", "speedup": [2]}]})
    )  # fmt: skip
    (tmp_path / "odd.json").write_text(json.dumps({"cpu_kind": 7, "system": "x", "rows": []}))
    monkeypatch.setattr(ui.context, "latency_tables", lambda: results.latency_tables(tmp_path))
    tables = ui.context.latency_tables()
    assert [t.cpu_kind for t in tables] == ["7", "older-xeon"]
    table = ui.other_cpus.other_cpus_table(tables)
    assert list(table["row"]) == ["baseline", "int8-tome"] and table["latency (s)"].isna().all()
    assert "not recorded" in ui.other_cpus.other_cpus_sources(tables)
    ui.layout.build_demo(ui.context.make_page(comparison))  # the page is built with them


def test_health_and_system_panel(comparison):
    health = ui.system.health(ui.context.make_page(comparison))
    assert set(health["rows"]) == set(backend_ids()) and "baseline" in health["ready"] and health["standin"]
    assert health["warm"] == health["ready"]  # start-up warmed up every loaded row
    panel = ui.system.system_markdown(comparison)
    assert "CPU" in panel and "AVX" in panel and "tiny" in panel and "stand-in" in panel


def test_generate_api_returns_one_image_and_one_figure_set_per_ready_row(server, comparison):
    from gradio_client import Client

    client = Client(server, verbose=False)
    out = client.predict("cartoon bird", "", 42, False, 4, 7.5, SIZE, "dpm++", api_name="/generate")
    figures, images = out[4], out[5 : 5 + len(backend_ids())]
    ok = [r for r in figures["rows"] if r["status"] == "ok"]
    assert [r["backend"] for r in ok] == comparison.rows.ready()
    assert sum(image is not None for image in images) == len(ok)
    assert all(r["latency_s"] > 0 for r in ok)
    assert client.predict(api_name="/health")["ready"] == comparison.rows.ready()


def test_twenty_concurrent_requests_are_served_or_told_the_queue_is_full(server, comparison):
    from gradio_client import Client

    # The server trusts loopback as its proxy (conftest): twenty visitors' addresses
    clients = [Client(server, verbose=False, headers={"X-Forwarded-For": f"10.0.0.{i}"}) for i in range(20)]
    before = len(comparison.timed_sections)
    jobs = [
        client.submit(f"prompt {i}", "", i, False, 2, 7.5, SIZE, "dpm++", api_name="/generate")
        for i, client in enumerate(clients)
    ]
    served, full = 0, 0
    deadline = time.monotonic() + 600
    for job in jobs:
        try:
            job.result(timeout=max(1, deadline - time.monotonic()))
            served += 1
        except concurrent.futures.TimeoutError:
            pytest.fail("a request hung")
        except Exception as exc:  # gradio_client raises the server's "queue is full" as an error
            assert "queue" in str(exc).lower() and "full" in str(exc).lower(), exc
            full += 1
    assert served + full == 20 and served >= 1
    print(f"load test: {served} served, {full} told the queue is full")
    sections = sorted(comparison.timed_sections[before:], key=lambda s: s[1])
    assert len(sections) == served * len(comparison.rows.ready())
    for (_, _, end), (_, start, _) in zip(sections[:-1], sections[1:], strict=True):
        assert end <= start, "two rows' timed sections overlapped"
    assert clients[0].predict("after the load", "", 1, False, 2, 7.5, SIZE, "dpm++", api_name="/generate")[4]["rows"]


def test_row_failing_mid_request_shows_its_error_in_the_ui(tiny_model, cache_dir):
    comparison = fake_comparison(tiny_model, cache_dir, **{"ipex-bf16": {"fail_on": {1}}})
    _seed, _message, _title, _chart, figures, *rest = run_handler(comparison)[-1]
    cards = rest[len(backend_ids()) : 2 * len(backend_ids())]
    assert "injected failure" in cards[1] and "error" in cards[1]
    assert [r["status"] for r in figures["rows"]] == ["ok", "error"] + ["ok"] * (len(backend_ids()) - 2)
    assert all(r["status"] == "ok" for r in run_handler(comparison)[-1][4]["rows"])


def test_the_page_is_served_while_the_model_downloads_and_shows_its_progress(tiny_model, cache_dir):
    import threading
    import urllib.request

    from gradio_client import Client

    from core.request import LoadSettings
    from harness.compare.comparison import Comparison
    from harness.compare.rows import RowSet

    release = threading.Event()

    def slow_download(progress):
        progress("downloading some-org/some-model: 1.23 GB so far")
        assert release.wait(120), "the test never released the download"
        return tiny_model

    rows = RowSet(None, ["baseline"], LoadSettings((TINY_SIZE,), 2, cache_dir), resolve=slow_download)
    comparison = Comparison(rows)
    comparison.load_in_background()
    demo = ui.layout.build_demo(ui.context.make_page(comparison))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        assert urllib.request.urlopen(url, timeout=30).status == 200
        assert "1.23 GB so far" in ui.cards.model_banner(comparison)
        health = Client(url, verbose=False).predict(api_name="/health")
        assert health["model"] is None and health["ready"] == []
        assert "downloading some-org/some-model" in health["rows"]["baseline"]
        release.set()
        deadline = time.monotonic() + 120
        while comparison.rows.ready() != ["baseline"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert comparison.rows.ready() == ["baseline"] and "stand-in" in ui.cards.model_banner(comparison)
    finally:
        release.set()
        demo.close()


def test_download_progress_counts_the_bytes_arriving_in_the_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from harness.models.model_sources import _reporting_download_size

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    blobs = tmp_path / "models--org--model" / "blobs"
    blobs.mkdir(parents=True)
    lines = []
    with _reporting_download_size("org/model", lines.append):
        (blobs / "abc.incomplete").write_bytes(b"x" * 30_000_000)
        time.sleep(2.5)
    assert lines and lines[-1] == "downloading org/model: 0.03 GB so far"


def test_a_row_this_cpu_cannot_run_shows_its_committed_figure_from_cpus_that_ran_it(tmp_path, comparison):
    import json

    from harness.records.results import latency_tables

    def write(name, kind, date, median):
        rows = [{"backend": "ipex-bf16", "status": "ok", "median_s": median, "speedup": 3.7}]
        record = {"cpu_kind": kind, "date": date, "model": "sd15-standin", "size": 512, "steps": 20, "rows": rows}
        (tmp_path / name).write_text(json.dumps(record))

    write("a.json", "intel-xeon-amx", "2026-11-29", 40.5)
    write("b.json", "intel-xeon-amx", "2026-11-01", 55.0)  # older file of the same kind: not shown
    write("c.json", "amd-epyc-avx2-played", "2026-11-30", 1.0)  # a played kind is not that kind's figure
    lines = ui.cards.measured_elsewhere(latency_tables(tmp_path), "ipex-bf16")
    assert len(lines) == 1 and "**intel-xeon-amx** (2026-11-29, `a.json`): 40.5 s" in lines[0]
    assert "3.7× faster than that run's baseline" in lines[0]
    assert ui.cards.measured_elsewhere(latency_tables(tmp_path), "baseline") == []
    ipex = ui.cards.card_markdown(comparison, "ipex-bf16", None, latency_tables(tmp_path))
    if comparison.rows.runs_here("ipex-bf16"):
        assert "Not on this CPU" not in ipex and "Measured on" not in ipex
    else:  # this CPU cannot run it: its card says what it needs and what it did where it ran
        assert "**Not on this CPU**: IPEX bf16 needs" in ipex and "40.5 s for sd15-standin" in ipex
