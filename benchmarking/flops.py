"""FLOPs of one UNet step and one VAE decode, counted by torch's FlopCounterMode on the meta device (no weights,
no compute), and the share of the CPU's peak a measured latency reaches."""

from __future__ import annotations

from pathlib import Path


def count_flops(model_path: Path, size: int) -> dict:
    """FLOPs of one UNet step (batch 2: classifier-free guidance) and one VAE decode at `size`."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    latent = size // 8
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(model_path / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(model_path / "vae"))
        sample = torch.empty(2, unet.config.in_channels, latent, latent)
        context = torch.empty(2, 77, unet.config.cross_attention_dim)
        z = torch.empty(1, vae.config.latent_channels, latent, latent)
    with FlopCounterMode(display=False) as unet_counter, torch.no_grad():
        unet(sample, torch.tensor([1], device="meta"), context)
    with FlopCounterMode(display=False) as vae_counter, torch.no_grad():
        vae.decode(z)
    return {"unet_step": unet_counter.get_total_flops(), "vae_decode": vae_counter.get_total_flops()}


def image_flops(flops: dict, steps: int) -> float:
    """The baseline's work for one image; rows that merge tokens do less, so theirs is an effective rate."""
    return flops["unet_step"] * steps + flops["vae_decode"]
