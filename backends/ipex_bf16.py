"""`ipex-bf16`: Intel Extension for PyTorch, bf16 under CPU autocast (AMX where the CPU has it).

The recipe of the source blog: UNet, VAE and text encoder in channels-last, `ipex.optimize(dtype=bfloat16)`
(the UNet with a sample input so IPEX can pick its kernels for the real shapes), then every call under
`torch.autocast("cpu", dtype=torch.bfloat16)` — without autocast IPEX optimizes for fp32 and the gain is lost.
"""

from __future__ import annotations

from .base import GenerationRequest, LoadInfo, LoadSettings, ProgressCallback, StepCallback
from .baseline import load_diffusers_pipeline
from .common import model_files_mb, run_pipeline
from .system_info import cpu_flags, cpu_model

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

        if not cpu_runs_ipex_bf16():
            # IPEX's bf16 kernels (weight prepack, oneDNN layer norm) refuse to run without these; checking
            # first gives the visitor this sentence instead of a oneDNN primitive error.
            raise RuntimeError(
                f"IPEX bf16 needs AVX-512 (BW/VL/DQ) or AVX-NE-CONVERT; this CPU ({cpu_model()}) has neither"
            )
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
        self.scheduler_config = pipe.scheduler.config
        precision = "bf16 autocast"
        if not cpu_flags() & {"amx_bf16", "avx512_bf16"}:
            precision += ", no native bf16 on this CPU (emulated)"
        return LoadInfo(disk_mb=model_files_mb(model.path), precision=precision)

    def generate(self, request: GenerationRequest, latents, on_step: StepCallback):
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            return run_pipeline(self.pipe, self.scheduler_config, request, latents, on_step)


def cpu_runs_ipex_bf16() -> bool:
    """IPEX's bf16 kernels (weight prepack, oneDNN layer norm) need AVX-512 BW/VL/DQ or AVX-NE-CONVERT."""
    flags = cpu_flags()
    return {"avx512bw", "avx512vl", "avx512dq"} <= flags or "avx_ne_convert" in flags
