"""The operator's built-in examples: computed once the rows are warm (the first at once, the others only while no
visitor waits) and kept, so that every page opens on a finished comparison that no stranger chose."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from core.cpu import this_cpu

from .comparison import Comparison
from .showcase import Showcase, ShownRun

log = logging.getLogger(__name__)

EXAMPLES = [  # (prompt, negative prompt, seed), from the source blogs
    ["sailing ship in storm by Rembrandt", "", 42],
    ["cartoon bird", "", 42],
    ["a photograph of an astronaut riding a horse", "blurry, low quality", 7],
]


def machine_label(comparison: Comparison) -> str:
    """The CPU and threads a comparison runs on, as the page labels a kept comparison."""
    cpu = this_cpu()
    played = f", played as {cpu.presented_as}" if cpu.presented_as else ""
    return f"{cpu.model} ({cpu.isa_line()}{played}), {comparison.rows.settings.threads} threads"


def make_showcase(comparison: Comparison) -> Showcase:
    return Showcase(comparison.rows.settings.cache_dir / "showcase", machine_label(comparison))


def complete(comparison: Comparison, results) -> bool:
    """Every row this CPU can run gave its image and figures (a failed or skipped one makes it no answer to keep;
    a row this CPU cannot run is skipped with its reason and does not count)."""
    runs_here = {b for b in comparison.rows.order if comparison.rows.runs_here(b)}
    return all(r.status == "ok" for r in results if r.backend in runs_here) and any(r.status == "ok" for r in results)


def compute_example(comparison: Comparison, showcase: Showcase, index: int) -> ShownRun | None:
    """Run example `index` through every row and keep it if complete; what is kept already is not run again."""
    model = comparison.rows.model
    if model is None:
        return None
    kept = showcase.example(model, index)
    if kept is not None:
        return kept
    prompt, negative, seed = EXAMPLES[index]
    side = comparison.rows.settings.sizes[0]
    request = comparison.validate(prompt=prompt, negative_prompt=negative, seed=seed, height=side, width=side)
    results = list(comparison.run(request))
    if not complete(comparison, results):
        failed = [f"{r.backend}: {r.status} {r.message}" for r in results if r.status != "ok"]
        log.warning("example %d not kept: %s", index + 1, "; ".join(failed))
        return None
    run, images = ShownRun.from_results(request, results, showcase.machine, index)
    with comparison.rows.lock, comparison.activity("keeping an example"):
        showcase.record(model, run, images)
    log.info("example %d is ready (%s)", index + 1, prompt)
    return run


def compute_examples(
    comparison: Comparison, showcase: Showcase, visitors_waiting: Callable[[], bool], poll_s: float = 2.0
) -> None:
    """The first example at once; each further one only when no visitor's comparison is running or queued."""
    for index in range(len(EXAMPLES)):
        while index > 0 and visitors_waiting():
            time.sleep(poll_s)
        compute_example(comparison, showcase, index)
