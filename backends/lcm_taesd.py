"""`lcm-taesd`: fewer steps, not faster ones. SD-1.5 with the LCM-LoRA fused into its UNet (LCMScheduler, 4 steps by
default, guidance off: one UNet batch per step instead of two) and TAESD's tiny decoder in place of the VAE's, through
OpenVINO static shapes. What CPU users run today (FastSD CPU, openvino.genai's LCM pipeline); **not the same work as
the other rows**, which every figure of it says (`different_work`)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

from core.build_cache import BuildCache, cache_key
from core.cpu import Cpu, RowSupport
from core.probes import files_mb
from core.request import GenerationRequest, LoadSettings, ProgressCallback, StageCallback, StepCallback

from .base import LoadInfo
from .child_process import run_in_child
from .few_step_weights import lcm_lora, taesd
from .openvino_loading import compile_cached, compute_kind, default_precision, ov_precision
from .pipeline import run_pipeline

STEPS_RANGE = (2, 8)  # the LCM-LoRA's useful range (its model card: 2-8 steps)


def export_ir(model_path: str, lora_dir: str, taesd_dir: str, out_dir: str) -> None:
    """Child-process body: the model with the LoRA fused -> OpenVINO IR, then TAESD's decoder as its VAE decoder."""
    import openvino as ov
    import torch
    from diffusers import AutoencoderTiny, StableDiffusionPipeline
    from optimum.intel import OVStableDiffusionPipeline

    with tempfile.TemporaryDirectory(dir=Path(out_dir).parent) as fused:
        pipe = StableDiffusionPipeline.from_pretrained(model_path, safety_checker=None, requires_safety_checker=False)
        pipe.load_lora_weights(lora_dir)  # diffusers' own LoRA loader (PEFT), then fused into the UNet's weights
        pipe.fuse_lora()
        pipe.unload_lora_weights()
        pipe.save_pretrained(fused)
        exported = OVStableDiffusionPipeline.from_pretrained(fused, export=True, compile=False, load_in_8bit=False)
        exported.safety_checker = None
        exported.save_pretrained(out_dir)
    # optimum-intel exports the pipeline's AutoencoderKL; the decoder it runs is TAESD's, converted here with the
    # names optimum's VAE decoder expects (no exporter of optimum-intel takes an AutoencoderTiny).
    tiny = AutoencoderTiny.from_pretrained(taesd_dir).eval()

    class Decode(torch.nn.Module):
        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, latent_sample):
            return self.vae.decode(latent_sample).sample

    with torch.no_grad():
        decoder = ov.convert_model(Decode(tiny), example_input=torch.zeros(1, tiny.config.latent_channels, 64, 64))
    decoder.inputs[0].get_tensor().set_names({"latent_sample"})
    decoder.outputs[0].get_tensor().set_names({"sample"})
    ov.save_model(decoder, Path(out_dir) / "vae_decoder" / "openvino_model.xml", compress_to_fp16=False)
    config = {k: v for k, v in tiny.config.items() if not k.startswith("_name")} | {"_class_name": "AutoencoderTiny"}
    config["block_out_channels"] = list(config["decoder_block_out_channels"])  # optimum's 8x scale comes from it
    (Path(out_dir) / "vae_decoder" / "config.json").write_text(json.dumps(config, indent=2))


class LcmTaesd:
    id = "lcm-taesd"
    title = "LCM-LoRA + TAESD, few steps (OpenVINO)"
    framework = "openvino"
    # Every figure of this row says so: its own line, never a speed-up or a fidelity of the same work.
    different_work = (
        "distilled LCM-LoRA, {steps} steps, guidance off, TAESD tiny decoder: not the same work as the other rows"
    )

    @classmethod
    def support(cls, cpu: Cpu) -> RowSupport:
        precision = default_precision(cpu)
        return RowSupport(True, f"OpenVINO {precision}, LCM-LoRA fused, TAESD", compute=compute_kind(precision))

    def prepare(self, model, settings: LoadSettings, progress: ProgressCallback) -> dict[int, tuple[Path, bool]]:
        """Fetch the LoRA and TAESD, export (or find in the cache) the fused IR: size -> (IR directory, hit?)."""
        lora_dir, lora_revision = lcm_lora(model, settings.cache_dir, progress)
        taesd_dir, taesd_revision = taesd(model, settings.cache_dir, progress)
        key = cache_key(model.model_id, model.revision, f"lcm-taesd-ir-{lora_revision}-{taesd_revision}")
        args = (str(model.path), str(lora_dir), str(taesd_dir))
        built = BuildCache.ir(settings.cache_dir).get_or_build(
            key, lambda tmp: run_in_child(export_ir, (*args, str(tmp)), progress, "fusing the LCM-LoRA, exporting")
        )
        return dict.fromkeys(settings.sizes, built)

    def load(self, model, settings: LoadSettings, progress: ProgressCallback) -> LoadInfo:
        low, high = STEPS_RANGE
        if not low <= settings.lcm_steps <= high:
            raise ValueError(f"--lcm-steps {settings.lcm_steps}: the LCM-LoRA runs {low} to {high} steps")
        self.steps = settings.lcm_steps
        built = self.prepare(model, settings, progress)
        # Guidance off: one UNet batch per step (the static UNet is reshaped to batch 1, not classifier-free's 2).
        self.pipes, self.ir_dirs, cache = compile_cached(
            built, lambda: self.prepare(model, settings, progress), settings, progress, unet_batch=1
        )
        self.scheduler_config = settings.scheduler_config
        precision = ov_precision(self.pipes[settings.sizes[0]])
        return LoadInfo(
            disk_mb=files_mb(self.ir_dirs[settings.sizes[0]]),
            cache=cache,
            precision=f"OpenVINO {precision}, {self.steps} LCM steps, TAESD",
            compute=compute_kind(precision),
        )

    def generate(self, request: GenerationRequest, latents, on_step: StepCallback, on_stage: StageCallback):
        from diffusers import LCMScheduler

        few = replace(request, steps=self.steps, guidance_scale=1.0)  # the visitor's prompt, seed, size, noise
        scheduler = LCMScheduler.from_config(self.scheduler_config)
        return run_pipeline(self.pipes[request.height], None, few, latents, on_step, on_stage, scheduler=scheduler)
