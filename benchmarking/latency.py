"""The source blog's latency table, measured here for every row in one run: per row a timed load, one warm-up
generation (excluded), then N timed generations of the same prompt and seed with `output_type="np"`; ratios
and fidelity against the reference row (the baseline) of this same run."""

from __future__ import annotations

import logging
import statistics

from core.cpu import this_cpu
from core.files import write_json
from core.images import to_uint8
from core.probes import process_memory_mb
from core.request import initial_latents
from harness.compare.comparison import against_reference, timed_generate
from harness.records.results import results_path
from harness.records.system_info import system_info
from harness.settings import build_comparison

from .flops import count_flops, image_flops
from .report import bar_chart, markdown_table, provenance, recipe
from .rounds import available_mb, choose_pairing, run_rounds, speedup_figures
from .throughput import throughput
from .variants import system_variants

log = logging.getLogger(__name__)


def measure_row(backend, request, passes: int):
    """Warm-up once (excluded), then `passes` timed generations on the same latents, timed exactly as the app
    times a row. Returns the `Timed` of every pass."""
    latents = initial_latents(request.seed, request.height, request.width)
    log.info("[%s] warm-up generation", type(backend).__name__)
    backend.generate(request, latents, lambda *_: None, lambda *_: None)
    runs = []
    for i in range(passes):
        runs.append(timed_generate(backend, request, latents))
        log.info("[%s] pass %d/%d: %.2f s", type(backend).__name__, i + 1, passes, runs[-1].latency_s)
    return runs


def mean_stages(runs) -> dict[str, float] | None:
    """Mean seconds per stage (text encoding, denoising, VAE decoding) over the timed passes."""
    if any(r.stages is None for r in runs):
        return None
    return {stage: statistics.mean(r.stages[stage] for r in runs) for stage in runs[0].stages}


def row_figures(backend_id: str, status, runs) -> dict:
    """One measured row of a report (the latency table's and the variants' alike): its latencies over the passes
    and what it ran as; speed-up and fidelity are added against the reference row once that is measured."""
    latencies = [r.latency_s for r in runs]
    return {
        "backend": backend_id,
        "status": "ok",
        "precision": status.load.precision,
        "recipe": status.load.recipe,
        "compute": status.load.compute,
        "cache": status.load.cache,
        "latencies_s": latencies,
        "mean_s": statistics.mean(latencies),
        "median_s": statistics.median(latencies),
        "min_s": min(latencies),
        "max_s": max(latencies),
        "s_per_step": statistics.mean(r.s_per_step for r in runs),
        "stages_s": mean_stages(runs),
    }


def compare_with_reference(rows: list[dict], images: dict) -> None:
    """Speed-up (the median of the paired rounds' ratios, when the rows have them; else of the medians), PSNR and
    SSIM of every measured row against the row marked `reference` (none without it). A speed-up whose range over
    the rounds reaches 1.0 is marked `within_noise`: no difference this machine can show."""
    reference = next((r for r in rows if r.get("reference") and r["status"] == "ok"), None)
    for r in (r for r in rows if r["status"] == "ok"):
        r["speedup"] = r["psnr_db"] = r["ssim"] = None  # no reference in this run: no ratio to show
        r["within_noise"] = None
        if reference is not None and r.get("different_work"):
            # Other work (fewer steps, another decoder): how much sooner its image came than the reference's, never
            # a speed-up, nor a fidelity to the reference's image (a different model's image).
            r["sooners"], r["sooner_range"] = r.pop("speedups", None), r.pop("speedup_range", None)
            r["sooner"] = statistics.median(r["sooners"]) if r["sooners"] else reference["median_s"] / r["median_s"]
        elif reference is not None:
            r["speedup"], r["psnr_db"], r["ssim"] = against_reference(
                r["median_s"], images[r["backend"]], reference["median_s"], images[reference["backend"]]
            )
            if r.get("speedups"):
                r["speedup"] = statistics.median(r["speedups"])
                low, high = r["speedup_range"]
                r["within_noise"] = r is not reference and low <= 1.0 <= high
        if r is reference:
            r["psnr_db"] = r["ssim"] = None


