"""Stable Diffusion side by side on Xeon: one prompt, one seed, every backend, honest latency.

Run `python app.py --model tiny` (or set SBS_MODEL); `python app.py --help` lists every setting.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from core.cpu import played_cpu
from core.request import SCHEDULERS, STAGES, GenerationRequest
from harness.client_keys import ClientKeys
from harness.comparison import Comparison, RowResult
from harness.examples import EXAMPLES, compute_examples, make_showcase, missing
from harness.fair_share import FairShare
from harness.page_images import PageImages
from harness.results import LatencyTable, latency_tables
from harness.settings import Settings, build_comparison
from harness.showcase import Showcase
from harness.system_info import system_info
from harness.validation import GUIDANCE_RANGE, MAX_SEED, STEPS_RANGE, InvalidRequest
from harness.wait_estimate import WaitEstimate

log = logging.getLogger("app")

TICK_STARTING_S, TICK_SERVING_S = 2.0, 10.0  # the status timer's interval during the start-up and after it
MAX_UPLOAD = "1kb"  # the page takes no files: Gradio's upload route refuses anything larger
DELETE_CACHE = (600, 3600)  # every 10 minutes, Gradio's temporary files (images sent to pages) older than an hour go
STANDIN_BANNER = "**Random-weight stand-in model `{name}`: images are noise, latencies are real.**"
# Markdown's punctuation, and ':' and '@' so that no URL or e-mail address in a visitor's text becomes a link
# (GitHub-flavoured Markdown links bare URLs).
MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:@])")


@dataclass
class Page:
    """What the page's handlers share: the comparison and what surrounds it. None of it holds a visitor's input:
    a visitor's comparison lives in that visitor's page only."""

    comparison: Comparison
    showcase: Showcase  # the operator's examples as computed here
    settings: Settings  # the page's own settings (default steps, queue size, public mode)
    timings: WaitEstimate  # the latest measured stages, for the wait estimate
    clients: ClientKeys  # who a request comes from (the proxies the operator trusts)
    tables: list[LatencyTable]  # the committed latency tables (results/), read once
    fair_share: FairShare | None = None  # one comparison per client, once the queue exists (`build_demo`)


def make_page(comparison: Comparison, showcase: Showcase | None = None, settings: Settings | None = None) -> Page:
    if comparison.image_store is None:  # the page hands Gradio PNG files written under the row lock
        comparison.image_store = PageImages(Path(tempfile.mkdtemp(prefix="sbs-page-images-")))
    settings = settings or Settings()
    showcase = showcase or make_showcase(comparison)
    return Page(comparison, showcase, settings, WaitEstimate(), ClientKeys(settings.trusted_proxies), latency_tables())


def text(value: str = "", **kwargs) -> gr.Markdown:
    """A Markdown component that renders no maths: nothing on the page is LaTeX, and a visitor's `$$...$$` (which
    Gradio's Markdown renders by default) stays as typed."""
    return gr.Markdown(value, latex_delimiters=[], **kwargs)


def plain(text: str) -> str:
    """A visitor's text for a Markdown component: shown as typed, never read as Markdown or HTML."""
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", html.escape(text, quote=False))


# ------------------------------------------------------------------------------------------ view helpers
# Every view below is drawn from the figures dicts of `RowResult.figures()`, so a request in progress and a
# comparison read back from disk (`harness.showcase`) look the same.
STAGE_LABELS = dict(zip(STAGES, ("text encoding", "denoising (UNet steps)", "VAE decoding"), strict=True))
CSS = """
@media (max-width: 700px) {
  .stack-on-phone { flex-direction: column !important; }
  /* On a phone the answer comes first: the headline, then the rows two to a line, then the controls. */
  .phone-first { order: -2; }
  .phone-second { order: -1; }
  .rows-on-phone { flex-direction: row !important; flex-wrap: wrap !important; }
  .rows-on-phone > div { flex: 1 1 40% !important; min-width: 40% !important; }
  .rows-on-phone .row-image, .rows-on-phone .row-image * { height: auto !important; max-width: 100% !important; }
  .rows-on-phone .row-card h2 { font-size: 1.1em; }
  .rows-on-phone .row-card h3 { font-size: 0.95em; }
  .rows-on-phone .row-status { display: none; }  /* the operator's detail; the System panel has it too */
}
.row-card h2 { margin: 0.2em 0; }
"""


