"""`lcm-taesd`: fewer steps, not faster ones. SD-1.5 with the LCM-LoRA fused into its UNet (LCMScheduler, 4 steps by
default, guidance off: one UNet batch per step instead of two) and TAESD's tiny decoder in place of the VAE's, through
OpenVINO static shapes, the UNet in int8 (calibrated on the row's own few-step runs, quantized as `int8-tome`'s is,
without Token Merging). What CPU users run today (FastSD CPU, openvino.genai's LCM pipeline); **not the same work as
the other rows**, which every figure of it says (`different_work`)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

from core.assets import calibration_prompts, text_digest
from core.build_cache import BuildCache, cache_key
from core.cpu import Cpu, RowSupport, this_cpu
from core.probes import files_mb
from core.request import GenerationRequest, LoadSettings, ProgressCallback, StageCallback, StepCallback

from .base import LoadInfo
from .child_process import run_in_child
from .few_step_weights import LORA_FILE, lcm_lora, taesd
from .openvino_int8 import OVERFLOW_FIX_SLUGS, calibrate_and_quantize, int8_kernel_words, overflow_fix_for
from .openvino_loading import cannot_play, compile_cached, default_precision, ov_precision, reshape_batch
from .pipeline import run_pipeline

STEPS_RANGE = (2, 8)  # the LCM-LoRA's useful range (its model card: 2-8 steps)
BUILD_VERSION = 2  # bump when the build changes what it writes (2: the UNet in int8), so old cache entries go unused


def build_ir(model_path: str, lora_dir: str, taesd_dir: str, out_dir: str, size: int, recipe: dict) -> None:
    """Child-process body: the model with the LoRA fused -> OpenVINO IR at `size`, its UNet calibrated on few-step
    runs with guidance off and quantized to int8 (`recipe`: overflow_fix, prompts, steps) -> TAESD's decoder as its
    VAE decoder."""
    import logging

    import torch
    from diffusers import LCMScheduler, StableDiffusionPipeline
    from optimum.intel import OVStableDiffusionPipeline

    log = logging.getLogger(__name__)  # forwarded to the row's card by run_in_child
    # Inside the build's own directory: if the build is killed, the cache sweeps that (its lease goes stale); a
    # sibling in the cache root would stay behind, gigabytes each time.
    with tempfile.TemporaryDirectory(dir=out_dir) as work:
        fused, exported = Path(work) / "fused", Path(work) / "exported"
        pipe = StableDiffusionPipeline.from_pretrained(model_path, safety_checker=None, requires_safety_checker=False)
        # diffusers' own LoRA loader (PEFT), then fused into the UNet's weights. The file named: without it diffusers
        # asks the Hub which file to take, and refuses under HF_HUB_OFFLINE (a booth without the network).
        pipe.load_lora_weights(lora_dir, weight_name=LORA_FILE)
        pipe.fuse_lora()
        pipe.unload_lora_weights()
        pipe.save_pretrained(fused)
        del pipe
        log.info("exporting the model with the LCM-LoRA fused to OpenVINO IR")
        OVStableDiffusionPipeline.from_pretrained(
            fused, export=True, compile=False, load_in_8bit=False
        ).save_pretrained(exported)
        # Calibrated as the row runs: this size, one UNet batch (guidance off), LCMScheduler, the row's steps. In fp32
        # (OpenVINO would pick bf16 where it is native): the statistics must not depend on the CPU the build runs on.
        ov_pipe = OVStableDiffusionPipeline.from_pretrained(
            exported, compile=False, ov_config={"INFERENCE_PRECISION_HINT": "f32"}
        )
        ov_pipe.reshape(batch_size=1, height=size, width=size, num_images_per_prompt=1)
        reshape_batch(ov_pipe.unet.model, 1)
        ov_pipe.compile()
        ov_pipe.scheduler = LCMScheduler.from_config(ov_pipe.scheduler.config)
        ov_pipe.set_progress_bar_config(disable=True)
        prompts, steps = recipe["prompts"], recipe["steps"]

        def run_calibration():  # the latents only: the decoder that ships is TAESD's, written below
            for i, prompt in enumerate(prompts):
                log.info("calibration prompt %d/%d (%d LCM steps): %s", i + 1, len(prompts), steps, prompt)
                ov_pipe(
                    prompt,
                    num_inference_steps=steps,
                    guidance_scale=1.0,
                    height=size,
                    width=size,
                    output_type="latent",
                    generator=torch.Generator("cpu").manual_seed(i),
                )

        # Every UNet input kept (a few-step trajectory has few), the UNet's activations and weights in 8 bits.
        calibrate_and_quantize(
            ov_pipe, run_calibration, out_dir, full=True, overflow_fix=recipe["overflow_fix"], vae_decoder=False,
            stride=1, log=log,
        )  # fmt: skip
    write_taesd_decoder(taesd_dir, out_dir)


def write_taesd_decoder(taesd_dir: str, out_dir: str) -> None:
    """TAESD's decoder converted to OpenVINO and written as the pipeline's `vae_decoder`, with the names optimum's VAE
    decoder expects: optimum-intel exports the pipeline's AutoencoderKL, and none of its exporters takes an
    AutoencoderTiny."""
    import openvino as ov
    import torch
    from diffusers import AutoencoderTiny

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
    target = Path(out_dir) / "vae_decoder"
    for old in target.glob("*"):  # the AutoencoderKL decoder the export wrote (8-bit weights): not what runs
        old.unlink()
    ov.save_model(decoder, target / "openvino_model.xml", compress_to_fp16=False)
    config = {k: v for k, v in tiny.config.items() if not k.startswith("_name")} | {"_class_name": "AutoencoderTiny"}
    config["block_out_channels"] = list(config["decoder_block_out_channels"])  # optimum's 8x scale comes from it
    (target / "config.json").write_text(json.dumps(config, indent=2))


class LcmTaesd:
    id = "lcm-taesd"
    title = "LCM-LoRA + TAESD, few steps (OpenVINO)"
    framework = "openvino"
    # Every figure of this row says so: its own line, never a speed-up or a fidelity of the same work.
    different_work = (
        "distilled LCM-LoRA, {lcm_steps} steps, guidance off, TAESD tiny decoder: not the same work as the other rows"
    )

    @classmethod
    def support(cls, cpu: Cpu) -> RowSupport:
        if cannot_play(cpu):  # a kind played on a machine above it (SBS_CPU_KIND) that OpenVINO cannot be held to
            return RowSupport(False, "unavailable", reason=cannot_play(cpu))
        what = f"UNet {int8_kernel_words(cpu)}, rest {default_precision(cpu)}; LCM-LoRA fused, TAESD"
        return RowSupport(True, what, compute="int8")

    @classmethod
    def settings_for(cls, settings: LoadSettings, cpu: Cpu) -> LoadSettings:
        """`settings` with the overflow fix chosen for `cpu`, the CPU the int8 UNet will run on (as `int8-tome`)."""
        return replace(settings, int8_overflow_fix=overflow_fix_for(cpu, settings.int8_overflow_fix))

    def prepare(self, model, settings: LoadSettings, progress: ProgressCallback) -> dict[int, tuple[Path, bool]]:
        """Fetch the LoRA and TAESD, build (or find in the cache) the fused int8 IR per size: size -> (IR, hit?)."""
        low, high = STEPS_RANGE
        if not low <= settings.lcm_steps <= high:
            raise ValueError(f"--lcm-steps {settings.lcm_steps}: the LCM-LoRA runs {low} to {high} steps")
        lora_dir, lora_revision = lcm_lora(model, settings.cache_dir, progress)
        taesd_dir, taesd_revision = taesd(model, settings.cache_dir, progress)
        prompts = calibration_prompts(settings.calibration_prompts)
        recipe = {
            "overflow_fix": overflow_fix_for(this_cpu(), settings.int8_overflow_fix),
            "prompts": prompts,
            "steps": settings.lcm_steps,
        }
        fix = OVERFLOW_FIX_SLUGS[recipe["overflow_fix"]]
        calibration = f"cal{len(prompts)}x{settings.lcm_steps}-{text_digest(prompts)}"
        cache = BuildCache.ir(settings.cache_dir)
        args = (str(model.path), str(lora_dir), str(taesd_dir))
        built = {}
        for size in settings.sizes:
            variant = f"lcm-taesd-v{BUILD_VERSION}-{lora_revision}-{taesd_revision}-int8{fix}-{size}px-{calibration}"

            def build(tmp, size=size):
                what = f"fusing the LCM-LoRA, exporting, calibrating and quantizing the UNet at {size}x{size}"
                run_in_child(build_ir, (*args, str(tmp), size, recipe), progress, what)

            built[size] = cache.get_or_build(cache_key(model.model_id, model.revision, variant), build)
        return built

    def load(self, model, settings: LoadSettings, progress: ProgressCallback) -> LoadInfo:
        self.steps = settings.lcm_steps
        built = self.prepare(model, settings, progress)
        # Guidance off: one UNet batch per step (the static UNet is reshaped to batch 1, not classifier-free's 2).
        self.pipes, self.ir_dirs, cache = compile_cached(
            built, lambda: self.prepare(model, settings, progress), settings, progress, unet_batch=1
        )
        self.scheduler_config = settings.scheduler_config
        fix = overflow_fix_for(this_cpu(), settings.int8_overflow_fix) == "enable"
        rest = ov_precision(self.pipes[settings.sizes[0]])
        kernels = this_cpu().int8_kernels()
        return LoadInfo(
            disk_mb=sum(files_mb(ir_dir) for ir_dir in set(self.ir_dirs.values())),
            cache=cache,
            precision=f"UNet int8 on {kernels}{', 7-bit weights' if fix else ''}, rest OpenVINO {rest}; "
            f"{self.steps} LCM steps, TAESD",
            compute="int8",
        )

    def generate(self, request: GenerationRequest, latents, on_step: StepCallback, on_stage: StageCallback):
        from diffusers import LCMScheduler

        few = replace(request, steps=self.steps, guidance_scale=1.0)  # the visitor's prompt, seed, size, noise
        scheduler = LCMScheduler.from_config(self.scheduler_config)
        return run_pipeline(self.pipes[request.height], None, few, latents, on_step, on_stage, scheduler=scheduler)
