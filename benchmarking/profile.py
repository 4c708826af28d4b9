"""`benchmark.py --profile ROW`: where one UNet call and one VAE decode of a row spend their time on this CPU,
by the kernel that ran each operation and its precision: OpenVINO's per-layer counters (`PERF_COUNT`) for the
OpenVINO rows, torch's profiler for the PyTorch rows."""

from __future__ import annotations

import logging
import re
from collections import defaultdict

from backends import backend_class
from core.cpu import this_cpu
from core.files import write_json
from core.naming import model_slug
from core.request import initial_latents
from harness.records.results import RESULTS
from harness.settings import build_comparison

from .report import provenance

log = logging.getLogger(__name__)

TOP = 15  # operations listed per component
TOP_LAYERS = 10  # single layers listed per component, where the profiler names them


def precision_of(exec_type: str) -> str:
    """The precision an OpenVINO CPU kernel computes in, from its name (e.g. `brgconv_avx512_amx_I8` -> int8)."""
    name = exec_type.lower()
    for marker, precision in (("i8", "int8"), ("u8", "int8"), ("bf16", "bf16"), ("f16", "fp16"), ("f32", "fp32")):
        if re.search(rf"(^|_){marker}($|_)", name):
            return precision
    return "other"


def openvino_profile(compiled) -> dict:
    """The last inference's per-layer counters of an OpenVINO CompiledModel (compiled with PERF_COUNT)."""
    fused = fused_layers(compiled)
    rows = [
        {
            "name": p.node_name,
            "type": p.node_type,
            "kernel": p.exec_type,
            "precision": precision_of(p.exec_type),
            "ms": p.real_time.total_seconds() * 1000,
            "fused": fused.get(p.node_name, ""),
        }
        for p in compiled._infer_request.profiling_info  # the request `CompiledModel.__call__` keeps and reuses
        if p.status.name == "EXECUTED"
    ]
    return summarize(rows)


def fused_layers(compiled) -> dict[str, str]:
    """Executed node name -> the exported layers it runs (OpenVINO's `originalLayersNames`). A fused node is named
    after one of its layers, which one depending on the CPU: on AVX-512 the attention `Subgraph` takes the name of
    `aten::scaled_dot_product_attention`, on AVX2 that of the transpose after it."""
    try:
        ops = compiled.get_runtime_model().get_ops()
        return {op.get_friendly_name(): op.get_rt_info()["originalLayersNames"].astype(str) for op in ops}
    except Exception:  # rt_info names move between OpenVINO releases: the node's own name is then all there is
        return {}


def summarize(rows: list[dict]) -> dict:
    total = sum(r["ms"] for r in rows) or 1.0
    shares: dict[str, float] = defaultdict(float)
    by_kernel: dict[tuple[str, str, str], float] = defaultdict(float)
    for r in rows:
        shares[r["precision"]] += r["ms"] / total
        by_kernel[(r["type"], r["kernel"], r["precision"])] += r["ms"]
    top = sorted(by_kernel.items(), key=lambda item: -item[1])[:TOP]
    summary = {
        "total_ms": total,
        "precision_share": dict(sorted(shares.items(), key=lambda item: -item[1])),
        # attention, whatever kernel runs it: OpenVINO fuses it into `Subgraph` nodes holding the exported
        # `aten::scaled_dot_product_attention` (`fused_layers`); torch's profiler names the flash-attention op
        "attention_share": sum(r["ms"] for r in rows if "scaled_dot_product" in r["name"] + r.get("fused", "")) / total,
        "top": [
            {"op": op, "kernel": kernel, "precision": precision, "ms": ms, "share": ms / total}
            for (op, kernel, precision), ms in top
        ],
    }
    if any(r["name"] != r["type"] for r in rows):  # per-layer names (OpenVINO): the largest single layers
        summary["top_layers"] = [
            {"name": r["name"][:160], "op": r["type"], "kernel": r["kernel"], "ms": r["ms"], "share": r["ms"] / total}
            for r in sorted(rows, key=lambda r: -r["ms"])[:TOP_LAYERS]
        ]
    return summary


