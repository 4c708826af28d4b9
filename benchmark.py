"""The source blog's latency table, measured on this machine, for every row in one run.

    python benchmark.py --model sd15-standin --size 512 --steps 20 --passes 3 --json artifacts/sd15.json

Per row: timed load (export/quantization or cache hit), one warm-up generation (excluded), then N timed
generations of the same prompt and seed with `output_type="np"`, as the blog measured. Ratios are against the
baseline of this same run. `--system-variants` re-runs the chosen rows in child processes with jemalloc, Intel
OpenMP and core pinning, the blog's system-level tuning, and reports them beside the default.

`--startup` measures the app's start instead: the same loading as `app.py` (every row loaded, then warmed
up), with the time until each row serves and until it is warm, and the process's memory with all rows loaded.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("benchmark")

JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
RUNTIME_ENV = Path(__file__).resolve().parent / "scripts" / "runtime-env.sh"  # the launcher's environment
BLOG = {  # the source blog's per-image latency, 32-core Sapphire Rapids, 512x512, 20 steps (for the README)
    "baseline": 32.3,
    "openvino-static": 4.7,
    "ipex-bf16": 5.05,
}


def parse_args(argv=None):
    from backends.settings import Settings

    parser = Settings.parser(__doc__)
    parser.add_argument("--size", type=int, default=512, help="square resolution")
    parser.add_argument("--passes", type=int, default=3, help="timed generations per row after the warm-up")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--prompt", default="sailing ship in storm by Rembrandt")
    parser.add_argument("--json", type=Path, default=Path("artifacts/benchmark.json"))
    parser.add_argument("--chart", type=Path, default=None, help="PNG bar chart (default: next to --json)")
    parser.add_argument("--save-images", type=Path, default=None, help="write <backend>.png per row here")
    parser.add_argument("--throughput", type=int, default=0, help="images in flight for the OpenVINO throughput mode")
    parser.add_argument("--system-variants", action="store_true", help="also measure jemalloc / Intel OpenMP / pinning")
    parser.add_argument("--startup", action="store_true", help="measure the app's start-up time and memory instead")
    parser.add_argument("--variant-name", default="default", help=argparse.SUPPRESS)  # set by --system-variants
    args = parser.parse_args(argv)
    settings = Settings.from_env().updated(args)
    return args, settings


# --------------------------------------------------------------------------------------------- FLOPs
def count_flops(model_path: Path, size: int) -> dict:
    """FLOPs of one UNet step (batch 2: classifier-free guidance) and one VAE decode, counted by torch's
    FlopCounterMode on the meta device (no weights, no compute)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    latent = size // 8
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(model_path / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(model_path / "vae"))
        sample = torch.empty(2, unet.config.in_channels, latent, latent)
        context = torch.empty(2, 77, unet.config.cross_attention_dim)
        z = torch.empty(1, vae.config.latent_channels, latent, latent)
    with FlopCounterMode(display=False) as unet_counter, torch.no_grad():
        unet(sample, torch.tensor([1], device="meta"), context)
    with FlopCounterMode(display=False) as vae_counter, torch.no_grad():
        vae.decode(z)
    return {"unet_step": unet_counter.get_total_flops(), "vae_decode": vae_counter.get_total_flops()}


def cpu_peak_flops(threads: int) -> tuple[float, str]:
    """Peak FLOP/s of the matrix units this CPU has, and which: AMX-BF16 1024 FLOP/cycle/core, AVX-512 FP32 64,
    AVX2 FP32 32 (two FMA ports), times clock and cores used."""
    from backends.system_info import cpu_flags

    flags = cpu_flags()
    if "amx_bf16" in flags:
        per_cycle, unit = 1024, "AMX-BF16"
    elif "avx512f" in flags:
        per_cycle, unit = 64, "AVX-512 FP32"
    else:
        per_cycle, unit = 32, "AVX2 FP32"
    mhz = 0.0
    try:
        for path in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq"):
            mhz = max(mhz, int(path.read_text()) / 1000)
    except OSError:
        pass
    if not mhz:
        with open("/proc/cpuinfo") as f:
            mhz = max(float(line.split(":")[1]) for line in f if line.startswith("cpu MHz"))
    return per_cycle * mhz * 1e6 * threads, f"{unit}, {per_cycle} FLOP/cycle/core x {mhz:.0f} MHz x {threads} cores"


