"""`int8-tome`: OpenVINO pipeline whose UNet has Token Merging and 8-bit NNCF quantization.

Build (once per model, size and recipe; cached): the diffusers pipeline gets Token Merging from `tomesd`
(deterministic; merge and unmerge exported in gather/MatMul form, see `token_merging`), is exported to OpenVINO IR
at the static size it will run at, calibrated on a few prompts from `assets/calibration_prompts.txt`
(`calibration_steps` steps each), and quantized with optimum-intel's `OVQuantizer`:
- mode "full" (default): `OVQuantizationConfig`, 8-bit activations *and* weights on the UNet's convolutions
  and MatMuls (NNCF's transformer preset, with SmoothQuant), so int8 GEMM kernels (AMX-INT8 / VNNI) do the work;
- mode "hybrid" (quality-first): optimum-intel's hybrid mode, 8-bit convolutions and weight-only 8-bit MatMuls.
With `int8_vae` (default) the VAE decoder is quantized the same way, calibrated on the latents the calibration
prompts ended on; otherwise it keeps optimum-intel's weight-only 8-bit and computes in bf16/fp32.
A prebuilt OpenVINO INT8/ToMe pipeline (local dir or hub id) can be given instead (`LoadSettings.int8_source`).

The IR depends on the CPU it will run on in one way: without VNNI (AVX2 EPYCs, pre-Cascade-Lake Xeons) oneDNN's
u8 x s8 kernels sum pairs of products in 16 bits with saturation (`vpmaddubsw`), which clips large sums and wrecks
the image; NNCF's overflow fix quantizes weights to 7 bits so that the sums fit. It costs weight precision where
VNNI makes it unnecessary, so `int8_overflow_fix="auto"` applies it only for a CPU without VNNI or AMX-INT8, and
the choice is part of the recipe and so of the cache key. With the fix, the VAE decoder keeps 8-bit weights only
(computing in f32). Measured on `tiny` (test_backends.REQUEST, AMD EPYC AVX2; `VNNI-equivalent` = the same IR with
OpenVINO's low-precision transformations off, i.e. its FakeQuantize simulated in f32 with no saturating sums):
  UNet and VAE int8, no fix: 24.6 dB (VNNI-equivalent 35.2 dB); both with the fix: 34.2 dB (its own ideal 34.3 dB:
  the saturation is gone, the 7th weight bit costs the rest); fix on the UNet only, VAE decoder 8-bit weights: 35.4 dB.
NNCF's `first_layer_only` fix gave 24.9 dB: the saturation is everywhere, not in the first layers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from core.assets import calibration_prompts, text_digest
from core.build_cache import BuildCache, cache_key
from core.cpu import Cpu, RowSupport, this_cpu
from core.probes import files_mb
from core.request import GenerationRequest, LoadSettings, ProgressCallback, StageCallback, StepCallback

from .base import LoadInfo
from .child_process import run_in_child
from .openvino_int8 import (
    OVERFLOW_FIX_SLUGS,
    OVERFLOW_FIXES,
    calibrate_and_quantize,
    int8_kernel_words,
    overflow_fix_for,
)
from .openvino_loading import cannot_play, compile_cached, default_precision, load_static_pipelines, ov_precision
from .pipeline import run_pipeline
from .token_merging import MERGE_FORMS, apply_token_merging, merge_form

MODES = ("full", "hybrid")
CALIBRATION_STRIDE = 4  # keep every 4th denoising step's UNet input: covers the trajectory with few samples
EXPORT_CHECK_TOLERANCE = 1e-3  # max relative error of the exported ToMe UNet vs PyTorch, both in fp32
BUILD_VERSION = 6  # bump when the build changes what it writes, so old cache entries are not reused


@dataclass(frozen=True)
class Int8Recipe:
    """What an int8 + ToMe build is made with; every field is part of its cache key."""

    # Made from LoadSettings (`from_settings`), which holds the defaults.
    tome_ratio: float  # share of tokens merged away before self-attention
    tome_max_downsample: int  # merge in blocks up to this many times below full resolution
    tome_form: str  # "gather": this repo's export-friendly merge; "scatter": tomesd's own
    mode: str  # "full" or "hybrid" (see the module docstring)
    vae: bool  # VAE decoder quantized to 8 bits too
    overflow_fix: str = "disable"  # NNCF's fix for CPUs without VNNI (7-bit weights): "enable", "first_layer_only"

    @classmethod
    def from_settings(cls, settings: LoadSettings, cpu: Cpu | None = None) -> Int8Recipe:
        """The recipe `settings` ask for, for the CPU the IR will run on (`cpu`, default this one)."""
        fix = overflow_fix_for(cpu or this_cpu(), settings.int8_overflow_fix)
        if settings.int8_mode == "hybrid":  # optimum-intel's hybrid mode takes no overflow fix (full mode does)
            fix = "disable"
        # With the overflow fix the VAE decoder keeps 8-bit weights only: its int8 activations cost 1.2 dB more than
        # the fixed UNet alone even with 7-bit weights (tiny, AVX2 EPYC: 34.2 dB vs 35.4 dB; see the module docstring).
        vae = settings.int8_vae and fix == "disable"
        recipe = cls(
            settings.tome_ratio, settings.tome_max_downsample, settings.tome_form, settings.int8_mode, vae, fix
        )
        if not 0.0 < recipe.tome_ratio <= 0.75:  # tomesd's limit: at most 3 of every 2x2 tokens merged
            raise ValueError(f"ToMe ratio must be above 0 and at most 0.75, got {recipe.tome_ratio}")
        if recipe.tome_max_downsample not in (1, 2, 4, 8):  # the UNet's resolution levels
            raise ValueError(f"ToMe max downsample must be 1, 2, 4 or 8, got {recipe.tome_max_downsample}")
        if recipe.tome_form not in MERGE_FORMS:
            raise ValueError(f"unknown ToMe form {recipe.tome_form!r}; choose one of {', '.join(MERGE_FORMS)}")
        if recipe.mode not in MODES:
            raise ValueError(f"unknown int8 mode {recipe.mode!r}; choose one of {', '.join(MODES)}")
        if recipe.overflow_fix not in OVERFLOW_FIXES:
            raise ValueError(
                f"unknown int8 overflow fix {recipe.overflow_fix!r}; choose auto or one of {', '.join(OVERFLOW_FIXES)}"
            )
        return recipe

    def slug(self) -> str:
        levels = f"-md{self.tome_max_downsample}" if self.tome_max_downsample != 1 else ""
        fix = OVERFLOW_FIX_SLUGS[self.overflow_fix]
        return f"{self.mode}-tome{self.tome_ratio:g}{levels}-{self.tome_form}{'-vae8' if self.vae else ''}{fix}"

    def describe(self) -> str:
        unet = "UNet int8 activations+weights" if self.mode == "full" else "UNet hybrid int8"
        levels = "highest resolution" if self.tome_max_downsample == 1 else f"down to 1/{self.tome_max_downsample}"
        vae = "VAE decoder int8" if self.vae else "VAE decoder weight-only int8"
        fix = {"enable": ", 7-bit weights (overflow fix: no VNNI)", "first_layer_only": ", first layers 7-bit"}
        return f"{unet}, {vae}, ToMe {self.tome_ratio:g} ({levels}, {self.tome_form}){fix.get(self.overflow_fix, '')}"


def build_int8_tome(model_path: str, out_dir: str, size: int, recipe: Int8Recipe, prompts, steps: int) -> None:
    """Child-process body: ToMe -> export at `size` -> calibrate -> quantize -> save to `out_dir`."""
    import gc
    import logging
    import tempfile

    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
    from optimum.exporters.openvino import export_from_model

    log = logging.getLogger(__name__)  # forwarded to the row's card by run_in_child
    pipe = StableDiffusionPipeline.from_pretrained(model_path, safety_checker=None, requires_safety_checker=False)
    patched = apply_token_merging(pipe, recipe.tome_ratio, recipe.tome_max_downsample)
    log.info("Token Merging: %s on %d blocks", recipe.describe(), patched)
    # tomesd's merge turns the traced token counts into constants, so the UNet must be traced at exactly the
    # latent size it will run at (traced elsewhere and reshaped, OpenVINO fails with "Broadcast incorrect
    # target shape"). optimum traces with a latent of `sample_size - 1` per side ("discount for any
    # resolution", optimum/exporters/openvino/input_generators.py), hence the +1; the saved config is put back.
    latent = size // 8
    pipe.unet.register_to_config(sample_size=latent + 1)
    probe = (
        torch.randn(2, 4, latent, latent, generator=torch.Generator().manual_seed(0)),
        torch.tensor([500]),
        torch.randn(2, 77, pipe.text_encoder.config.hidden_size, generator=torch.Generator().manual_seed(1)),
    )
    with torch.no_grad():  # tomesd's own code: the reference the exported graph (in `recipe.tome_form`) must match
        expected = pipe.unet(*probe, return_dict=False)[0].numpy()
    # Inside the build's own directory: if the build is killed, the cache sweeps that (its lease goes stale); a
    # sibling in the cache root would stay behind, gigabytes each time.
    with tempfile.TemporaryDirectory(dir=out_dir) as fp32_dir:
        log.info("exporting the ToMe pipeline to OpenVINO IR (%s-form merge)", recipe.tome_form)
        with torch.no_grad(), merge_form(recipe.tome_form):
            export_from_model(pipe, fp32_dir, task="text-to-image")
        del pipe
        gc.collect()
        ov_pipe = exported_and_checked(Path(fp32_dir), size, probe, expected, log)
        ov_pipe.scheduler = DPMSolverMultistepScheduler.from_config(ov_pipe.scheduler.config)
        ov_pipe.set_progress_bar_config(disable=True)

        def run_calibration():  # every UNet input along each prompt's trajectory, and the latents it ends on
            for i, prompt in enumerate(prompts):
                log.info("calibration prompt %d/%d: %s", i + 1, len(prompts), prompt)
                ov_pipe(
                    prompt,
                    num_inference_steps=steps,
                    height=size,
                    width=size,
                    output_type="np",
                    generator=torch.Generator("cpu").manual_seed(i),
                )

        calibrate_and_quantize(
            ov_pipe,
            run_calibration,
            out_dir,
            full=recipe.mode == "full",
            overflow_fix=recipe.overflow_fix,
            vae_decoder=recipe.vae,
            stride=CALIBRATION_STRIDE,
            log=log,
        )


def exported_and_checked(fp32_dir: Path, size: int, probe, expected, log):
    """The exported pipeline in fp32, static at `size`, once its ToMe UNet computes what the PyTorch one did on
    `probe` (`expected`). fp32 explicitly: OpenVINO would pick bf16 on CPUs with native bf16, and both this check and
    the calibration statistics must not depend on the CPU the build runs on."""
    import numpy as np
    from optimum.intel import OVStableDiffusionPipeline

    latent = size // 8
    unet_config = fp32_dir / "unet" / "config.json"  # the traced size put back (see build_int8_tome)
    unet_config.write_text(unet_config.read_text().replace(f'"sample_size": {latent + 1}', f'"sample_size": {latent}'))
    ov_pipe = OVStableDiffusionPipeline.from_pretrained(
        fp32_dir, compile=False, ov_config={"INFERENCE_PRECISION_HINT": "f32"}
    )
    ov_pipe.reshape(batch_size=1, height=size, width=size, num_images_per_prompt=1)
    ov_pipe.compile()
    log.info("checking the exported UNet against PyTorch (both fp32)")
    got = ov_pipe.unet.request([p.numpy() for p in probe])[0]
    error = float(np.abs(got - expected).max() / (np.abs(expected).max() + 1e-6))
    if error > EXPORT_CHECK_TOLERANCE:
        raise RuntimeError(
            f"exported ToMe UNet differs from PyTorch by {error:.2e} (relative, fp32; limit "
            f"{EXPORT_CHECK_TOLERANCE:g}) at {size}x{size}"
        )
    return ov_pipe


def static_size(ir_dir: Path) -> int | None:
    """The image size a UNet IR was exported for, when its latent input is static; None when it is dynamic."""
    import openvino as ov

    sample = ov.Core().read_model(Path(ir_dir) / "unet" / "openvino_model.xml").input("sample").get_partial_shape()
    return sample[2].get_length() * 8 if sample[2].is_static else None


class Int8Tome:
    id = "int8-tome"
    title = "OpenVINO INT8 + Token Merging"
    framework = "openvino"
    # `benchmark.py --variants`: the row built several ways, each timed against the reference row. LoadSettings
    # overrides on top of the row's own defaults; an ablation line adds one change to the line before it.
    variant_lists = {
        "ablation": [  # the int8 build's changes in the order they were made; the last is the row as it ships
            ("tomesd scatter merge, VAE weight-only int8", {"tome_form": "scatter", "int8_vae": False}),
            ("+ gather-form merge", {"int8_vae": False}),
            ("+ VAE decoder int8", {}),  # without VNNI the same build as the line before (overflow fix: see above)
        ],
        "recipes": [  # what the quality-first recipe costs: time with --pairing together (the same rounds)
            ("full static int8", {"int8_mode": "full"}),
            ("hybrid int8 (quality-first)", {"int8_mode": "hybrid"}),
        ],
        "sweep": [  # Token Merging's ratio and placement
            *((f"ratio {ratio:g}, highest resolution", {"tome_ratio": ratio}) for ratio in (0.3, 0.5, 0.7)),
            ("ratio 0.5, also 1/2 resolution", {"tome_ratio": 0.5, "tome_max_downsample": 2}),
        ],
    }

    @classmethod
    def support(cls, cpu: Cpu) -> RowSupport:
        if cannot_play(cpu):  # a kind played on a machine above it (SBS_CPU_KIND) that OpenVINO cannot be held to
            return RowSupport(False, "unavailable", reason=cannot_play(cpu))
        return RowSupport(True, f"{int8_kernel_words(cpu)}, rest {default_precision(cpu)}", compute="int8")

    @classmethod
    def settings_for(cls, settings: LoadSettings, cpu: Cpu) -> LoadSettings:
        """`settings` with the CPU-dependent choice made for `cpu` (the overflow fix): what an IR that will run on
        `cpu` is built with, e.g. when `harness.prepare --for-cpu-kinds` builds for a CPU other than its own."""
        return replace(settings, int8_overflow_fix=overflow_fix_for(cpu, settings.int8_overflow_fix))

    def prepare(self, model, settings: LoadSettings, progress: ProgressCallback) -> dict[int, tuple[Path, bool]]:
        """Build (or find in the cache) the int8 + ToMe IR for every size: size -> (IR directory, cache hit?). With
        `settings.int8_source`, fetch that prebuilt IR instead and build nothing."""
        if settings.int8_source:
            return dict.fromkeys(settings.sizes, (self._prebuilt_dir(settings.int8_source, progress), True))
        recipe = Int8Recipe.from_settings(settings)
        cache = BuildCache.ir(settings.cache_dir)
        prompts = calibration_prompts(settings.calibration_prompts)
        steps = settings.calibration_steps
        calibration = f"cal{len(prompts)}x{steps}-{text_digest(prompts)}"  # the prompts' text, not only their count
        built = {}
        for size in settings.sizes:
            variant = f"int8-v{BUILD_VERSION}-{recipe.slug()}-{size}px-{calibration}"

            def build(tmp, size=size):
                args = (str(model.path), str(tmp), size, recipe, prompts, steps)
                run_in_child(build_int8_tome, args, progress, f"building int8 + ToMe IR at {size}x{size}")

            built[size] = cache.get_or_build(cache_key(model.model_id, model.revision, variant), build)
        return built

    def load(self, model, settings: LoadSettings, progress: ProgressCallback) -> LoadInfo:
        if settings.int8_source:
            return self._load_prebuilt(settings, progress)
        built = self.prepare(model, settings, progress)
        self.pipes, self.ir_dirs, cache = compile_cached(
            built, lambda: self.prepare(model, settings, progress), settings, progress
        )
        disk = sum(files_mb(ir_dir) for ir_dir in set(self.ir_dirs.values()))
        return self._info(disk, cache, Int8Recipe.from_settings(settings).describe(), settings)

    @staticmethod
    def _prebuilt_dir(int8_source: str, progress: ProgressCallback) -> Path:
        """A local directory, or the hub id's snapshot (downloaded the first time)."""
        source = Path(int8_source).expanduser()
        if not source.is_dir():
            from huggingface_hub import snapshot_download

            progress(f"downloading {int8_source}")
            source = Path(snapshot_download(int8_source))
        return source

    def _load_prebuilt(self, settings: LoadSettings, progress: ProgressCallback) -> LoadInfo:
        source = self._prebuilt_dir(settings.int8_source, progress)
        built_for = static_size(source)
        wrong = [s for s in settings.sizes if built_for and s != built_for]
        if wrong:  # a ToMe IR keeps its traced token counts: reshaped to another size it fails to compile
            raise ValueError(
                f"the prebuilt IR {settings.int8_source} was built for {built_for}x{built_for} only; "
                f"{', '.join(f'{s}x{s}' for s in wrong)} cannot run on it (use --sizes {built_for})"
            )
        self.pipes = load_static_pipelines(source, settings, progress)
        self.ir_dirs = dict.fromkeys(settings.sizes, source)
        return self._info(files_mb(source), "prebuilt", f"prebuilt IR {settings.int8_source}", settings)

    def _info(self, disk_mb: float, cache: str, what: str, settings: LoadSettings) -> LoadInfo:
        first = self.pipes[settings.sizes[0]]
        self.scheduler_config = settings.scheduler_config  # not the one the build or a prebuilt IR saved
        kernels = this_cpu().int8_kernels()  # OpenVINO picks its int8 kernels from the instruction sets
        precision = f"{what}, int8 on {kernels}; rest OpenVINO {ov_precision(first)}"
        recipe, note = "", ""
        if not settings.int8_source:  # a prebuilt IR's recipe is its builder's
            recipe, note = f"{settings.int8_mode} int8", settings.int8_mode_note
            precision += f" ({note})" if note else ""
        return LoadInfo(disk_mb=disk_mb, cache=cache, precision=precision, compute="int8", recipe=recipe,
                        recipe_note=note)  # fmt: skip

    def generate(self, request: GenerationRequest, latents, on_step: StepCallback, on_stage: StageCallback):
        return run_pipeline(self.pipes[request.height], self.scheduler_config, request, latents, on_step, on_stage)