def card_markdown(comparison: Comparison, backend_id: str, row: dict | None = None, tables=()) -> str:
    """A row's result: the big ratio, its figures and notes; until its first result, what the row is. A row this
    CPU cannot run says what it needs and, from the committed results (`tables`), what it did on CPUs that ran it."""
    lines = [f"### {comparison.rows.titles[backend_id]}"]
    if not comparison.rows.runs_here(backend_id) and (row is None or row["status"] != "ok"):
        lines.append(f"**Not on this CPU**: {comparison.rows.why_not_here(backend_id)}")
        lines += measured_elsewhere(tables, backend_id)
    elif row is not None and row["status"] == "ok":
        speedup = row.get("speedup")
        big = (
            "reference"
            if backend_id == comparison.rows.reference
            else (ratio_words(speedup) if speedup else "no baseline")
        )
        lines.append(f"## {big}")
        figures = f"**{row['latency_s']:.2f} s** total · {row['s_per_step']:.3f} s/step"
        if row.get("psnr_db") is not None:
            figures += f" · PSNR {row['psnr_db']:.1f} dB · SSIM {row['ssim']:.3f}"
        lines.append(figures)
        if row.get("message"):
            lines.append(f"_{row['message']}_")
    elif row is not None:
        lines.append(f"**{row['status']}**: {row['message']}")
    else:
        lines.append("_no result yet_")
    return "\n\n".join(lines)


def measured_elsewhere(tables, backend_id: str, most: int = 2) -> list[str]:
    """The row's committed figure on the CPU kinds that ran it (the latest file of each kind, a played kind's never),
    each with its file, date, model, size and steps: what the row does where it runs."""
    lines, kinds = [], set()
    for table in sorted(tables, key=lambda t: t.date, reverse=True):
        row = next((r for r in table.rows if r.backend == backend_id and r.median_s is not None), None)
        if row is None or table.cpu_kind in kinds or table.cpu_kind.endswith("-played"):
            continue
        kinds.add(table.cpu_kind)
        ratio = f", {ratio_words(row.speedup)} than that run's baseline" if row.speedup else ""
        lines.append(
            f"_Measured on **{table.cpu_kind}** ({table.date}, `{table.path.name}`): {row.median_s:.1f} s for "
            f"{table.model} at {table.size}px, {table.steps} steps{ratio}._"
        )
    return lines[:most]


def ratio_words(speedup: float) -> str:
    return f"{speedup:.1f}× faster" if speedup >= 1 else f"{1 / speedup:.1f}× slower"


def status_line(comparison: Comparison, backend_id: str) -> str:
    """How the row runs here and whether it is ready: refreshed by the status timer, apart from the results."""
    status = comparison.rows.status[backend_id]
    load = status.load
    parts = []
    if load is not None:
        parts.append(
            f"{load.precision} · loaded in {load.seconds:.0f} s (cache {load.cache}), +{load.ram_added_mb:.0f} MB RAM"
            + (f", {load.disk_mb:.0f} MB on disk" if load.disk_mb else "")
        )
    parts.append(f"status: {status.describe()}")
    return "<small>" + " · ".join(parts) + "</small>"


def headline(rows: list[dict], reference: str | None) -> str:
    done = [r for r in rows if r["status"] == "ok" and r.get("speedup")]
    fastest = max(done, key=lambda r: r["speedup"], default=None)
    if fastest is None or fastest["backend"] == reference:
        return ""
    psnr = f", PSNR {fastest['psnr_db']:.0f} dB vs baseline" if fastest.get("psnr_db") is not None else ""
    if any(r.get("inflated_by") for r in rows):  # never a headline from a ratio that is not clean
        return "_Some rows were timed while another row was loading: the ratios are not clean, so no headline._"
    return f"# {fastest['title']}: {fastest['speedup']:.1f}× faster than baseline{psnr}"