# --------------------------------------------------------------------------------------------- measuring
def time_row(comparison, backend_id: str, request, passes: int):
    """Warm-up once (excluded), then `passes` timed generations on the same latents."""
    from backends.comparison import make_latents, seconds_per_step

    backend = comparison.backends[backend_id]
    latents = make_latents(request.seed, request.height, request.width)
    log.info("[%s] warm-up generation", backend_id)
    backend.generate(request, latents, lambda *_: None)
    latencies, per_step, image = [], [], None
    for i in range(passes):
        steps: list[float] = []
        start = time.perf_counter()
        image = backend.generate(request, latents, lambda *_, steps=steps: steps.append(time.perf_counter()))
        latencies.append(time.perf_counter() - start)
        per_step.append(seconds_per_step(steps, latencies[-1]))
        log.info("[%s] pass %d/%d: %.2f s", backend_id, i + 1, passes, latencies[-1])
    return latencies, per_step, image


class _RequestAdapter:
    """An InferRequest that optimum-intel's components can call like the CompiledModel they normally hold,
    so each throughput thread has its own requests on the shared compiled model."""

    def __init__(self, request):
        self.request = request

    def __call__(self, inputs, share_inputs=True):
        return self.request.infer(inputs, share_inputs=share_inputs)


def throughput(pipe, scheduler_config, request, latents, in_flight: int, images: int) -> float:
    """Images per minute with `in_flight` generations running at once on one compiled OpenVINO pipeline
    (one InferRequest per generation per component; OpenVINO streams run them in parallel)."""
    from backends.common import run_pipeline

    def clone():
        twin = copy.copy(pipe)
        for name in ("unet", "text_encoder", "vae_decoder"):
            component = copy.copy(getattr(pipe, name))
            component.request = _RequestAdapter(getattr(pipe, name).request.create_infer_request())
            setattr(twin, name, component)
        twin.vae = copy.copy(pipe.vae)
        twin.vae.decoder = twin.vae_decoder
        return twin

    remaining = list(range(images))
    lock = threading.Lock()

    def worker(twin):
        while True:
            with lock:
                if not remaining:
                    return
                remaining.pop()
            run_pipeline(twin, scheduler_config, request, latents, lambda *_: None)

    twins = [clone() for _ in range(in_flight)]
    run_pipeline(twins[0], scheduler_config, request, latents, lambda *_: None)  # warm-up
    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(t,)) for t in twins]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return images * 60 / (time.perf_counter() - start)


