"""`ipex-bf16`: Intel Extension for PyTorch, bf16 under CPU autocast (AMX where the CPU has it).

The source blog's recipe: UNet and VAE in channels-last, `ipex.optimize(dtype=bfloat16)` on UNet, VAE and text
encoder (the UNet with a sample input so IPEX picks kernels for the real shapes), every call under
`torch.autocast("cpu", dtype=torch.bfloat16)`: without autocast IPEX optimizes for fp32 and the gain is lost.
"""

from __future__ import annotations

from core.cpu import Cpu, RowSupport, this_cpu
from core.probes import component_weights_mb
from core.request import GenerationRequest, LoadSettings, ProgressCallback, StageCallback, StepCallback

from .base import LoadInfo
from .baseline import load_diffusers_pipeline
from .pipeline import run_pipeline


class IpexBf16:
    id = "ipex-bf16"
    title = "Intel Extension for PyTorch, bf16"
    framework = "pytorch"
    traces_on_load = True  # ipex.optimize traces with torch.fx, which patches every module's __call__ meanwhile
    install_hint = "pip install intel-extension-for-pytorch==2.8.0 (needs torch 2.8.x)"

    @classmethod
    def support(cls, cpu: Cpu) -> RowSupport:
        # IPEX's bf16 kernels (weight prepack, oneDNN layer norm) refuse to run without AVX-512 BW/VL/DQ or
        # AVX-NE-CONVERT: checking first gives the visitor this sentence instead of a oneDNN primitive error.
        if not (cpu.avx512 or cpu.has("avx_ne_convert")):
            return RowSupport(
                False, "unavailable", reason=f"IPEX bf16 needs AVX-512 (BW/VL/DQ) or AVX-NE-CONVERT; {cpu}"
            )
        if cpu.has("amx_bf16"):
            return RowSupport(True, "bf16 native (AMX-BF16)", compute="bf16")
        if cpu.has("avx512_bf16"):
            return RowSupport(True, "bf16 native (AVX-512-BF16)", compute="bf16")
        return RowSupport(True, "bf16 emulated (no AVX-512-BF16 or AMX: converted to fp32 to compute)", compute="bf16")

    def load(self, model, settings: LoadSettings, progress: ProgressCallback) -> LoadInfo:
        import torch

        try:
            import intel_extension_for_pytorch as ipex
        except ImportError as exc:
            raise RuntimeError(f"intel-extension-for-pytorch is not importable ({exc}); {self.install_hint}") from exc

        support = self.support(this_cpu())
        if not support.runs:
            raise RuntimeError(support.reason)
        pipe = load_diffusers_pipeline(model, progress)
        progress("ipex.optimize(dtype=bfloat16) on UNet, VAE and text encoder")
        size = settings.sizes[0]
        unet_in = (
            torch.randn(2, pipe.unet.config.in_channels, size // 8, size // 8).to(memory_format=torch.channels_last),
            torch.tensor(921),
            torch.randn(2, 77, pipe.text_encoder.config.hidden_size),
        )
        pipe.unet = pipe.unet.to(memory_format=torch.channels_last).eval()
        pipe.vae = pipe.vae.to(memory_format=torch.channels_last).eval()
        pipe.text_encoder = pipe.text_encoder.eval()
        pipe.unet = ipex.optimize(pipe.unet, dtype=torch.bfloat16, inplace=True, sample_input=unet_in)
        pipe.vae = ipex.optimize(pipe.vae, dtype=torch.bfloat16, inplace=True)
        pipe.text_encoder = ipex.optimize(pipe.text_encoder, dtype=torch.bfloat16, inplace=True)
        self.pipe = pipe
        self.scheduler_config = settings.scheduler_config
        return LoadInfo(
            disk_mb=component_weights_mb(model.path), precision=f"autocast {support.how}", compute=support.compute
        )

    def generate(self, request: GenerationRequest, latents, on_step: StepCallback, on_stage: StageCallback):
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            return run_pipeline(self.pipe, self.scheduler_config, request, latents, on_step, on_stage)
