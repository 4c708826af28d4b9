"""The contract every row implements (`Backend`) and what its load reports (`LoadInfo`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from core.cpu import Cpu, RowSupport
from core.request import GenerationRequest, LoadSettings, ProgressCallback, StageCallback, StepCallback


@dataclass
class LoadInfo:
    """Filled by `Backend.load`; shown on the row's card and in the benchmark."""

    seconds: float = 0.0
    ram_added_mb: float = 0.0
    disk_mb: float | None = None  # size of the row's model files on disk (IR, or the diffusers checkpoint)
    cache: str = "n/a"  # "hit", "built", "prebuilt" or "n/a"
    precision: str = ""  # what actually runs, read back from the runtime where it can be
    compute: str = "fp32"  # the precision most of the work runs in: "fp32", "bf16" or "int8" (for the peak FLOP rate)
    recipe: str = ""  # for a row built one of several ways, which one ran (the int8 row: "full int8", "hybrid int8")
    recipe_note: str = ""  # and why that one, in one line for its card


class Backend(Protocol):
    """A Stable Diffusion pipeline that one row of the comparison runs.

    Implementations live one per file in this package and are listed in `backends.REGISTRY`; nothing outside
    this package knows a row by its id: the harness, the benchmark and the page ask the class attributes and
    `support` below. Heavy imports (torch extensions, OpenVINO) go inside the methods so that a missing package
    makes only that backend unavailable.
    """

    id: ClassVar[str]  # stable id used by the CLI, the UI and the JSON output, e.g. "openvino-static"
    title: ClassVar[str]  # what the card calls it, e.g. "OpenVINO, static shapes"
    framework: ClassVar[str]  # "pytorch" or "openvino": which runtime's tools profile and tune it

    # Optional: `prepare(model, settings, progress) -> {size: (directory, cache hit?)}` builds (or finds in the
    # cache) whatever `load` reads from `settings.cache_dir` (exported or quantized IR) without compiling it, so
    # that `python -m harness.prepare` can do it ahead of time, e.g. when the Space image is built. Rows with
    # nothing to build leave it out.
    # Optional: `settings_for(settings, cpu) -> LoadSettings` (a classmethod) when what `prepare` builds depends on the
    # CPU it will run on (the int8 row's overflow fix): `settings` with that choice made for `cpu`, so that
    # `harness.prepare --for-cpu-kinds` can build for CPUs other than its own.
    # Optional: `reference = True` on the one row every speed-up and fidelity figure is measured against (read
    # with `backends.is_reference`; the others leave it out).
    # Optional: `traces_on_load = True` when `load` traces or rewrites PyTorch modules (ipex.optimize, torch.compile
    # with torch.fx): the harness then loads it under the row lock, since tracing patches torch for the process.
    # Optional: `different_work: ClassVar[str]` on a row that does other work than the reference row (fewer steps,
    # another decoder): the words every figure of it carries instead of a speed-up or a fidelity (`{field}` is
    # replaced by that LoadSettings field, e.g. `{lcm_steps}`). Its figures are its own line, never in a same-work
    # claim.
    # Optional: `variant_lists: ClassVar[dict[str, list[tuple[str, dict]]]]`, named lists of (label, LoadSettings
    # overrides) that `benchmark.py --variants` builds and times against the reference row.

    @classmethod
    def support(cls, cpu: Cpu) -> RowSupport:
        """Whether this row runs on `cpu` (`core.cpu.Cpu`: its instruction sets) and how: the precision it
        computes in there, or the missing instruction set. `load` refuses with `reason` where `runs` is False."""
        ...

    def load(self, model: Any, settings: LoadSettings, progress: ProgressCallback) -> LoadInfo:
        """Build the pipeline(s) for every size in `settings.sizes` from `model` (a `harness.models.model_sources.
        ModelSource`: `model_id`, `revision`, local `path`) and report what it cost. No warm-up here: the harness
        warms every row up the same way. Raise on failure: the caller marks the row unavailable with the
        exception's message."""
        ...

    def generate(
        self, request: GenerationRequest, latents: Any, on_step: StepCallback, on_stage: StageCallback
    ) -> np.ndarray:
        """Run the pipeline once on exactly these initial `latents` (the caller makes them once per
        request and hands every row a copy) and return the image as float32 HWC in [0, 1].
        Must call `on_step` after every denoising step, and `on_stage` when text encoding and VAE decoding
        end (`backends.pipeline.run_pipeline` does both). The caller times this call."""
        ...
