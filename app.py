"""Stable Diffusion side by side on Xeon: one prompt, one seed, every backend, honest latency.

Run `python app.py --model tiny` (or set SBS_MODEL); `python app.py --help` lists every setting.
"""

from __future__ import annotations

import json
import logging
import secrets
import time

import gradio as gr
import numpy as np
import pandas as pd

from backends.base import SCHEDULERS
from harness.comparison import BASELINE, Comparison, RowResult, to_uint8
from harness.settings import Settings, build_comparison
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
def card_markdown(comparison: Comparison, backend_id: str, row: RowResult | None = None) -> str:
    status = comparison.rows.status[backend_id]
    lines = [f"### {comparison.rows.titles[backend_id]}"]
    if row is not None and row.status == "ok":
        big = (
            "reference" if backend_id == BASELINE else (f"{row.speedup:.1f}× faster" if row.speedup else "no baseline")
        )
        lines.append(f"## {big}")
        figures = f"**{row.latency_s:.2f} s** total · {row.s_per_step:.3f} s/step"
        if row.psnr_db is not None:
            figures += f" · PSNR {row.psnr_db:.1f} dB · SSIM {row.ssim:.3f}"
        lines.append(figures)
        if row.message:
            lines.append(f"_{row.message}_")
    elif row is not None:
        lines.append(f"**{row.status}**: {row.message}")
    load = status.load
    if load is not None:
        lines.append(
            f"precision: {load.precision} · loaded in {load.seconds:.0f} s (cache {load.cache}), "
            f"+{load.ram_added_mb:.0f} MB RAM" + (f", {load.disk_mb:.0f} MB on disk" if load.disk_mb else "")
        )
    lines.append(f"status: {status.describe()}")
    return "\n\n".join(lines)


def headline(rows: list[RowResult]) -> str:
    fastest = max((r for r in rows if r.status == "ok" and r.speedup), key=lambda r: r.speedup, default=None)
    if fastest is None or fastest.backend == BASELINE:
        return ""
    psnr = f", PSNR {fastest.psnr_db:.0f} dB vs baseline" if fastest.psnr_db is not None else ""
    inflated = [r.inflated_by for r in rows if r.backend in (BASELINE, fastest.backend) and r.inflated_by]
    caveat = "\n\n_Measured while another row was still loading: the ratio is not clean._" if inflated else ""
    return f"# {fastest.title}: {fastest.speedup:.1f}× faster than baseline{psnr}{caveat}"


def latency_chart(rows: list[RowResult]) -> pd.DataFrame:
    done = [r for r in rows if r.status == "ok"]
    return pd.DataFrame(
        {
            "row": [r.title for r in done],
            "latency (s)": [round(r.latency_s, 3) for r in done],
            "kind": ["baseline" if r.backend == BASELINE else "optimized" for r in done],
        }
    )


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


