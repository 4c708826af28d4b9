"""The int8-tome row built several ways and measured in one run against one baseline (`--int8-variants`):

- `ablation`: issue 14's changes in the order they were made, each on top of the one before it;
- `sweep`: Token Merging's ratio and placement (highest resolution only, or also one level down).

Each variant is a full build of the row (cached like the row's own) with a few `LoadSettings` fields changed;
it is loaded, warmed up once, timed like every row, then dropped before the next one loads."""

from __future__ import annotations

import datetime
import logging
import statistics
from dataclasses import replace

from backends.base import LoadSettings

log = logging.getLogger(__name__)

# The row as it ships: LoadSettings' own defaults for what the variants change.
BASE = {name: getattr(LoadSettings, name) for name in ("tome_ratio", "tome_max_downsample", "tome_form", "int8_vae")}
VARIANTS = {
    "ablation": [  # each line adds one change to the line before; the last is the row as it ships
        ("tomesd scatter merge, VAE weight-only int8", {"tome_form": "scatter", "int8_vae": False}),
        ("+ gather-form merge", {"int8_vae": False}),
        ("+ VAE decoder int8", {}),
    ],
    "sweep": [
        *((f"ratio {ratio:g}, highest resolution", {"tome_ratio": ratio}) for ratio in (0.3, 0.5, 0.7)),
        ("ratio 0.5, also 1/2 resolution", {"tome_ratio": 0.5, "tome_max_downsample": 2}),
    ],
}


def variant_list(names: str) -> list[tuple[str, dict]]:
    """The variants of the comma-separated lists `names` (ablation, sweep), each recipe once."""
    chosen, seen = [], set()
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in VARIANTS:
            raise ValueError(f"unknown variant list {name!r}; choose from {', '.join(VARIANTS)}")
        for label, overrides in VARIANTS[name]:
            recipe = tuple(sorted({**BASE, **overrides}.items()))
            if recipe not in seen:
                seen.add(recipe)
                chosen.append((label, {**BASE, **overrides}))
    return chosen


def int8_variants(settings, args) -> dict:
    """Baseline once, then every variant of `args.int8_variants`; returns the report (also written as JSON)."""
    from harness.comparison import against_baseline
    from harness.cpu import this_cpu
    from harness.rows import RowSet
    from harness.settings import build_comparison

    from .latency import mean_stages, measure_row
    from .report import bar_chart, results_path, write_json

    variants = variant_list(args.int8_variants)
    comparison = build_comparison(settings)
    model = comparison.rows.resolve()
    load_settings = comparison.rows.settings
    request = comparison.validate(
        prompt=args.prompt, seed=args.seed, steps=settings.steps, height=args.size, width=args.size
    )
    cpu, cores = this_cpu(), settings.thread_count()
    latency_path = results_path(model.model_id, args.size, request.steps, cpu.slug(), cores)
    lists = args.int8_variants.replace(",", "-")
    json_path = args.json or latency_path.with_name(f"int8-variants-{lists}-{latency_path.name}")

    def measure(backend_id: str, row_settings):
        rows = RowSet(model, [backend_id], row_settings)
        rows.load_row(backend_id)
        status = rows.status[backend_id]
        if status.state != "ready":
            raise RuntimeError(f"{backend_id} could not load: {status.detail}")
        runs = measure_row(rows.backends[backend_id], request, args.passes)
        return status, runs

    _status, base_runs = measure("baseline", load_settings)
    base_mean = statistics.mean(r.latency_s for r in base_runs)
    rows = [
        {"backend": "baseline", "status": "ok", "mean_s": base_mean, "speedup": 1.0, "stages_s": mean_stages(base_runs)}
    ]
    report = {
        "date": datetime.date.today().isoformat(),
        "command": "python benchmark.py " + " ".join(args.argv),
        "mode": "int8-variants",
        "model": model.model_id,
        "size": args.size,
        "steps": request.steps,
        "passes": args.passes,
        "prompt": args.prompt,
        "seed": args.seed,
        "calibration_prompts": load_settings.calibration_prompts,
        "cpu_kind": cpu.slug(),
        "isa": cpu.isa_line(),
        "cores": cores,
        "rows": rows,
        "complete": False,  # written after every variant, so a long run that is cut short keeps what it measured
    }
    write_json(json_path, report)
    for label, overrides in variants:
        log.info("[int8 variant] %s: %s", label, overrides)
        try:
            status, runs = measure("int8-tome", replace(load_settings, **overrides))
        except Exception as exc:  # one variant that cannot build is reported, the others still run
            log.exception("variant %s failed", label)
            rows.append({"backend": label, "status": "error", "reason": str(exc)[:300], "settings": overrides})
            write_json(json_path, report)
            continue
        mean = statistics.mean(r.latency_s for r in runs)
        speedup, psnr, ssim = against_baseline(mean, runs[-1].image, base_mean, base_runs[-1].image)
        rows.append(
            {
                "backend": label,
                "status": "ok",
                "settings": overrides,
                "precision": status.load.precision,
                "latencies_s": [r.latency_s for r in runs],
                "mean_s": mean,
                "s_per_step": statistics.mean(r.s_per_step for r in runs),
                "stages_s": mean_stages(runs),
                "speedup": speedup,
                "psnr_db": psnr,
                "ssim": ssim,
                "build_cache": status.load.cache,
            }
        )
        write_json(json_path, report)
    report["complete"] = True
    write_json(json_path, report)
    title = f"int8-tome variants, {model.model_id} {args.size}x{args.size}, {request.steps} steps, {cpu.model}"
    bar_chart(rows, json_path.with_suffix(".png"), title)
    if any("tome_ratio" in r.get("settings", {}) for r in rows):
        tradeoff_chart(rows, json_path.with_name(json_path.stem + "-tradeoff.png"), title)
    print(f"\n{title}; {cores} threads; JSON: {json_path}\n")
    print(variants_table(rows))
    report["json"] = str(json_path)
    return report


