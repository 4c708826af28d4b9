"""The first visitors after a start, on a machine made slow on purpose: requests sent from the first second get every
row's answer, and nothing a request does runs beside the start-up's loading (no row timed beside another's
loading, no headline from such a ratio, no library imported from two threads at once)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from conftest import TINY_SIZE, fake_comparison, free_port
from test_public import client, overlapping, serve

import ui.cards
import ui.context
from backends import backend_ids
from harness.records.examples import EXAMPLES
from harness.settings import Settings

SIZE = f"{TINY_SIZE}x{TINY_SIZE}"
SLOW_START = Path(__file__).with_name("slow_start.py")
ROOT = SLOW_START.parent.parent


def wait_for_server(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.1)


def test_an_api_request_sent_as_loading_starts_waits_and_times_nothing_beside_it(tiny_model, cache_dir):
    """Rows take a second each to load; a request arrives before the first is loaded. It runs nothing (not even the
    truncation note's tokenizer) until every row is loaded and warm, then every row is timed cleanly."""
    # The baseline the slowest row, so that a headline is due (fake rows are otherwise equally fast, and a baseline
    # that came out fastest drew none: the check below was a coin toss)
    slowness = {b: {"load_delay": 1.0, "delay": 0.3 if b == "baseline" else 0.05} for b in backend_ids()}
    comparison = fake_comparison(tiny_model, cache_dir, load=False, **slowness)
    started = []
    truncation = comparison.truncation
    comparison.truncation = lambda request: started.append(time.perf_counter()) or truncation(request)
    demo, url = serve(ui.context.make_page(comparison, settings=Settings(queue_size=4)))
    try:
        comparison.load_in_background()
        out = client(url).predict("bird", "", 3, False, 2, 7.5, SIZE, "dpm++", api_name="/generate")
        rows = out[4]["rows"]
        assert [r["status"] for r in rows] == ["ok"] * len(backend_ids()), rows
        assert not any(r["inflated_by"] for r in rows) and "latency inflated" not in str(rows)
        assert out[2].startswith("# ") and "faster than baseline" in out[2]  # a headline, from clean ratios
        loads = comparison.rows.load_log
        assert len(loads) == len(backend_ids()) and started and started[0] >= max(end for _, _, end in loads)
        assert not overlapping(comparison.timed_sections, loads)
    finally:
        demo.close()


def test_no_headline_is_drawn_from_a_ratio_timed_beside_loading():
    rows = [
        {"backend": "baseline", "title": "b", "status": "ok", "speedup": 1.0, "inflated_by": ["int8-tome"]},
        {"backend": "openvino-static", "title": "OpenVINO", "status": "ok", "speedup": 6.4, "inflated_by": []},
    ]
    shown = ui.cards.headline(rows, "baseline")
    assert not shown.startswith("#") and "6.4" not in shown and "not clean" in shown
    rows[0]["inflated_by"] = []
    assert ui.cards.headline(rows, "baseline").startswith("# OpenVINO: 6.4× faster")


def test_api_requests_from_the_first_second_of_a_slow_fresh_start_get_every_row(cache_dir, tmp_path):
    """The real app (`app.main`) started in a process of its own, its rows' loading slowed by 3 s each: two visitors
    (through a trusted local proxy's header) send their comparison through the API as soon as the server answers.
    Both get every row's verdict, none timed beside loading, and the log has no traceback (the first request after
    a start used to fail on an import racing the loader's)."""
    port = free_port()
    log_path = tmp_path / "app.log"
    env = {**os.environ, "SBS_TEST_LOAD_DELAY": "3", "PYTHONPATH": str(SLOW_START.parent.parent)}
    flags = ["--model", "tiny", "--cache-dir", str(cache_dir), "--threads", "2", "--calibration-prompts", "2",
             "--port", str(port), "--trusted-proxies", "127.0.0.1"]  # fmt: skip
    with log_path.open("w") as log:
        command = [sys.executable, str(SLOW_START), *flags]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=SLOW_START.parent.parent)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_server(url, process, log_path)
        answers: dict[str, object] = {}

        def visit(address: str) -> None:
            try:
                answers[address] = client(url, address).predict(
                    "a lighthouse at dusk", "", 5, False, 4, 7.5, SIZE, "dpm++", api_name="/generate"
                )
            except Exception as exc:  # the answer is checked below, with the log
                answers[address] = exc

        visitors = [threading.Thread(target=visit, args=(a,)) for a in ("203.0.113.7", "198.51.100.9")]
        for visitor in visitors:
            visitor.start()
        for visitor in visitors:
            visitor.join(timeout=900)
        health = client(url).predict(api_name="/health")
    finally:
        process.terminate()
        process.wait(timeout=60)
    log_text = log_path.read_text()
    assert "slowed" in log_text  # the delay was in force
    assert "Traceback" not in log_text and "ImportError" not in log_text, log_text[-5000:]
    for address, out in answers.items():
        assert not isinstance(out, Exception), f"{address}: {out}\n{log_text[-3000:]}"
        rows = {r["backend"]: r for r in out[4]["rows"]}
        for backend_id, state in health["rows"].items():
            expected = "skipped" if state.startswith("unavailable: not on this CPU") else "ok"
            assert rows[backend_id]["status"] == expected, (address, backend_id, rows[backend_id], state)
        assert not any(r["inflated_by"] for r in rows.values()), (address, rows)
        assert out[2].startswith("# "), (address, out[2])


