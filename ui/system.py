"""The System panel and `/health`: what this instance runs on and how ready it is."""

from __future__ import annotations

import json
import logging

from harness.comparison import Comparison
from harness.examples import EXAMPLES
from harness.system_info import system_info

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
    """Readiness of every row, for `/health` style checks through the API."""
    comparison = page.comparison
    return {
        "examples_ready": len(page.showcase.computed(comparison.rows.model, len(EXAMPLES))),
        "ready": comparison.rows.ready(),
        "warm": comparison.rows.warm(),
        "rows": {b: comparison.rows.status[b].describe() for b in comparison.rows.order},
        "cache": {b: s.load.cache if s.load else None for b, s in comparison.rows.status.items()},
        "model": comparison.rows.model.model_id if comparison.rows.model else None,
        "standin": comparison.rows.model.standin if comparison.rows.model else None,
    }
