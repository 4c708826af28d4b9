"""The int8 row's safe default where nobody has measured real weights: on a real-layout model (a local diffusers
directory: not a stand-in) with no quality report, the quality-first hybrid recipe with its reason on the card; a
forced full recipe said to be forced; and the image's quality step writing the report the row then reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_SIZE

from benchmarking.clip_judge import judge_standin_path
from benchmarking.quality import quality_path
from core.cpu import this_cpu
from harness.settings import Settings, build_comparison
from ui.cards import card_markdown, headline

ROOT = Path(__file__).resolve().parent.parent
ROWS = "baseline,int8-tome"


@pytest.fixture(scope="module")
def real_layout_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny stand-in's files in a directory of their own: to the app, a local copy of a real model."""
    model = tmp_path_factory.mktemp("models") / "real-layout-model"
    shutil.copytree(tiny_model.path, model)
    (model / "STANDIN.md").unlink(missing_ok=True)
    return model


def loaded(model: Path, cache_dir, **settings):
    comparison = build_comparison(
        Settings(
            model=str(model),
            backends=ROWS,
            sizes=str(TINY_SIZE),
            cache_dir=str(cache_dir),
            threads=2,
            calibration_prompts=2,
            safety_checker=False,
            **settings,
        )  # fmt: skip
    )
    comparison.load_all()
    assert not comparison.rows.model.standin
    return comparison


def test_a_real_model_nobody_measured_runs_hybrid_and_its_card_says_why(real_layout_model, cache_dir):
    comparison = loaded(real_layout_model, cache_dir)
    status = comparison.rows.status["int8-tome"]
    assert status.state == "ready", status.detail
    assert status.load.recipe == "hybrid int8" and "UNet hybrid int8" in status.load.precision
    card = card_markdown(comparison, "int8-tome")
    assert "_hybrid: quality not yet measured on this model here; `make quality` measures it_" in card, card
    request = comparison.validate(prompt="a red barn", steps=2, height=TINY_SIZE, width=TINY_SIZE)
    rows = {r.backend: r.figures() for r in comparison.run(request)}
    assert rows["int8-tome"]["recipe"] == "hybrid int8"  # the figures JSON names the recipe that ran


def test_a_forced_full_recipe_is_said_to_be_forced(real_layout_model, cache_dir):
    comparison = loaded(real_layout_model, cache_dir, int8_mode="full")
    status = comparison.rows.status["int8-tome"]
    assert status.state == "ready", status.detail
    assert status.load.recipe == "full int8" and "UNet int8 activations+weights" in status.load.precision
    assert "full int8, forced, quality unmeasured" in status.load.precision
    assert "_full int8, forced, quality unmeasured_" in card_markdown(comparison, "int8-tome")


def test_the_headline_names_the_recipe_that_ran():
    rows = [
        {"backend": "baseline", "title": "PyTorch fp32", "status": "ok", "speedup": 1.0},
        {"backend": "int8-tome", "title": "OpenVINO INT8 + Token Merging", "status": "ok", "speedup": 7.5,
         "psnr_db": 30.0, "recipe": "hybrid int8"},
    ]  # fmt: skip
    assert headline(rows, "baseline").startswith("# OpenVINO INT8 + Token Merging (hybrid int8): 7.5× faster")


def image_quality(model: str, cache_dir, prompts: int, **env) -> subprocess.CompletedProcess:
    """`scripts/image-quality.sh`, as the Dockerfile runs it after harness.prepare."""
    environ = {
        **os.environ, "SBS_MODEL": model, "SBS_CACHE_DIR": str(cache_dir), "SBS_BACKENDS": ROWS,
        "SBS_SIZES": str(TINY_SIZE), "SBS_CALIBRATION_PROMPTS": "2", "PYTHON": sys.executable, **env,
    }  # fmt: skip
    return subprocess.run(["bash", "scripts/image-quality.sh", str(prompts)], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=1200)  # fmt: skip


def test_the_image_quality_step_writes_the_report_the_int8_row_then_reads(real_layout_model, cache_dir):
    report_path = quality_path(str(real_layout_model), TINY_SIZE, Settings().steps, this_cpu().slug())
    judge = judge_standin_path("tiny", Path(cache_dir))  # the judge a build without the Hub names (QUALITY_JUDGE)
    try:
        done = image_quality(str(real_layout_model), cache_dir, 1, QUALITY_JUDGE=str(judge))
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        report = json.loads(report_path.read_text())
        assert report["standin"] is False and report["prompt_set"]["prompts"] == 1
        chosen = report["int8_choice"]["mode"]
        settings = Settings(model=str(real_layout_model), cache_dir=str(cache_dir)).load_settings((TINY_SIZE,))
        assert settings.int8_mode == chosen
        assert settings.int8_mode_note.startswith(f"recipe {chosen}: chosen by the quality run of {report['date']}")
    finally:
        report_path.unlink(missing_ok=True)
        report_path.with_suffix(".png").unlink(missing_ok=True)


def test_the_image_quality_step_makes_no_report_out_of_reach_or_for_a_standin(cache_dir, tmp_path):
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hub-cache")}
    missing = image_quality("some-org/model-not-in-any-cache", cache_dir, 1, **offline)
    assert missing.returncode == 0, missing.stderr[-3000:]
    assert "out of reach" in missing.stdout and "could not" in (missing.stderr + missing.stdout).lower()
    standin = image_quality("tiny", cache_dir, 1)
    assert standin.returncode == 0 and "no real model" in standin.stdout, standin.stdout
    off = image_quality("some-org/model-not-in-any-cache", cache_dir, 0)
    assert off.returncode == 0 and "QUALITY_PROMPTS=0" in off.stdout
    assert not list((ROOT / "results").glob("quality-some-org*"))