def latency_chart(rows: list[dict], reference: str | None) -> pd.DataFrame:
    done = [r for r in rows if r["status"] == "ok"]
    return pd.DataFrame(
        {
            "row": [r["title"] for r in done],
            "latency (s)": [round(r["latency_s"], 3) for r in done],
            "kind": ["reference" if r["backend"] == reference else "optimized" for r in done],
        }
    )


def stage_chart(rows: list[dict]) -> pd.DataFrame:
    """One stacked bar per row: seconds in text encoding, denoising and VAE decoding, as measured."""
    records = [
        {"row": r["title"], "stage": STAGE_LABELS[stage], "seconds": round(seconds, 3)}
        for r in rows
        if r["status"] == "ok" and r.get("stages")
        for stage, seconds in r["stages"].items()
    ]
    return pd.DataFrame(records, columns=["row", "stage", "seconds"])


LATENCY_COLORS = {"reference": "#d62728", "optimized": "#1f77b4"}
STAGE_COLORS = dict(zip(STAGE_LABELS.values(), ("#2ca02c", "#1f77b4", "#ff7f0e"), strict=True))


def row_bars(y: str, color: str, title: str, colors: dict) -> gr.BarPlot:
    """An empty bar chart with one bar per row (drawn when a comparison finishes)."""
    return gr.BarPlot(None, x="row", y=y, color=color, title=title, x_label_angle=-20, color_map=colors, sort=None)


def slider_pair(images: dict, reference: str | None, other: str | None):
    """(reference row's image, chosen row's image) for the slider (PNG files), or None while either is missing."""
    if other is None or images.get(reference) is None or images.get(other) is None:
        return None
    if not all(os.path.exists(images[b]) for b in (reference, other)):  # an old comparison's files, since replaced
        return None
    return images[reference], images[other]


def other_cpus_table(tables: list[LatencyTable]) -> pd.DataFrame:
    """Every committed latency table: one line per CPU kind and row, short enough for a laptop and a phone (the
    CPU kind, not its model string; what the row computed in as its recipe; the file's date and commit)."""
    records = []
    for table in tables:
        for r in table.rows:
            ok = r.status == "ok"
            records.append(
                {
                    "CPU kind": table.cpu_kind,
                    "row": r.backend,
                    "latency (s)": round(r.median_s, 1) if r.median_s is not None else None,
                    "speed-up": round(r.speedup, 2) if r.speedup else None,
                    "recipe": r.precision if ok else f"{r.status}: {r.reason}"[:120],
                    "date, commit": f"{table.date}, {table.commit}",
                }
            )
    return pd.DataFrame(records, columns=["CPU kind", "row", "latency (s)", "speed-up", "recipe", "date, commit"])


def other_cpus_sources(tables: list[LatencyTable]) -> str:
    """Each file behind the table: CPU, model, size, steps, passes and command."""
    return "\n".join(
        f"- **{t.cpu_kind}** ({t.cpu}, {t.cores} cores; {t.isa}): {t.model}, {t.size}px, {t.steps} steps, "
        f"{t.passes} timed pass(es), {t.date}, commit {t.commit}: `{t.command}`"
        for t in tables
    )


def other_cpus_chart(table: pd.DataFrame) -> pd.DataFrame:
    """One bar per CPU kind and row (each its own x position: bars never stack), coloured by CPU kind."""
    done = table.dropna(subset=["speed-up"])
    return pd.DataFrame(
        {"CPU kind · row": done["CPU kind"] + " · " + done["row"], "speed-up": done["speed-up"],
         "CPU kind": done["CPU kind"]}
    )  # fmt: skip


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


def model_banner(comparison: Comparison) -> str:
    """What the visitor must know about the model before the figures: still downloading, a stand-in, a fallback."""
    model = comparison.rows.model
    if model is None:
        first = comparison.rows.status[comparison.rows.order[0]]
        return f"**Preparing the model** — {first.detail or 'waiting'}. The rows load once it is here."
    lines = [STANDIN_BANNER.format(name=model.model_id)] if model.standin else []
    if model.fallback_reason:
        lines.append(f"**Fell back to the `tiny` stand-in**: {model.fallback_reason}")
    return "\n\n".join(lines)


