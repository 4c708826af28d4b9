"""The quality reports in `results/` (written by `benchmarking.quality`): which the page shows, and the int8 recipe
they chose for a model on a CPU kind."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from backends.int8_tome import MODES
from core.naming import model_slug
from harness.models.standins import STANDINS
from harness.records.results import RESULTS

log = logging.getLogger(__name__)

# Where nobody has measured the int8 row's quality on a model's real weights here: the quality-first recipe.
# Plain 8-bit post-training quantization damaged SD-1.5's pictures in NNCF's own study, and optimum-intel's and the
# OpenVINO notebooks' advice for diffusion UNets is hybrid quantization (README, "Quality report").
UNMEASURED_INT8_MODE = "hybrid"
STANDIN_INT8_MODE = "full"  # a random-weight stand-in has no picture to keep: the recipe the stand-ins were timed with


def read_quality_reports(directory: Path = RESULTS) -> list[dict]:
    """Every readable quality report, newest first (by date, then file time). A file that is not one is skipped
    with a log line: it never stops the page."""
    reports = []
    for path in Path(directory).glob("quality-*.json"):
        try:
            report = json.loads(path.read_text())
            if not isinstance(report, dict) or report.get("mode") != "quality":
                continue
            if not isinstance(report.get("rows"), list) or "made_on" not in report or "cpu_kind" not in report:
                raise ValueError("no rows, made_on or cpu_kind")
        except (OSError, ValueError, TypeError) as exc:
            log.warning("skipping %s: not a quality report (%s: %s)", path, type(exc).__name__, exc)
            continue
        report["_path"] = path
        reports.append(report)
    return sorted(reports, key=lambda r: (str(r.get("date", "")), r["_path"].stat().st_mtime), reverse=True)


def latest_quality_report(model: str | None = None, directory: Path = RESULTS) -> dict | None:
    """The newest report on `model` if there is one, else the newest at all (its `made_on` says on what)."""
    reports = read_quality_reports(directory)
    if model is not None:
        same = [r for r in reports if model_slug(str(r.get("model", ""))) == model_slug(model)]
        reports = same or reports
    return reports[0] if reports else None


def int8_recipe(requested: str, model: str, cpu_slug: str, directory: Path = RESULTS) -> tuple[str, str]:
    """(recipe, the words the int8 card shows) for the operator's `--int8-mode` on `model` on this CPU kind:

    - "measured": the recipe the newest quality run on this model's real weights chose on this CPU kind; without
      one, the quality-first recipe (hybrid), saying so; on a stand-in, full (random weights keep no picture).
    - "full" or "hybrid": forced by the operator, and said so, with what a quality run here found if one did."""
    report = newest_real_report(model, cpu_slug, directory)
    if requested in MODES:
        found = f"the quality run of {report.get('date')} chose {report['int8_choice']['mode']}" if report else ""
        return requested, f"{requested} int8, forced, " + (found or "quality unmeasured")
    if requested != "measured":
        raise ValueError(f"--int8-mode {requested!r}: choose measured, {' or '.join(MODES)}")
    if report is not None:
        choice = report["int8_choice"]
        met = "" if choice.get("met_gate", True) else ", none met the quality gate"
        return choice["mode"], f"recipe {choice['mode']}: chosen by the quality run of {report.get('date')}{met}"
    if model in STANDINS:
        return STANDIN_INT8_MODE, f"recipe {STANDIN_INT8_MODE}: a random-weight stand-in, no picture to measure"
    return UNMEASURED_INT8_MODE, (
        f"{UNMEASURED_INT8_MODE}: quality not yet measured on this model here; `make quality` measures it"
    )


def newest_real_report(model: str, cpu_slug: str, directory: Path = RESULTS) -> dict | None:
    """The newest quality report on `model`'s real weights made on this CPU kind that chose an int8 recipe. A
    stand-in's report chooses nothing: random weights say nothing about which recipe keeps a picture."""
    for report in read_quality_reports(directory):
        choice = report.get("int8_choice")
        if (
            not report.get("standin", True)
            and model_slug(str(report.get("model", ""))) == model_slug(model)
            and report.get("cpu_kind") == cpu_slug
            and isinstance(choice, dict)
            and choice.get("mode") in MODES
        ):
            return report
    return None


def _cell(summary: dict | None, digits: int) -> str:
    if not summary:
        return "-"
    return f"{summary['median']:.{digits}f} ({summary['min']:.{digits}f}-{summary['max']:.{digits}f})"


def quality_table(report: dict) -> str:
    """The report's Markdown table: medians over the prompts with their range."""
    lines = [
        "| row | s/image | CLIP score | CLIP image similarity | PSNR dB | SSIM |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        note = " (other work: prompt agreement only)" if r.get("different_work") else ""
        lines.append(
            f"| {r['label']}{note} | {_cell(r.get('latency_s'), 2)} | {_cell(r.get('clip_score'), 2)} | "
            f"{_cell(r.get('clip_image_similarity'), 3)} | {_cell(r.get('psnr_db'), 1)} | {_cell(r.get('ssim'), 3)} |"
        )
    for u in report.get("unavailable", []):
        lines.append(f"| {u['backend']} | not run: {u['status']} | | | | |")
    choice = report.get("int8_choice")
    if choice:
        lines.append("")
        lines.append(
            f"int8 recipe chosen: **{choice['mode']}**, {choice['reason']}. "
            + "; ".join(
                f"{m}: {'passes' if v['passes'] else 'fails'} ({v['why']})" for m, v in choice["verdicts"].items()
            )
        )
    return "\n".join(lines)
