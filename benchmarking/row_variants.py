"""A row built several ways and measured in one run against one reference row (`benchmark.py --variants`).

The row declares its named lists of variants (`Backend.variant_lists`; today int8-tome's `ablation`, its build's
changes in the order they were made, and `sweep`, Token Merging's ratio and placement). Each variant is a full
build of the row (cached like the row's own) with a few `LoadSettings` fields changed; it is loaded, warmed up
once, timed like every row, then dropped before the next one loads."""

from __future__ import annotations

import gc
import logging
import statistics
from dataclasses import fields, replace

from backends import backend_class, backend_ids, is_reference
from core.cpu import this_cpu
from core.files import write_json
from core.request import LoadSettings, initial_latents
from harness.compare.comparison import against_reference, timed_generate
from harness.compare.rows import RowSet
from harness.records.results import results_path
from harness.settings import build_comparison

from .latency import row_figures
from .report import bar_chart, provenance, variants_table
from .report import recipe as build_recipe
from .rounds import Pairs, speedup_figures, time_beside

log = logging.getLogger(__name__)


def row_with_variants() -> str:
    """The registered row that declares variant lists."""
    declaring = [b for b in backend_ids() if getattr(backend_class(b), "variant_lists", None)]
    if len(declaring) != 1:
        raise SystemExit(f"--variants needs exactly one row declaring variant_lists; found {declaring or 'none'}")
    return declaring[0]


def shipped_recipe(backend_id: str) -> dict:
    """The row as it ships: the LoadSettings defaults of every field some variant of it changes."""
    lists = backend_class(backend_id).variant_lists
    changed = {key for entries in lists.values() for _label, overrides in entries for key in overrides}
    return {f.name: f.default for f in fields(LoadSettings) if f.name in changed}


def variant_list(backend_id: str, names: str) -> list[tuple[str, dict]]:
    """The variants of the comma-separated lists `names` of the row, each recipe once, as (label, the full set
    of LoadSettings fields any variant changes)."""
    lists = backend_class(backend_id).variant_lists
    defaults = shipped_recipe(backend_id)
    chosen, seen = [], set()
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in lists:
            raise ValueError(f"unknown variant list {name!r} of {backend_id}; choose from {', '.join(lists)}")
        for label, overrides in lists[name]:
            recipe = {**defaults, **overrides}
            if tuple(sorted(recipe.items())) not in seen:
                seen.add(tuple(sorted(recipe.items())))
                chosen.append((label, recipe))
    return chosen


def mark_noise(rows: list[dict]) -> None:
    """Each variant's speed-up against the row as it ships (the variant without overrides of its defaults, when
    measured): `within_noise_of_default` when their ranges over the rounds overlap, i.e. no difference this machine
    can show."""
    shipped = next((r for r in rows if r.get("shipped")), None)
    for r in rows:
        if shipped is not None and r is not shipped and r.get("speedup_range"):
            low, high = r["speedup_range"]
            r["within_noise_of_default"] = low <= shipped["speedup_range"][1] and shipped["speedup_range"][0] <= high


def row_variants(settings, args) -> dict:
    """The reference row once, then every variant of `args.variants`; returns the report (also written as JSON).

    Paired as the latency table's `beside` rounds: the reference stays loaded, each variant is loaded in turn and
    each of its rounds times the reference and then it, so every speed-up divides figures taken minutes apart."""
    backend_id = row_with_variants()
    variants = variant_list(backend_id, args.variants)
    comparison = build_comparison(settings)
    model = comparison.rows.resolve()
    load_settings = comparison.rows.settings
    reference_id = next(b for b in backend_ids() if is_reference(b))
    request = comparison.validate(
        prompt=args.prompt, seed=args.seed, steps=settings.steps, height=args.size, width=args.size
    )
    cpu, cores = this_cpu(), settings.thread_count()
    latency_path = results_path(model.model_id, args.size, request.steps, cpu.slug(), cores)
    lists = args.variants.replace(",", "-")
    json_path = args.json or latency_path.with_name(f"{backend_id}-variants-{lists}-{latency_path.name}")
    latents = initial_latents(request.seed, request.height, request.width)
    reference_rows = load_warm(model, reference_id, load_settings, request.height)
    reference = Reference(reference_id, reference_rows, timer(reference_rows, reference_id, request, latents))
    rows = [reference.figures]
    report = {
        **provenance(args.argv),
        "recipe": build_recipe(load_settings),
        "mode": "variants",
        "row": backend_id,
        "model": model.model_id,
        "size": args.size,
        "steps": request.steps,
        "passes": args.passes,
        "prompt": args.prompt,
        "seed": args.seed,
        "calibration_prompts": load_settings.calibration_prompts,
        "calibration_steps": load_settings.calibration_steps,
        "cores": cores,
        "rows": rows,
        "complete": False,  # written after every variant, so a long run that is cut short keeps what it measured
    }
    write_json(json_path, report)
    if args.pairing == "together":  # every variant loaded at once, each round timing the reference and then each
        rows += measure_together(model, backend_id, variants, load_settings, request, latents, reference, args.passes)
        mark_noise(rows)
    for label, recipe in variants if args.pairing != "together" else ():
        log.info("[%s variant] %s: %s", backend_id, label, recipe)
        rows.append(measure_variant(model, backend_id, label, recipe, load_settings, request, latents, reference,
                                    args.passes))  # fmt: skip
        mark_noise(rows)
        write_json(json_path, report)
    report["pairing"] = "together" if args.pairing == "together" else "beside"
    report["complete"] = True
    write_json(json_path, report)
    title = f"{backend_id} variants, {model.model_id} {args.size}x{args.size}, {request.steps} steps, {cpu.model}"
    bar_chart(rows, json_path.with_suffix(".png"), title)
    if sum(1 for r in rows if "settings" in r) > 1:
        tradeoff_chart(rows, json_path.with_name(json_path.stem + "-tradeoff.png"), title)
    print(f"\n{title}; {cores} threads; JSON: {json_path}\n")
    print(variants_table(rows))
    report["json"] = str(json_path)
    return report


