"""The booth's own comparisons: when no visitor has asked for one for a while, the app computes the next prompt of
the operator's booth list (`assets/booth_prompts.txt`, or the file `--booth-prompts` names) the way it computes the
built-in examples, and keeps it beside them, so that a screen nobody touches shows new pictures through the day.

Only the operator's prompts are computed and kept: a visitor's comparison is never stored, and shown on the booth
screen only when the operator turns that on (`VisitorsShown`). A visitor always goes first: a booth comparison starts
only while no visitor's comparison runs or waits, and only after the idle time."""

from __future__ import annotations

import itertools
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from core.assets import BOOTH_PROMPTS
from harness.compare.comparison import Comparison
from harness.records.examples import keep, record
from harness.records.showcase import BOOTH_FIRST, VISITOR_FIRST, Showcase, ShownRun

log = logging.getLogger(__name__)

BOOTH_SEED = 1000  # the first prompt's seed on the first round through the list; each prompt and round its own


def booth_prompts(path: str | Path = "") -> list[str]:
    """The operator's booth prompts, one a line (blank lines and lines starting with # skipped)."""
    lines = Path(path or BOOTH_PROMPTS).read_text().splitlines()
    prompts = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not prompts:
        raise ValueError(f"{path or BOOTH_PROMPTS}: no prompt in it (one a line)")
    return prompts


def booth_runs(showcase: Showcase, model, prompts: list[str]) -> list[ShownRun]:
    """The booth comparisons kept for this model, in the list's order."""
    return showcase.computed(model, len(prompts), first=BOOTH_FIRST)


def compute_booth_comparison(comparison: Comparison, showcase: Showcase, prompts: list[str], turn: int,
                             give_way: Callable[[], bool] = lambda: False, alongside=None):  # fmt: skip
    """The booth list's `turn`-th comparison (the list cycles, each round with new seeds), run through every row
    (and on the other machines, with `alongside`: a `KeptAlongside`) and kept in its slot. None when no row gave an
    image, or when a visitor came (`give_way()` between two rows): the booth comparison is dropped there, so the
    visitor's rows run next (and the other machines' calls are cancelled; a visitor who comes while only they are
    still at work cancels their part, and this machine's rows are kept alone)."""
    slot, round_ = turn % len(prompts), turn // len(prompts)
    side = comparison.rows.settings.sizes[0]
    seed = BOOTH_SEED + round_ * len(prompts) + slot
    request = comparison.validate(prompt=prompts[slot], seed=seed, height=side, width=side)
    with alongside(request) if alongside is not None else nullcontext() as others:
        results = []
        for row in comparison.run(request):
            results.append(row)
            if len(results) < len(comparison.rows.order) and give_way():
                log.info("booth comparison %d dropped: a visitor's comparison goes first", slot + 1)
                return None
        if not any(r.status == "ok" for r in results):
            log.warning("booth comparison %d not kept: no row gave an image", slot + 1)
            return None
        run = keep(comparison, showcase, request, results, BOOTH_FIRST + slot, others, give_way)
    log.info("booth comparison %d is ready (%s, seed %d)", slot + 1, prompts[slot], seed)
    return run


class BoothLoop:
    """Computes a booth comparison whenever the app has been idle `idle_s` seconds: no visitor's comparison started
    for that long (`last_visitor()`: the monotonic time of the latest, or None) and none runs or waits
    (`visitors_waiting()`)."""

    def __init__(self, comparison: Comparison, showcase: Showcase, prompts: list[str], idle_s: float,
                 last_visitor: Callable[[], float | None], visitors_waiting: Callable[[], bool],
                 poll_s: float = 2.0, alongside=None):  # fmt: skip
        self.comparison, self.showcase, self.prompts = comparison, showcase, prompts
        self.idle_s, self.poll_s = idle_s, poll_s
        self.last_visitor, self.visitors_waiting = last_visitor, visitors_waiting
        self.alongside = alongside  # the other machines (`KeptAlongside`), when the page has them
        self.turn = len(booth_runs(showcase, comparison.rows.model, prompts)) if comparison.rows.model else 0
        self.last_booth: float | None = None
        self.stop = threading.Event()

    def idle(self) -> bool:
        """Whether a booth comparison may start now."""
        if self.comparison.rows.model is None or not self.comparison.rows.ready() or self.visitors_waiting():
            return False
        latest = max((t for t in (self.last_visitor(), self.last_booth) if t is not None), default=None)
        return latest is None or time.monotonic() - latest >= self.idle_s

    def run(self) -> None:
        """Until stopped: wait for the idle time, then one booth comparison (its row order and timing the app's)."""
        self.last_booth = time.monotonic()  # the start-up's examples come first: a full idle time after them
        while not self.stop.wait(self.poll_s):
            if not self.idle():
                continue
            try:
                compute_booth_comparison(self.comparison, self.showcase, self.prompts, self.turn,
                                         self.visitors_waiting, self.alongside)  # fmt: skip
            except Exception:  # a failed booth comparison is logged; the app and the next one go on
                log.exception("booth comparison %d failed", self.turn % len(self.prompts) + 1)
            self.turn += 1
            self.last_booth = time.monotonic()

    def start(self) -> BoothLoop:
        threading.Thread(target=self.run, name="booth comparisons", daemon=True).start()
        return self


class VisitorsShown:
    """With the operator's `--kiosk-visitors`: the latest `KEPT` visitors' comparisons, for the booth screen. Kept in
    a temporary directory of their own (gone with the process, never in the cache), and never one the safety checker
    flagged: a booth screen shows no blanked picture under a stranger's words."""

    KEPT = 4

    def __init__(self, machine: str):
        self.showcase = Showcase(Path(tempfile.mkdtemp(prefix="sbs-kiosk-visitors-")), machine)
        self._numbers = itertools.count()
        self._order: dict[int, int] = {}  # slot -> the how-manyth visitor's comparison it holds
        self._lock = threading.Lock()

    def keep(self, comparison: Comparison, request, results, states=()) -> ShownRun | None:
        """Keep a visitor's finished comparison (in the oldest slot); None when it is not to be shown: no row gave an
        image, or the safety checker flagged one on any machine (then no slot is taken: the others stay shown)."""
        run, images = ShownRun.from_results(request, results, self.showcase.machine, VISITOR_FIRST, states)
        if not any(row["status"] == "ok" for row in run.rows) or run.flagged:
            return None
        with self._lock:
            count = next(self._numbers)
            run.example = VISITOR_FIRST + count % self.KEPT
            self._order[run.example] = count
        return record(comparison, self.showcase, run, images)

    def latest(self, model) -> list[ShownRun]:
        """The kept ones, newest first."""
        runs = self.showcase.computed(model, self.KEPT, first=VISITOR_FIRST)
        return sorted(runs, key=lambda r: self._order[r.example], reverse=True)
