"""The page's handlers: a visitor's comparison, the examples, the status timer."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import asdict

import gradio as gr
import numpy as np

from core.request import GenerationRequest, latents_digest
from harness.comparison import Comparison, RowResult
from harness.examples import EXAMPLES, missing
from harness.remotes import CONNECT_TIMEOUT_S, Expected
from harness.system_info import machine_fingerprint
from harness.validation import MAX_SEED, InvalidRequest

from .cards import (
    card_markdown,
    headline,
    plain,
    remote_card_markdown,
    remote_header,
    remote_waiting_header,
    run_label,
)  # fmt: skip
from .charts import latency_chart, slider_pair, stage_chart
from .context import Page
from .gradio_queue import visitor_key

log = logging.getLogger(__name__)

TICK_STARTING_S, TICK_SERVING_S = 2.0, 10.0  # the status timer's interval during the start-up and after it


def view(
    page: Page, about: dict, rows: list[dict], images: dict, compare_with: str | None, final: bool, remotes=()
) -> list:
    """The comparison's outputs after `seed` and `message`, in `build_demo`'s order: headline, latency chart,
    figures JSON (`about` the request, then every row, then every remote's part), one image (a PNG file) and one
    card per row, stage chart, slider, the slider's choice of row (a remote's rows too), and the images kept for the
    slider. `remotes`: the remotes' `RemoteState`s (their own outputs are `remote_view`'s)."""
    comparison = page.comparison
    order, reference = comparison.rows.order, comparison.rows.reference
    by_id = {r["backend"]: r for r in rows}
    # Charts are drawn once, for a finished comparison: Gradio's bar plot keeps the colour legend of its
    # first data, so drawing them row by row would lose the colours.
    chart = gr.BarPlot(latency_chart(rows, reference), sort=[r["title"] for r in rows]) if final else gr.skip()
    stages = gr.BarPlot(stage_chart(rows), sort=[r["title"] for r in rows]) if final else gr.skip()
    images = {**images, **remote_images(remotes)}
    titles = {**comparison.rows.titles, **remote_titles(remotes)}
    others = [b for b in [*order, *images] if b != reference and b in images]
    others = list(dict.fromkeys(others))
    chosen = compare_with if compare_with in others else (others[-1] if others else None)
    ran_on = {b: [(s.remote.label, r) for s in remotes for r in s.rows if r.get("backend") == b] for b in order}
    figures = {**about, "rows": rows}
    if remotes:
        figures["remotes"] = [remote_figures(s) for s in remotes]
    return [
        headline(rows, reference),
        chart,
        figures,
        *[images.get(b) for b in order],
        *[card_markdown(comparison, b, by_id.get(b), page.tables, ran_on[b]) for b in order],
        stages,
        gr.ImageSlider(slider_pair(images, reference, chosen), label=f"Baseline ◀ ▶ {titles.get(chosen, '')}"),
        gr.Radio(choices=[(titles[b], b) for b in others], value=chosen),
        images,
    ]


def remote_key(label: str, backend_id: str) -> str:
    """A remote row's key among the page's images (the slider's choices)."""
    return f"{label} · {backend_id}"


def remote_images(remotes) -> dict:
    return {remote_key(s.remote.label, b): path for s in remotes for b, path in s.images.items()}


def remote_titles(remotes) -> dict:
    titles = {}
    for s in remotes:
        names = (s.health or {}).get("titles") or {}
        for b in s.images:
            titles[remote_key(s.remote.label, b)] = f"{s.remote.label}: {names.get(b, b)}"
    return titles


def remote_figures(state) -> dict:
    """A remote's part of the figures JSON: where it is, its CPU, the network apart, its rows' figures."""
    health = state.health or {}
    return {
        "label": state.remote.label,
        "state": state.state,
        "detail": state.detail,
        "cpu": health.get("cpu"),
        "cpu_kind": health.get("cpu_kind"),
        "machine": health.get("machine"),
        # cluster rows: the kind the machine serves, its Ray node and address (None for a remote instance)
        "kind": health.get("kind"),
        "node": health.get("node"),
        "node_ip": health.get("node_ip"),
        "latents_sha256": state.latents_sha256,
        "connect_s": state.connect_s,
        "call_s": (state.finished - state.started) if state.finished else None,
        "started_at": state.started,  # wall-clock (time.time()) of the call and of its end
        "finished_at": state.finished,
        "rows": state.rows,
    }


def remote_view(page: Page, states=None, page_noise: str = "", page_baseline_s: float | None = None) -> list:
    """Every remote group's outputs, in `build_demo`'s order: a heading, then one image and one card per row of
    this page's order (the remotes run this same app). `states` None: no comparison of the visitor's yet."""
    if page.remotes is None:
        return []
    comparison = page.comparison
    order, reference = comparison.rows.order, comparison.rows.reference
    by_label = {s.remote.label: s for s in states or ()}
    machine = machine_fingerprint()
    outputs = []
    for remote in page.remotes.remotes:
        state = by_label.get(remote.label)
        if state is None:
            outputs += [remote_waiting_header(remote.label), *[None] * len(order)]
            outputs += [remote_card_markdown(comparison.rows.titles[b], None, reference, None) for b in order]
            continue
        rows = {r.get("backend"): r for r in state.rows if isinstance(r, dict)}
        names = (state.health or {}).get("titles") or {}
        outputs.append(remote_header(state, machine, page_noise))
        outputs += [state.images.get(b) for b in order]
        missing = f"_no result: {state.state} (above)_" if state.done else "_no result from it yet_"
        outputs += [
            remote_card_markdown(
                str(names.get(b, comparison.rows.titles[b])), rows.get(b), reference, page_baseline_s, missing
            )
            for b in order
        ]
    return outputs


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
        return [gr.skip(), waiting, *view(page, {}, [], {}, None, final=False), index, *remote_view(page)]
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
    shown = view(page, about, run.rows, images, None, final=True)
    return [run.request.seed, label, *shown, None, *remote_view(page)]


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


def start_remotes(page: Page, request: GenerationRequest, noise: str, visitor: str) -> list:
    """Every remote's `RemoteRun` for `request` (none without remotes): the same request, seed resolved, through
    its own `/generate`; the model and noise it must match for its images to be comparable."""
    model = page.comparison.rows.model
    if page.remotes is None or model is None:
        return []
    inputs = [
        request.prompt, request.negative_prompt, request.seed, False, request.steps, request.guidance_scale,
        f"{request.width}x{request.height}", request.scheduler, None,
    ]  # fmt: skip
    return page.remotes.start(inputs, Expected(model.model_id, model.revision, noise), visitor)


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
        visitor = visitor_key(page, request)
        if page.fair_share is not None and request is not None:
            page.fair_share.started(visitor)
        try:
            yield from run_comparison(
                prompt, negative_prompt, seed, random_seed, steps, guidance, size, scheduler, compare_with, progress,
                visitor,
            )  # fmt: skip
        except gr.Error:
            raise
        except Exception:
            error_id = secrets.token_hex(4)
            log.exception("the comparison failed (error %s)", error_id)
            raise gr.Error(f"Something went wrong here (error {error_id}, in the log). Please try again.") from None

    def run_comparison(
        prompt, negative_prompt, seed, random_seed, steps, guidance, size, scheduler, compare_with, progress, visitor
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
        noise = latents_digest(request.seed, request.height, request.width)
        # The remotes run at the same time as the local rows (other machines: they cannot disturb a timed section
        # here); their updates are shown between local rows, then as they come.
        runs = start_remotes(page, request, noise, visitor)

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
            about = {
                "seed": request.seed, "truncated": truncated, "request": asdict(request), "order": order,
                "latents_sha256": noise,
            }  # fmt: skip
            states = [run.state() for run in runs]
            shown = view(page, about, rows, images, compare_with, final, states)
            reference = next((r for r in rows if r["backend"] == comparison.rows.reference), None)
            baseline_s = reference["latency_s"] if reference and reference["status"] == "ok" else None
            remote = remote_view(page, states, noise, baseline_s)
            return [request.seed, "\n\n".join(message), *shown, None, *remote]  # None: not awaiting an example

        try:
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
            deadline = time.monotonic() + (page.remotes.timeout_s + 3 * CONNECT_TIMEOUT_S if runs else 0)
            while runs and time.monotonic() < deadline:
                states = [run.state() for run in runs]
                if all(s.done for s in states):
                    break
                progress(None, desc="The remotes: " + "; ".join(f"{s.remote.label}: {s.state}" for s in states))
                if any(run.changed.is_set() for run in runs):
                    for run in runs:
                        run.changed.clear()
                    yield snapshot(final=False)
                time.sleep(0.25)
            page.timings.record(request.height, request.steps, [r.figures() for r in results])
            yield snapshot(final=True, label=run_label(request))
        finally:  # done, or the visitor left, or an error: no remote keeps working for nobody
            for run in runs:
                run.cancel()

    return generate
