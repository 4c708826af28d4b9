"""What the int8 rows share (`int8-tome`; the few-step row's UNet): calibrate an exported OpenVINO Stable Diffusion
pipeline on its own runs, then quantize it with optimum-intel's `OVQuantizer` (NNCF), and the one choice that depends
on the CPU the IR will run on (NNCF's overflow fix: see `overflow_fix_for`)."""

from __future__ import annotations

from collections.abc import Callable

from core.cpu import Cpu

OVERFLOW_FIXES = ("enable", "first_layer_only", "disable")  # NNCF's OverflowFix values
# How each fix shows in an int8 IR's cache key ("disable" adds nothing: the keys from before the fix existed).
OVERFLOW_FIX_SLUGS = {"enable": "-of", "first_layer_only": "-of1", "disable": ""}


def overflow_fix_for(cpu: Cpu, asked: str = "auto") -> str:
    """NNCF's overflow fix for int8 IR that will run on `cpu`: what the operator `asked` for, or with "auto" the fix
    where int8 products are summed without VNNI (oneDNN's `vpmaddubsw` path saturates 16-bit sums; the fix quantizes
    weights to 7 bits so that they fit; `int8_tome.py` gives the figures)."""
    if asked != "auto":
        return asked
    return "disable" if cpu.int8_vnni else "enable"


def int8_kernel_words(cpu: Cpu) -> str:
    """What an int8 row says it runs on `cpu`: OpenVINO runs int8 on any x86-64 CPU, how fast depends on the kernels
    its instruction sets allow, and without VNNI the weights are 7-bit (`overflow_fix_for`)."""
    fix = " with 7-bit weights (NNCF's overflow fix)" if overflow_fix_for(cpu) == "enable" else ""
    return f"int8 on {cpu.int8_kernels()}{fix}"


def calibrate_and_quantize(
    ov_pipe,
    run_calibration: Callable[[], None],
    out_dir: str,
    *,
    full: bool,
    overflow_fix: str,
    vae_decoder: bool,
    stride: int,
    log,
) -> None:
    """Record every UNet input (and the latents the VAE decodes) while `run_calibration()` runs `ov_pipe` on the
    calibration prompts, keep every `stride`-th UNet input, then quantize and save the pipeline to `out_dir`.

    `full`: 8-bit activations and weights on the UNet's convolutions and MatMuls (NNCF's transformer preset, with
    SmoothQuant), so int8 GEMM kernels (AMX-INT8 / VNNI) do the work; otherwise optimum-intel's hybrid mode (8-bit
    convolutions, weight-only 8-bit MatMuls). `vae_decoder`: the VAE decoder quantized the same way. Whatever has no
    config here (text encoder, VAE encoder, the VAE decoder without `vae_decoder`) gets 8-bit weights only, as
    optimum-intel does for a full-quantized diffusion pipeline."""
    import gc

    import nncf
    from optimum.intel import (
        OVConfig,
        OVPipelineQuantizationConfig,
        OVQuantizationConfig,
        OVQuantizer,
        OVWeightQuantizationConfig,
    )
    from optimum.intel.openvino.quantization import InferRequestWrapper, OVCalibrationDataset

    samples, decoder_samples = [], []
    ov_pipe.unet.request = InferRequestWrapper(ov_pipe.unet.request, samples)
    ov_pipe.vae_decoder.request = InferRequestWrapper(ov_pipe.vae_decoder.request, decoder_samples)
    run_calibration()
    ov_pipe.unet.request = ov_pipe.unet.request.request
    ov_pipe.vae_decoder.request = ov_pipe.vae_decoder.request.request
    ov_pipe.clear_requests()  # drop the compiled models: NNCF works on the IR, this halves the peak
    gc.collect()
    samples = samples[::stride]
    if full:
        unet = OVQuantizationConfig(num_samples=len(samples), model_type="transformer", overflow_fix=overflow_fix)
    else:
        unet = OVWeightQuantizationConfig(bits=8, quant_method="hybrid", num_samples=len(samples))
    configs, datasets = {"unet": unet}, {"unet": nncf.Dataset(samples)}
    if vae_decoder:
        if not decoder_samples:
            raise RuntimeError("the calibration runs decoded nothing: no samples for the VAE decoder")
        configs["vae_decoder"] = OVQuantizationConfig(
            num_samples=len(decoder_samples), model_type="transformer", overflow_fix=overflow_fix
        )
        datasets["vae_decoder"] = nncf.Dataset(decoder_samples)
    log.info(
        "quantizing %s on %d UNet and %d VAE decoder calibration samples",
        " and ".join(configs),
        len(samples),
        len(decoder_samples) if vae_decoder else 0,
    )
    config = OVPipelineQuantizationConfig(configs, default_config=OVWeightQuantizationConfig(bits=8))
    OVQuantizer(ov_pipe).quantize(
        calibration_dataset=OVCalibrationDataset(datasets),
        ov_config=OVConfig(quantization_config=config),
        save_directory=out_dir,
    )
