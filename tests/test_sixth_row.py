"""A row defined only here and registered here runs through the comparison, the benchmark's latency table and the
page with no line changed elsewhere: what a row is lives in its own file (here, this one)."""

from __future__ import annotations

import json

import gradio as gr
import pytest
from conftest import TINY_SIZE

import backends
import benchmark
import ui.context
import ui.handlers
import ui.layout
import ui.system
from backends.baseline import load_diffusers_pipeline
from backends.pipeline import run_pipeline
from core.cpu import Cpu, RowSupport
from harness.settings import Settings, build_comparison

ROW_ID = "sliced-attention"


class SlicedAttention:
    """Plain diffusers in fp32 with attention computed one slice at a time (`enable_attention_slicing`)."""

    id = ROW_ID
    title = "PyTorch fp32, sliced attention"
    framework = "pytorch"

    @classmethod
    def support(cls, cpu: Cpu) -> RowSupport:
        return RowSupport(True, "fp32, attention in slices", compute="fp32")

    def load(self, model, settings, progress):
        self.pipe = load_diffusers_pipeline(model, progress)
        self.pipe.enable_attention_slicing()
        self.scheduler_config = settings.scheduler_config
        return backends.LoadInfo(precision="fp32, sliced attention")

    def generate(self, request, latents, on_step, on_stage):
        return run_pipeline(self.pipe, self.scheduler_config, request, latents, on_step, on_stage)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(backends.REGISTRY, ROW_ID, f"{__name__}:SlicedAttention")


def settings_with_the_row(cache_dir) -> Settings:
    return Settings(model="tiny", backends=f"baseline,{ROW_ID}", cache_dir=str(cache_dir), threads=2)


def test_the_row_runs_through_the_comparison_and_the_page(registered, cache_dir):
    comparison = build_comparison(settings_with_the_row(cache_dir))
    comparison.load_all()
    assert comparison.rows.ready() == ["baseline", ROW_ID] and comparison.rows.reference == "baseline"
    page = ui.context.make_page(comparison)
    generate = ui.handlers.make_generate(page)
    args = dict(prompt="cartoon bird", negative_prompt="", seed=42, random_seed=False, steps=3, guidance=7.5)
    final = list(generate(**args, size=f"{TINY_SIZE}x{TINY_SIZE}", scheduler="dpm++", progress=lambda *a, **k: None))
    figures = final[-1][4]["rows"]
    row = next(r for r in figures if r["backend"] == ROW_ID)
    assert row["status"] == "ok" and row["speedup"] > 0 and row["psnr_db"] > 40  # same computation, sliced
    cards = final[-1][5 + 2 : 5 + 4]
    assert "PyTorch fp32, sliced attention" in cards[1] and " s** total" in cards[1]
    assert "fp32, attention in slices" in ui.system.system_markdown(comparison)  # the row's own answer, on the page
    demo = ui.layout.build_demo(page)  # the page has a column for it: its image and its card
    components = list(demo.blocks.values())
    title = comparison.rows.titles[ROW_ID]
    images = [c.label for c in components if isinstance(c, gr.Image) and "row-image" in (c.elem_classes or [])]
    assert images == [comparison.rows.titles["baseline"], title]
    assert any(isinstance(c, gr.Markdown) and f"### {title}" in (c.value or "") for c in components)
    assert title == "PyTorch fp32, sliced attention"


def test_the_row_is_a_line_of_the_benchmarks_latency_table(registered, cache_dir, tmp_path):
    out = tmp_path / "bench.json"
    benchmark.main(["--model", "tiny", "--size", str(TINY_SIZE), "--steps", "3", "--passes", "1", "--threads", "2",
                    "--backends", f"baseline,{ROW_ID}", "--cache-dir", str(cache_dir), "--json", str(out)])  # fmt: skip
    rows = {r["backend"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["baseline"]["reference"] and not rows[ROW_ID]["reference"]
    assert rows[ROW_ID]["status"] == "ok" and rows[ROW_ID]["speedup"] > 0 and rows[ROW_ID]["compute"] == "fp32"
