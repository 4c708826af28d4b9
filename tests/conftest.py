"""Shared fixtures: the `tiny` stand-in and a comparison with every row loaded, built once per test session."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from backends import backend_class, backend_ids
from backends.base import LoadInfo
from core.cpu import this_cpu
from core.request import LoadSettings
from harness.compare.comparison import Comparison
from harness.compare.rows import RowSet
from harness.models.model_sources import resolve_model
from harness.records.examples import compute_example
from harness.records.showcase import Showcase
from harness.settings import Settings, build_comparison

TINY_SIZE = 128
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    # SBS_TEST_CACHE lets a developer reuse stand-ins and IR between runs; CI starts empty.
    return Path(os.environ.get("SBS_TEST_CACHE") or tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def tiny_settings(cache_dir) -> Settings:
    return Settings(model="tiny", cache_dir=str(cache_dir), threads=2, calibration_prompts=2, steps=20)


@pytest.fixture(scope="session")
def tiny_model(cache_dir):
    return resolve_model("tiny", cache_dir)


@pytest.fixture(scope="session")
def comparison(tiny_settings) -> Comparison:
    comparison = build_comparison(tiny_settings)
    comparison.load_all()
    return comparison


def ready_or_skip(comparison: Comparison, backend_id: str) -> None:
    """Skip only where the CPU capability model says this CPU cannot run the row; any other unavailability fails."""
    support = backend_class(backend_id).support(this_cpu())
    status = comparison.rows.status[backend_id]
    if not support.runs:
        assert status.state == "unavailable", f"{backend_id} loaded although the CPU model says: {support.reason}"
        pytest.skip(f"{backend_id} cannot run on this CPU: {support.reason}")
    assert status.state == "ready", f"{backend_id} should run on this CPU ({support.how}) but is {status.describe()}"


class FakeBackend:
    """A stand-in row for app-level tests: a real (cheap) computation from the latents, so identical inputs
    give identical images; optionally raises on chosen calls, for fault injection."""

    title = "fake"

    def __init__(self, backend_id: str, fail_on: set[int] | None = None, delay: float = 0.0, load_delay: float = 0.0):
        self.id = backend_id
        self.load_delay = load_delay
        self.title = f"fake {backend_id}"
        self.fail_on = fail_on or set()
        self.delay = delay
        self.calls = 0
        self.runs: list[tuple[str, float, float]] = []  # (prompt, start, end) of every call, warm-ups included

    def load(self, model, settings, progress):
        import time

        progress("fake load")
        time.sleep(self.load_delay)
        return LoadInfo(precision="fake")

    def generate(self, request, latents, on_step, on_stage):
        import time

        start = time.perf_counter()
        if request.prompt != "warm-up":  # count visitor requests only
            self.calls += 1
        if self.calls in self.fail_on and request.prompt != "warm-up":
            raise RuntimeError(f"injected failure on call {self.calls}")
        on_stage("text_encoding", start, time.perf_counter())
        for step in range(request.steps):
            time.sleep(self.delay / max(1, request.steps))
            on_step(step + 1, request.steps)
        decode = time.perf_counter()
        x = latents[0, :3].numpy()
        img = np.kron(1 / (1 + np.exp(-x)), np.ones((8, 8)))  # upsample the latent 8x to image size
        on_stage("vae_decoding", decode, time.perf_counter())
        self.runs.append((request.prompt, start, time.perf_counter()))
        return np.transpose(img, (1, 2, 0)).astype(np.float32)


def make_comparison(model, backend_ids, settings, factory=None, safety_checker=True) -> Comparison:
    """A comparison of real (or, with `factory`, chosen) rows, not loaded yet."""
    return Comparison(RowSet(model, list(backend_ids), settings, factory=factory), safety_checker=safety_checker)


def fake_comparison(tiny_model, cache_dir, backends=None, load=True, **fake_kwargs) -> Comparison:
    """A Comparison of FakeBackends (loaded and warmed up unless `load=False`); `comparison.fakes` holds them."""
    backends = backends or backend_ids()
    fakes = {b: FakeBackend(b, **fake_kwargs.get(b, {})) for b in backends}
    comparison = make_comparison(
        tiny_model, backends, LoadSettings(sizes=(TINY_SIZE,), threads=2, cache_dir=cache_dir), lambda b: fakes[b]
    )
    comparison.fakes = fakes
    if load:
        comparison.load_all()
    return comparison


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    from test_browser import BROWSER_ARGS, CHROMIUM

    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is not installed: run `make setup-dev` (scripts/install.sh --dev)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def app_page(comparison, tmp_path_factory):
    import ui.context
    import ui.layout

    # As behind a local reverse proxy (trusted: its X-Forwarded-For names the visitor), so that tests can be
    # several visitors.
    settings = Settings(queue_size=8, trusted_proxies="127.0.0.1")
    page = ui.context.make_page(comparison, Showcase(tmp_path_factory.mktemp("showcase"), "test machine"), settings)
    compute_example(comparison, page.showcase, 0)  # what the app computes once the rows are warm
    return page


@pytest.fixture(scope="session")
def server(app_page):
    import ui.context
    import ui.layout

    demo = ui.layout.build_demo(app_page)
    port = free_port()
    ui.layout.launch(app_page, demo, port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
