"""Paired rounds: each row's timed passes each stand beside a pass of the reference row taken minutes apart, so
every speed-up is a ratio of neighbouring figures, and the spread over the rounds says how far a figure can be
trusted on this machine.

- `together`: every row is loaded (and warmed up) at once; each round times every row once, in display order.
- `beside`: only the reference row stays loaded; every other row is loaded in turn, and each of its rounds times
  the reference row and then it. Costs more reference passes, for a machine that cannot hold every row at once.
"""

from __future__ import annotations

import gc
import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from core.probes import component_weights_mb
from core.request import initial_latents
from harness.compare.comparison import Timed, timed_generate

log = logging.getLogger(__name__)

# What every row held at once costs, in multiples of the model's fp32 weights (UNet + VAE + text encoder): 4.3 for
# four rows of SD-1.5 measured in the Space image (17.8 GB RSS), a bf16 row with compiled graphs adds about 1.2.
ROWS_MEMORY_FACTOR = 6.0


@dataclass
class Pairs:
    """One row's timed passes and, for each, the reference row's pass beside it."""

    runs: list[Timed] = field(default_factory=list)
    references: list[Timed] = field(default_factory=list)

    def speedups(self) -> list[float]:
        return [ref.latency_s / run.latency_s for ref, run in zip(self.references, self.runs, strict=True)]


def choose_pairing(requested: str, model_path, available_mb: float) -> str:
    """`together` where every row fits in memory at once (by ROWS_MEMORY_FACTOR), else `beside`."""
    if requested != "auto":
        return requested
    return "together" if ROWS_MEMORY_FACTOR * component_weights_mb(model_path) < available_mb else "beside"


def available_mb() -> float:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_rounds(rows, request, rounds: int, pairing: str, after_row: Callable[[str], None] = lambda _b: None):
    """Load the rows of `rows` (a `RowSet`) as `pairing` says, warm each up as the app does, and time them in
    `rounds` paired rounds. Returns {backend id: Pairs} for every row that loaded (the reference row's own Pairs
    pair it with itself). `after_row(backend_id)` runs once a row's rounds are done, while it is still loaded."""
    latents = initial_latents(request.seed, request.height, request.width)
    reference = rows.reference
    pairs: dict[str, Pairs] = {}

    def load(backend_id: str) -> bool:
        log.info("[%s] loading", backend_id)
        rows.load_row(backend_id)
        if rows.status[backend_id].state != "ready":
            return False
        with rows.lock:
            rows.warm_up(backend_id, request.height)  # the app's warm-up: one step at this size, untimed
        pairs[backend_id] = Pairs()
        return True

    def timed(backend_id: str) -> Timed:
        with rows.lock:
            run = timed_generate(rows.backends[backend_id], request, latents)
        log.info("[%s] %.2f s", backend_id, run.latency_s)
        return run

    def unload(backend_id: str) -> None:
        rows.backends.pop(backend_id, None)
        rows.status[backend_id].set("unloaded", "measured; dropped to make room for the next row")
        gc.collect()

    others = [b for b in rows.order if b != reference]
    if pairing == "together" or reference is None or reference not in rows.order:
        loaded = [b for b in rows.order if load(b)]
        for i in range(rounds):
            log.info("round %d/%d", i + 1, rounds)
            reference_run = None
            for backend_id in loaded:
                run = timed(backend_id)
                reference_run = run if backend_id == reference else reference_run
                pairs[backend_id].runs.append(run)
                pairs[backend_id].references.append(reference_run or run)
        for backend_id in loaded:
            after_row(backend_id)
        return pairs
    if not load(reference):
        return pairs
    for backend_id in others:
        if not load(backend_id):
            continue
        pairs[backend_id] = time_beside(lambda: timed(reference), lambda b=backend_id: timed(b), rounds, backend_id)
        pairs[reference].runs += pairs[backend_id].references
        pairs[reference].references += pairs[backend_id].references
        after_row(backend_id)
        unload(backend_id)
    after_row(reference)
    return pairs


def time_beside(time_reference: Callable[[], Timed], time_row: Callable[[], Timed], rounds: int, label: str) -> Pairs:
    """`rounds` rounds of a reference pass and then the row's pass beside it (the row and the reference already
    loaded and warm). Also the int8 variants' pairing (`benchmarking.row_variants`)."""
    pairs = Pairs()
    for i in range(rounds):
        log.info("[%s] round %d/%d", label, i + 1, rounds)
        pairs.references.append(time_reference())
        pairs.runs.append(time_row())
    return pairs


def speedup_figures(pairs: Pairs) -> dict:
    """A row's paired speed-ups: every round's and their range (the figure shown is their median)."""
    speedups = pairs.speedups()
    return {"speedups": speedups, "speedup_range": [min(speedups), max(speedups)]}


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}