def torch_profile(fn, precision: str) -> dict:
    """torch's profiler over `fn()`: self CPU time per aten op (PyTorch does not name the kernel or its precision
    per op; the row's compute precision is given instead)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    label = f"{precision} (the row's, not read per op)"
    rows = [
        {"name": e.key, "type": e.key, "kernel": e.key, "precision": label, "ms": e.self_cpu_time_total / 1000}
        for e in prof.key_averages()
        if e.self_cpu_time_total > 0
    ]
    return summarize(rows)


def profile_row(settings, args) -> dict:
    """Load one row, run one generation of `args.profile_steps` steps untimed (warm-up), then profile the next
    generation's last UNet call and its VAE decode."""
    backend_id = args.profile
    comparison = build_comparison(settings)
    rows = comparison.rows
    if backend_id not in rows.order:
        raise SystemExit(f"--profile: unknown row {backend_id!r}; choose from {', '.join(rows.order)}")
    rows.resolve()
    openvino = backend_class(backend_id).framework == "openvino"
    if openvino:  # per-layer counters are chosen at compile time, through the Core optimum-intel compiles with
        from optimum.intel.openvino.modeling_diffusion import core

        core.set_property("CPU", {"PERF_COUNT": True})
    try:
        rows.load_row(backend_id)
    finally:
        if openvino:
            core.set_property("CPU", {"PERF_COUNT": False})
    status = rows.status[backend_id]
    if status.state != "ready":
        raise SystemExit(f"--profile {backend_id}: {status.state}: {status.detail}")
    backend = rows.backends[backend_id]
    request = comparison.validate(
        prompt=args.prompt, seed=args.seed, steps=args.profile_steps, height=args.size, width=args.size
    )
    latents = initial_latents(request.seed, request.height, request.width)

    def generate():
        backend.generate(request, latents, lambda *_: None, lambda *_: None)

    generate()  # warm-up: first-call costs are not what this profile is for
    cpu = this_cpu()
    report = {
        **provenance(args.argv),
        "row": backend_id,
        "cores": settings.thread_count(),
        "model": rows.model.model_id,
        "size": args.size,
        "precision": status.load.precision,
    }
    if openvino:
        generate()
        pipe = backend.pipes[args.size]
        report["unet_call"] = openvino_profile(pipe.unet.request)
        report["vae_decode"] = openvino_profile(pipe.vae_decoder.request)
    else:
        pipe = backend.pipe
        import torch

        dtype = pipe.unet.dtype  # a row with bf16 weights (pytorch-bf16) takes bf16 inputs
        unet_latents = latents.repeat(2, 1, 1, 1).to(dtype)  # classifier-free guidance: one call on a batch of two
        with torch.no_grad():
            cond, uncond = pipe.encode_prompt(request.prompt, "cpu", 1, True)
        embeddings = torch.cat([uncond, cond])
        # fp32 weights computed in bf16 (ipex-bf16) run under CPU autocast, as the row does
        autocast = status.load.compute == "bf16" and dtype == torch.float32

        def unet():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                pipe.unet(unet_latents, torch.tensor(999), encoder_hidden_states=embeddings)

        def decode():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                pipe.vae.decode(latents.to(dtype) / pipe.vae.config.scaling_factor)

        unet(), decode()  # their own warm-up at these shapes
        report["unet_call"] = torch_profile(unet, status.load.compute)
        report["vae_decode"] = torch_profile(decode, status.load.compute)
    name = f"profile-{backend_id}-{model_slug(rows.model.model_id)}-{args.size}px-{cpu.slug()}.json"
    path = args.json or RESULTS / name
    write_json(path, report)
    print(profile_table(report))
    print(f"\nJSON: {path}")
    report["json"] = str(path)
    return report


def profile_table(report: dict) -> str:
    lines = [
        f"{report['row']} on {report['isa']}, {report['cores']} threads, {report['model']} {report['size']}px "
        f"({report['precision']})"
    ]
    for part in ("unet_call", "vae_decode"):
        p = report[part]
        shares = ", ".join(f"{k} {v * 100:.0f} %" for k, v in p["precision_share"].items())
        lines += [
            f"\n{part}: {p['total_ms']:.0f} ms; by precision: {shares}; attention {p['attention_share'] * 100:.0f} %",
            "| op | kernel | precision | ms | share |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {t['op']} | {t['kernel']} | {t['precision']} | {t['ms']:.1f} | {t['share'] * 100:.1f} % |"
            for t in p["top"]
        ]
        if p.get("top_layers"):
            lines += ["\n| largest layers | op | kernel | ms | share |", "|---|---|---|---|---|"]
            lines += [
                f"| {t['name'][:90]} | {t['op']} | {t['kernel']} | {t['ms']:.1f} | {t['share'] * 100:.1f} % |"
                for t in p["top_layers"]
            ]
    return "\n".join(lines)
