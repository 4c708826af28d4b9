"""`openvino-static`: optimum-intel's OVStableDiffusionPipeline, exported to OpenVINO IR, reshaped to a fixed
batch/height/width and compiled, one compiled pipeline per offered resolution."""

from __future__ import annotations

from pathlib import Path

from core.build_cache import BuildCache, cache_key
from core.cpu import Cpu, RowSupport
from core.probes import files_mb
from core.request import GenerationRequest, LoadSettings, ProgressCallback, StageCallback, StepCallback

from .base import LoadInfo
from .child_process import run_in_child
from .openvino_loading import cannot_play, compile_cached, default_precision, ov_precision
from .pipeline import run_pipeline


def export_ir(model_path: str, out_dir: str) -> None:
    """Child-process body: diffusers checkpoint -> OpenVINO IR (fp32 weights, as exported)."""
    from optimum.intel import OVStableDiffusionPipeline

    pipe = OVStableDiffusionPipeline.from_pretrained(model_path, export=True, compile=False, load_in_8bit=False)
    pipe.safety_checker = None  # never loaded by this row (see openvino_loading): no need to keep a copy
    pipe.save_pretrained(out_dir)


class OpenVinoStatic:
    id = "openvino-static"
    title = "OpenVINO, static shapes"
    framework = "openvino"

    @classmethod
    def support(cls, cpu: Cpu) -> RowSupport:
        if cannot_play(cpu):  # a kind played on a machine above it (SBS_CPU_KIND) that OpenVINO cannot be held to
            return RowSupport(False, "unavailable", reason=cannot_play(cpu))
        precision = default_precision(cpu)  # OpenVINO's CPU plugin runs on any x86-64 CPU this project targets
        return RowSupport(True, f"OpenVINO {precision} (its default on this CPU)", compute=_compute(precision))

    def prepare(self, model, settings: LoadSettings, progress: ProgressCallback) -> dict[int, tuple[Path, bool]]:
        """Export (or find in the cache) the OpenVINO IR, one for every size: size -> (IR directory, cache hit?)."""
        cache = BuildCache.ir(settings.cache_dir)
        key = cache_key(model.model_id, model.revision, "openvino-ir")
        built = cache.get_or_build(
            key, lambda tmp: run_in_child(export_ir, (str(model.path), str(tmp)), progress, "exporting to OpenVINO IR")
        )
        return dict.fromkeys(settings.sizes, built)

    def load(self, model, settings: LoadSettings, progress: ProgressCallback) -> LoadInfo:
        built = self.prepare(model, settings, progress)
        self.pipes, self.ir_dirs, cache = compile_cached(
            built, lambda: self.prepare(model, settings, progress), settings, progress
        )
        first = self.pipes[settings.sizes[0]]
        self.scheduler_config = settings.scheduler_config
        precision = ov_precision(first)
        return LoadInfo(
            disk_mb=files_mb(self.ir_dirs[settings.sizes[0]]),
            cache=cache,
            precision=f"OpenVINO {precision}",
            compute=_compute(precision),
        )

    def generate(self, request: GenerationRequest, latents, on_step: StepCallback, on_stage: StageCallback):
        return run_pipeline(self.pipes[request.height], self.scheduler_config, request, latents, on_step, on_stage)


def _compute(ov_precision_name: str) -> str:
    """OpenVINO's precision name ("bf16", "f32") as the peak model's ("bf16", "fp32")."""
    return "bf16" if ov_precision_name == "bf16" else "fp32"