def status_lines(comparison: Comparison) -> list[str]:
    """The status timer's update: every row's status line (the result cards are left alone: they keep the
    figures of the comparison shown until the next one replaces them)."""
    return [status_line(comparison, b) for b in comparison.rows.order]


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


# ------------------------------------------------------------------------------------------ handlers
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


def queued_comparisons(demo: gr.Blocks) -> tuple[list, list]:
    """(running, waiting) comparison events in Gradio's own queue, with their requests. Gradio has no public API for
    this: the queue's attributes read here were checked against Gradio 6.31."""
    queue = demo._queue

    def comparisons(events):
        return [e for e in events if e is not None and getattr(e.fn, "api_name", None) == "generate"]

    running = comparisons(e for job in queue.active_jobs if job for e in job)
    waiting = comparisons(e for q in list(queue.event_queue_per_concurrency_id.values()) for e in list(q.queue))
    return running, waiting


def queue_holdings(demo: gr.Blocks, key):
    """`holdings(client)` for `FairShare`: whether `client` has a comparison running, and its place in the queue,
    each event's client being `key(request)`."""

    def holdings(client: str) -> tuple[bool, int | None]:
        running, waiting = queued_comparisons(demo)
        place = next((i + 1 for i, e in enumerate(waiting) if key(e.request) == client), None)
        return any(key(e.request) == client for e in running), place

    return holdings


def visitors_waiting(demo: gr.Blocks) -> bool:
    """Whether any visitor's comparison is running or queued (the further examples wait until none is)."""
    return any(queued_comparisons(demo))


def make_admit(page: Page):
    """Gradio's `validator` of the generate event: runs before the request is queued and refuses a second one from
    the same client, naming its place."""

    def admit(
        prompt, negative_prompt, seed, random_seed, steps, guidance, size, scheduler, compare_with=None,
        request: gr.Request = None,
    ):  # fmt: skip
        # Gradio hands the validator the event's inputs, and the request only to a parameter annotated as one.
        refusal = None
        if page.fair_share and request:
            client = page.clients.key(request)
            page.clients.observe(client, forwarded=bool(request.headers.get("x-forwarded-for")))
            refusal = page.fair_share.admit(client)
        return [gr.validate(refusal is None, refusal or "")] + [gr.validate(True, "")] * 8

    return admit


def run_label(request: GenerationRequest) -> str:
    """The label of a visitor's own comparison: their prompt shown as plain text."""
    return (
        f"**Your comparison** (shown to you only): “{plain(request.prompt)}”, seed {request.seed}, {request.steps} "
        f"steps, {request.width}x{request.height}, {request.scheduler}, guidance {request.guidance_scale:g}."
    )


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


