"""The page's layout (`build_demo`) and how it is served (`launch`)."""

from __future__ import annotations

import logging
import os

import gradio as gr

from core.request import SCHEDULERS
from harness.api import INPUT_NAMES, size_label
from harness.compare.validation import GUIDANCE_RANGE, MAX_PROMPT_CHARS, MAX_SEED, STEPS_RANGE
from harness.machines.remotes import credentials
from harness.records.examples import EXAMPLES
from harness.visitors.fair_share import FairShare

from .cards import card_markdown, model_banner, status_line, status_lines, text
from .charts import LATENCY_COLORS, STAGE_COLORS, row_bars, slider_pair
from .context import Page
from .gradio_queue import make_admit, queue_holdings, visitor_key
from .handlers import TICK_STARTING_S, example_inputs, example_ready, fill_when_ready, make_generate, tick_interval
from .kiosk import KIOSK_PATH, kiosk_routes
from .other_cpus import other_cpus_chart, other_cpus_sources, other_cpus_table, remotes_markdown
from .quality import quality_grid, quality_markdown
from .system import health, system_markdown
from .views import machine_groups, show_example

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
    """The page: 1. the Compare tab (the controls, this machine's rows, the other machines' groups, the charts),
    2. the tab of other CPUs, 3. the quality report, 4. the System panel; then its events, and its queue."""
    comparison, settings = page.comparison, page.settings
    with gr.Blocks(title="Stable Diffusion side by side on Xeon", css=CSS, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            "# Stable Diffusion side by side on Xeon\nOne prompt, one seed, identical starting noise on every row; "
            "rows run one after another and each is timed the same way."
        )
        c = {"banner": gr.Markdown(model_banner(comparison))}
        with gr.Tab("Compare"):
            c.update(controls(page))
            with gr.Row(elem_classes=["stack-on-phone"]):
                c["button"] = gr.Button("Generate on every row", variant="primary", scale=1)
                c["wait"] = text()
            c["example"] = gr.Radio(
                [(f"{i + 1}. {p}", i) for i, (p, _n, _s) in enumerate(EXAMPLES)],
                value=0,
                label="Built-in examples, computed on this machine (choose one to see it)",
            )
            c["message"] = text()
            c["headline"] = text(elem_classes=["phone-first"])
            rows = rows_here(page)
            groups = machine_group_components(page)
            c.update(comparison_charts(page))
        other_cpus_tab(page)
        quality_tab(page)
        with gr.Accordion("System: what is this running on?", open=False):
            c["system"] = gr.Markdown(system_markdown(comparison))
        c["kept_images"] = gr.State({})
        c["awaiting"] = gr.State(None)  # the example this page waits for (its index), until it is computed
        outputs = page.outputs.assemble(c, rows["images"], rows["cards"], groups)
        wire_comparison(page, c, outputs)
        wire_status(page, demo, c, rows["statuses"], outputs)
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=1)
    page.fair_share = FairShare(queue_holdings(demo, lambda request, username: visitor_key(page, request, username)))
    return demo


def controls(page: Page) -> dict:
    """The request's controls, by their `/generate` input names (the slider's choice comes with the charts)."""
    settings, limits = page.settings, page.comparison.limits
    sizes = [size_label(s) for s in limits.offered()]
    c = {}
    with gr.Row(elem_classes=["stack-on-phone"]):
        with gr.Column(scale=3):
            c["prompt"] = gr.Textbox(
                label="Prompt",
                value=EXAMPLES[0][0],
                max_length=MAX_PROMPT_CHARS,
                placeholder="Type a prompt, press Enter",
            )
            c["negative_prompt"] = gr.Textbox(label="Negative prompt", max_length=MAX_PROMPT_CHARS)
        with gr.Column(scale=2):
            with gr.Row():
                c["seed"] = gr.Number(label="Seed", value=EXAMPLES[0][2], precision=0, minimum=0, maximum=MAX_SEED)
                c["random_seed"] = gr.Checkbox(label="Random seed", value=False)
            # The slider spans every step count a row can run; a public instance's cap is said in its label and
            # enforced by validation, whose message names it (Gradio's own range check would refuse an API client
            # with a bare "400 Bad Request").
            capped = limits.max_steps < STEPS_RANGE[1]
            c["steps"] = gr.Slider(
                *STEPS_RANGE,
                value=min(settings.steps, limits.max_steps),
                step=1,
                label=f"Steps (at most {limits.max_steps} here)" if capped else "Steps",
            )
            c["guidance"] = gr.Slider(1.5, GUIDANCE_RANGE[1], value=7.5, step=0.5, label="Guidance")
            with gr.Row():
                # allow_custom_value: validation, not Gradio's choice check, answers an API client that asks for
                # another size, naming what is offered.
                c["size"] = gr.Dropdown(
                    sizes, value=sizes[0], label="Resolution (compiled sizes)", allow_custom_value=True
                )
                c["scheduler"] = gr.Dropdown(
                    [(label, key) for key, (_, label) in SCHEDULERS.items()], value="dpm++", label="Scheduler"
                )
    return c


