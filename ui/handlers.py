"""The page's handlers: a visitor's comparison, the examples, the status timer."""

from __future__ import annotations

import logging
import secrets
from dataclasses import asdict

import gradio as gr
import numpy as np

from harness.comparison import Comparison, RowResult
from harness.examples import EXAMPLES, missing
from harness.validation import MAX_SEED, InvalidRequest

from .cards import card_markdown, headline, plain, run_label
from .charts import latency_chart, slider_pair, stage_chart
from .context import Page

log = logging.getLogger(__name__)

TICK_STARTING_S, TICK_SERVING_S = 2.0, 10.0  # the status timer's interval during the start-up and after it


def view(page: Page, about: dict, rows: list[dict], images: dict, compare_with: str | None, final: bool) -> list:
    """The comparison's outputs after `seed` and `message`, in `build_demo`'s order: headline, latency chart,
    figures JSON (`about` the request, then every row), one image (a PNG file) and one card per row, stage chart,
    slider, the slider's choice of row, and the images kept for the slider."""
    comparison = page.comparison
    order, reference = comparison.rows.order, comparison.rows.reference
    by_id = {r["backend"]: r for r in rows}
    # Charts are drawn once, for a finished comparison: Gradio's bar plot keeps the colour legend of its
    # first data, so drawing them row by row would lose the colours.
    chart = gr.BarPlot(latency_chart(rows, reference), sort=[r["title"] for r in rows]) if final else gr.skip()
    stages = gr.BarPlot(stage_chart(rows), sort=[r["title"] for r in rows]) if final else gr.skip()
    others = [b for b in order if b != reference and b in images]
    chosen = compare_with if compare_with in others else (others[-1] if others else None)
    return [
        headline(rows, reference),
        chart,
        {**about, "rows": rows},
        *[images.get(b) for b in order],
        *[card_markdown(comparison, b, by_id.get(b), page.tables) for b in order],
        stages,
        gr.ImageSlider(
            slider_pair(images, reference, chosen), label=f"Baseline ◀ ▶ {comparison.rows.titles.get(chosen, '')}"
        ),
        gr.Radio(choices=[(comparison.rows.titles[b], b) for b in others], value=chosen),
        images,
    ]


def show_example(page: Page, index) -> list:
    """The page's outputs for built-in example `index` as computed here; until it is, a line saying so (and the
    page's "awaiting" state, so the status timer fills it in when it exists)."""
    index = index if isinstance(index, int) and 0 <= index < len(EXAMPLES) else 0
    run = page.showcase.example(page.comparison.rows.model, index)
    if run is None:
        waiting = (
            f"_Example {index + 1} is computed here once every row is warm"
            + (" and no visitor is waiting" if index else "")
            + "; it appears by itself._"
        )
        return [gr.skip(), waiting, *view(page, {}, [], {}, None, final=False), index]
    about = {"seed": run.request.seed, "request": asdict(run.request), "finished": run.finished, "machine": run.machine}
    images = {b: str(path) for b, path in run.images.items()}
    label = run.label()
    absent = missing(page.comparison, run.rows)
    if absent:
        titles = ", ".join(page.comparison.rows.titles[b] for b in absent)
        label += (
            f"\n\n_Missing from this example: {titles} (each card says why). It is computed again, with every row,"
            " when the missing rows are ready._"
        )
    return [run.request.seed, label, *view(page, about, run.rows, images, None, final=True), None]


def tick_interval(comparison: Comparison) -> float:
    """How often an open tab refreshes its status lines: often during the start-up, when they change and nothing is
    timed; seldom after it, when a tab's request (4-6 ms of the server's CPU) would run beside timed rows."""
    return TICK_STARTING_S if comparison.rows.starting.is_set() or comparison.rows.model is None else TICK_SERVING_S


def example_ready(page: Page, awaiting) -> int | None:
    """For the status timer: the index of the example a page awaits (`awaiting`) once it exists, else None. A plain
    value into a hidden number, whose change fills the page (`fill_when_ready`): a timer handler that returned the
    page's outputs as `gr.skip()` updates cost Gradio about 25 ms of CPU per tick per open tab (an update's config
    is rebuilt, JSON schema included), beside the timed rows."""
    if isinstance(awaiting, int) and page.showcase.example(page.comparison.rows.model, awaiting) is not None:
        return awaiting
    return None


def fill_when_ready(page: Page, awaiting, n_outputs: int) -> list:
    """For the status timer: a page waiting for an example (`awaiting`: its index) shows it once it exists; never
    while the visitor's own request runs (that clears `awaiting`)."""
    if isinstance(awaiting, int) and page.showcase.example(page.comparison.rows.model, awaiting) is not None:
        return show_example(page, awaiting)
    return [gr.skip()] * n_outputs


