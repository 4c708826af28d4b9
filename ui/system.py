"""The System panel and `/health`: what this instance runs on and how ready it is."""

from __future__ import annotations

import json
import logging

from core.cpu import this_cpu
from harness.comparison import Comparison
from harness.examples import EXAMPLES
from harness.remotes import API_VERSION
from harness.system_info import machine_fingerprint, system_info

from .context import Page

log = logging.getLogger(__name__)


def system_markdown(comparison: Comparison) -> str:
    info = system_info(comparison.rows.settings.threads, comparison.rows.order)
    rows_here = "; ".join(f"{b}: {how}" for b, how in info["rows_here"].items())
    libs = ", ".join(f"{k} {v}" for k, v in info["libraries"].items())
    return "\n".join(
        [
            f"- **CPU**: {info['cpu']}, {info['logical_cpus_usable']} logical CPUs usable, "
            f"{info['threads_used']} threads per row",
            f"- **ISA**: {info['isa_summary']}"
            + (
                f" — played as the kind {info['played_as']} (SBS_CPU_KIND; the machine has "
                f"{info['machine_isa_summary']})"
                if info["played_as"]
                else ""
            ),
            f"- **How each row runs on this CPU**: {rows_here}",
            f"- **Allocator**: {info['allocator']} {info['malloc_conf']} · **OpenMP**: {', '.join(info['openmp'])}",
            f"- **Thread env**: {json.dumps(info['env']) if info['env'] else 'defaults'}",
            f"- **Model**: {model_line(comparison)}",
            f"- **Sizes compiled**: {', '.join(f'{s}x{s}' for s in comparison.rows.settings.sizes)}",
            f"- **Libraries**: Python {info['python']}, {libs}",
        ]
    )


def model_line(comparison: Comparison) -> str:
    model = comparison.rows.model
    if model is None:
        return f"not loaded yet ({comparison.rows.status[comparison.rows.order[0]].detail or 'waiting'})"
    return (
        f"`{model.model_id}`"
        + (" (random-weight stand-in)" if model.standin else "")
        + (f" — requested `{model.requested}`, fallback: {model.fallback_reason}" if model.fallback_reason else "")
    )


def health(page: Page) -> dict:
    """Readiness of every row, for `/health` style checks through the API; and what a front page needs to know of
    this instance as a remote (`harness.remotes`): its API version, CPU, machine, model and revision, rows."""
    comparison = page.comparison
    model = comparison.rows.model
    cpu = this_cpu()
    return {
        "api": API_VERSION,
        "examples_ready": len(page.showcase.computed(model, len(EXAMPLES))),
        "ready": comparison.rows.ready(),
        "warm": comparison.rows.warm(),
        "rows": {b: comparison.rows.status[b].describe() for b in comparison.rows.order},
        "titles": dict(comparison.rows.titles),
        "cache": {b: s.load.cache if s.load else None for b, s in comparison.rows.status.items()},
        "model": model.model_id if model else None,
        "revision": model.revision if model else None,
        "standin": model.standin if model else None,
        "cpu": cpu.model,
        "cpu_kind": cpu.slug(),
        "threads": comparison.rows.settings.threads,
        "machine": machine_fingerprint(),
        "example": example_figures(page),
    }


def example_figures(page: Page) -> dict | None:
    """The first built-in example's figures as computed here (the operator's example, never a visitor's): what a
    front page's second tab shows of this instance."""
    run = page.showcase.example(page.comparison.rows.model, 0)
    if run is None:
        return None
    keys = ("backend", "title", "status", "latency_s", "speedup")
    return {
        "prompt": run.request.prompt, "steps": run.request.steps, "size": run.request.height, "finished": run.finished,
        "rows": [{k: r.get(k) for k in keys} for r in run.rows],
    }  # fmt: skip