def load_warm(model, row_id: str, row_settings, height: int) -> RowSet:
    """One row loaded and warmed up (the app's warm-up: one step), or a RuntimeError saying why it did not load."""
    rows = RowSet(model, [row_id], row_settings)
    rows.load_row(row_id)
    status = rows.status[row_id]
    if status.state != "ready":
        raise RuntimeError(f"{row_id} could not load: {status.detail}")
    with rows.lock:
        rows.warm_up(row_id, height)
    return rows


def timer(rows: RowSet, row_id: str, request, latents):
    """One timed generation of the row, as the app times it."""
    return lambda: timed_generate(rows.backends[row_id], request, latents)


class Reference:
    """The reference row, loaded once: its timer, and its figures over every round timed so far."""

    def __init__(self, backend_id: str, rows: RowSet, time_it):
        self.backend_id, self.rows, self.time_it = backend_id, rows, time_it
        self.runs = [time_it()]  # its own figure, beside nothing; the variants' rounds add theirs
        self.figures = row_figures(backend_id, rows.status[backend_id], self.runs)
        self.figures["speedup"] = 1.0

    def add(self, runs) -> None:
        self.runs += runs
        self.figures.update(row_figures(self.backend_id, self.rows.status[self.backend_id], self.runs))


def variant_settings(load_settings, recipe: dict):
    """The row's settings with a variant's recipe; an int8 recipe set here is the benchmark's, and said so."""
    changed = replace(load_settings, **recipe)
    if changed.int8_mode != load_settings.int8_mode:
        changed = replace(changed, int8_mode_note=f"{changed.int8_mode}: a variant of the benchmark")
    return changed


def measure_together(model, backend_id, variants, load_settings, request, latents, reference, passes) -> list[dict]:
    """Every variant loaded at once, then `passes` rounds each timing the reference and then every variant in
    turn: their ratios to each other come from the same rounds (for a few variants that fit in memory together)."""
    loaded, rows = {}, []
    for label, recipe in variants:
        try:
            loaded[label] = (
                recipe,
                load_warm(model, backend_id, variant_settings(load_settings, recipe), request.height),
            )
        except Exception as exc:
            log.exception("variant %s failed", label)
            rows.append({"backend": label, "status": "error", "reason": str(exc)[:300], "settings": recipe})
    pairs = {label: Pairs() for label in loaded}
    for i in range(passes):
        log.info("[%s variants] round %d/%d", backend_id, i + 1, passes)
        reference_run = reference.time_it()
        reference.add([reference_run])
        for label, (_recipe, variant_rows) in loaded.items():
            pairs[label].references.append(reference_run)
            pairs[label].runs.append(timer(variant_rows, backend_id, request, latents)())
    for label, (recipe, variant_rows) in loaded.items():
        rows.append(variant_figures(label, recipe, backend_id, variant_rows, pairs[label], reference))
    return rows


def variant_figures(label, recipe, backend_id, variant_rows, pairs, reference) -> dict:
    """A timed variant's figures: latencies, its paired speed-ups over the reference, fidelity to its image."""
    row = row_figures(label, variant_rows.status[backend_id], pairs.runs) | speedup_figures(pairs)
    row.update(settings=recipe, shipped=recipe == shipped_recipe(backend_id))
    row["speedup"] = statistics.median(row["speedups"])
    _speedup, row["psnr_db"], row["ssim"] = against_reference(
        row["median_s"], pairs.runs[-1].image, reference.figures["median_s"], reference.runs[-1].image
    )
    return row


def measure_variant(model, backend_id, label, recipe, load_settings, request, latents, reference, passes) -> dict:
    """One variant built and timed in rounds beside the reference: its figures, or why it could not build (one
    variant that cannot build is reported, the others still run)."""
    try:
        variant_rows = load_warm(model, backend_id, variant_settings(load_settings, recipe), request.height)
    except Exception as exc:
        log.exception("variant %s failed", label)
        return {"backend": label, "status": "error", "reason": str(exc)[:300], "settings": recipe}
    pairs = time_beside(reference.time_it, timer(variant_rows, backend_id, request, latents), passes, label)
    reference.add(pairs.references)
    row = variant_figures(label, recipe, backend_id, variant_rows, pairs, reference)
    del variant_rows  # its compiled models, before the next variant loads
    gc.collect()
    return row


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
        colour = "#1f77b4"
        draw.ellipse([px - 5, py - 5, px + 5, py + 5], fill=colour)
        draw.text((px - 3, py - 20 if i % 2 else py + 8), str(i), fill="black")
        legend = f"{i}  {r['backend']}: {r['speedup']:.2f}x, {r['psnr_db']:.1f} dB, SSIM {r['ssim']:.3f}"
        draw.text((left, plot_h + 20 * (i - 1)), legend, fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
