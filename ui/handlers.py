"""The page's handlers: a visitor's comparison (`make_generate`), the examples, the status timer."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import asdict

import gradio as gr
import numpy as np

from core.errors import logged_error
from core.request import GenerationRequest, latents_digest
from harness.api import request_fields
from harness.compare.comparison import Comparison, RowResult
from harness.compare.validation import MAX_SEED, InvalidRequest
from harness.machines.runs import CONNECT_ALLOWANCE_S, Expected, MachineRun
from harness.records.examples import EXAMPLES

from .cards import plain, run_label
from .context import Page
from .gradio_queue import visitor_key
from .views import baseline_seconds, machine_groups, page_outputs, show_example, view

log = logging.getLogger(__name__)

TICK_STARTING_S, TICK_SERVING_S = 2.0, 10.0  # the status timer's interval during the start-up and after it


def make_generate(page: Page):
    """The `/generate` handler: its parameters are `harness.api.GENERATE_INPUTS`, in order."""

    def generate(
        prompt,
        negative_prompt,
        seed,
        random_seed,
        steps,
        guidance,
        size,
        scheduler,
        compare_with=None,
        request: gr.Request = None,
        progress=gr.Progress(),
    ):
        """Run the prompt through every row this CPU runs; yields after each row so cards fill as rows finish
        (`harness.api.GenerateOutputs`). An unexpected error reaches the visitor as a short message with an id;
        its traceback goes to the log under that id."""
        visitor = visitor_key(page, request)
        if page.fair_share is not None and request is not None:
            page.fair_share.started(visitor)
        fields = request_fields(prompt, negative_prompt, seed, steps, guidance, size, scheduler)
        try:
            yield from run_comparison(page, fields, random_seed, compare_with, progress, visitor)
        except gr.Error:
            raise
        except Exception:
            in_the_log = logged_error(log, "the comparison failed")
            raise gr.Error(f"Something went wrong here ({in_the_log}). Please try again.") from None

    return generate


def run_comparison(page: Page, fields: dict, random_seed, compare_with, progress, visitor: str):
    """A visitor's comparison as the page's successive outputs: 1. the request checked, 2. the start-up waited for
    (nothing of the request runs before it is over), 3. the other machines called, 4. this machine's rows one at a
    time, 5. the other machines waited for, 6. the finished comparison."""
    comparison = page.comparison
    request = check_inputs(comparison, fields, random_seed)
    comparison.rows.wait_for_start_up(lambda what: start_up_progress(comparison, progress, what))
    shown = VisitorComparison(page, request, random_seed, compare_with)
    runs = start_other_machines(page, request, shown.noise, visitor)
    try:
        yield shown.outputs(runs, final=False)
        yield from run_rows_here(shown, runs, progress)
        yield from wait_for_other_machines(page, shown, runs, progress)
        page.timings.record(request.height, request.steps, shown.figures())
        if page.visitors_shown is not None:  # the operator shows visitors' comparisons on the booth screen
            page.visitors_shown.keep(page.comparison, request, shown.results, [run.state() for run in runs])
        yield shown.outputs(runs, final=True, label=run_label(request))
    finally:  # done, or the visitor left, or an error: no other machine keeps working for nobody
        for run in runs:
            run.cancel()


def check_inputs(comparison: Comparison, fields: dict, random_seed) -> GenerationRequest:
    """The validated request (a new seed drawn when asked), or the visitor's error naming the limit."""
    if random_seed:
        fields = {**fields, "seed": secrets.randbelow(MAX_SEED + 1)}
    try:
        return comparison.validate(**fields)
    except (InvalidRequest, ValueError) as exc:
        raise gr.Error(str(exc), duration=None) from None


def start_up_progress(comparison: Comparison, progress, what: str) -> None:
    """The progress bar while the start-up goes on: rows loaded so far, and what it is doing."""
    rows = comparison.rows
    runs_here = [b for b in rows.order if rows.runs_here(b)]
    loaded = sum(rows.status[b].state not in ("waiting", "loading") for b in runs_here)
    desc = f"Nothing is timed until every row is loaded and warm. Now: {what}"
    progress((loaded, len(runs_here)), desc=desc, unit="rows loaded")


def start_other_machines(page: Page, request: GenerationRequest, noise: str, visitor: str) -> list[MachineRun]:
    """Every other machine's run for `request` (none without them), at the same time as the local rows: other
    machines cannot disturb a timed section here. The model and noise they must match to be comparable."""
    model = page.comparison.rows.model
    if page.machines is None or model is None:
        return []
    return page.machines.start(request, Expected(model.model_id, model.revision, noise), visitor)


