"""The operator's built-in examples: computed once the rows are warm (the first at once, the others only while no
visitor waits) and kept, so that every page opens on a finished comparison that no stranger chose."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext

from core.cpu import this_cpu
from harness.compare.comparison import Comparison
from harness.records.showcase import Showcase, ShownRun

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


def missing(comparison: Comparison, rows: list[dict]) -> list[str]:
    """The rows this CPU runs that gave no image in a kept example's `rows` (figures dicts); a row this CPU cannot
    run is not missing (its card says what it needs)."""
    ok = {r["backend"] for r in rows if r["status"] == "ok"}
    return [b for b in comparison.rows.order if comparison.rows.runs_here(b) and b not in ok]


def worth_retrying(comparison: Comparison, run: ShownRun | None) -> bool:
    """Whether computing the example again could fill what it misses: a missing row is ready now (it failed in
    the run, or a restart brought it back). A row that could not load or warm up stays so until a restart."""
    if run is None:
        return comparison.rows.model is not None and bool(comparison.rows.ready())
    ready = set(comparison.rows.ready())
    return any(b in ready for b in missing(comparison, run.rows))


def keep(comparison: Comparison, showcase: Showcase, request, results, number: int, others=None,
         give_way: Callable[[], bool] = lambda: False) -> ShownRun:  # fmt: skip
    """Keep a finished comparison as kept comparison `number` (an example's index, a booth prompt's or a visitor's
    number): this machine's rows at once (the page opens on them), then, with `others` (the other machines'
    `RunsAlongside`), again with their parts once they ended: that may take up to their deadline, unless a visitor
    comes first (`give_way()`: their part is dropped). Its images are written under the row lock: never beside a
    timed row."""
    run = record(comparison, showcase, *ShownRun.from_results(request, results, showcase.machine, number))
    if others is not None and others.runs:
        states = others.wait(give_way)
        if states is None:
            log.info("%s kept without the other machines: a visitor's comparison goes first", run.kind_words())
            return run
        with_others = ShownRun.from_results(request, results, showcase.machine, number, states, run.finished)
        run = record(comparison, showcase, *with_others)
    return run


def record(comparison: Comparison, showcase: Showcase, run: ShownRun, images: dict) -> ShownRun:
    """Keep `run` and its images (`ShownRun.from_results`') now, under the row lock."""
    with comparison.rows.lock, comparison.activity(f"keeping {run.kind_words().lower()}"):
        showcase.record(comparison.rows.model, run, images)
    return run


def compute_example(comparison: Comparison, showcase: Showcase, index: int, alongside=None,
                    give_way: Callable[[], bool] = lambda: False) -> ShownRun | None:  # fmt: skip
    """Run example `index` through every row and keep it, with any failed row marked on it (its card says why);
    what is kept already is not run again unless a row it misses is ready now. Nothing is kept when no row gave
    an image. `alongside` (a `KeptAlongside`, when the page has other machines) runs it there too, at the same
    time; their part is dropped when a visitor comes first (`give_way()`)."""
    model = comparison.rows.model
    if model is None:
        return None
    kept = showcase.example(model, index)
    if kept is not None and not worth_retrying(comparison, kept):
        return kept
    prompt, negative, seed = EXAMPLES[index]
    side = comparison.rows.settings.sizes[0]
    request = comparison.validate(prompt=prompt, negative_prompt=negative, seed=seed, height=side, width=side)
    with alongside(request) if alongside is not None else nullcontext() as others:
        results = list(comparison.run(request))
        gave = sum(r.status == "ok" for r in results)
        if not gave or (kept is not None and gave < sum(r["status"] == "ok" for r in kept.rows)):
            log.warning("example %d not kept: %d row(s) gave an image, fewer than what is kept", index + 1, gave)
            return kept
        run = keep(comparison, showcase, request, results, index, others, give_way)
    absent = set(missing(comparison, run.rows))
    failed = [f"{r.backend}: {r.status} {r.message}" for r in results if r.backend in absent]
    log.info("example %d is ready (%s)%s", index + 1, prompt, f"; missing {'; '.join(failed)}" if failed else "")
    return run


def compute_examples(
    comparison: Comparison,
    showcase: Showcase,
    visitors_waiting: Callable[[], bool],
    poll_s: float = 2.0,
    retry_s: float = 120.0,
    max_retry_s: float = 3600.0,
    alongside=None,
) -> None:
    """The first example at once; each further one only when no visitor's comparison is running or queued. Then,
    while a kept example misses a row that is ready again, it is computed again after `retry_s` seconds, the wait
    doubling up to `max_retry_s` (a row failing on every run is not run every minute)."""

    def one_pass(retrying: bool) -> None:
        for index in range(len(EXAMPLES)):
            while (retrying or index > 0) and visitors_waiting():
                time.sleep(poll_s)
            compute_example(comparison, showcase, index, alongside, visitors_waiting)

    one_pass(retrying=False)
    wait, model = retry_s, comparison.rows.model
    while any(worth_retrying(comparison, showcase.example(model, i)) for i in range(len(EXAMPLES))):
        time.sleep(wait)
        wait = min(2 * wait, max_retry_s)
        one_pass(retrying=True)
