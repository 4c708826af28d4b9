"""`ipex-bf16`: Intel Extension for PyTorch, bf16 under CPU autocast (AMX where the CPU has it).

The source blog's recipe: UNet and VAE in channels-last, `ipex.optimize(dtype=bfloat16)` on UNet, VAE and text
encoder (the UNet with a sample input so IPEX picks kernels for the real shapes), every call under
`torch.autocast("cpu", dtype=torch.bfloat16)`: without autocast IPEX optimizes for fp32 and the gain is lost.
"""

from __future__ import annotations

from harness.cpu import this_cpu
from harness.model_sources import component_weights_mb

from .base import GenerationRequest, LoadInfo, LoadSettings, ProgressCallback, StageCallback, StepCallback
from .baseline import load_diffusers_pipeline
from .pipeline import run_pipeline

INSTALL_HINT = "pip install intel-extension-for-pytorch==2.8.0 (needs torch 2.8.x)"


class IpexBf16:
    id = "ipex-bf16"
    title = "Intel Extension for PyTorch, bf16"

    def load(self, model, settings: LoadSettings, progress: ProgressCallback) -> LoadInfo:
        import torch

        try:
            import intel_extension_for_pytorch as ipex
        except ImportError as exc:
            raise RuntimeError(f"intel-extension-for-pytorch is not importable ({exc}); {INSTALL_HINT}") from exc

        support = this_cpu().ipex_bf16()
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
        return LoadInfo(disk_mb=component_weights_mb(model.path), precision=f"autocast {support.how}", compute="bf16")

    def generate(self, request: GenerationRequest, latents, on_step: StepCallback, on_stage: StageCallback):
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            return run_pipeline(self.pipe, self.scheduler_config, request, latents, on_step, on_stage)
