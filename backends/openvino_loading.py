"""What both OpenVINO rows share: runtime settings, compiling one static pipeline per size, and reading back
the precision OpenVINO chose."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from core.build_cache import BuildCache
from core.cpu import AVX512_CORE, Cpu, this_cpu
from core.probes import process_memory_mb
from core.request import LoadSettings, ProgressCallback

INSTALL_HINT = "pip install optimum-intel==2.2.0 openvino==2026.4.1 nncf==3.4.0"


def cannot_play(cpu: Cpu) -> str:
    """Why OpenVINO cannot run as the CPU kind this machine plays (SBS_CPU_KIND), "" when it can.

    OpenVINO's CPU plugin takes ONEDNN_MAX_CPU_ISA for the oneDNN primitives it calls, but some of its own kernels
    read cpuid: played as avx2 on machines with AVX-512 (an AMX Xeon and a Zen 4 EPYC), OpenVINO 2026.4 ran its MVN,
    Interpolate, TopK and Reduce nodes in AVX-512 code (`jit_avx512_*`: the timings and the kernels would not be
    AVX2's), and could not compile the int8 rows' FullyConnected layers with 8-bit weights at all ("could not
    create a primitive descriptor for the inner product"). Only a build of OpenVINO without AVX-512
    (ENABLE_AVX512F=OFF) can be held there. Playing a kind with AVX-512 below the machine's (avx512-vnni on AMX)
    is held: those nodes use nothing above AVX-512. `tests/test_cpu_kinds.py` reads the kernels each kind ran."""
    if cpu.presented_as and AVX512_CORE & cpu.hidden:
        return (
            f"OpenVINO cannot be held to {cpu.presented_as} on this machine, which has AVX-512: some of its own "
            "kernels read the CPU's instruction sets themselves (the row runs on a real CPU of this kind)"
        )
    return ""


def ov_runtime_config(threads: int, in_flight: int = 0) -> dict:
    """OpenVINO settings shared by both OpenVINO rows: one latency-oriented stream on the same threads as torch;
    with `in_flight`, OpenVINO's throughput mode for that many requests at once (the benchmark's `--throughput`).
    The inference precision is left to OpenVINO (bf16 where the CPU has native bf16, f32 elsewhere): that is
    what a user of these rows gets, and the card reads it back; only a played CPU kind sets it (below)."""
    if in_flight:
        config = {
            "PERFORMANCE_HINT": "THROUGHPUT",
            "PERFORMANCE_HINT_NUM_REQUESTS": str(in_flight),
            "INFERENCE_NUM_THREADS": str(threads),
        }
    else:
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads), "NUM_STREAMS": "1"}
    cpu = this_cpu()
    if cpu.presented_as and not cpu.native_bf16:
        # A played kind without native bf16 (SBS_CPU_KIND) on a machine with it: OpenVINO reads the machine's
        # instruction sets for its default precision, so the kind's default is asked for explicitly.
        config["INFERENCE_PRECISION_HINT"] = "f32"
    return config


def load_static_pipelines(
    ir_dir, settings: LoadSettings, progress: ProgressCallback, in_flight: int = 0, unet_batch: int | None = None
) -> dict:
    """One reshaped, compiled OVStableDiffusionPipeline per size, all from the same IR directory (a static-shape
    pipeline serves one resolution, as the source blog advises). `unet_batch`: the UNet's batch when it is not
    classifier-free guidance's 2 (1 for a row that runs with guidance off)."""
    try:
        from optimum.intel import OVStableDiffusionPipeline
    except ImportError as exc:
        raise RuntimeError(f"optimum-intel is not importable ({exc}); {INSTALL_HINT}") from exc
    pipes = {}
    for size in settings.sizes:
        progress(f"compiling for {size}x{size}")
        # safety_checker=None: optimum-intel would load the exported checker and run it inside the timed call;
        # the harness applies the model's checker to every row outside it.
        pipe = OVStableDiffusionPipeline.from_pretrained(
            ir_dir, compile=False, ov_config=ov_runtime_config(settings.threads, in_flight), safety_checker=None
        )
        # batch_size=1 prompt, one image; the UNet's batch becomes 2 for classifier-free guidance.
        pipe.reshape(batch_size=1, height=size, width=size, num_images_per_prompt=1)
        if unet_batch is not None:
            reshape_batch(pipe.unet.model, unet_batch)
        if pipes:  # the text encoder's shapes do not depend on the image size: every size uses one compiled copy
            pipe.text_encoder = next(iter(pipes.values())).text_encoder  # compiled already: compile() skips it
        pipe.compile()
        pipe.set_progress_bar_config(disable=True)
        pipes[size] = pipe
    released = release_mapped_weights(ir_dir)
    if released:
        progress(f"compiled; released {released:.0f} MB of mapped IR weights that OpenVINO had repacked")
    return pipes


def reshape_batch(model, batch: int) -> None:
    """Set the batch dimension of every batched input of a statically reshaped OpenVINO model."""
    shapes = {}
    for tensor in model.inputs:
        shape = tensor.get_partial_shape()
        if shape.rank.get_length() > 1:  # the timestep (rank 1) is one value whatever the batch
            shape[0] = batch
        shapes[tensor] = shape
    model.reshape(shapes)


def compile_cached(
    built: dict[int, tuple[Path, bool]],
    rebuild: Callable[[], dict[int, tuple[Path, bool]]],
    settings: LoadSettings,
    progress: ProgressCallback,
    unet_batch: int | None = None,
) -> tuple[dict, dict[int, Path], str]:
    """Compile the IR a row's `prepare` found in the build cache or built ({size: (directory, cache hit?)}).

    An entry from the cache that fails to load or compile (damaged on disk in a way its manifest's sizes do not
    show) is moved aside and rebuilt once with `rebuild()`, so a damaged file costs one rebuild, not the row for
    good. Returns (compiled pipelines by size, IR directory by size, cache state for the card)."""
    try:
        return (
            _compile_each(built, settings, progress, unet_batch),
            {s: d for s, (d, _hit) in built.items()},
            _state(built),
        )
    except Exception as exc:
        cached = {directory for directory, hit in built.values() if hit}
        if not cached:
            raise
        why = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ''}"
        for directory in cached:
            BuildCache(directory.parent).discard(directory, why)
        progress(f"the cached IR failed to load ({why}); rebuilding it")
        built = rebuild()
        pipes = _compile_each(built, settings, progress, unet_batch)
        return pipes, {s: d for s, (d, _hit) in built.items()}, f"rebuilt (the cached IR failed to load: {why})"


