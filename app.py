"""Stable Diffusion side by side on Xeon: one prompt, one seed, every backend, honest latency.

Run `python app.py --model tiny` (or set SBS_MODEL); `python app.py --help` lists every setting.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import asdict

import gradio as gr
import numpy as np
import pandas as pd

from backends.base import SCHEDULERS, STAGES
from harness.comparison import BASELINE, Comparison, RowResult, to_uint8
from harness.settings import Settings, build_comparison
from harness.showcase import Showcase, ShownRun
from harness.system_info import system_info
from harness.validation import GUIDANCE_RANGE, MAX_SEED, STEPS_RANGE, InvalidRequest

log = logging.getLogger("app")

EXAMPLES = [  # from the source blogs
    ["sailing ship in storm by Rembrandt", "", 42],
    ["cartoon bird", "", 42],
    ["a photograph of an astronaut riding a horse", "blurry, low quality", 7],
]
STANDIN_BANNER = "**Random-weight stand-in model `{name}`: images are noise, latencies are real.**"


# ------------------------------------------------------------------------------------------ view helpers
# Every view below is drawn from the figures dicts of `RowResult.figures()`, so a request in progress and a
# comparison read back from disk (`harness.showcase`) look the same.
STAGE_LABELS = dict(zip(STAGES, ("text encoding", "denoising (UNet steps)", "VAE decoding"), strict=True))
CSS = """
@media (max-width: 700px) { .stack-on-phone { flex-direction: column !important; } }
.row-card h2 { margin: 0.2em 0; }
"""


def card_markdown(comparison: Comparison, backend_id: str, row: dict | None = None) -> str:
    """A row's result: the big ratio, its figures and notes; until its first result, what the row is."""
    lines = [f"### {comparison.rows.titles[backend_id]}"]
    if row is not None and row["status"] == "ok":
        speedup = row.get("speedup")
        big = "reference" if backend_id == BASELINE else (ratio_words(speedup) if speedup else "no baseline")
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


def headline(rows: list[dict]) -> str:
    done = [r for r in rows if r["status"] == "ok" and r.get("speedup")]
    fastest = max(done, key=lambda r: r["speedup"], default=None)
    if fastest is None or fastest["backend"] == BASELINE:
        return ""
    psnr = f", PSNR {fastest['psnr_db']:.0f} dB vs baseline" if fastest.get("psnr_db") is not None else ""
    inflated = [r for r in rows if r["backend"] in (BASELINE, fastest["backend"]) and r.get("inflated_by")]
    caveat = "\n\n_Measured while another row was still loading: the ratio is not clean._" if inflated else ""
    return f"# {fastest['title']}: {fastest['speedup']:.1f}× faster than baseline{psnr}{caveat}"


