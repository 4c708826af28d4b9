"""The page's layout (`build_demo`) and how it is served (`launch`)."""

from __future__ import annotations

import logging
import os

import gradio as gr

from core.request import SCHEDULERS
from harness.examples import EXAMPLES
from harness.fair_share import FairShare
from harness.remotes import credentials
from harness.validation import GUIDANCE_RANGE, MAX_SEED, STEPS_RANGE

from .cards import card_markdown, model_banner, status_line, status_lines, text
from .charts import LATENCY_COLORS, STAGE_COLORS, row_bars, slider_pair
from .context import Page
from .gradio_queue import make_admit, queue_holdings, visitor_key
from .handlers import (
    TICK_STARTING_S,
    example_inputs,
    example_ready,
    fill_when_ready,
    make_generate,
    remote_view,
    show_example,
    tick_interval,
)
from .other_cpus import other_cpus_chart, other_cpus_sources, other_cpus_table, remotes_markdown
from .quality import quality_grid, quality_markdown
from .system import health, system_markdown

log = logging.getLogger(__name__)

MAX_UPLOAD = "1kb"  # the page takes no files: Gradio's upload route refuses anything larger
DELETE_CACHE = (600, 3600)  # every 10 minutes, Gradio's temporary files (images sent to pages) older than an hour go


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
.other-work-header { border-top: 1px dashed var(--border-color-primary); margin-top: 0.5em; }
.remote-header { border-top: 2px solid var(--border-color-primary); margin-top: 1em; }
/* A remote row without an image (skipped there, not comparable, not yet run) shows its card only. */
.remote-rows .row-image:has(> .empty) { display: none !important; }
"""


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
            by_row = {}  # backend id -> (image, card, status line), put in the rows' order below
            rows = comparison.rows
            same = [b for b in rows.order if not rows.different_work(b)]
            other = [b for b in rows.order if rows.different_work(b)]
            # The rows of the same work side by side; a row of other work (fewer steps, another decoder) in a group
            # of its own below them, headed as such.
            for group in (same, other):
                if not group:
                    continue
                if group is other:
                    text(OTHER_WORK_HEADING, elem_classes=["other-work-header", "phone-second"])
                with gr.Row(equal_height=False, elem_classes=["rows-on-phone", "phone-second"]):
                    for backend_id in group:
                        with gr.Column(min_width=min(image_px, 320)):
                            here = rows.runs_here(backend_id)  # no empty frame for a row not here
                            image = row_image(rows.titles[backend_id], image_px, here)
                            card = text(
                                card_markdown(comparison, backend_id, tables=page.tables), elem_classes=["row-card"]
                            )
                            status = text(status_line(comparison, backend_id), elem_classes=["row-status"])
                            by_row[backend_id] = (image, card, status)
            images, cards, statuses = ([by_row[b][i] for b in rows.order] for i in range(3))
            # One group per remote, apart from this machine's rows (on a phone too): heading, then its rows.
            remote_outputs = []
            labels = [r.label for r in page.remotes.remotes] if page.remotes else []
            for label, initial in zip(labels, chunks(remote_view(page), page), strict=True):
                remote_outputs.append(text(initial[0], elem_classes=["remote-header", "phone-second"]))
                group_images, group_cards = [], []
                with gr.Row(equal_height=False, elem_classes=["rows-on-phone", "phone-second", "remote-rows"]):
                    for i, backend_id in enumerate(comparison.rows.order):
                        with gr.Column(min_width=min(image_px, 320)):
                            group_images.append(row_image(f"{label}: {backend_id}", image_px, True))
                            card = initial[1 + len(comparison.rows.order) + i]
                            group_cards.append(text(card, elem_classes=["row-card"]))
                remote_outputs += [*group_images, *group_cards]
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
        with gr.Tab("Same comparison on other CPUs") as other_cpus_tab:
            if page.remotes is not None:
                live = text("_The live remotes answer when this tab opens._")
                other_cpus_tab.select(lambda: remotes_markdown(page.remotes.healths()), None, live, api_name=False)
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
        with gr.Tab("Quality report"):
            gr.Markdown(quality_markdown(page.quality), elem_classes=["quality-report"])
            grid = quality_grid(page.quality)
            if grid is not None:
                gr.Image(
                    grid,
                    label="Every image of the run: one line per prompt, one column per row",
                    format="png",
                    elem_classes=["quality-grid"],
                )
        with gr.Accordion("System: what is this running on?", open=False):
            system = gr.Markdown(system_markdown(comparison))
        kept_images = gr.State({})

        awaiting = gr.State(None)  # the example this page waits for (its index), until it is computed
        outputs = [seed, message, title, chart, figures, *images, *cards, stage_bars, slider, compare_with, kept_images]
        outputs.append(awaiting)
        outputs += remote_outputs  # after every output of this machine's: a remote's /generate reads those by place
        inputs = [prompt, negative, seed, random_seed, steps, guidance, size, scheduler, compare_with]
        gr.on(
            [button.click, prompt.submit],
            make_generate(page),
            inputs=inputs,
            outputs=outputs,
            api_name="generate",
            # One request at a time through the rows: fair timing. In cluster mode several visitors at once, each
            # kind's share queued on its machines (one comparison per machine); the front's own rows still take
            # turns row by row (the row lock), so no timed section overlaps another.
            concurrency_limit=settings.cluster_visitors if settings.cluster else 1,
            show_progress_on=[message],  # one progress bar following the running row's steps
            validator=make_admit(page),  # one running or queued comparison per client
        ).then(lambda sz, st: wait_line(page, sz, st), [size, steps], wait, api_name=False)
        compare_with.change(
            lambda kept, other: gr.ImageSlider(
                slider_pair(kept, comparison.rows.reference, other),
                label=f"Baseline ◀ ▶ {comparison.rows.titles.get(other, other or '')}",
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
            lambda sz, st: wait_line(page, sz, st),
            [size, steps],
            wait,
            api_name=False,
            queue=False,
        )
        # One handler per page open and one per timer tick: every open tab calls them outside the row lock
        # (benchmarking/polling.py measures what twenty tabs cost a timed row; the README has its figures).
        demo.load(
            lambda sz, st: [*show_example(page, 0), wait_line(page, sz, st), system_markdown(comparison)],
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
    page.fair_share = FairShare(queue_holdings(demo, lambda request, username: visitor_key(page, request, username)))
    return demo


def wait_line(page, size, steps) -> str:
    """The estimate beside the button; in cluster mode with how many visitors the front and the cluster serve at
    once (the machines counted now)."""
    at_once = ""
    cluster = getattr(page.remotes, "cluster", None)  # a page made with a bare RemoteSet has none
    if cluster is not None:
        machines = ", ".join(f"{d.serving} {k}" for k, d in cluster.deployers.items() if d.serving) or "none yet"
        at_once = (
            f"Up to {page.settings.cluster_visitors} visitors run at once, each kind's rows on one of its machines "
            f"(serving now: {machines})"
        )
    return page.timings.text(page.comparison, size, steps, at_once)


OTHER_WORK_HEADING = (
    "### Other work, not a speed-up\nFewer steps of a distilled model and a tiny decoder: what CPU users run today. "
    "Its figure is how soon an image comes, not how much faster the same work runs."
)


def row_image(label: str, size: int, visible: bool) -> gr.Image:
    """A row's image (a PNG file), at its real size up to 512 px; the card below names the row."""
    return gr.Image(
        label=label, type="filepath", format="png", height=size, width=size, interactive=False, show_label=False,
        elem_classes=["row-image"], visible=visible,
    )  # fmt: skip


def chunks(outputs: list, page: Page) -> list[list]:
    """`remote_view`'s flat outputs, one list per remote group (a heading, then images and cards)."""
    n = 1 + 2 * len(page.comparison.rows.order)
    return [outputs[i : i + n] for i in range(0, len(outputs), n)]


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
        auth=credentials(settings.auth),  # Gradio's own login: a remote closed to strangers (gradio_client passes it)
        **kwargs,
    )
