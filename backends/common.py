"""The one way every row runs a diffusers-style pipeline, and small helpers the rows share."""

from __future__ import annotations

import os

import numpy as np

from .base import GenerationRequest, StepCallback
from .requests import SCHEDULERS
from .system_info import process_memory_mb


def make_scheduler(scheduler_id: str, base_config):
    """The requested scheduler, built from the model's own scheduler config (identical on every row)."""
    import diffusers

    class_name, _label = SCHEDULERS[scheduler_id]
    return getattr(diffusers, class_name).from_config(base_config)


def run_pipeline(pipe, base_scheduler_config, request: GenerationRequest, latents, on_step: StepCallback):
    """Call `pipe` exactly as a diffusers user would, on the caller's initial latents.

    A fresh generator per call (used by ancestral schedulers) keeps rows independent of one another and of
    any global RNG state. `output_type="np"` as in the source blog's measurements.
    """
    import torch

    pipe.scheduler = make_scheduler(request.scheduler, base_scheduler_config)

    def step_end(_pipe, step_index, _timestep, callback_kwargs):
        on_step(step_index + 1, request.steps)
        return callback_kwargs

    with torch.no_grad():
        result = pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance_scale,
            height=request.height,
            width=request.width,
            latents=latents.clone(),
            generator=torch.Generator("cpu").manual_seed(request.seed),
            output_type="np",
            callback_on_step_end=step_end,
        )
    return np.asarray(result.images[0], dtype=np.float32)


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


def model_files_mb(path) -> float:
    """Size of a diffusers directory's weights (what a row loads from disk)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files if f.endswith((".safetensors", ".bin")))
    return total / 2**20


def ov_runtime_config(threads: int) -> dict:
    """OpenVINO settings shared by both OpenVINO rows: one latency-oriented stream on the same threads as torch."""
    return {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads), "NUM_STREAMS": "1"}


def ov_precision(pipe) -> str:
    """The UNet's inference precision as OpenVINO reports it (bf16 on AMX Xeons, f32 elsewhere)."""
    try:
        request = pipe.unet.request  # a CompiledModel in optimum-intel 2.x
        compiled = request if hasattr(request, "get_property") else request.get_compiled_model()
        return compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # "f32", "bf16", ...
    except Exception:  # property names move between OpenVINO releases; the card then says "unknown"
        return "unknown"


class _QueueHandler:
    """Forwards the child's log lines to the parent, which shows the latest one as the row's progress."""

    def __init__(self, messages):
        import logging

        self.handler = logging.Handler(logging.INFO)
        self.handler.emit = lambda record: messages.put(("progress", record.getMessage()))


def _child_main(target, args, messages) -> None:
    import logging

    try:  # Linux: die with the parent, so a killed app leaves no orphan export eating memory
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    logging.basicConfig(level=logging.WARNING)
    for name in ("backends", "int8-tome build"):
        logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger(name).addHandler(_QueueHandler(messages).handler)
    try:
        target(*args)
    except BaseException as exc:
        messages.put(("error", f"{type(exc).__name__}: {str(exc).strip()[:500]}"))
        raise


def run_in_child(target, args: tuple, progress, what: str) -> None:
    """Run `target(*args)` in a fresh process and wait, reporting its progress; re-raise its error here.

    Export and quantization peak at several times the model's size; in a child that memory goes back to the
    system when it exits instead of staying in the app's heap, and a crash there cannot take the app down.
    """
    import multiprocessing
    import queue

    ctx = multiprocessing.get_context("spawn")
    messages = ctx.Queue()
    child = ctx.Process(target=_child_main, args=(target, args, messages), name=what, daemon=True)
    child.start()
    latest, error = "", None
    while True:
        child.join(timeout=1.0)
        try:
            while True:
                kind, text = messages.get_nowait()
                if kind == "error":
                    error = text
                else:
                    latest = text
        except queue.Empty:
            pass
        if not child.is_alive():
            break
        progress(f"{what}{': ' + latest if latest else ''}")  # the card adds the elapsed time
    if child.exitcode != 0:
        if error is None:
            error = f"exit code {child.exitcode}" + (" (killed: out of memory?)" if child.exitcode == -9 else "")
        raise RuntimeError(f"{what} failed: {error}")
