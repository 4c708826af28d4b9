"""`baseline`: plain diffusers StableDiffusionPipeline in fp32 on PyTorch, default settings."""

from __future__ import annotations

from core.cpu import Cpu, RowSupport
from core.probes import component_weights_mb
from core.request import GenerationRequest, LoadSettings, ProgressCallback, StageCallback, StepCallback

from .base import LoadInfo
from .pipeline import run_pipeline


def load_diffusers_pipeline(model, progress: ProgressCallback, dtype=None):
    """The pipeline exactly as `from_pretrained` gives it (in `dtype`, default the weights' fp32), without the safety
    checker: the harness applies the model's checker to every row's output outside the timed section."""
    from diffusers import StableDiffusionPipeline

    progress(f"loading {model.model_id} with diffusers")
    pipe = StableDiffusionPipeline.from_pretrained(
        model.path, torch_dtype=dtype, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


class BaselinePyTorch:
    id = "baseline"
    title = "PyTorch fp32 (plain diffusers)"
    framework = "pytorch"
    reference = True  # every ratio is against plain diffusers

    @classmethod
    def support(cls, cpu: Cpu) -> RowSupport:
        return RowSupport(True, "fp32", compute="fp32")  # PyTorch runs on any x86-64 CPU this project targets

    def load(self, model, settings: LoadSettings, progress: ProgressCallback) -> LoadInfo:
        self.pipe = load_diffusers_pipeline(model, progress)
        self.scheduler_config = settings.scheduler_config
        return LoadInfo(disk_mb=component_weights_mb(model.path), precision="fp32")

    def generate(self, request: GenerationRequest, latents, on_step: StepCallback, on_stage: StageCallback):
        return run_pipeline(self.pipe, self.scheduler_config, request, latents, on_step, on_stage)