# --------------------------------------------------------------------------------------------- report
def markdown_table(rows: list[dict]) -> str:
    head = (
        "| row | mean s/image | median | min | max | s/step | speed-up | PSNR dB | SSIM | TFLOP/s | % peak "
        "| load s (cache) | peak RSS GB | disk MB |\n|" + "---|" * 14
    )
    lines = [head]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['backend']} | {r['status']}: {r.get('reason', '')} |" + " |" * 13)
            continue
        lines.append(
            f"| {r['backend']} | {r['mean_s']:.2f} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['max_s']:.2f} "
            f"| {r['s_per_step']:.3f} | {r['speedup']:.2f}x | {_fmt(r['psnr_db'], '.1f')} | {_fmt(r['ssim'], '.3f')} "
            f"| {r['tflops']:.2f} | {r['peak_share'] * 100:.1f} | {r['load_s']:.0f} ({r['cache']}) "
            f"| {r['peak_rss_gb']:.1f} | {_fmt(r['disk_mb'], '.0f')} |"
        )
    return "\n".join(lines)


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def bar_chart(rows: list[dict], path: Path, title: str) -> None:
    """A PNG bar chart drawn with Pillow (already a dependency) to keep matplotlib out of the image."""
    from PIL import Image, ImageDraw

    done = [r for r in rows if r["status"] == "ok"]
    width, bar_h, pad = 900, 44, 16
    image = Image.new("RGB", (width, 60 + len(done) * (bar_h + pad)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((pad, pad), title, fill="black")
    top = max((r["mean_s"] for r in done), default=1.0)
    for i, r in enumerate(done):
        y = 50 + i * (bar_h + pad)
        length = int((width - 330) * r["mean_s"] / top)
        draw.rectangle([200, y, 200 + length, y + bar_h], fill="#d62728" if r["backend"] == "baseline" else "#1f77b4")
        draw.text((pad, y + bar_h // 3), r["backend"], fill="black")
        draw.text((210 + length, y + bar_h // 3), f"{r['mean_s']:.1f} s  ({r['speedup']:.1f}x)", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


# --------------------------------------------------------------------------------------------- variants
def system_variants(argv: list[str], args) -> list[dict]:
    """Re-run this benchmark in child processes under the blog's system-level settings, each child started
    through scripts/runtime-env.sh: the allocator and OpenMP environment the app's launcher applies."""
    n = len(os.sched_getaffinity(0))
    iomp = Path(sys.prefix) / "lib" / "libiomp5.so"
    rows = args.backends.split(",") if args.backends else []
    torch_rows = [b for b in rows if b in ("baseline", "ipex-bf16")] or ["baseline", "ipex-bf16"]
    variants = {"jemalloc": ({"SBS_JEMALLOC": JEMALLOC}, rows)}  # every row, as the Docker image runs the app
    if iomp.exists():
        # PyTorch rows only, as the blog tuned them: Intel OpenMP replaces PyTorch's OpenMP runtime.
        variants["jemalloc + Intel OpenMP"] = ({"SBS_JEMALLOC": JEMALLOC, "SBS_IOMP": str(iomp)}, torch_rows)
    results = []
    for name, (env, variant_rows) in variants.items():
        if not Path(JEMALLOC).exists():
            results.append(
                {"variant": name, "status": "unavailable", "reason": f"{JEMALLOC} missing (apt libjemalloc2)"}
            )
            continue
        out = args.json.with_suffix(f".{name.replace(' ', '').replace('+', '-')}.json")
        child = [a for a in argv if a != "--system-variants"]
        child += ["--json", str(out), "--variant-name", name, "--throughput", "0"]
        if variant_rows:
            child += ["--backends", ",".join(variant_rows)]
        launch = f'source "{RUNTIME_ENV}" && exec "$0" "$@"'
        # Pinned to the cores we use, and the same thread count as the default run: Intel OpenMP narrows the
        # main thread's affinity when it loads, so a child must not derive its thread count from its own.
        cmd = ["taskset", "-c", f"0-{n - 1}", "bash", "-c", launch, sys.executable, __file__, *child]
        log.info("variant %s: %s", name, " ".join(cmd))
        threads = str(args.threads or n)
        env = {**os.environ, **env, "PYTHON": sys.executable, "SBS_THREADS": threads, "OMP_NUM_THREADS": threads}
        done = subprocess.run(cmd, env=env, check=False)
        if done.returncode != 0:
            results.append({"variant": name, "status": "error", "reason": f"exit code {done.returncode}"})
        else:
            results.append({"variant": name, "status": "ok", **json.loads(out.read_text())})
    return results


# --------------------------------------------------------------------------------------------- main
def startup(settings, args) -> dict:
    """Start-up as the app does it (model resolved, rows loaded in order, then warmed up), timed from the start
    of this function: when each row could serve a request and when it was warm."""
    from backends.settings import build_comparison
    from backends.system_info import process_memory_mb

    start = time.perf_counter()
    comparison = build_comparison(settings)
    seen: dict[str, dict] = {b: {} for b in comparison.order}
    done = threading.Event()

    def poll():
        now = round(time.perf_counter() - start, 1)
        for b, status in comparison.status.items():
            if status.state == "ready":
                seen[b].setdefault("serving_s", now)
            if b in comparison.warm():
                seen[b].setdefault("warm_s", now)

    def watch():  # polls the statuses the app's cards show; 0.1 s resolution
        while not done.wait(0.1):
            poll()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    comparison.load_all()
    done.set()
    watcher.join()
    poll()
    total = round(time.perf_counter() - start, 1)
    rows = []
    for b in comparison.order:
        status = comparison.status[b]
        row = {"backend": b, "state": status.state, **seen[b]}
        if status.load is not None:
            load, warmup = round(status.load.seconds, 1), round(status.warmup_s, 1)
            row.update(load_s=load, cache=status.load.cache, warmup_s=warmup)
        else:
            row["reason"] = status.detail
        rows.append(row)
    ready = [r for r in rows if r["state"] == "ready"]
    report = {
        "mode": "startup",
        "model": comparison.model.model_id,
        "sizes": list(comparison.settings.sizes),
        "all_serving_s": max((r.get("serving_s", total) for r in ready), default=None),
        "all_warm_s": total,
        "memory_gb": {k: round(v / 1024, 2) for k, v in process_memory_mb().items()},
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"\n{report['model']} start-up, sizes {report['sizes']}")
    print("| row | state | serving after (s) | warm after (s) | load (s) | cache | warm-up (s) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["state"] == "ready":
            print(
                f"| {r['backend']} | ready | {r['serving_s']} | {r['warm_s']} | {r['load_s']} | {r['cache']} "
                f"| {r['warmup_s']} |"
            )
        else:
            print(f"| {r['backend']} | {r['state']}: {r['reason']} | | | | | |")
    memory = report["memory_gb"]
    print(
        f"\nall rows serving after {report['all_serving_s']} s, all warm after {report['all_warm_s']} s; "
        f"RSS with every row loaded {memory['rss']} GB (anonymous {memory['anon']}, file-backed {memory['file']}), "
        f"peak {memory['peak']} GB"
    )
    return report


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args, settings = parse_args(argv)
    if not args.startup:  # start-up uses the app's sizes
        settings.sizes = str(args.size)

    from backends.comparison import fidelity, make_latents, to_uint8
    from backends.settings import build_comparison
    from backends.system_info import process_memory_mb, system_info

    if args.startup:
        return startup(settings, args)
    comparison = build_comparison(settings)
    request = comparison.validate(
        prompt=args.prompt, seed=args.seed, steps=settings.steps, height=args.size, width=args.size
    )
    flops = count_flops(comparison.model.path, args.size)
    work = flops["unet_step"] * request.steps + flops["vae_decode"]
    peak, peak_label = cpu_peak_flops(settings.thread_count())
    rows, images = [], {}
    for backend_id in comparison.order:
        log.info("[%s] loading", backend_id)
        comparison.load_row(backend_id)
        status = comparison.status[backend_id]
        if status.state != "ready":
            rows.append({"backend": backend_id, "status": "unavailable", "reason": status.detail})
            continue
        latencies, per_step, image = time_row(comparison, backend_id, request, args.passes)
        images[backend_id] = image
        mean = statistics.mean(latencies)
        rows.append(
            {
                "backend": backend_id,
                "status": "ok",
                "precision": status.load.precision,
                "latencies_s": latencies,
                "mean_s": mean,
                "median_s": statistics.median(latencies),
                "min_s": min(latencies),
                "max_s": max(latencies),
                "s_per_step": statistics.mean(per_step),
                "load_s": status.load.seconds,
                "cache": status.load.cache,
                "ram_added_mb": status.load.ram_added_mb,
                "peak_rss_gb": process_memory_mb()["peak"] / 1024,
                "disk_mb": status.load.disk_mb,
                "tflops": work / mean / 1e12,  # the baseline's work: ToMe rows report effective throughput
                "peak_share": work / mean / peak,
            }
        )
        if args.throughput and backend_id in ("openvino-static", "int8-tome"):
            backend = comparison.backends[backend_id]
            latents = make_latents(request.seed, request.height, request.width)
            rows[-1]["throughput_images_per_min"] = throughput(
                backend.pipes[args.size],
                backend.scheduler_config,
                request,
                latents,
                args.throughput,
                2 * args.throughput,
            )
            rows[-1]["latency_images_per_min"] = 60 / mean
    baseline = next((r for r in rows if r["backend"] == "baseline" and r["status"] == "ok"), None)
    for r in rows:
        if r["status"] != "ok":
            continue
        r["speedup"] = baseline["mean_s"] / r["mean_s"] if baseline else None
        r["psnr_db"], r["ssim"] = (
            fidelity(images[r["backend"]], images["baseline"]) if baseline and r is not baseline else (None, None)
        )
    info = system_info(settings.thread_count())
    report = {
        "variant": args.variant_name,
        "model": comparison.model.model_id,
        "standin": comparison.model.standin,
        "size": args.size,
        "steps": request.steps,
        "scheduler": request.scheduler,
        "passes": args.passes,
        "prompt": args.prompt,
        "seed": args.seed,
        "flops": {**flops, "per_image": work},
        "cpu_peak_flops": peak,
        "cpu_peak": peak_label,
        "system": info,
        "rows": rows,
    }
    if args.system_variants:
        report["system_variants"] = system_variants(argv, args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=str))
    if args.save_images:
        from PIL import Image

        args.save_images.mkdir(parents=True, exist_ok=True)
        for backend_id, image in images.items():
            Image.fromarray(to_uint8(image)).save(args.save_images / f"{backend_id}.png")
    if baseline:
        chart = args.chart or args.json.with_suffix(".png")
        bar_chart(rows, chart, f"{comparison.model.model_id} {args.size}x{args.size}, {request.steps} steps: s/image")
    print(
        f"\n{comparison.model.model_id}, {args.size}x{args.size}, {request.steps} steps, {args.passes} passes; "
        f"{info['cpu']}, {settings.thread_count()} threads, allocator {info['allocator']}, "
        f"OpenMP {', '.join(info['openmp'])}; variant: {args.variant_name}\n"
    )
    print(markdown_table(rows))
    for r in rows:
        if "throughput_images_per_min" in r:
            print(
                f"\n{r['backend']}: {r['throughput_images_per_min']:.2f} images/min with {args.throughput} in flight "
                f"(throughput mode) vs {r['latency_images_per_min']:.2f} images/min one at a time "
                f"({r['mean_s']:.2f} s each)"
            )
    for v in report.get("system_variants", []):
        if v["status"] == "ok":
            print(f"\nvariant {v['variant']}:\n" + markdown_table(v["rows"]))
        else:
            print(f"\nvariant {v['variant']}: {v['status']} ({v['reason']})")
    return report


if __name__ == "__main__":
    main()