def example_inputs(index) -> list:
    """Prompt, negative prompt and seed of built-in example `index`, for the input fields."""
    prompt, negative, seed = EXAMPLES[index if isinstance(index, int) and 0 <= index < len(EXAMPLES) else 0]
    return [prompt, negative, seed]


def make_generate(page: Page):
    comparison = page.comparison
    order = comparison.rows.order

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
        """Run the prompt through every row this CPU runs; yields after each row so cards fill as rows finish.

        Outputs: seed, message, headline, chart, figures JSON, one image and one card per row, the stage
        chart, the slider, the slider's choice of row, the images kept for the slider, and None for the page's
        "awaiting an example" state. An unexpected error reaches the visitor as a short message with an id; its
        traceback goes to the log under that id."""
        if page.fair_share is not None and request is not None:
            page.fair_share.started(page.clients.key(request))
        try:
            yield from run_comparison(
                prompt, negative_prompt, seed, random_seed, steps, guidance, size, scheduler, compare_with, progress
            )
        except gr.Error:
            raise
        except Exception:
            error_id = secrets.token_hex(4)
            log.exception("the comparison failed (error %s)", error_id)
            raise gr.Error(f"Something went wrong here (error {error_id}, in the log). Please try again.") from None

    def run_comparison(
        prompt, negative_prompt, seed, random_seed, steps, guidance, size, scheduler, compare_with, progress
    ):
        def on_wait(what: str) -> None:
            rows = comparison.rows
            runs_here = [b for b in rows.order if rows.runs_here(b)]
            loaded = sum(rows.status[b].state not in ("waiting", "loading") for b in runs_here)
            desc = f"Nothing is timed until every row is loaded and warm. Now: {what}"
            progress((loaded, len(runs_here)), desc=desc, unit="rows loaded")

        if random_seed:
            seed = secrets.randbelow(MAX_SEED + 1)
        try:
            side = str(size).split("x")[0] if size else size  # "512x512" -> "512"; validation says what is wrong
            request = comparison.validate(
                prompt=prompt,
                negative_prompt=negative_prompt,
                seed=seed,
                steps=steps,
                guidance_scale=guidance,
                height=side,
                width=side,
                scheduler=scheduler,
            )
        except (InvalidRequest, ValueError) as exc:
            raise gr.Error(str(exc), duration=None) from None
        # Nothing of this request runs before the start-up is over (the truncation note's tokenizer included):
        # see RowSet.wait_for_start_up.
        comparison.rows.wait_for_start_up(on_wait)
        notes = []
        if random_seed:
            notes.append(f"Random seed: **{request.seed}**")
        truncated = comparison.truncation(request)
        if truncated:
            notes.append(f"Note: {plain(truncated)}")
        skipped: list[str] = []
        elsewhere: list[str] = []
        images: dict = {}
        results: list[RowResult] = []

        def on_step(backend_id, step, total):
            i = order.index(backend_id) + 1
            desc = f"row {i}/{len(order)}, {comparison.rows.titles[backend_id]}: step {step}/{total}"
            progress((step, total), desc=desc)

        def on_warmup(backend_id):
            progress(None, desc=f"{comparison.rows.titles[backend_id]}: first run at this size, warming up (not timed)")

        def snapshot(final: bool, label: str | None = None):
            rows = [r.figures() for r in results]
            message = ([label] if label else []) + notes
            message += ["Skipped: " + ", ".join(skipped)] if skipped else []
            message += [f"Not on this CPU: {', '.join(elsewhere)} (each card says what it needs)"] if elsewhere else []
            about = {"seed": request.seed, "truncated": truncated, "request": asdict(request)}
            shown = view(page, about, rows, images, compare_with, final)
            return [request.seed, "\n\n".join(message), *shown, None]  # None: not awaiting an example

        yield snapshot(final=False)
        for row in comparison.run(request, on_step=on_step, on_warmup=on_warmup, on_wait=on_wait):
            results.append(row)
            if row.status == "skipped" and not comparison.rows.runs_here(row.backend):
                elsewhere.append(row.title)  # a fact of this CPU, not a fault: its card says what it needs
            elif row.status == "skipped":
                skipped.append(f"{row.title} ({row.message})")
            if row.image_path is not None:
                images[row.backend] = str(row.image_path)
            if row.blanks_all:  # the rows shown before this one are blanked too
                with comparison.rows.lock, comparison.activity("blanking the images"):
                    black = str(comparison.image_store.save(np.zeros(row.image.shape, np.uint8)))
                images = dict.fromkeys(images, black)
                notes.append("The safety checker flagged an image of this request: every row's image is blanked.")
            yield snapshot(final=False)
        page.timings.record(request.height, request.steps, [r.figures() for r in results])
        yield snapshot(final=True, label=run_label(request))

    return generate
