"""The source blog's latency table, measured here for every row in one run: per row a timed load, one warm-up
generation (excluded), then N timed generations of the same prompt and seed with `output_type="np"`; ratios
and fidelity against the baseline of this same run."""

from __future__ import annotations

import datetime
import logging
import statistics

log = logging.getLogger(__name__)


def measure_row(backend, request, passes: int):
    """Warm-up once (excluded), then `passes` timed generations on the same latents, timed exactly as the app
    times a row. Returns the `Timed` of every pass."""
    from harness.comparison import make_latents, timed_generate

    latents = make_latents(request.seed, request.height, request.width)
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


def latency_table(settings, args) -> dict:
    """Load each row, measure it, and compare it with the baseline; returns the report (also written as JSON)."""
    from harness.comparison import against_baseline, to_uint8
    from harness.cpu import this_cpu
    from harness.settings import build_comparison
    from harness.system_info import process_memory_mb, system_info

    from .flops import count_flops, image_flops
    from .report import bar_chart, markdown_table, results_path, write_json
    from .throughput import throughput
    from .variants import system_variants

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
    rows, images = [], {}
    for backend_id in rows_set.order:
        log.info("[%s] loading", backend_id)
        rows_set.load_row(backend_id)
        status = rows_set.status[backend_id]
        if status.state != "ready":
            rows.append({"backend": backend_id, "status": "unavailable", "reason": status.detail})
            continue
        backend = rows_set.backends[backend_id]
        runs = measure_row(backend, request, args.passes)
        images[backend_id] = runs[-1].image
        latencies = [r.latency_s for r in runs]
        mean = statistics.mean(latencies)
        peak, peak_label = cpu.peak_flops(status.load.compute, cores)
        rows.append(
            {
                "backend": backend_id,
                "status": "ok",
                "precision": status.load.precision,
                "compute": status.load.compute,
                "latencies_s": latencies,
                "mean_s": mean,
                "median_s": statistics.median(latencies),
                "min_s": min(latencies),
                "max_s": max(latencies),
                "s_per_step": statistics.mean(r.s_per_step for r in runs),
                "stages_s": mean_stages(runs),
                "load_s": status.load.seconds,
                "cache": status.load.cache,
                "ram_added_mb": status.load.ram_added_mb,
                "peak_rss_gb": process_memory_mb()["peak"] / 1024,  # the process's running peak so far
                "disk_mb": status.load.disk_mb,
                "tflops": work / mean / 1e12,  # the baseline's work: ToMe rows report an effective rate
                "peak_share": work / mean / peak,
                "peak_unit": peak_label.split(":")[0],
                "peak_model": peak_label,
            }
        )
        if args.throughput and hasattr(backend, "ir_dirs"):  # the OpenVINO rows
            from harness.comparison import make_latents

            latents = make_latents(request.seed, request.height, request.width)
            measured = throughput(
                backend.ir_dirs[args.size], rows_set.settings, request, latents, args.throughput, 2 * args.throughput
            )
            rows[-1]["throughput_images_per_min"] = measured["images_per_min"]
            rows[-1]["throughput_streams"] = measured["streams"]
            rows[-1]["latency_images_per_min"] = 60 / mean
    baseline = next((r for r in rows if r["backend"] == "baseline" and r["status"] == "ok"), None)
    for r in (r for r in rows if r["status"] == "ok"):
        r["speedup"] = r["psnr_db"] = r["ssim"] = None  # no baseline in this run: no ratio to show
        if baseline is not None:
            r["speedup"], r["psnr_db"], r["ssim"] = against_baseline(
                r["mean_s"], images[r["backend"]], baseline["mean_s"], images["baseline"]
            )
        if r is baseline:
            r["psnr_db"] = r["ssim"] = None
    info = system_info(cores)
    report = {
        "date": datetime.date.today().isoformat(),
        "command": "python benchmark.py " + " ".join(args.argv),
        "variant": args.variant_name,
        "model": rows_set.model.model_id,
        "standin": rows_set.model.standin,
        "size": args.size,
        "steps": request.steps,
        "scheduler": request.scheduler,
        "passes": args.passes,
        "prompt": args.prompt,
        "seed": args.seed,
        "cpu_kind": cpu.slug(),
        "isa": cpu.isa_line(),
        "cores": cores,
        "flops": {**flops, "per_image": work},
        "system": info,
        "rows": rows,
    }
    if args.system_variants:
        report["system_variants"] = system_variants(args.argv, args)
    json_path = args.json
    write_json(json_path, report)
    if args.save_images:
        from PIL import Image

        args.save_images.mkdir(parents=True, exist_ok=True)
        for backend_id, image in images.items():
            Image.fromarray(to_uint8(image)).save(args.save_images / f"{backend_id}.png")
    if baseline:
        title = f"{rows_set.model.model_id} {args.size}x{args.size}, {request.steps} steps, {cpu.model}: s/image"
        bar_chart(rows, args.chart or json_path.with_suffix(".png"), title)
    print(
        f"\n{rows_set.model.model_id}, {args.size}x{args.size}, {request.steps} steps, {args.passes} passes; "
        f"{cpu.model} ({cpu.isa_line()}), {cores} threads, allocator {info['allocator']}, "
        f"OpenMP {', '.join(info['openmp'])}; variant: {args.variant_name}; JSON: {json_path}\n"
    )
    print(markdown_table(rows))
    for r in rows:
        if "throughput_images_per_min" in r:
            print(
                f"\n{r['backend']}: {r['throughput_images_per_min']:.2f} images/min with {args.throughput} in flight "
                f"(OpenVINO THROUGHPUT hint, {r['throughput_streams']} streams) vs {r['latency_images_per_min']:.2f} "
                f"images/min one at a time in the latency mode ({r['mean_s']:.2f} s each)"
            )
    for v in report.get("system_variants", []):
        if v["status"] == "ok":
            print(f"\nvariant {v['variant']}:\n" + markdown_table(v["rows"]))
        else:
            print(f"\nvariant {v['variant']}: {v['status']} ({v['reason']})")
    report["json"] = str(json_path)
    return report