def variants_table(rows: list[dict]) -> str:
    lines = [
        "| variant | s/image | s/step | speed-up | PSNR dB | SSIM | text / denoise / decode s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['backend']} | {r['status']}: {r['reason']} | | | | | |")
            continue
        stages = " / ".join(f"{v:.2f}" for v in (r.get("stages_s") or {}).values()) or "-"
        psnr = "-" if r.get("psnr_db") is None else f"{r['psnr_db']:.1f}"
        ssim = "-" if r.get("ssim") is None else f"{r['ssim']:.3f}"
        step = f"{r['s_per_step']:.3f}" if "s_per_step" in r else "-"
        lines.append(
            f"| {r['backend']} | {r['mean_s']:.2f} | {step} | {r['speedup']:.2f}x | {psnr} | {ssim} | {stages} |"
        )
    return "\n".join(lines)


def tradeoff_chart(rows: list[dict], path, title: str) -> None:
    """Speed-up (x) against PSNR to the baseline (y), one labelled point per variant; drawn with Pillow, as the
    benchmark's other charts are, to keep matplotlib out of the image."""
    from PIL import Image, ImageDraw

    points = [r for r in rows if r["status"] == "ok" and r.get("psnr_db") is not None]
    if not points:
        return
    width, plot_h, left, bottom, pad = 900, 520, 80, 60, 30
    height = plot_h + 20 * len(points) + pad  # a numbered legend under the plot: close points stay legible
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((pad, 10), title + ": speed-up vs PSNR to the baseline", fill="black")
    xs, ys = [r["speedup"] for r in points], [r["psnr_db"] for r in points]
    x0, x1 = min(xs) * 0.95, max(xs) * 1.05
    y0, y1 = min(ys) - 1.0, max(ys) + 1.0

    def at(x, y):
        return (
            left + (x - x0) / (x1 - x0) * (width - left - 2 * pad),
            plot_h - bottom - (y - y0) / (y1 - y0) * (plot_h - bottom - 2 * pad),
        )

    draw.line([at(x0, y0), at(x1, y0)], fill="black")
    draw.line([at(x0, y0), at(x0, y1)], fill="black")
    for i in range(5):
        x, y = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        px, py = at(x, y0)
        draw.text((px - 10, py + 8), f"{x:.1f}x", fill="black")
        qx, qy = at(x0, y)
        draw.text((qx - 60, qy - 6), f"{y:.1f} dB", fill="black")
    draw.text((width // 2 - 60, plot_h - 24), "speed-up over the baseline", fill="black")
    for i, r in enumerate(points, 1):
        px, py = at(r["speedup"], r["psnr_db"])
        colour = "#d62728" if r["settings"].get("tome_max_downsample", 1) > 1 else "#1f77b4"
        draw.ellipse([px - 5, py - 5, px + 5, py + 5], fill=colour)
        draw.text((px - 3, py - 20 if i % 2 else py + 8), str(i), fill="black")
        legend = f"{i}  {r['backend']}: {r['speedup']:.2f}x, {r['psnr_db']:.1f} dB, SSIM {r['ssim']:.3f}"
        draw.text((left, plot_h + 20 * (i - 1)), legend, fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