def rows_here(page: Page) -> dict[str, list]:
    """This machine's rows, each an image, a card and a status line: the rows of the same work side by side, a row
    of other work (fewer steps, another decoder) in a group of its own below them, headed as such. Returns the
    images, cards and status lines in the rows' order."""
    comparison, rows = page.comparison, page.comparison.rows
    by_row = {}
    same = [b for b in rows.order if not rows.different_work(b)]
    other = [b for b in rows.order if rows.different_work(b)]
    for group in (same, other):
        if not group:
            continue
        if group is other:
            text(OTHER_WORK_HEADING, elem_classes=["other-work-header", "phone-second"])
        with gr.Row(equal_height=False, elem_classes=["rows-on-phone", "phone-second"]):
            for backend_id in group:
                with gr.Column(min_width=min(image_px(page), 320)):
                    image = row_image(rows.titles[backend_id], image_px(page), rows.runs_here(backend_id))
                    card = text(card_markdown(comparison, backend_id, tables=page.tables), elem_classes=["row-card"])
                    status = text(status_line(comparison, backend_id), elem_classes=["row-status"])
                    by_row[backend_id] = (image, card, status)
    images, cards, statuses = ([by_row[b][i] for b in rows.order] for i in range(3))
    return {"images": images, "cards": cards, "statuses": statuses}


def machine_group_components(page: Page) -> list[list]:
    """One group per other machine, apart from this machine's rows (on a phone too): its heading, then one image and
    one card per row."""
    if page.machines is None:
        return []
    order = page.comparison.rows.order
    groups = []
    for label, initial in zip(page.machines.labels(), machine_groups(page), strict=True):
        heading = text(initial[0], elem_classes=["remote-header", "phone-second"])
        images, cards = [], []
        with gr.Row(equal_height=False, elem_classes=["rows-on-phone", "phone-second", "remote-rows"]):
            for i, backend_id in enumerate(order):
                with gr.Column(min_width=min(image_px(page), 320)):
                    images.append(row_image(f"{label}: {backend_id}", image_px(page), True))
                    cards.append(text(initial[1 + len(order) + i], elem_classes=["row-card"]))
        groups.append([heading, *images, *cards])
    return groups


def comparison_charts(page: Page) -> dict:
    """The slider over the baseline and a chosen row, the latency and stage charts, and the figures JSON."""
    c = {}
    with gr.Row(elem_classes=["stack-on-phone"]):
        with gr.Column():
            c["slider"] = gr.ImageSlider(
                label="Baseline ◀ ▶ row", type="filepath", max_height=image_px(page), elem_classes=["compare-slider"]
            )
            c["compare_with"] = gr.Radio(label="Compare the baseline with", choices=[])
        with gr.Column():
            c["latency_chart"] = row_bars("latency (s)", "kind", "Latency (lower is better)", LATENCY_COLORS)
            c["stage_chart"] = row_bars(
                "seconds", "stage", "Where the time goes (measured in each timed run)", STAGE_COLORS
            )
    with gr.Accordion("Figures (also returned by the /generate API)", open=False):
        c["figures"] = gr.JSON(show_label=False)
    return c


def other_cpus_tab(page: Page) -> None:
    """The committed results of every CPU kind, and the other machines' state when the tab opens."""
    with gr.Tab("Same comparison on other CPUs") as tab:
        if page.machines is not None:
            live = text("_The live remotes answer when this tab opens._")
            tab.select(lambda: remotes_markdown(page.machines.healths()), None, live, api_name=False)
        table = other_cpus_table(page.tables)
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
            gr.Markdown(other_cpus_sources(page.tables))


def quality_tab(page: Page) -> None:
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


