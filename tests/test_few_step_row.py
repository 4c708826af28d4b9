"""The few-step row (issue 28), on its stand-ins: an LCM-LoRA and TAESD built locally with random weights, laid out
like the real repositories, loaded through diffusers' own loaders; labelled as other work wherever it shows."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import TINY_SIZE

import ui.cards
import ui.charts
from backends.few_step_weights import LCM_LORA, LORA_FILE, lcm_lora, taesd
from core.request import GenerationRequest, initial_latents
from harness.models.model_sources import ModelSource

REQUEST = GenerationRequest("sailing ship in storm by Rembrandt", seed=42, steps=8, height=TINY_SIZE, width=TINY_SIZE)
ROW = "lcm-taesd"


def test_the_row_loads_its_stand_ins_through_the_real_repositories_layout(comparison, tiny_model, cache_dir):
    """The LoRA stand-in is a `pytorch_lora_weights.safetensors` (what the LCM-LoRA repository holds and diffusers'
    `load_lora_weights` reads), TAESD's a diffusers AutoencoderTiny directory; the row's IR has TAESD as its VAE
    decoder and a UNet of batch 1 (guidance off)."""
    assert comparison.rows.status[ROW].state == "ready", comparison.rows.status[ROW].describe()
    lora_dir, _ = lcm_lora(tiny_model, cache_dir, print)
    taesd_dir, _ = taesd(tiny_model, cache_dir, print)
    assert (lora_dir / LORA_FILE).is_file()
    assert {"config.json", "diffusion_pytorch_model.safetensors"} <= {p.name for p in taesd_dir.iterdir()}
    backend = comparison.rows.backends[ROW]
    ir = backend.ir_dirs[TINY_SIZE]
    assert json.loads((ir / "vae_decoder" / "config.json").read_text())["_class_name"] == "AutoencoderTiny"
    unet = backend.pipes[TINY_SIZE].unet.model
    assert [tuple(i.get_partial_shape().to_shape())[0] for i in unet.inputs if i.get_any_name() == "sample"] == [1]
    assert backend.steps == 4
    # The UNet in int8 (the int8 row's machinery: NNCF's FakeQuantize on its activations), calibrated as it runs: the
    # IR on disk was saved from the calibration pipeline, one UNet batch (guidance off) at this size.
    import openvino as ov

    saved = ov.Core().read_model(ir / "unet" / "openvino_model.xml")
    assert sum(op.get_type_name() == "FakeQuantize" for op in saved.get_ops()) > 0
    assert saved.input("sample").get_partial_shape().to_shape()[0] == 1
    assert "UNet int8" in comparison.rows.status[ROW].load.precision


def test_it_starts_from_every_rows_noise_and_runs_its_own_few_steps_without_guidance(comparison, monkeypatch):
    """Same latents as every row; its own step count (4) and guidance 1, whatever the request's 8 steps and 7.5."""
    backend = comparison.rows.backends[ROW]
    seen = {}
    generate = type(backend).generate

    def spy(self, request, latents, on_step, on_stage):
        seen["latents"], steps = latents.clone(), []
        image = generate(
            self, request, latents, lambda s, total: steps.append((s, total)) or on_step(s, total), on_stage
        )
        seen["steps"] = steps
        return image

    monkeypatch.setattr(type(backend), "generate", spy)
    rows = {r.backend: r for r in comparison.run(REQUEST)}
    assert seen["latents"].equal(initial_latents(REQUEST.seed, TINY_SIZE, TINY_SIZE))
    assert seen["steps"] == [(i, 4) for i in range(1, 5)]
    row = rows[ROW]
    assert row.status == "ok" and row.image.shape == (TINY_SIZE, TINY_SIZE, 3)