def latency_table(settings, args) -> dict:
    """Load the rows, time them in paired rounds (`benchmarking.rounds`) and compare each with the reference row
    beside it; returns the report (also written as JSON).

    1. the model and the request, 2. the paired rounds, 3. each row's figures, 4. the report, written with its
    images and chart, 5. the table printed."""
    comparison = build_comparison(settings)
    rows_set = comparison.rows
    rows_set.resolve()  # the model (a download, the first time), before anything is timed
    request = comparison.validate(
        prompt=args.prompt, seed=args.seed, steps=settings.steps, height=args.size, width=args.size
    )
    cpu, cores = this_cpu(), settings.thread_count()
    flops = count_flops(rows_set.model.path, args.size)
    work = image_flops(flops, request.steps)
    args.json = args.json or results_path(rows_set.model.model_id, args.size, request.steps, cpu.slug(), cores)
    pairing = choose_pairing(args.pairing, rows_set.model.path, available_mb())
    log.info("%d paired rounds, rows %s", args.passes, pairing)
    throughputs = {}

    def after_row(backend_id: str) -> None:  # while the row is loaded: OpenVINO's throughput mode, if asked
        backend = rows_set.backends[backend_id]
        if args.throughput and hasattr(backend, "ir_dirs"):  # rows compiled from OpenVINO IR
            latents = initial_latents(request.seed, request.height, request.width)
            throughputs[backend_id] = throughput(
                backend.ir_dirs[args.size], rows_set.settings, request, latents, args.throughput, 2 * args.throughput
            )

    pairs = run_rounds(rows_set, request, args.passes, pairing, after_row)
    rows, images = [], {}
    for backend_id in rows_set.order:
        if backend_id not in pairs:
            rows.append({"backend": backend_id, "status": "unavailable", "reason": rows_set.status[backend_id].detail})
            continue
        images[backend_id] = pairs[backend_id].runs[-1].image
        rows.append(measured_row(rows_set, backend_id, pairs, work, cores, throughputs.get(backend_id)))
    compare_with_reference(rows, images)
    info = system_info(cores, rows_set.order)
    report = {
        **provenance(args.argv),
        "recipe": recipe(rows_set.settings),
        "variant": args.variant_name,
        "model": rows_set.model.model_id,
        "standin": rows_set.model.standin,
        "size": args.size,
        "steps": request.steps,
        "scheduler": request.scheduler,
        "passes": args.passes,
        "rounds": args.passes,
        "pairing": pairing,
        "prompt": args.prompt,
        "seed": args.seed,
        "cores": cores,
        "flops": {**flops, "per_image": work},
        "system": info,
        "rows": rows,
    }
    if args.system_variants:
        report["system_variants"] = system_variants(args.argv, args, rows_set.order)
    write_report(report, images, args, f"{rows_set.model.model_id} {args.size}x{args.size}, {request.steps} steps, "
                 f"{cpu.model}: s/image")  # fmt: skip
    print_report(report, args, f"{cpu.model} ({cpu.isa_line()})")
    return report


def measured_row(rows_set, backend_id: str, pairs: dict, work: float, cores: int, throughput_run) -> dict:
    """A timed row's figures: latencies, load, memory, FLOP rate against the CPU's peak, the speed-up over its
    paired rounds with the reference, and OpenVINO's throughput mode where it was measured."""
    status = rows_set.status[backend_id]
    row = row_figures(backend_id, status, pairs[backend_id].runs)
    peak, peak_label = this_cpu().peak_flops(status.load.compute, cores)
    row.update(
        reference=backend_id == rows_set.reference,
        load_s=status.load.seconds,
        ram_added_mb=status.load.ram_added_mb,
        peak_rss_gb=process_memory_mb()["peak"] / 1024,  # the process's running peak so far
        disk_mb=status.load.disk_mb,
        tflops=work / row["median_s"] / 1e12,  # the reference's work: ToMe rows report an effective rate
        peak_share=work / row["median_s"] / peak,
        peak_unit=peak_label.split(":")[0],
        peak_model=peak_label,
    )
    row["different_work"] = rows_set.different_work(backend_id)
    if row["different_work"]:  # not the reference's work: no FLOP rate from it
        row["tflops"] = row["peak_share"] = None
    if rows_set.reference in pairs:
        row.update(speedup_figures(pairs[backend_id]))
    if throughput_run is not None:
        row["throughput_images_per_min"] = throughput_run["images_per_min"]
        row["throughput_streams"] = throughput_run["streams"]
        row["latency_images_per_min"] = 60 / row["median_s"]
    return row


def write_report(report: dict, images: dict, args, chart_title: str) -> None:
    """The JSON, the rows' images (with --save-images) and the latency chart (when the reference ran)."""
    write_json(args.json, report)
    report["json"] = str(args.json)
    if args.save_images:
        from PIL import Image

        args.save_images.mkdir(parents=True, exist_ok=True)
        for backend_id, image in images.items():
            Image.fromarray(to_uint8(image)).save(args.save_images / f"{backend_id}.png")
    if any(r.get("reference") and r["status"] == "ok" for r in report["rows"]):
        bar_chart(report["rows"], args.chart or args.json.with_suffix(".png"), chart_title)


def print_report(report: dict, args, cpu_words: str) -> None:
    """The run's one line, its table, OpenVINO's throughput mode and the system variants."""
    info = report["system"]
    print(
        f"\n{report['model']}, {args.size}x{args.size}, {report['steps']} steps, {args.passes} paired rounds "
        f"({report['pairing']}); {cpu_words}, {report['cores']} threads, allocator {info['allocator']}, "
        f"OpenMP {', '.join(info['openmp'])}; variant: {args.variant_name}; JSON: {args.json}\n"
    )
    print(markdown_table(report["rows"]))
    for r in report["rows"]:
        if "throughput_images_per_min" in r:
            print(
                f"\n{r['backend']}: {r['throughput_images_per_min']:.2f} images/min with {args.throughput} in flight "
                f"(OpenVINO THROUGHPUT hint, {r['throughput_streams']} streams) vs {r['latency_images_per_min']:.2f} "
                f"images/min one at a time in the latency mode ({r['median_s']:.2f} s each)"
            )
    for v in report.get("system_variants", []):
        if v["status"] == "ok":
            print(f"\nvariant {v['variant']}:\n" + markdown_table(v["rows"]))
        else:
            print(f"\nvariant {v['variant']}: {v['status']} ({v['reason']})")
