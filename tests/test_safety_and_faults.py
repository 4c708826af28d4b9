"""Safety checker applied outside the timed section; a killed export leaves nothing a restart would trust."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from conftest import TINY_SIZE, fake_comparison, make_comparison

from core.build_cache import BuildCache
from core.request import GenerationRequest, LoadSettings
from harness.models.model_sources import ModelSource

REPO = Path(__file__).resolve().parent.parent


def model_with_safety_checker(tiny_model, root: Path, flags_everything: bool = False) -> ModelSource:
    """The tiny stand-in plus a random-weight StableDiffusionSafetyChecker, listed in model_index.json. Its concept
    thresholds are set beyond the cosine range, so it flags every image (`flags_everything`) or none."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    path = root / f"tiny-with-safety-{flags_everything}"
    shutil.copytree(tiny_model.path, path)
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=768,
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(0)
        checker = StableDiffusionSafetyChecker(config)
    threshold = -2.0 if flags_everything else 2.0  # cosine similarities lie in [-1, 1]
    checker.concept_embeds_weights.data.fill_(threshold)
    checker.special_care_embeds_weights.data.fill_(threshold)
    checker.save_pretrained(path / "safety_checker")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        path / "feature_extractor"
    )
    index = json.loads((path / "model_index.json").read_text())
    index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
    index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
    (path / "model_index.json").write_text(json.dumps(index))
    return ModelSource("test", "tiny-with-safety", path, "local", standin=True)


def test_safety_checker_runs_on_every_row_outside_the_timed_section(tiny_model, tmp_path, monkeypatch):
    model = model_with_safety_checker(tiny_model, tmp_path)
    settings = LoadSettings(sizes=(TINY_SIZE,), threads=2, cache_dir=tmp_path)
    comparison = make_comparison(model, ["baseline"], settings)
    comparison.load_all()
    assert comparison.safety is not None
    calls = []
    original = comparison.safety.__call__

    def spy(image):
        calls.append(time.perf_counter())
        return original(image)

    monkeypatch.setattr(comparison, "safety", spy)
    (row,) = comparison.run(GenerationRequest("cartoon bird", steps=2, height=TINY_SIZE, width=TINY_SIZE))
    assert row.status == "ok" and len(calls) == 1
    assert calls[0] >= row.timed[1]  # after the timed section ended
    assert row.image.any() and "blanked" not in row.message  # this checker flags nothing

    off = make_comparison(model, ["baseline"], settings, safety_checker=False)
    off.load_all()
    assert off.safety is None


def test_a_flagged_image_is_blanked_and_the_card_says_so(tiny_model, tmp_path):
    model = model_with_safety_checker(tiny_model, tmp_path, flags_everything=True)
    comparison = make_comparison(model, ["baseline"], LoadSettings(sizes=(TINY_SIZE,), threads=2, cache_dir=tmp_path))
    comparison.load_all()
    (row,) = comparison.run(GenerationRequest("cartoon bird", steps=2, height=TINY_SIZE, width=TINY_SIZE))
    assert row.status == "ok" and row.flagged and not row.image.any() and "flagged this image" in row.message


def test_one_flagged_row_blanks_every_row_and_fidelity_is_measured_before(tiny_model, cache_dir, tmp_path):
    """The checker flags only the second row's image: the page shows no row's image, and the figures compare
    the unfiltered images (identical here: the fake rows compute the same image)."""
    from PIL import Image

    import ui.context
    import ui.handlers
    import ui.views
    from harness.records.examples import compute_example
    from harness.records.showcase import Showcase

    comparison = fake_comparison(tiny_model, cache_dir)
    second = comparison.rows.order[1]
    n = len(comparison.rows.order)
    second_flagged = [False, True] + [False] * (n - 2)
    verdicts = iter(second_flagged * 2)
    comparison.safety = lambda image: (image, next(verdicts))
    rows = list(comparison.run(GenerationRequest("cartoon bird", steps=2, height=TINY_SIZE, width=TINY_SIZE)))
    assert [r.flagged for r in rows] == second_flagged
    assert [r.blanks_all for r in rows] == second_flagged
    assert all(not r.image.any() for r in rows[1:])
    # Fidelity of the same work only: the few-step row's image is another model's (its figure is "sooner").
    assert all(r.psnr_db == 100.0 for r in rows[1:] if not r.different_work)
    assert "another row's image" in rows[2].message and "this image" in rows[1].message
    page = ui.context.make_page(comparison, Showcase(tmp_path / "showcase", "test machine"))
    generate = ui.handlers.make_generate(page)
    final = list(generate("cartoon bird", "", 42, False, 2, 7.5, f"{TINY_SIZE}x{TINY_SIZE}", "dpm++",
                          progress=lambda *a, **k: None))[-1]  # fmt: skip
    images = final[5 : 5 + len(rows)]
    assert all(image is not None and not np.asarray(Image.open(image)).any() for image in images), second
    assert "every row's image is blanked" in final[1]
    verdicts = iter(second_flagged * 2)
    kept = compute_example(comparison, page.showcase, 0)  # an example the checker flags is kept blanked too
    assert len(kept.images) == len(rows)
    assert all(not np.asarray(Image.open(image)).any() for image in kept.images.values())