def wire_comparison(page: Page, c: dict, outputs: list) -> None:
    """`/generate` (the button, Enter in the prompt), the slider's choice, the examples, the wait line."""
    comparison, settings = page.comparison, page.settings
    wait_inputs = [c["size"], c["steps"]]
    gr.on(
        [c["button"].click, c["prompt"].submit],
        make_generate(page),
        inputs=[c[name] for name in INPUT_NAMES],
        outputs=outputs,
        api_name="generate",
        # One request at a time through the rows: fair timing. In cluster mode several visitors at once, each
        # kind's share queued on its machines; the front's own rows still take turns row by row (the row lock).
        concurrency_limit=settings.cluster_visitors if settings.cluster else 1,
        show_progress_on=[c["message"]],  # one progress bar following the running row's steps
        validator=make_admit(page),  # one running or queued comparison per client
    ).then(lambda sz, st: wait_line(page, sz, st), wait_inputs, c["wait"], api_name=False)
    c["compare_with"].change(
        lambda kept, other: gr.ImageSlider(
            slider_pair(kept, comparison.rows.reference, other),
            label=f"Baseline ◀ ▶ {comparison.rows.titles.get(other, other or '')}",
        ),
        [c["kept_images"], c["compare_with"]],
        c["slider"],
        api_name=False,
        queue=False,
    )
    c["example"].input(lambda i: show_example(page, i), c["example"], outputs, api_name=False, queue=False).then(
        example_inputs, c["example"], [c["prompt"], c["negative_prompt"], c["seed"]], api_name=False, queue=False
    )
    gr.on(
        [c["size"].change, c["steps"].change],
        lambda sz, st: wait_line(page, sz, st),
        wait_inputs,
        c["wait"],
        api_name=False,
        queue=False,
    )


def wire_status(page: Page, demo: gr.Blocks, c: dict, statuses: list, outputs: list) -> None:
    """What every open tab calls outside the row lock: once when it opens, then its status timer; and `/health`
    (benchmarking/polling.py measures what twenty tabs cost a timed row)."""
    comparison = page.comparison
    demo.load(
        lambda sz, st: [*show_example(page, 0), wait_line(page, sz, st), system_markdown(comparison)],
        [c["size"], c["steps"]],
        [*outputs, c["wait"], c["system"]],
        api_name=False,
        queue=False,
    )
    # The timer's one handler returns plain values only (component updates cost Gradio much more per tick). The
    # awaited example's index goes to a hidden number once the example exists: its change fills the page (a State's
    # change event does not fire for a value a handler set; a component in the page, visually hidden, does).
    ready = gr.Number(None, visible="hidden", precision=0, interactive=False)
    timer = gr.Timer(TICK_STARTING_S)
    timer.tick(
        lambda waiting: [
            *status_lines(comparison),
            model_banner(comparison),
            example_ready(page, waiting),
            tick_interval(comparison),
        ],
        inputs=c["awaiting"],
        outputs=[*statuses, c["banner"], ready, timer],
        api_name=False,
        queue=False,
        show_progress="hidden",
    )
    ready.change(
        lambda index: fill_when_ready(page, index), ready, outputs, api_name=False, queue=False, show_progress="hidden"
    )

    def health_api() -> dict:
        """Readiness of every row (ready, warm, each row's status and cache state, the model)."""
        return health(page)

    gr.api(health_api, api_name="health", queue=False)


def image_px(page: Page) -> int:
    """The rows' images at their real size, up to 512 px."""
    return min(512, page.comparison.rows.settings.sizes[0])


def wait_line(page: Page, size, steps) -> str:
    """The estimate beside the button; with a cluster, how many visitors are served at once and on what."""
    at_once = page.machines.serving_now() if page.machines is not None else ""
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


def kept_directories(page: Page) -> list[str]:
    """Where the kept comparisons' images are (the examples' and booth's; the visitors' shown on the kiosk)."""
    kept = [page.showcase.root] + ([page.visitors_shown.showcase.root] if page.visitors_shown else [])
    return [str(directory.resolve()) for directory in kept]


def launch(page: Page, demo: gr.Blocks, port: int | None = None, **kwargs) -> None:
    """Serve the page: on `settings.host` (loopback unless the operator opens it), no uploads, and in public mode
    no raw exception text (visitors get short messages with error ids; `show_error` only adds raw ones). The kept
    examples' images are served from where they are kept (Gradio hands out only files from its temporary and
    working directories and the `allowed_paths`: exactly that directory, nothing else of the cache)."""
    settings = page.settings
    # uvicorn (the server Gradio starts) reads the proxies it trusts from here when it starts: see ClientKeys.
    os.environ["FORWARDED_ALLOW_IPS"] = page.clients.trusted_proxy_addresses
    host = "<this machine's address>" if settings.host == "0.0.0.0" else settings.host
    qr = f"; its QR code gives {settings.kiosk_url}" if settings.kiosk_url else ""
    log.info("the booth screen: http://%s:%d%s%s", host, port or settings.port, KIOSK_PATH, qr)
    demo.launch(
        app_kwargs={"routes": kiosk_routes(page)},  # the booth screen's routes, beside Gradio's
        server_name=settings.host,
        server_port=port or settings.port,
        show_error=not settings.public,
        allowed_paths=kept_directories(page),
        max_file_size=MAX_UPLOAD,
        auth=credentials(settings.auth),  # Gradio's own login: a remote closed to strangers (gradio_client passes it)
        **kwargs,
    )
