"""The request and load-settings types every row and the harness share, and the request's initial noise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

StepCallback = Callable[[int, int], None]  # (step just finished, total steps)
StageCallback = Callable[[str, float, float], None]  # (stage, perf_counter start, end): see STAGES
STAGES = ("text_encoding", "denoising", "vae_decoding")  # where a pipeline call's time goes
ProgressCallback = Callable[[str], None]  # a short human-readable line about what loading is doing

SCHEDULERS = {  # GenerationRequest.scheduler -> (diffusers class name, label shown in the UI)
    "dpm++": ("DPMSolverMultistepScheduler", "DPM-Solver++ (multistep)"),
    "euler": ("EulerDiscreteScheduler", "Euler"),
    "euler-a": ("EulerAncestralDiscreteScheduler", "Euler ancestral"),
    "ddim": ("DDIMScheduler", "DDIM"),
}


@dataclass(frozen=True)
class GenerationRequest:
    """One visitor request; validated by `harness.compare.validation.validate_request` before any row sees it."""

    prompt: str
    negative_prompt: str = ""
    seed: int = 42
    steps: int = 20
    guidance_scale: float = 7.5
    height: int = 512
    width: int = 512
    scheduler: str = "dpm++"


@dataclass(frozen=True)
class LoadSettings:
    """What every row is loaded with, so that all rows run under the same conditions. The defaults here are the
    only ones: `harness.settings.Settings` (CLI flags and environment) takes them from this class."""

    sizes: tuple[int, ...]  # square resolutions the static-shape rows are compiled for
    threads: int  # intra-op threads for torch and OpenVINO alike
    cache_dir: Path  # exported / quantized IR lives here
    tome_ratio: float = 0.5  # Token Merging ratio of the int8-tome row
    int8_mode: str = "full"  # "full" (int8 activations + weights) or "hybrid" (quality-first)
    int8_mode_note: str = ""  # how the recipe was chosen (harness.records.quality_reports), shown on the int8 card
    tome_max_downsample: int = 1  # Token Merging in blocks up to this many times below full resolution (1: top)
    tome_form: str = "gather"  # how the exported UNet merges: "gather" (optimized kernels) or tomesd's "scatter"
    int8_vae: bool = True  # int8-tome's VAE decoder in 8 bits too (else weight-only 8-bit, computing in bf16/fp32)
    int8_overflow_fix: str = "auto"  # NNCF's 7-bit-weights fix: "auto" (only for CPUs without VNNI), "enable", ...
    int8_source: str | None = None  # prebuilt OpenVINO INT8/ToMe IR (dir or hub id) for the int8-tome row
    calibration_prompts: int = 4  # prompts from assets/calibration_prompts.txt used to calibrate int8
    calibration_steps: int = 20  # denoising steps per calibration prompt (its own setting: part of the cache key)
    scheduler_config: dict | None = None  # the model's scheduler config, the base of every row's scheduler
    lcm_steps: int = 4  # the few-step row's denoising steps (its LCM-LoRA runs 2-8); the other rows run the request's


def initial_latents(seed: int, height: int, width: int, channels: int = 4, vae_scale: int = 8):
    """The request's initial noise, made once and handed to every row (and the same on every machine: see below).

    Drawn in float64, then rounded to float32: PyTorch's float32 `randn` on CPU takes a vectorised path only in its
    AVX2 build (`normal_fill_AVX2`), so an AVX2 EPYC and an AVX-512 or AMX Xeon draw different last bits for the same
    seed, and a remote row's image would start from other noise than the page's. The float64 draw is the same
    scalar code in every build (`tests/test_cpu_kinds.py` checks two builds on one machine). The baseline row is
    still plain diffusers, handed these latents."""
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    shape = (1, channels, height // vae_scale, width // vae_scale)
    return torch.randn(shape, generator=generator, dtype=torch.float64).float()


def latents_digest(seed: int, height: int, width: int) -> str:
    """A short hash of the request's initial noise: two machines that report the same one started from the same
    noise."""
    import hashlib

    return hashlib.sha256(initial_latents(seed, height, width).numpy().tobytes()).hexdigest()[:16]