def loading_cards(comparison: Comparison) -> list:
    """Card updates for the status timer: only rows still loading, or that just finished (refreshing the
    others would wipe the results of a request shown on them)."""
    now = time.monotonic()
    return [
        card_markdown(comparison, b)
        if comparison.rows.status[b].state in ("waiting", "loading") or now - comparison.rows.status[b].since < 5
        else gr.skip()
        for b in comparison.rows.order
    ]


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
def make_generate(comparison: Comparison):
    n = len(comparison.rows.order)

    def generate(prompt, negative_prompt, seed, random_seed, steps, guidance, size, scheduler, progress=gr.Progress()):
        """Run the prompt through every ready row; yields after each row so cards fill as rows finish.

        Outputs: seed, message, headline, chart, figures JSON, then one image and one card per row."""
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
        images = [None] * n
        cards = [card_markdown(comparison, b) for b in comparison.rows.order]
        rows: list[RowResult] = []

        def on_step(backend_id, step, total):
            progress((step, total), desc=f"{comparison.rows.titles[backend_id]}: step {step}/{total}")

        def on_warmup(backend_id):
            progress(None, desc=f"{comparison.rows.titles[backend_id]}: first run at this size, warming up (not timed)")

        def snapshot(final: bool):
            figures = {"seed": request.seed, "truncated": truncated, "rows": [r.figures() for r in rows]}
            # The chart is drawn once, for the finished request: Gradio's bar plot keeps the colour legend
            # of its first data, so drawing it row by row would lose the baseline/optimized colours.
            chart = gr.BarPlot(latency_chart(rows), sort=[r.title for r in rows]) if final else gr.skip()
            message = notes + (["Skipped, not ready: " + ", ".join(skipped)] if skipped else [])
            return [request.seed, "\n\n".join(message), headline(rows), chart, figures, *images, *cards]

        yield snapshot(final=False)
        for row in comparison.run(request, on_step=on_step, on_warmup=on_warmup):
            i = comparison.rows.order.index(row.backend)
            rows.append(row)
            if row.status == "skipped":
                skipped.append(f"{row.title} ({comparison.rows.status[row.backend].state})")
            images[i] = to_uint8(row.image) if row.image is not None else None
            cards[i] = card_markdown(comparison, row.backend, row)
            if row.blanks_all:  # the rows shown before this one are blanked too
                images = [np.zeros_like(image) if image is not None else None for image in images]
                notes.append("The safety checker flagged an image of this request: every row's image is blanked.")
            yield snapshot(final=False)
        yield snapshot(final=True)

    return generate


def build_demo(comparison: Comparison, queue_size: int = 16) -> gr.Blocks:
    sizes = [f"{s}x{s}" for s in comparison.rows.settings.sizes]
    with gr.Blocks(title="Stable Diffusion side by side on Xeon") as demo:
        gr.Markdown(
            "# Stable Diffusion side by side on Xeon\nOne prompt, one seed, identical starting noise on every row; "
            "rows run one after another and each is timed the same way."
        )
        banner = gr.Markdown(model_banner(comparison))
        with gr.Row():
            with gr.Column(scale=3):
                prompt = gr.Textbox(label="Prompt", value=EXAMPLES[0][0], max_length=1000)
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
        button = gr.Button("Generate on every row", variant="primary")
        gr.Examples(EXAMPLES, inputs=[prompt, negative, seed])
        message = gr.Markdown()
        title = gr.Markdown()
        images, cards = [], []
        with gr.Row(equal_height=True):
            for backend_id in comparison.rows.order:
                with gr.Column(min_width=220):
                    images.append(gr.Image(label=backend_id, type="numpy", format="png", height=320, interactive=False))
                    cards.append(gr.Markdown(card_markdown(comparison, backend_id), elem_classes=["row-card"]))
        chart = gr.BarPlot(
            None,
            x="row",
            y="latency (s)",
            color="kind",
            title="Latency of the last request (lower is better)",
            color_map={"baseline": "#d62728", "optimized": "#1f77b4"},
            sort=None,
        )
        figures = gr.JSON(label="Figures (also returned by the /generate API)")
        with gr.Accordion("System: what is this running on?", open=False):
            system = gr.Markdown(system_markdown(comparison))
        status_json = gr.JSON(visible=False)

        button.click(
            make_generate(comparison),
            inputs=[prompt, negative, seed, random_seed, steps, guidance, size, scheduler],
            outputs=[seed, message, title, chart, figures, *images, *cards],
            api_name="generate",
            concurrency_limit=1,  # one request at a time through the rows: fair timing
            show_progress_on=[message],  # one progress bar following the running row's steps
        )

        timer = gr.Timer(2.0)
        timer.tick(
            lambda: loading_cards(comparison), outputs=cards, api_name=False, queue=False, show_progress="hidden"
        )
        timer.tick(
            lambda: model_banner(comparison), outputs=banner, api_name=False, queue=False, show_progress="hidden"
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
    comparison.load_in_background()
    started = time.monotonic()
    demo = build_demo(comparison, settings.queue_size)
    log.info("UI up after %.1f s; rows load in the background", time.monotonic() - started)
    demo.launch(server_name="0.0.0.0", server_port=settings.port, show_error=True)


if __name__ == "__main__":
    main()