def test_it_is_labelled_as_other_work_on_its_card_the_headline_the_chart_and_the_benchmark(comparison):
    """No speed-up, no PSNR/SSIM, no headline claim: how soon its image came, with the words of its work."""
    rows = [r.figures() for r in comparison.run(REQUEST)]
    row = next(r for r in rows if r["backend"] == ROW)
    assert "not the same work" in row["different_work"] and "4 steps" in row["different_work"]
    assert row["speedup"] is None and row["psnr_db"] is None and row["ssim"] is None and row["sooner"] > 0
    card = ui.cards.card_markdown(comparison, ROW, row)
    assert "an image in" in card and "sooner than the baseline" in card and "faster" not in card
    assert "not the same work" in card and "PSNR " not in card
    headline = ui.cards.headline(rows, comparison.rows.reference)
    first = headline.split("\n")[0]
    assert comparison.rows.titles[ROW] not in first or first.startswith("### Other work")
    assert "### Other work: " in headline and "sooner than the baseline's image" in headline
    chart = ui.charts.latency_chart(rows, comparison.rows.reference)
    assert list(chart.loc[chart["row"] == comparison.rows.titles[ROW], "kind"]) == ["other work"]
    # The benchmark's figures: the paired ratio becomes "sooner", never a speed-up.
    from benchmarking.latency import compare_with_reference
    from benchmarking.report import speedup_text

    bench = [
        {"backend": "baseline", "status": "ok", "reference": True, "median_s": 2.0, "speedups": [1.0],
         "speedup_range": [1.0, 1.0]},
        {"backend": ROW, "status": "ok", "median_s": 0.2, "speedups": [9.0, 10.0, 11.0], "speedup_range": [9.0, 11.0],
         "different_work": row["different_work"]},
    ]  # fmt: skip
    image = comparison.run(REQUEST).__next__().image
    compare_with_reference(bench, {"baseline": image, ROW: image})
    assert bench[1]["speedup"] is None and bench[1]["sooner"] == 10.0 and bench[1]["psnr_db"] is None
    assert speedup_text(bench[1]).startswith("other work: an image 10.00x sooner")


def test_a_real_model_without_the_hub_leaves_the_row_unavailable_naming_what_it_needs(
    tiny_model, tmp_path, monkeypatch
):
    """A real (not stand-in) model: the LoRA comes from the Hub, like the model; without the Hub the row says which
    repository it could not have (the other rows are untouched: the harness marks this one unavailable)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache: nothing to fall back on
    local = tmp_path / "model"
    shutil.copytree(tiny_model.path, local)
    real = ModelSource("some/model", str(local), local, "local-rev", standin=False)
    with pytest.raises(RuntimeError, match=LCM_LORA):
        lcm_lora(real, tmp_path / "cache", print)


def test_the_page_groups_it_apart_and_labelled_on_a_desktop_and_a_phone(server, comparison, browser):
    """In Chromium: the row sits in a group of its own below the same-work rows, headed "Other work", its card saying
    how soon its image came; on a phone too, before the controls."""
    title = comparison.rows.titles[ROW]
    for width in (1400, 390):
        visitor = browser.new_page(viewport={"width": width, "height": 1200})
        visitor.goto(server)
        visitor.get_by_text("Built-in example 1").first.wait_for(timeout=60_000)
        heading = visitor.locator(".other-work-header:not(.other-work-header *)")
        assert heading.count() == 1 and "Other work" in heading.inner_text()
        card = visitor.locator(".row-card:not(.row-card *)").filter(has_text=title)
        card.first.wait_for(timeout=60_000)
        assert "an image in" in card.first.inner_text() and "not the same work" in card.first.inner_text()
        baseline = visitor.locator(".row-card:not(.row-card *)").filter(has_text=comparison.rows.titles["baseline"])
        assert heading.bounding_box()["y"] > baseline.first.bounding_box()["y"]
        assert card.first.bounding_box()["y"] > heading.bounding_box()["y"]
        if width == 390:
            prompt = visitor.get_by_label("Prompt", exact=True).bounding_box()
            assert card.first.bounding_box()["y"] < prompt["y"]
        visitor.close()


def test_the_row_is_its_own_file_and_one_registry_line():
    """As a sixth row is (`test_sixth_row.py`): no code outside `backends/` names it; the page, the harness and the
    benchmark know it only through the registry and the class attributes every row has (`different_work` included)."""
    from pathlib import Path

    import backends

    root = Path(__file__).resolve().parent.parent
    assert backends.REGISTRY[ROW] == "backends.lcm_taesd:LcmTaesd"
    tops = [d for d in root.iterdir() if d.is_dir() and d.name not in ("backends", "tests") and d.name[0] != "."]
    code = [*root.glob("*.py"), *(p for d in tops for p in d.rglob("*.py"))]
    code += [
        root / name for name in ("Makefile", "Dockerfile", *(str(p.relative_to(root)) for p in root.glob("scripts/*")))
    ]
    naming = [str(p.relative_to(root)) for p in code if any(n in p.read_text() for n in (ROW, "lcm_taesd", "LcmTaesd"))]
    assert not naming, naming
    inside = [p.name for p in (root / "backends").glob("*.py") if ROW in p.read_text() or "LcmTaesd" in p.read_text()]
    assert sorted(inside) == ["__init__.py", "lcm_taesd.py"], inside
