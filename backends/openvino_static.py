"""`openvino-static`: optimum-intel's OVStableDiffusionPipeline, exported to OpenVINO IR, reshaped to a fixed
batch/height/width and compiled, one compiled pipeline per offered resolution."""

from __future__ import annotations

from pathlib import Path

from harness.build_cache import BuildCache, cache_key, files_mb

from .base import GenerationRequest, LoadInfo, LoadSettings, ProgressCallback, StageCallback, StepCallback
from .child_process import run_in_child
from .openvino_loading import load_static_pipelines, ov_precision
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

    def prepare(self, model, settings: LoadSettings, progress: ProgressCallback) -> dict[int, tuple[Path, bool]]:
        """Export (or find in the cache) the OpenVINO IR, one for every size: size -> (IR directory, cache hit?)."""
        cache = BuildCache.ir(settings.cache_dir)
        key = cache_key(model.model_id, model.revision, "openvino-ir")
        built = cache.get_or_build(
            key, lambda tmp: run_in_child(export_ir, (str(model.path), str(tmp)), progress, "exporting to OpenVINO IR")
        )
        return dict.fromkeys(settings.sizes, built)

    def load(self, model, settings: LoadSettings, progress: ProgressCallback) -> LoadInfo:
        ir_dir, hit = self.prepare(model, settings, progress)[settings.sizes[0]]
        self.pipes = load_static_pipelines(ir_dir, settings, progress)
        self.ir_dirs = dict.fromkeys(settings.sizes, ir_dir)  # size -> IR directory, as in the int8 row
        first = self.pipes[settings.sizes[0]]
        self.scheduler_config = settings.scheduler_config
        precision = ov_precision(first)
        return LoadInfo(
            disk_mb=files_mb(ir_dir),
            cache="hit" if hit else "built",
            precision=f"OpenVINO {precision}",
            compute="bf16" if precision == "bf16" else "fp32",
        )

    def generate(self, request: GenerationRequest, latents, on_step: StepCallback, on_stage: StageCallback):
        return run_pipeline(self.pipes[request.height], self.scheduler_config, request, latents, on_step, on_stage)
