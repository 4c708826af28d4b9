"""One program of the product run as a played CPU kind, for tests/test_cpu_kinds.py (SBS_CPU_KIND is set by the
caller; this file is run as a script, in a process of its own, because the engines read their caps once).

    python tests/kind_run.py prepare CACHE_DIR OUT_JSON [harness.prepare flags]
    python tests/kind_run.py start CACHE_DIR OUT_JSON
    python tests/kind_run.py serve CACHE_DIR OUT_JSON     (the start without the benchmark)

`prepare` is the Space image's build step. `start` is the app's start on the `tiny` stand-in with a comparison
asked for through the page's handler in its first second (while the rows load), then the benchmark's table; it
writes what a visitor and an operator would read (every row's status, card, figures and cache state, the System
panel) and which kernels the engines ran (ATen's instruction set, every OpenVINO row's primitives), then prints oneDNN's
own verbose line about the instruction set it dispatches to."""

from __future__ import annotations

import json  # noqa: I001
import sys
from pathlib import Path

import core  # noqa: F401  (first: a played kind caps the engines before torch is imported)

SIZE = 128
REQUEST = dict(  # test_backends.REQUEST through the page's handler: its fidelity tolerances apply
    prompt="sailing ship in storm by Rembrandt",
    negative_prompt="",
    seed=42,
    random_seed=False,
    steps=8,
    guidance=7.5,
    size=f"{SIZE}x{SIZE}",
    scheduler="dpm++",
)


def prepare(cache_dir: str, flags: list[str]) -> dict:
    from harness import prepare as harness_prepare

    argv = ["--model", "tiny", "--sizes", str(SIZE), "--cache-dir", cache_dir, "--calibration-prompts", "2", *flags]
    return {"done": harness_prepare.main(argv)}


def start(cache_dir: str, out: Path, with_benchmark: bool = True) -> dict:
    import torch

    import benchmark
    import ui.context
    import ui.handlers
    import ui.system
    from core.cpu import this_cpu
    from harness.settings import Settings, build_comparison

    settings = Settings(model="tiny", sizes=str(SIZE), cache_dir=cache_dir, threads=2, calibration_prompts=2)
    comparison = build_comparison(settings)
    comparison.load_in_background()  # as the app starts: the page serves while the rows load
    page = ui.context.make_page(comparison)
    waited = []
    updates = list(ui.handlers.make_generate(page)(**REQUEST, progress=lambda *a, desc=None, **k: waited.append(desc)))
    _seed, message, title, _chart, figures, *rest = updates[-1]
    order = comparison.rows.order
    cards = dict(zip(order, rest[len(order) : 2 * len(order)], strict=True))
    # The kernels OpenVINO compiled for every component of every OpenVINO row that loaded (none above the kind)
    openvino_kernels = {
        backend_id: kernels_of(backend.pipes[SIZE])
        for backend_id, backend in comparison.rows.backends.items()
        if getattr(backend, "framework", "") == "openvino"
    }
    report = {"rows": [], "system": {"cpu_kind": "", "played_as": "", "isa_summary": ""}}
    profile = {}
    if with_benchmark:
        flags = ["--model", "tiny", "--size", str(SIZE), "--steps", "2", "--cache-dir", cache_dir,
                 "--calibration-prompts", "2"]  # fmt: skip
        report = benchmark.main([*flags, "--passes", "1", "--json", str(out.with_suffix(".bench.json"))])
        # The profile of the OpenVINO row, where it runs: its kernels' names differ by kind
        if "openvino-static" in openvino_kernels:
            benchmark.main([*flags, "--profile", "openvino-static", "--json", str(out.with_suffix(".profile.json"))])
            profile = json.loads(out.with_suffix(".profile.json").read_text())["unet_call"]
    return {
        "cpu": str(this_cpu()),
        "slug": this_cpu().slug(),
        "message": message,
        "headline": title,
        "waited": [w for w in waited if w],
        "rows": figures["rows"],
        "cards": cards,
        "health": ui.system.health(page),
        "system": ui.system.system_markdown(comparison),
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "openvino_kernels": openvino_kernels,
        "benchmark_rows": report["rows"],
        "profile_unet": {k: profile.get(k) for k in ("attention_share", "precision_share")},
        "benchmark_system": {k: report["system"][k] for k in ("cpu_kind", "played_as", "isa_summary")},
    }


def kernels_of(pipe) -> dict[str, list[str]]:
    """component -> the kernels (OpenVINO's primitive types, e.g. "jit_avx2_I8") its compiled model runs."""
    kernels = {}
    for name in ("text_encoder", "unet", "vae_decoder"):
        compiled = getattr(pipe, name).request
        compiled = compiled if hasattr(compiled, "get_runtime_model") else compiled.get_compiled_model()
        ops = compiled.get_runtime_model().get_ops()
        kernels[name] = sorted({op.get_rt_info()["primitiveType"].astype(str) for op in ops})
    return kernels


def onednn_isa_line() -> None:
    """oneDNN (PyTorch's copy) prints the instruction set it dispatches to at its first primitive, with verbose on."""
    import torch

    conv = torch.nn.Conv2d(64, 64, 3).to(memory_format=torch.channels_last)  # a size ATen hands to oneDNN
    with torch.no_grad(), torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        conv(torch.randn(2, 64, 56, 56).to(memory_format=torch.channels_last))


if __name__ == "__main__":
    mode, cache, out_path, *rest = sys.argv[1:]
    out_file = Path(out_path)
    result = prepare(cache, rest) if mode == "prepare" else start(cache, out_file, with_benchmark=mode == "start")
    out_file.write_text(json.dumps(result, indent=1, default=str))
    if mode == "start":
        onednn_isa_line()