def build_demo(page: Page) -> gr.Blocks:
    comparison, settings = page.comparison, page.settings
    limits = comparison.limits
    sizes = [f"{s}x{s}" for s in limits.offered()]
    image_px = min(512, comparison.rows.settings.sizes[0])  # images at their real size, up to 512 px
    with gr.Blocks(title="Stable Diffusion side by side on Xeon", css=CSS, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            "# Stable Diffusion side by side on Xeon\nOne prompt, one seed, identical starting noise on every row; "
            "rows run one after another and each is timed the same way."
        )
        banner = gr.Markdown(model_banner(comparison))
        with gr.Tab("Compare"):
            with gr.Row(elem_classes=["stack-on-phone"]):
                with gr.Column(scale=3):
                    prompt = gr.Textbox(
                        label="Prompt", value=EXAMPLES[0][0], max_length=1000, placeholder="Type a prompt, press Enter"
                    )
                    negative = gr.Textbox(label="Negative prompt", max_length=1000)
                with gr.Column(scale=2):
                    with gr.Row():
                        seed = gr.Number(label="Seed", value=EXAMPLES[0][2], precision=0, minimum=0, maximum=MAX_SEED)
                        random_seed = gr.Checkbox(label="Random seed", value=False)
                    # The slider spans every step count a row can run; a public instance's cap is said in its label
                    # and enforced by validation, whose message names it (Gradio's own range check, at a lower
                    # maximum, would refuse an API client with a bare "400 Bad Request").
                    capped = limits.max_steps < STEPS_RANGE[1]
                    steps = gr.Slider(
                        *STEPS_RANGE,
                        value=min(settings.steps, limits.max_steps),
                        step=1,
                        label=f"Steps (at most {limits.max_steps} here)" if capped else "Steps",
                    )
                    guidance = gr.Slider(1.5, GUIDANCE_RANGE[1], value=7.5, step=0.5, label="Guidance")
                    with gr.Row():
                        # allow_custom_value: validation, not Gradio's choice check, answers an API client that
                        # asks for another size, naming what is offered.
                        size = gr.Dropdown(
                            sizes, value=sizes[0], label="Resolution (compiled sizes)", allow_custom_value=True
                        )
                        scheduler = gr.Dropdown(
                            [(label, key) for key, (_, label) in SCHEDULERS.items()], value="dpm++", label="Scheduler"
                        )
            with gr.Row(elem_classes=["stack-on-phone"]):
                button = gr.Button("Generate on every row", variant="primary", scale=1)
                wait = text()
            example = gr.Radio(
                [(f"{i + 1}. {p}", i) for i, (p, _n, _s) in enumerate(EXAMPLES)],
                value=0,
                label="Built-in examples, computed on this machine (choose one to see it)",
            )
            message = text()
            title = text(elem_classes=["phone-first"])
            images, cards, statuses = [], [], []
            with gr.Row(equal_height=False, elem_classes=["rows-on-phone", "phone-second"]):
                for backend_id in comparison.rows.order:
                    with gr.Column(min_width=min(image_px, 320)):
                        images.append(
                            gr.Image(
                                label=comparison.rows.titles[backend_id],
                                type="filepath",
                                format="png",
                                height=image_px,
                                width=image_px,
                                interactive=False,
                                show_label=False,  # the card below names the row
                                elem_classes=["row-image"],
                                visible=comparison.rows.runs_here(backend_id),  # no empty frame for a row not here
                            )
                        )
                        card = card_markdown(comparison, backend_id, tables=page.tables)
                        cards.append(text(card, elem_classes=["row-card"]))
                        statuses.append(text(status_line(comparison, backend_id), elem_classes=["row-status"]))
            with gr.Row(elem_classes=["stack-on-phone"]):
                with gr.Column():
                    slider = gr.ImageSlider(
                        label="Baseline ◀ ▶ row", type="filepath", max_height=image_px, elem_classes=["compare-slider"]
                    )
                    compare_with = gr.Radio(label="Compare the baseline with", choices=[])
                with gr.Column():
                    chart = row_bars("latency (s)", "kind", "Latency (lower is better)", LATENCY_COLORS)
                    stage_bars = row_bars(
                        "seconds", "stage", "Where the time goes (measured in each timed run)", STAGE_COLORS
                    )
            with gr.Accordion("Figures (also returned by the /generate API)", open=False):
                figures = gr.JSON(show_label=False)
        with gr.Tab("Same comparison on other CPUs"):
            tables = page.tables
            table = other_cpus_table(tables)
            gr.Markdown(
                "The committed benchmark results (`results/*.json`, made by `benchmark.py`): one group per CPU "
                "kind, each with its date and command. Only measured files are shown."
            )
            gr.BarPlot(
                other_cpus_chart(table) if len(table) else None,
                x="CPU kind · row",
                y="speed-up",
                color="CPU kind",
                title="Speed-up over the same run's PyTorch fp32 baseline",
                x_label_angle=-30,
                sort=None,
            )
            gr.Dataframe(table, wrap=True, interactive=False)
            with gr.Accordion("Where each figure comes from", open=False):
                gr.Markdown(other_cpus_sources(tables))
        with gr.Accordion("System: what is this running on?", open=False):
            system = gr.Markdown(system_markdown(comparison))
        kept_images = gr.State({})

        awaiting = gr.State(None)  # the example this page waits for (its index), until it is computed
        outputs = [seed, message, title, chart, figures, *images, *cards, stage_bars, slider, compare_with, kept_images]
        outputs.append(awaiting)
        inputs = [prompt, negative, seed, random_seed, steps, guidance, size, scheduler, compare_with]
        gr.on(
            [button.click, prompt.submit],
            make_generate(page),
            inputs=inputs,
            outputs=outputs,
            api_name="generate",
            concurrency_limit=1,  # one request at a time through the rows: fair timing
            show_progress_on=[message],  # one progress bar following the running row's steps
            validator=make_admit(page),  # one running or queued comparison per client
        ).then(lambda sz, st: page.timings.text(comparison, sz, st), [size, steps], wait, api_name=False)
        compare_with.change(
            lambda kept, other: gr.ImageSlider(
                slider_pair(kept, comparison.rows.reference, other),
                label=f"Baseline ◀ ▶ {comparison.rows.titles.get(other, '')}",
            ),
            [kept_images, compare_with],
            slider,
            api_name=False,
            queue=False,
        )
        example.input(lambda i: show_example(page, i), example, outputs, api_name=False, queue=False).then(
            example_inputs, example, [prompt, negative, seed], api_name=False, queue=False
        )
        size_or_steps = [size.change, steps.change]
        gr.on(
            size_or_steps,
            lambda sz, st: page.timings.text(comparison, sz, st),
            [size, steps],
            wait,
            api_name=False,
            queue=False,
        )
        # One handler per page open and one per timer tick: every open tab calls them outside the row lock
        # (benchmarking/polling.py measures what twenty tabs cost a timed row; the README has its figures).
        demo.load(
            lambda sz, st: [*show_example(page, 0), page.timings.text(comparison, sz, st), system_markdown(comparison)],
            [size, steps],
            [*outputs, wait, system],
            api_name=False,
            queue=False,
        )
        # The timer's one handler returns plain values only (no component updates, which Gradio makes costly).
        # The awaited example's index once it exists: its change fills the page (a State's change event does not
        # fire for a value a handler set, Gradio 6.31; a component in the DOM, visually hidden, does).
        ready = gr.Number(None, visible="hidden", precision=0, interactive=False)
        timer = gr.Timer(TICK_STARTING_S)
        timer.tick(
            lambda waiting: [
                *status_lines(comparison),
                model_banner(comparison),
                example_ready(page, waiting),
                tick_interval(comparison),
            ],
            inputs=awaiting,
            outputs=[*statuses, banner, ready, timer],
            api_name=False,
            queue=False,
            show_progress="hidden",
        )
        ready.change(
            lambda index: fill_when_ready(page, index, len(outputs)),
            ready,
            outputs,
            api_name=False,
            queue=False,
            show_progress="hidden",
        )

        def health_api() -> dict:
            """Readiness of every row (ready, warm, each row's status and cache state, the model)."""
            return health(page)

        gr.api(health_api, api_name="health", queue=False)
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=1)
    page.fair_share = FairShare(queue_holdings(demo, page.clients.key))
    return demo