def latency_chart(rows: list[dict]) -> pd.DataFrame:
    done = [r for r in rows if r["status"] == "ok"]
    return pd.DataFrame(
        {
            "row": [r["title"] for r in done],
            "latency (s)": [round(r["latency_s"], 3) for r in done],
            "kind": ["baseline" if r["backend"] == BASELINE else "optimized" for r in done],
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


LATENCY_COLORS = {"baseline": "#d62728", "optimized": "#1f77b4"}
STAGE_COLORS = dict(zip(STAGE_LABELS.values(), ("#2ca02c", "#1f77b4", "#ff7f0e"), strict=True))


def row_bars(y: str, color: str, title: str, colors: dict) -> gr.BarPlot:
    """An empty bar chart with one bar per row (drawn when a comparison finishes)."""
    return gr.BarPlot(None, x="row", y=y, color=color, title=title, x_label_angle=-20, color_map=colors, sort=None)


def slider_pair(images: dict, other: str | None):
    """(baseline image, chosen row's image) for the slider, or None while either is missing."""
    if other is None or images.get(BASELINE) is None or images.get(other) is None:
        return None
    return images[BASELINE], images[other]


def other_cpus_table() -> pd.DataFrame:
    """Every committed benchmark result: one line per CPU kind and row (only measured files; each names its
    date and command)."""
    from benchmarking.report import read_results

    records = []
    for report in read_results():
        for r in report["rows"]:
            records.append(
                {
                    "CPU": f"{report['system']['cpu']} ({report['isa']})",
                    "cores": report["cores"],
                    "row": r["backend"],
                    "latency (s)": round(r["mean_s"], 1) if r["status"] == "ok" else None,
                    "speed-up": round(r["speedup"], 2) if r.get("speedup") else None,
                    "status": r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('reason', '')}",
                    "model, size, steps": f"{report['model']}, {report['size']}px, {report['steps']} steps",
                    "date": report["date"],
                    "command": report["command"],
                }
            )
    return pd.DataFrame(records)


def other_cpus_chart(table: pd.DataFrame) -> pd.DataFrame:
    done = table.dropna(subset=["speed-up"])
    return pd.DataFrame(
        {"CPU · row": done["CPU"].str.split(" \\(").str[0] + " · " + done["row"], "speed-up": done["speed-up"],
         "CPU": done["CPU"]}
    )  # fmt: skip


def system_markdown(comparison: Comparison) -> str:
    info = system_info(comparison.rows.settings.threads)
    rows_here = "; ".join(f"{b}: {how}" for b, how in info["rows_here"].items())
    libs = ", ".join(f"{k} {v}" for k, v in info["libraries"].items())
    return "\n".join(
        [
            f"- **CPU**: {info['cpu']}, {info['logical_cpus_usable']} logical CPUs usable, "
            f"{info['threads_used']} threads per row",
            f"- **ISA**: {info['isa_summary']}",
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


def health(comparison: Comparison) -> dict:
    """Readiness of every row, for `/health` style checks through the API."""
    return {
        "ready": comparison.rows.ready(),
        "warm": comparison.rows.warm(),
        "rows": {b: comparison.rows.status[b].describe() for b in comparison.rows.order},
        "cache": {b: s.load.cache if s.load else None for b, s in comparison.rows.status.items()},
        "model": comparison.rows.model.model_id if comparison.rows.model else None,
        "standin": comparison.rows.model.standin if comparison.rows.model else None,
    }


# ------------------------------------------------------------------------------------------ handlers
def machine_label(comparison: Comparison) -> str:
    from harness.cpu import this_cpu

    cpu = this_cpu()
    return f"{cpu.model} ({cpu.isa_line()}), {comparison.rows.settings.threads} threads"


def make_showcase(comparison: Comparison) -> Showcase:
    return Showcase(comparison.rows.settings.cache_dir / "showcase", machine_label(comparison))


def view(
    comparison: Comparison, about: dict, rows: list[dict], images: dict, compare_with: str | None, final: bool
) -> list:
    """The comparison's outputs after `seed` and `message`, in `build_demo`'s order: headline, latency chart,
    figures JSON (`about` the request, then every row), one image and one card per row, stage chart, slider,
    the slider's choice of row, and the images kept for the slider."""
    order = comparison.rows.order
    by_id = {r["backend"]: r for r in rows}
    # Charts are drawn once, for a finished comparison: Gradio's bar plot keeps the colour legend of its
    # first data, so drawing them row by row would lose the colours.
    chart = gr.BarPlot(latency_chart(rows), sort=[r["title"] for r in rows]) if final else gr.skip()
    stages = gr.BarPlot(stage_chart(rows), sort=[r["title"] for r in rows]) if final else gr.skip()
    others = [b for b in order if b != BASELINE and b in images]
    chosen = compare_with if compare_with in others else (others[-1] if others else None)
    return [
        headline(rows),
        chart,
        {**about, "rows": rows},
        *[images.get(b) for b in order],
        *[card_markdown(comparison, b, by_id.get(b)) for b in order],
        stages,
        gr.ImageSlider(slider_pair(images, chosen), label=f"Baseline ◀ ▶ {comparison.rows.titles.get(chosen, '')}"),
        gr.Radio(choices=[(comparison.rows.titles[b], b) for b in others], value=chosen),
        images,
    ]


def show_latest(comparison: Comparison, showcase: Showcase):
    """What a page opens on: the last comparison of this instance (or the built-in example computed at start)."""
    run = showcase.latest(comparison.rows.model)
    if run is None:
        waiting = "_The first comparison is computed as soon as every row is warm; it appears here by itself._"
        return [gr.skip(), waiting, *view(comparison, {}, [], {}, None, final=False), True]
    about = {"seed": run.request.seed, "request": asdict(run.request), "finished": run.finished, "machine": run.machine}
    return [run.request.seed, run.label(), *view(comparison, about, run.rows, run.images, None, final=True), False]


def fill_when_ready(comparison: Comparison, showcase: Showcase, awaiting: bool, n_outputs: int) -> list:
    """For the status timer: a page opened before the first answer existed shows it once it does (and never
    while the visitor's own request runs: that clears `awaiting`)."""
    if awaiting and showcase.latest(comparison.rows.model) is not None:
        return show_latest(comparison, showcase)
    return [gr.skip()] * n_outputs


def wait_estimate(comparison: Comparison, showcase: Showcase, size, steps) -> str:
    """How long a run will take, from this instance's own latest measured stages at that size."""
    try:
        side, steps = int(str(size).split("x")[0]), int(steps)
    except (TypeError, ValueError):
        return ""
    ready = comparison.rows.ready()
    if not ready:
        return "_No row is ready yet._"
    seconds, unknown = showcase.estimate(comparison.rows.model, ready, side, steps)
    if len(unknown) == len(ready):
        return f"_No run at {side}x{side} measured here yet: the first one shows how long it takes._"
    text = f"About **{seconds:.0f} s** for every ready row at {side}x{side}, {steps} steps"
    if unknown:
        text += f" (plus {', '.join(comparison.rows.titles[b] for b in unknown)}, not measured yet)"
    return text + ", from the latest run here. Requests run one at a time: your place in the queue shows below."


def make_generate(comparison: Comparison, showcase: Showcase | None = None):
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
        progress=gr.Progress(),
    ):
        """Run the prompt through every ready row; yields after each row so cards fill as rows finish.

        Outputs: seed, message, headline, chart, figures JSON, one image and one card per row, the stage
        chart, the slider, the slider's choice of row, the images kept for the slider, and False for the page's
        "awaiting the first answer" state."""
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
        notes = []
        if random_seed:
            notes.append(f"Random seed: **{request.seed}**")
        truncated = comparison.truncation(request)
        if truncated:
            notes.append(f"Note: {truncated}")
        skipped: list[str] = []  # filled as rows are reached: a row still loading now may be ready by its turn
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
            message += ["Skipped, not ready: " + ", ".join(skipped)] if skipped else []
            about = {"seed": request.seed, "truncated": truncated, "request": asdict(request)}
            shown = view(comparison, about, rows, images, compare_with, final)
            return [request.seed, "\n\n".join(message), *shown, False]  # False: not awaiting the first answer

        yield snapshot(final=False)
        for row in comparison.run(request, on_step=on_step, on_warmup=on_warmup):
            results.append(row)
            if row.status == "skipped":
                skipped.append(f"{row.title} ({comparison.rows.status[row.backend].state})")
            if row.image is not None:
                images[row.backend] = to_uint8(row.image)
            if row.blanks_all:  # the rows shown before this one are blanked too
                images = {b: np.zeros_like(image) for b, image in images.items()}
                notes.append("The safety checker flagged an image of this request: every row's image is blanked.")
            yield snapshot(final=False)
        shown = ShownRun.from_results(request, results, showcase.machine if showcase else machine_label(comparison))
        if showcase is not None and any(r.status == "ok" for r in results):
            showcase.record(comparison.rows.model, shown)
        yield snapshot(final=True, label=shown.label())

    return generate


def first_answer(comparison: Comparison, showcase: Showcase) -> None:
    """Before any visitor runs anything: the first built-in example through every ready row, kept as the
    page's opening answer (skipped when this model already has one on this machine, e.g. after a restart)."""
    if comparison.rows.model is None or showcase.latest(comparison.rows.model) is not None:
        return
    prompt, negative, seed = EXAMPLES[0]
    side = comparison.rows.settings.sizes[0]
    request = comparison.validate(prompt=prompt, negative_prompt=negative, seed=seed, height=side, width=side)
    results = list(comparison.run(request))
    if any(r.status == "ok" for r in results):
        showcase.record(comparison.rows.model, ShownRun.from_results(request, results, showcase.machine, True))
        log.info("the page's first answer is ready (%s)", request.prompt)


def build_demo(comparison: Comparison, showcase: Showcase | None = None, queue_size: int = 16) -> gr.Blocks:
    showcase = showcase or make_showcase(comparison)
    sizes = [f"{s}x{s}" for s in comparison.rows.settings.sizes]
    image_px = min(512, comparison.rows.settings.sizes[0])  # images at their real size, up to 512 px
    with gr.Blocks(title="Stable Diffusion side by side on Xeon", css=CSS) as demo:
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
                        seed = gr.Number(label="Seed", value=42, precision=0, minimum=0, maximum=MAX_SEED)
                        random_seed = gr.Checkbox(label="Random seed", value=False)
                    steps = gr.Slider(*STEPS_RANGE, value=comparison.rows.settings.steps, step=1, label="Steps")
                    guidance = gr.Slider(1.5, GUIDANCE_RANGE[1], value=7.5, step=0.5, label="Guidance")
                    with gr.Row():
                        size = gr.Dropdown(sizes, value=sizes[0], label="Resolution (compiled sizes)")
                        scheduler = gr.Dropdown(
                            [(label, key) for key, (_, label) in SCHEDULERS.items()], value="dpm++", label="Scheduler"
                        )
            with gr.Row(elem_classes=["stack-on-phone"]):
                button = gr.Button("Generate on every row", variant="primary", scale=1)
                wait = gr.Markdown()
            gr.Examples(EXAMPLES, inputs=[prompt, negative, seed])
            message = gr.Markdown()
            title = gr.Markdown()
            images, cards, statuses = [], [], []
            with gr.Row(equal_height=False, elem_classes=["stack-on-phone"]):
                for backend_id in comparison.rows.order:
                    with gr.Column(min_width=min(image_px, 320)):
                        images.append(
                            gr.Image(
                                label=comparison.rows.titles[backend_id],
                                type="numpy",
                                format="png",
                                height=image_px,
                                width=image_px,
                                interactive=False,
                                show_label=False,  # the card below names the row
                                elem_classes=["row-image"],
                            )
                        )
                        cards.append(gr.Markdown(card_markdown(comparison, backend_id), elem_classes=["row-card"]))
                        statuses.append(gr.Markdown(status_line(comparison, backend_id)))
            with gr.Row(elem_classes=["stack-on-phone"]):
                with gr.Column():
                    slider = gr.ImageSlider(
                        label="Baseline ◀ ▶ row", type="numpy", max_height=image_px, elem_classes=["compare-slider"]
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
            table = other_cpus_table()
            gr.Markdown(
                "The committed benchmark results (`results/*.json`, made by `benchmark.py`): one group per CPU "
                "kind, each with its date and command. Only measured files are shown."
            )
            gr.BarPlot(
                other_cpus_chart(table) if len(table) else None,
                x="CPU · row",
                y="speed-up",
                color="CPU",
                title="Speed-up over the same run's PyTorch fp32 baseline",
                x_label_angle=-30,
            )
            gr.Dataframe(table, wrap=True, interactive=False)
        with gr.Accordion("System: what is this running on?", open=False):
            system = gr.Markdown(system_markdown(comparison))
        status_json = gr.JSON(visible=False)
        kept_images = gr.State({})

        awaiting = gr.State(False)  # this page opened before the first answer existed
        outputs = [seed, message, title, chart, figures, *images, *cards, stage_bars, slider, compare_with, kept_images]
        outputs.append(awaiting)
        gr.on(
            [button.click, prompt.submit],
            make_generate(comparison, showcase),
            inputs=[prompt, negative, seed, random_seed, steps, guidance, size, scheduler, compare_with],
            outputs=outputs,
            api_name="generate",
            concurrency_limit=1,  # one request at a time through the rows: fair timing
            show_progress_on=[message],  # one progress bar following the running row's steps
        ).then(lambda sz, st: wait_estimate(comparison, showcase, sz, st), [size, steps], wait, api_name=False)
        compare_with.change(
            lambda kept, other: gr.ImageSlider(
                slider_pair(kept, other), label=f"Baseline ◀ ▶ {comparison.rows.titles.get(other, '')}"
            ),
            [kept_images, compare_with],
            slider,
            api_name=False,
            queue=False,
        )
        gr.on(
            [size.change, steps.change, demo.load],
            lambda sz, st: wait_estimate(comparison, showcase, sz, st),
            [size, steps],
            wait,
            api_name=False,
            queue=False,
        )
        demo.load(lambda: show_latest(comparison, showcase), outputs=outputs, api_name=False, queue=False)

        timer = gr.Timer(2.0)
        timer.tick(
            lambda: status_lines(comparison), outputs=statuses, api_name=False, queue=False, show_progress="hidden"
        )
        timer.tick(
            lambda: model_banner(comparison), outputs=banner, api_name=False, queue=False, show_progress="hidden"
        )
        timer.tick(
            lambda waiting: fill_when_ready(comparison, showcase, waiting, len(outputs)),
            inputs=awaiting,
            outputs=outputs,
            api_name=False,
            queue=False,
            show_progress="hidden",
        )
        timer.tick(
            lambda: health(comparison), outputs=status_json, api_name="health", queue=False, show_progress="hidden"
        )
        demo.load(lambda: system_markdown(comparison), outputs=system, api_name=False, queue=False)
    demo.queue(max_size=queue_size, default_concurrency_limit=1)
    return demo


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env().updated(Settings.parser(__doc__).parse_args(argv))
    comparison = build_comparison(settings)
    showcase = make_showcase(comparison)
    comparison.load_in_background(then=lambda: first_answer(comparison, showcase))
    started = time.monotonic()
    demo = build_demo(comparison, showcase, settings.queue_size)
    log.info("UI up after %.1f s; rows load in the background", time.monotonic() - started)
    demo.launch(server_name="0.0.0.0", server_port=settings.port, show_error=True)


if __name__ == "__main__":
    main()
