"""`pytorch-bf16`: plain PyTorch in bf16, the recipe Intel points IPEX's users to since IPEX was archived (2026).

diffusers' pipeline loaded in bf16 (`torch_dtype=torch.bfloat16`: oneDNN runs convolutions and matmuls in bf16, on
AMX where the CPU has it), UNet and VAE in channels-last, and the UNet and the VAE decoder through `torch.compile`
(inductor). Inductor compiles at the first call of each shape; `load` makes that call (one step at every offered
size) so the compile time is part of the row's load time, and keeps inductor's artefacts in the cache directory so
that a restart, or a Space image prepared ahead, compiles from them instead of from scratch.

Why not inductor's freezing (weights folded in and prepacked for oneDNN), which Intel's recipe adds: in torch 2.8
the prepacked weights are oneDNN tensors that inductor's caches cannot store ("mkldnn tensors unpickleable"; AOT
autograd: "Cannot cache a graph with freezing enabled"), so every start would compile again (about 90 s at 512x512
on 2 cores), for a UNet call about 10 % faster, less than this VM's spread between passes (512x512, AMX, 2 cores,
one process each: 1.85-2.06 s frozen, 2.09-2.30 s not; frozen without prepacking, which caches, 2.46-2.78 s). Note that
`torch.compile(options={"freezing": True})` does not freeze in torch 2.8 (`compile_fx` reads the setting outside the
options' patch; the generated code keeps the weights as inputs): `torch._inductor.config.patch` does. `max-autotune`
was tried too: every C++ GEMM template candidate failed to compile (g++ 12, "expected '}' at end of input"), so it can
only choose among the oneDNN kernels the default already calls.

Why bf16 weights and not `torch.autocast`: importing IPEX (the ipex-bf16 row, in the same process) re-registers
PyTorch's CPU autocast kernels (group_norm then runs in bf16), so under autocast this row's graph, speed and images
would depend on whether the IPEX row was loaded beside it (seen: the Space image compiled at build without IPEX and
again at start with it). A bf16 model does not go through autocast at all. The initial latents are rounded to bf16
on entry, as every bf16 row rounds its inputs.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.cpu import Cpu, RowSupport, this_cpu
from core.probes import component_weights_mb
from core.request import GenerationRequest, LoadSettings, ProgressCallback, StageCallback, StepCallback

from .base import LoadInfo
from .baseline import load_diffusers_pipeline
from .pipeline import run_pipeline

OWN_INDUCTOR_CACHE = "SBS_OWN_TORCHINDUCTOR_CACHE_DIR"  # the TORCHINDUCTOR_CACHE_DIR this app set, not the operator


class PyTorchBf16:
    id = "pytorch-bf16"
    title = "PyTorch bf16 (torch.compile)"
    framework = "pytorch"
    traces_on_load = True  # dynamo traces the modules at the compiling call in `load`

    @classmethod
    def support(cls, cpu: Cpu) -> RowSupport:
        # Unlike IPEX this recipe has no emulated path worth showing: without native bf16, oneDNN converts every
        # operand to fp32 and the row would only measure the conversions.
        if cpu.has("amx_bf16"):
            return RowSupport(True, "bf16 native (AMX-BF16)", compute="bf16")
        if cpu.has("avx512_bf16"):
            return RowSupport(True, "bf16 native (AVX-512-BF16)", compute="bf16")
        if cpu.has("avx_ne_convert"):
            return RowSupport(True, "bf16 native (AVX-NE-CONVERT)", compute="bf16")
        return RowSupport(
            False, "unavailable", reason=f"PyTorch bf16 needs native bf16 (AVX-512-BF16, AMX or AVX-NE-CONVERT); {cpu}"
        )

    def prepare(self, model, settings: LoadSettings, progress: ProgressCallback) -> dict[int, tuple[Path, bool]]:
        """Compile once, so that inductor's cache holds every kernel (`python -m harness.prepare`, e.g. when the
        Space image is built); a later load compiles from it."""
        info = self.load(model, settings, progress)
        return dict.fromkeys(settings.sizes, (Path(os.environ["TORCHINDUCTOR_CACHE_DIR"]), info.cache == "hit"))

    def load(self, model, settings: LoadSettings, progress: ProgressCallback) -> LoadInfo:
        import time

        import torch
        import torch._dynamo.utils

        support = self.support(this_cpu())
        if not support.runs:
            raise RuntimeError(support.reason)
        use_inductor_cache(inductor_cache_dir(settings.cache_dir))
        pipe = load_diffusers_pipeline(model, progress, dtype=torch.bfloat16)
        pipe.unet = pipe.unet.to(memory_format=torch.channels_last).eval()
        pipe.vae = pipe.vae.to(memory_format=torch.channels_last).eval()
        # dynamic=False: one graph per offered size, as the static-shape rows have.
        pipe.unet = torch.compile(pipe.unet, dynamic=False)
        pipe.vae.decoder = torch.compile(pipe.vae.decoder, dynamic=False)
        self.pipe, self.scheduler_config = pipe, settings.scheduler_config
        compiled, misses_before = {}, _cache_misses(torch)
        for size in settings.sizes:
            progress(f"torch.compile (inductor) at {size}x{size}: the first call compiles")
            start = time.perf_counter()
            request = GenerationRequest("compile", steps=1, height=size, width=size)
            latents = torch.zeros(1, pipe.unet.config.in_channels, size // 8, size // 8)
            self.generate(request, latents, lambda *_: None, lambda *_: None)
            compiled[size] = time.perf_counter() - start
        took = ", ".join(f"{s}x{s} {t:.0f} s" for s, t in compiled.items())
        return LoadInfo(
            cache="built" if _cache_misses(torch) > misses_before else "hit",  # inductor compiled nothing anew
            disk_mb=component_weights_mb(model.path),
            precision=f"{support.how}, bf16 weights, torch.compile (compile + first call: {took})",
            compute=support.compute,
        )

    def generate(self, request: GenerationRequest, latents, on_step: StepCallback, on_stage: StageCallback):
        import torch

        bf16_latents = latents.to(torch.bfloat16)
        return run_pipeline(self.pipe, self.scheduler_config, request, bf16_latents, on_step, on_stage)


def inductor_cache_dir(cache_dir: Path) -> Path:
    """Inductor's caches for this CPU kind. Its FX-graph cache key holds no CPU feature (torch 2.8: `get_system()` is
    empty without CUDA) while the code it stores is written for the vector width it picked (AVX-512's 16 floats,
    AVX2's 8): an entry made on one kind must never be found on another, so each kind has its own directory."""
    return Path(cache_dir) / "torchinductor" / (this_cpu().kind() or "x86-64")


def use_inductor_cache(directory: Path) -> None:
    """Keep inductor's on-disk caches (FX graphs, AOT autograd, compiled kernels) in the build cache's directory,
    shared like the IR, unless the operator chose another with TORCHINDUCTOR_CACHE_DIR.

    Inductor reads the variable at every use, but the first use in a process (e.g. importing IPEX, as the ipex-bf16
    row does before this one loads) sets it to its default under /tmp when unset: a value equal to that default is
    inductor's own, not the operator's, and is replaced. (Seen: with `setdefault`, the app's start, which loads the
    IPEX row first, compiled into /tmp instead of using what the image had prepared.) So is a value this app set
    (`OWN_INDUCTOR_CACHE` says which), which a process started from it inherits: that process may run as another
    CPU kind, whose code must not land in this one's directory (seen: a test process that had loaded the row sent
    every played kind's start to its own kind's directory)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current in (None, default_cache_dir(), os.environ.get(OWN_INDUCTOR_CACHE)):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.environ[OWN_INDUCTOR_CACHE] = str(directory)


def _cache_misses(torch) -> int:
    """Graphs inductor has had to compile so far in this process: not found in its caches, or compiled without them
    (a bypassed graph is compiled again at every start)."""
    counters = torch._dynamo.utils.counters["inductor"]
    return counters["fxgraph_cache_miss"] + counters["fxgraph_cache_bypass"]