def _compile_each(
    built: dict[int, tuple[Path, bool]], settings: LoadSettings, progress: ProgressCallback, unet_batch=None
) -> dict:
    by_dir: dict[Path, list[int]] = {}
    for size, (directory, _hit) in built.items():
        by_dir.setdefault(directory, []).append(size)
    pipes = {}
    for directory, sizes in by_dir.items():
        sized = replace(settings, sizes=tuple(sizes))
        pipes.update(load_static_pipelines(directory, sized, progress, unet_batch=unet_batch))
    return pipes


def _state(built: dict[int, tuple[Path, bool]]) -> str:
    return "hit" if all(hit for _dir, hit in built.values()) else "built"


def default_precision(cpu: Cpu) -> str:
    """What OpenVINO's CPU plugin picks by default for floating-point work: bf16 where bf16 is native."""
    return "bf16" if cpu.native_bf16 else "f32"


def ov_precision(pipe) -> str:
    """The UNet's inference precision as OpenVINO reports it (bf16 on AMX Xeons, f32 elsewhere)."""
    try:
        request = pipe.unet.request  # a CompiledModel in optimum-intel 2.x
        compiled = request if hasattr(request, "get_property") else request.get_compiled_model()
        return compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # "f32", "bf16", ...
    except Exception:  # property names move between OpenVINO releases; the card then says "unknown"
        return "unknown"


def release_mapped_weights(directory) -> float:
    """Drop this process's resident pages of the files under `directory` that are memory-mapped; MB dropped.

    OpenVINO reads IR weights with mmap and its CPU plugin repacks them into its own buffers at compile time,
    yet keeps the mapping: each compiled model then holds its weights twice in RSS (SD-1.5 fp32 UNet: 3.4 GB
    mapped + 3.5 GB repacked). Inference never reads the mapped copy (checked: RSS stays down after a call,
    outputs bit-identical); ENABLE_MMAP=False only moves that copy to the heap and compile_only from a reshaped
    IR keeps it too (both measured), hence this. The mappings are read-only and
    shared, so MADV_DONTNEED only unmaps clean page-cache pages; a later read would fault them back in.
    Linux only; elsewhere (or if /proc is unreadable) it does nothing.
    """
    import ctypes
    import ctypes.util

    # Real paths: a hub snapshot's files are symlinks to blobs, and /proc/self/maps shows the targets.
    files = {os.path.realpath(os.path.join(root, f)) for root, _dirs, names in os.walk(directory) for f in names}
    try:
        with open("/proc/self/maps") as maps:
            ranges = []
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].strip() in files and fields[1][1] != "w":
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    ranges.append((start, end))
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return 0.0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    before = process_memory_mb().get("file", 0.0)
    for start, end in ranges:
        libc.madvise(start, end - start, 4)  # MADV_DONTNEED
    return max(0.0, before - process_memory_mb().get("file", 0.0))