def test_killing_the_app_during_an_export_leaves_no_trusted_entry(tiny_model, tmp_path):
    script = (
        "from pathlib import Path\n"
        "from core.request import LoadSettings\n"
        "from harness.compare.comparison import Comparison\n"
        "from harness.compare.rows import RowSet\n"
        "from harness.models.model_sources import ModelSource\n"
        "if __name__ == '__main__':\n"
        f"    m = ModelSource('tiny', 'tiny', Path({str(tiny_model.path)!r}), {tiny_model.revision!r}, True)\n"
        f"    s = LoadSettings(({TINY_SIZE},), 2, Path({str(tmp_path)!r}))\n"
        "    Comparison(RowSet(m, ['openvino-static'], s)).load_all()\n"
    )
    app = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, start_new_session=False)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "ir").glob("*.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    partial = list((tmp_path / "ir").glob("*.tmp-*"))
    assert partial, "the export never started"
    time.sleep(2)  # well inside the export
    os.kill(app.pid, signal.SIGKILL)
    app.wait()
    entries = [p for p in (tmp_path / "ir").iterdir() if ".tmp-" not in p.name and p.suffix != ".lock"]
    assert entries == []  # nothing was renamed into place
    time.sleep(1.5)  # the export child dies with its parent (PR_SET_PDEATHSIG); its lease is 1.5 s old
    BuildCache(tmp_path / "ir", lease_stale_s=1.0)  # a restart, once the lease is stale, clears what it left
    assert [p for p in (tmp_path / "ir").iterdir() if p.suffix != ".lock"] == []


def test_a_half_written_results_file_and_a_foreign_run_json_are_skipped(tiny_model, cache_dir, tmp_path, caplog):
    """Damaged files never stop the app: the other-CPU tab skips a results file it cannot read, and a kept
    example of another shape is ignored (the example is computed again)."""
    import logging
    import shutil

    import ui.context
    import ui.handlers
    from harness.records.examples import compute_example
    from harness.records.results import RESULTS, read_results
    from harness.records.showcase import Showcase

    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    whole = sorted(results.glob("sd15-standin-*.json"))[0]
    (results / "half-written.json").write_text(whole.read_text()[: len(whole.read_text()) // 2])
    (results / "foreign.json").write_text(json.dumps({"cpu_kind": "x", "rows": [{"no": "backend"}]}))
    with caplog.at_level(logging.WARNING):
        reports = read_results(results)
    assert len(reports) == len(read_results(RESULTS)) and "skipping" in caplog.text and "half-written" in caplog.text

    comparison = fake_comparison(tiny_model, cache_dir)
    showcase = Showcase(tmp_path / "showcase", "test machine")
    compute_example(comparison, showcase, 0)
    (stored,) = list((tmp_path / "showcase").glob("*/run.json"))
    stored.write_text(json.dumps({"request": {"prompt": 3}, "rows": "not a list", "images": {}}))
    restarted = ui.context.make_page(comparison, Showcase(tmp_path / "showcase", "test machine"))
    with caplog.at_level(logging.WARNING):
        opened = ui.views.show_example(restarted, 0)  # the page loads: the foreign file is not a comparison
    assert opened[1].startswith("_Example 1 is computed") and "ignoring the stored comparison" in caplog.text
    assert compute_example(comparison, restarted.showcase, 0) is not None  # computed again, then shown
    assert "Built-in example 1" in ui.views.show_example(restarted, 0)[1]