def test_make_demo_opens_on_the_first_examples_images_from_the_default_cache_directory(cache_dir, browser):
    """`make demo`'s start (scripts/start.sh) with the cache where users have it, `~/.cache/sd-side-by-side` (a home
    outside the temporary and working directories, the only ones Gradio serves by default): the page opens on the
    first example's images once the rows are warm, and the log has no refused file."""
    home = Path(tempfile.mkdtemp(prefix="sbs-home-", dir="/var/tmp"))
    try:
        default_cache = home / ".cache" / "sd-side-by-side"
        default_cache.mkdir(parents=True)
        for built in ("standins", "ir", "torchinductor"):  # the session's builds, so the start is a restart's
            if (cache_dir / built).exists():
                shutil.copytree(cache_dir / built, default_cache / built, symlinks=True)
        port = free_port()
        log_path = home / "app.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SBS_")}
        env.update(HOME=str(home), PYTHON=sys.executable)
        command = ["bash", "scripts/start.sh", "--model", "tiny", "--port", str(port), "--calibration-prompts", "2"]
        with log_path.open("w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        url = f"http://127.0.0.1:{port}/"
        try:
            wait_for_server(url, process, log_path)
            visitor = browser.new_page(viewport={"width": 1400, "height": 1400})
            visitor.goto(url)
            try:
                visitor.get_by_text("Built-in example 1").first.wait_for(timeout=300_000)
            except Exception as exc:
                raise AssertionError(f"no example on the page; the app's log:\n{log_path.read_text()[-5000:]}") from exc
            health = client(url).predict(api_name="/health")
            runs_here = [b for b, state in health["rows"].items() if not state.startswith("unavailable")]
            visitor.wait_for_function(
                f"document.querySelectorAll('.row-image img').length >= {len(runs_here)}", timeout=30_000
            )
            assert visitor.inner_text("body").count(" s total") == len(runs_here)
        finally:
            process.terminate()
            process.wait(timeout=60)
        log_text = log_path.read_text()
        assert str(default_cache / "showcase") in str(list((default_cache / "showcase").glob("*/run.json")))
        assert "InvalidPathError" not in log_text and "Traceback" not in log_text, log_text[-5000:]
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_page_opens_on_an_example_with_a_broken_row_marked(tiny_model, tmp_path, browser):
    """One row fails in every run: the first example is kept without it, its card says why, the page says what is
    missing, and the example is computed again (with a backoff) while that row is ready."""
    from harness.records.examples import compute_examples, make_showcase

    comparison = fake_comparison(tiny_model, tmp_path, **{"openvino-static": {"fail_on": set(range(1, 100))}})
    page = ui.context.make_page(comparison, make_showcase(comparison), settings=Settings())
    attempts = []
    run = comparison.run
    comparison.run = lambda request, **kw: attempts.append(request.prompt) or run(request, **kw)
    computing = threading.Thread(
        target=compute_examples, args=(comparison, page.showcase, lambda: False), kwargs={"retry_s": 0.5}, daemon=True
    )
    computing.start()
    demo, url = serve(page)
    try:
        visitor = browser.new_page(viewport={"width": 1400, "height": 1400})
        visitor.goto(url)
        visitor.get_by_text("Built-in example 1").first.wait_for(timeout=60_000)
        visitor.get_by_text("Missing from this example: fake openvino-static").wait_for(timeout=10_000)
        body = visitor.inner_text("body")
        assert body.count(" s total") == len(backend_ids()) - 1 and "injected failure" in body
        assert visitor.locator(".row-image img").count() == len(backend_ids()) - 1
        deadline = time.monotonic() + 30
        while attempts.count(EXAMPLES[0][0]) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert attempts.count(EXAMPLES[0][0]) >= 3  # tried again, and again after a longer wait
    finally:
        demo.close()