def launch(page: Page, demo: gr.Blocks, port: int | None = None, **kwargs) -> None:
    """Serve the page: on `settings.host` (loopback unless the operator opens it), no uploads, and in public mode
    no raw exception text (visitors get short messages with error ids; `show_error` only adds raw ones). The kept
    examples' images are served from where they are kept (Gradio hands out only files from its temporary and
    working directories and the `allowed_paths`: exactly that directory, nothing else of the cache)."""
    settings = page.settings
    # uvicorn (the server Gradio starts) reads the proxies it trusts from here when it starts: see ClientKeys.
    os.environ["FORWARDED_ALLOW_IPS"] = page.clients.trusted_proxy_addresses
    demo.launch(
        server_name=settings.host,
        server_port=port or settings.port,
        show_error=not settings.public,
        allowed_paths=[str(page.showcase.root.resolve())],
        max_file_size=MAX_UPLOAD,
        **kwargs,
    )


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env().updated(Settings.parser(__doc__).parse_args(argv))
    played_cpu()  # a kind the machine cannot present (SBS_CPU_KIND) stops here, with the reason
    started = time.monotonic()
    page = make_page(build_comparison(settings), settings=settings)
    demo = build_demo(page)
    page.comparison.load_in_background(
        then=lambda: compute_examples(page.comparison, page.showcase, lambda: visitors_waiting(demo))
    )
    log.info("UI up after %.1f s; rows load in the background", time.monotonic() - started)
    launch(page, demo)


if __name__ == "__main__":
    main()
