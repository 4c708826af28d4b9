"""The third tab: the newest quality report in results/ (`make quality`), its table and its grid."""

from __future__ import annotations

import logging

from harness.records.quality_reports import quality_table

log = logging.getLogger(__name__)

NO_REPORT = (
    "No quality report yet: `make quality` makes one wherever the real weights can be reached "
    '(README, "Quality report").'
)


def quality_markdown(report: dict | None) -> str:
    """What the report was made on first (a stand-in's in words nobody can miss), then where, when and how, then
    the table."""
    if report is None:
        return NO_REPORT
    warn = "⚠️ " if report.get("standin") else ""
    cpu = report.get("cpu", {})
    prompts = report.get("prompt_set", {})
    judge = report.get("judge", {})
    gate = report.get("gate", {})
    lines = [
        f"### {warn}Made on {report['made_on']}",
        "",
        f"{report.get('date', 'date not recorded')}, commit {report.get('commit', 'not recorded')}, "
        f"`{report.get('command', '')}`; {cpu.get('model', report.get('cpu_kind'))} ({report.get('cpu_kind')}, "
        f"{report.get('cores', '?')} cores); {report.get('size')}x{report.get('size')}, {report.get('steps')} steps, "
        f"guidance {report.get('guidance_scale')}, {report.get('scheduler')}.",
        "",
        f"Prompt set {prompts.get('name')} v{prompts.get('version')} ({prompts.get('prompts')} of "
        f"{prompts.get('of')} prompts, each with its own seed); judge {judge.get('id')}. Figures are medians over the "
        "prompts (range in brackets), against the baseline image of the same prompt and seed: CLIP score (prompt "
        "agreement, 0-100), CLIP image similarity (the same picture, 0-1), PSNR and SSIM (the same pixels). The int8 "
        f"recipe must keep the CLIP score within {gate.get('max_clip_score_drop')} points of the baseline's and the "
        f"image similarity at or above {gate.get('min_clip_image_similarity')}, and SSIM at or above "
        f"{gate.get('min_ssim')} (a floor against wrecked images, not a fidelity target).",
        "",
        quality_table(report),
    ]
    return "\n".join(lines)


def quality_grid(report: dict | None):
    """The report's grid (prompt x row) as a picture, or None when there is none to show."""
    if report is None:
        return None
    path = report["_path"].with_suffix(".png")
    if not path.is_file():
        return None
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as exc:  # a damaged file never stops the page
        log.warning("quality grid %s unreadable: %s", path, exc)
        return None