class VisitorComparison:
    """What a visitor's comparison has shown so far: this machine's rows, their images, the notes above them."""

    def __init__(self, page: Page, request: GenerationRequest, random_seed, compare_with):
        self.page, self.request, self.compare_with = page, request, compare_with
        self.noise = latents_digest(request.seed, request.height, request.width)
        self.truncated = page.comparison.truncation(request)
        self.notes = [f"Random seed: **{request.seed}**"] if random_seed else []
        self.notes += [f"Note: {plain(self.truncated)}"] if self.truncated else []
        self.skipped: list[str] = []  # rows that could not run this time, with why
        self.elsewhere: list[str] = []  # rows this CPU does not run (a fact, not a fault: their cards say why)
        self.images: dict = {}
        self.results: list[RowResult] = []

    def add(self, row: RowResult) -> None:
        """One more row of this machine's."""
        comparison = self.page.comparison
        self.results.append(row)
        if row.status == "skipped" and not comparison.rows.runs_here(row.backend):
            self.elsewhere.append(row.title)
        elif row.status == "skipped":
            self.skipped.append(f"{row.title} ({row.message})")
        if row.image_path is not None:
            self.images[row.backend] = str(row.image_path)
        if row.blanks_all:  # the rows shown before this one are blanked too
            with comparison.rows.lock, comparison.activity("blanking the images"):
                black = str(comparison.image_store.save(np.zeros(row.image.shape, np.uint8)))
            self.images = dict.fromkeys(self.images, black)
            self.notes.append("The safety checker flagged an image of this request: every row's image is blanked.")

    def figures(self) -> list[dict]:
        return [r.figures() for r in self.results]

    def outputs(self, runs: list[MachineRun], final: bool, label: str | None = None) -> list:
        """The page's outputs now: the notes, this machine's rows and every other machine's group."""
        page, request, rows = self.page, self.request, self.figures()
        message = ([label] if label else []) + self.notes
        message += ["Skipped: " + ", ".join(self.skipped)] if self.skipped else []
        if self.elsewhere:
            message.append(f"Not on this CPU: {', '.join(self.elsewhere)} (each card says what it needs)")
        about = {
            "seed": request.seed, "truncated": self.truncated, "request": asdict(request),
            "order": page.comparison.rows.order, "latents_sha256": self.noise,
        }  # fmt: skip
        states = [run.state() for run in runs]
        shown = view(page, about, rows, self.images, self.compare_with, final, states)
        groups = machine_groups(page, states, self.noise, baseline_seconds(page, rows))
        return page_outputs(page, request.seed, "\n\n".join(message), shown, None, groups)  # None: no example awaited


def run_rows_here(shown: VisitorComparison, runs: list[MachineRun], progress):
    """This machine's rows one at a time, the page's outputs after each (the other machines' too, as they are)."""
    comparison = shown.page.comparison
    order, titles = comparison.rows.order, comparison.rows.titles

    def on_step(backend_id, step, total):
        desc = f"row {order.index(backend_id) + 1}/{len(order)}, {titles[backend_id]}: step {step}/{total}"
        progress((step, total), desc=desc)

    def on_warmup(backend_id):
        progress(None, desc=f"{titles[backend_id]}: first run at this size, warming up (not timed)")

    def on_wait(what):
        start_up_progress(comparison, progress, what)

    for row in comparison.run(shown.request, on_step=on_step, on_warmup=on_warmup, on_wait=on_wait):
        shown.add(row)
        yield shown.outputs(runs, final=False)


def wait_for_other_machines(page: Page, shown: VisitorComparison, runs: list[MachineRun], progress):
    """Once this machine's rows are done: the other machines' updates as they come, until every one is done or its
    deadline (and the connection's) has passed."""
    deadline = time.monotonic() + (page.machines.timeout_s + CONNECT_ALLOWANCE_S if runs else 0)
    while runs and time.monotonic() < deadline:
        states = [run.state() for run in runs]
        if all(s.done for s in states):
            break
        progress(None, desc="The remotes: " + "; ".join(f"{s.label}: {s.state}" for s in states))
        if any(run.changed.is_set() for run in runs):
            for run in runs:
                run.changed.clear()
            yield shown.outputs(runs, final=False)
        time.sleep(0.25)


def tick_interval(comparison: Comparison) -> float:
    """How often an open tab refreshes its status lines: often during the start-up, when they change and nothing is
    timed; seldom after it, when a tab's request (4-6 ms of the server's CPU) would run beside timed rows."""
    return TICK_STARTING_S if comparison.rows.starting.is_set() or comparison.rows.model is None else TICK_SERVING_S


def example_ready(page: Page, awaiting) -> int | None:
    """For the status timer: the index of the example a page awaits (`awaiting`) once it exists, else None. A plain
    value into a hidden number, whose change fills the page (`fill_when_ready`): a timer handler that returned the
    page's outputs as `gr.skip()` updates would cost Gradio far more CPU per tick per open tab."""
    if isinstance(awaiting, int) and page.showcase.example(page.comparison.rows.model, awaiting) is not None:
        return awaiting
    return None


def fill_when_ready(page: Page, awaiting) -> list:
    """For the status timer: a page waiting for an example (`awaiting`: its index) shows it once it exists; never
    while the visitor's own request runs (that clears `awaiting`)."""
    if isinstance(awaiting, int) and page.showcase.example(page.comparison.rows.model, awaiting) is not None:
        return show_example(page, awaiting)
    return [gr.skip()] * len(page.outputs)


def example_inputs(index) -> list:
    """Prompt, negative prompt and seed of built-in example `index`, for the input fields."""
    prompt, negative, seed = EXAMPLES[index if isinstance(index, int) and 0 <= index < len(EXAMPLES) else 0]
    return [prompt, negative, seed]
