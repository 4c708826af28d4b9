"""The System panel and `/health`: what this instance runs on and how ready it is."""

from __future__ import annotations

import json
import logging

from harness import api
from harness.compare.comparison import Comparison
from harness.records.examples import EXAMPLES
from harness.records.system_info import system_info

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
    """`/health`: what every instance answers (`harness.api.health`: what a front needs of a remote), and the page's
    own readiness: warm-up, each row's cache state, the examples computed, the first example's figures."""
    rows = page.comparison.rows
    return {
        **api.health(page.comparison),
        "warm": rows.warm(),
        "cache": {b: s.load.cache if s.load else None for b, s in rows.status.items()},
        "examples_ready": len(page.showcase.computed(rows.model, len(EXAMPLES))),
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
