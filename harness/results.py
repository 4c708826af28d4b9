"""The measured results in `results/`: where the benchmark writes them and which of them the page reads."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from core.naming import model_slug

log = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parent.parent / "results"


def results_path(model: str, size: int, steps: int, cpu_slug: str, cores: int) -> Path:
    """results/<model>-<size>px-<steps>steps-<cpu kind>-<cores>cores.json: one file per CPU kind measured."""
    return RESULTS / f"{model_slug(model)}-{size}px-{steps}steps-{cpu_slug}-{cores}cores.json"


def read_results(directory: Path = RESULTS) -> list[dict]:
    """The committed latency tables (plain `benchmark.py` runs: no --startup, --profile or --variants), by CPU
    kind's name. A file that cannot be read as one is skipped with a log line: it never stops the page."""
    reports = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            report = json.loads(path.read_text())
            if not isinstance(report, dict) or "mode" in report or "row" in report:  # variants, profiles
                continue
            if "cpu_kind" not in report or not isinstance(report.get("rows"), list):
                raise ValueError("no cpu_kind or rows")
            if not all({"backend", "status"} <= row.keys() for row in report["rows"]):
                raise ValueError("a row without its backend or status")
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("skipping %s: not a latency table (%s: %s)", path, type(exc).__name__, exc)
            continue
        report["_path"] = path  # where it was read from (not part of the file)
        reports.append(report)
    return reports
