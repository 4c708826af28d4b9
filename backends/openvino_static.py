"""`openvino-static`: optimum-intel's OVStableDiffusionPipeline, exported to OpenVINO IR, reshaped to a fixed
batch/height/width and compiled — one compiled pipeline per offered resolution, as the source blog advises.

OpenVINO chooses its inference precision itself (bf16 on AMX Xeons, f32 elsewhere); the card shows what it chose.
"""

from __future__ import annotations

from .base import GenerationRequest, LoadInfo, LoadSettings, ProgressCallback, StepCallback
from .cache import IRCache, cache_key, dir_size_mb
from .common import ov_precision, ov_runtime_config, release_mapped_weights, run_in_child, run_pipeline

INSTALL_HINT = "pip install optimum-intel==2.2.0 openvino==2026.4.1 nncf==3.4.0"


def export_ir(model_path: str, out_dir: str) -> None:
    """Child-process body: diffusers checkpoint -> OpenVINO IR (fp32 weights, as exported)."""
    from optimum.intel import OVStableDiffusionPipeline

    pipe = OVStableDiffusionPipeline.from_pretrained(model_path, export=True, compile=False, load_in_8bit=False)
    pipe.save_pretrained(out_dir)


def load_static_pipelines(ir_dir, settings: LoadSettings, progress: ProgressCallback) -> dict:
    """One reshaped, compiled pipeline per size, all from the same IR directory."""
    try:
        from optimum.intel import OVStableDiffusionPipeline
    except ImportError as exc:
        raise RuntimeError(f"optimum-intel is not importable ({exc}); {INSTALL_HINT}") from exc
    pipes = {}
    for size in settings.sizes:
        progress(f"compiling for {size}x{size}")
        pipe = OVStableDiffusionPipeline.from_pretrained(
            ir_dir, compile=False, ov_config=ov_runtime_config(settings.threads)
        )
        # batch_size=1 prompt, one image; the UNet's batch becomes 2 for classifier-free guidance.
        pipe.reshape(batch_size=1, height=size, width=size, num_images_per_prompt=1)
        pipe.compile()
        pipe.set_progress_bar_config(disable=True)
        pipes[size] = pipe
    released = release_mapped_weights(ir_dir)
    if released:
        progress(f"compiled; released {released:.0f} MB of mapped IR weights that OpenVINO had repacked")
    return pipes


class OpenVinoStatic:
    id = "openvino-static"
    title = "OpenVINO, static shapes"

    def load(self, model, settings: LoadSettings, progress: ProgressCallback) -> LoadInfo:
        cache = IRCache(settings.cache_dir)
        key = cache_key(model.model_id, model.revision, "openvino-ir")
        ir_dir, hit = cache.get_or_build(
            key, lambda tmp: run_in_child(export_ir, (str(model.path), str(tmp)), progress, "exporting to OpenVINO IR")
        )
        self.pipes = load_static_pipelines(ir_dir, settings, progress)
        self.ir_dirs = dict.fromkeys(settings.sizes, ir_dir)  # size -> IR directory, as in the int8 row
        first = self.pipes[settings.sizes[0]]
        self.scheduler_config = first.scheduler.config
        return LoadInfo(disk_mb=dir_size_mb(ir_dir), cache="hit" if hit else "built", precision=ov_precision(first))

    def generate(self, request: GenerationRequest, latents, on_step: StepCallback):
        pipe = self.pipes[request.height]
        return run_pipeline(pipe, self.scheduler_config, request, latents, on_step)
