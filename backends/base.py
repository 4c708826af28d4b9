"""The contract every row implements (`Backend`), and the request and load types the rows share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

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
    """One visitor request; validated by `harness.validation.validate_request` before any row sees it."""

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
    """What every row is loaded with, so that all rows run under the same conditions."""

    sizes: tuple[int, ...]  # square resolutions the static-shape rows are compiled for
    threads: int  # intra-op threads for torch and OpenVINO alike
    cache_dir: Path  # exported / quantized IR lives here
    tome_ratio: float = 0.5  # Token Merging ratio of the int8-tome row
    int8_mode: str = "full"  # "full" (int8 activations + weights) or "hybrid" (quality-first)
    tome_max_downsample: int = 1  # Token Merging in blocks up to this many times below full resolution (1: top)
    tome_form: str = "gather"  # how the exported UNet merges: "gather" (optimized kernels) or tomesd's "scatter"
    int8_vae: bool = True  # int8-tome's VAE decoder in 8 bits too (else weight-only 8-bit, computing in bf16/fp32)
    int8_source: str | None = None  # prebuilt OpenVINO INT8/ToMe IR (dir or hub id) for the int8-tome row
    calibration_prompts: int = 4  # prompts from assets/calibration_prompts.txt used to calibrate int8
    steps: int = 20  # denoising steps of int8 calibration (the app's default)
    scheduler_config: dict | None = None  # the model's scheduler config, the base of every row's scheduler


@dataclass
class LoadInfo:
    """Filled by `Backend.load`; shown on the row's card and in the benchmark."""

    seconds: float = 0.0
    ram_added_mb: float = 0.0
    disk_mb: float | None = None  # size of the row's model files on disk (IR, or the diffusers checkpoint)
    cache: str = "n/a"  # "hit", "built" or "n/a"
    precision: str = ""  # what actually runs, read back from the runtime where it can be
    compute: str = "fp32"  # the precision most of the work runs in: "fp32", "bf16" or "int8" (for the peak FLOP rate)


class Backend(Protocol):
    """A Stable Diffusion pipeline that one row of the comparison runs.

    Implementations live one per file in this package and are created by `backends.create_backend`.
    Heavy imports (torch extensions, OpenVINO) go inside the methods so that a missing package makes
    only that backend unavailable.
    """

    id: ClassVar[str]  # stable id used by the CLI, the UI and the JSON output, e.g. "openvino-static"
    title: ClassVar[str]  # what the card calls it, e.g. "OpenVINO, static shapes"

    # Optional: `prepare(model, settings, progress) -> {size: (directory, cache hit?)}` builds (or finds in the
    # cache) whatever `load` reads from `settings.cache_dir` (exported or quantized IR) without compiling it, so
    # that `python -m harness.prepare` can do it ahead of time, e.g. when the Space image is built. Rows with
    # nothing to build leave it out.

    def load(self, model: Any, settings: LoadSettings, progress: ProgressCallback) -> LoadInfo:
        """Build the pipeline(s) for every size in `settings.sizes` from `model` (a `harness.model_sources.
        ModelSource`) and report what it cost. No warm-up here: the harness warms every row up the same way.
        Raise on failure: the caller marks the row unavailable with the exception's message."""
        ...

    def generate(
        self, request: GenerationRequest, latents: Any, on_step: StepCallback, on_stage: StageCallback
    ) -> np.ndarray:
        """Run the pipeline once on exactly these initial `latents` (the caller makes them once per
        request and hands every row a copy) and return the image as float32 HWC in [0, 1].
        Must call `on_step` after every denoising step, and `on_stage` when text encoding and VAE decoding
        end (`backends.pipeline.run_pipeline` does both). The caller times this call."""
        ...
