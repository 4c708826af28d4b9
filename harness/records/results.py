"""The measured results in `results/`: where the benchmark writes them and which of them the page reads."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from core.assets import RESULTS
from core.naming import model_slug

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class ResultRow:
    """One row of a latency table as the page shows it."""

    backend: str
    status: str  # "ok", or why it did not run
    median_s: float | None  # None when it did not run (or the file did not record it)
    speedup: float | None  # same work only
    precision: str  # what it computed in
    reason: str  # why it did not run ("" when it ran)
    different_work: str = ""  # a row doing other work (fewer steps...): its words; it has `sooner`, never `speedup`
    sooner: float | None = None  # such a row: how many times sooner than the reference its image came


@dataclass(frozen=True)
class LatencyTable:
    """A committed latency table as the page shows it: every field checked, "not recorded" where an older file has
    none."""

    path: Path
    cpu_kind: str
    cpu: str
    cores: str
    isa: str
    model: str
    size: str
    steps: str
    passes: str
    date: str
    commit: str
    command: str
    rows: tuple[ResultRow, ...]


NOT_RECORDED = "not recorded"


def latency_tables(directory: Path = RESULTS) -> list[LatencyTable]:
    """`read_results` read for the page: every key through `_text`/`_number`, so that a file of an older or other
    shape shows what it has (or is skipped with a log line) and never stops the page."""
    tables = []
    for report in read_results(directory):
        try:
            system = report.get("system") if isinstance(report.get("system"), dict) else {}
            rows = tuple(
                ResultRow(
                    backend=_text(row, "backend"),
                    status=_text(row, "status"),
                    median_s=_number(row, "median_s") if row.get("status") == "ok" else None,
                    speedup=_number(row, "speedup"),
                    precision=_text(row, "precision", ""),
                    reason=_text(row, "reason", ""),
                    different_work=_text(row, "different_work", ""),
                    sooner=_number(row, "sooner"),
                )
                for row in report["rows"]
            )
            tables.append(
                LatencyTable(
                    path=report["_path"],
                    cpu_kind=_text(report, "cpu_kind"),
                    cpu=_text(system, "cpu"),
                    cores=_text(report, "cores"),
                    isa=_text(report, "isa"),
                    model=_text(report, "model"),
                    size=_text(report, "size"),
                    steps=_text(report, "steps"),
                    passes=_text(report, "rounds", _text(report, "passes")),
                    date=_text(report, "date"),
                    commit=_text(report, "commit"),
                    command=_text(report, "command"),
                    rows=rows,
                )
            )
        except (TypeError, ValueError, AttributeError) as exc:
            log.warning("skipping %s on the page (%s: %s)", report.get("_path"), type(exc).__name__, exc)
    return tables


def _text(record: dict, key: str, default: str = NOT_RECORDED) -> str:
    value = record.get(key)
    if value is None or isinstance(value, (dict, list)):
        return default
    return str(value)[:300]


def _number(record: dict, key: str) -> float | None:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN
        return None
    return float(value)
