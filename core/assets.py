"""Files the project ships: `assets/` and the committed `results/`."""

from __future__ import annotations

import hashlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # the checkout (or the image's /app)
ASSETS = REPO / "assets"
RESULTS = REPO / "results"  # the committed benchmark and quality results
CALIBRATION_PROMPTS = ASSETS / "calibration_prompts.txt"
BOOTH_PROMPTS = ASSETS / "booth_prompts.txt"  # the booth's own comparisons when nobody asks (harness.records.booth)


def calibration_prompts(count: int | None = None) -> list[str]:
    """The first `count` prompts (all when None) of the int8 calibration set, also the stand-in tokenizer's corpus."""
    prompts = [p for p in CALIBRATION_PROMPTS.read_text().splitlines() if p.strip()]
    return prompts if count is None else prompts[: max(1, count)]


def text_digest(lines: list[str]) -> str:
    """A short content hash of `lines`, for cache keys that must change when the text does."""
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]
