"""The random-weight stand-ins: real diffusers pipelines built locally from configs (as diffusers' own tests do),
laid out like the SD-1.5 repository, so every row loads them through the path it uses for a real model."""

from __future__ import annotations

import logging
from pathlib import Path

from core.build_cache import BuildCache
from harness.models.clip_tokenizer import make_clip_tokenizer

log = logging.getLogger(__name__)

STANDINS = ("tiny", "sd15-standin")
STANDIN_REVISION = "standin-v2"  # bump when a stand-in's config changes, so caches keyed on it are rebuilt
ROOT_CHECKPOINTS = ("v1-5-pruned-emaonly.safetensors", "v1-5-pruned.safetensors")  # single-file, as on the hub


def standin_path(name: str, cache_dir: Path) -> Path:
    """The stand-in's diffusers directory in the cache, built the first time."""
    if name not in STANDINS:
        raise ValueError(f"unknown stand-in {name!r}; choose one of {', '.join(STANDINS)}")

    def build(out: Path) -> None:
        log.info("building the %r stand-in (once)", name)
        build_standin(name, out)

    path, _hit = BuildCache.standins(cache_dir).get_or_build(f"{name}-{STANDIN_REVISION}", build)
    return path


def _vae(channels: tuple[int, ...], layers: int, sample_size: int, **extra) -> dict:
    """AutoencoderKL arguments of an SD-style VAE: one 2x down/up block per channel width (8x with four)."""
    blocks = len(channels)
    return dict(
        block_out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        latent_channels=4,
        layers_per_block=layers,
        sample_size=sample_size,
        **extra,
    )


def _transformer(hidden: int, intermediate: int, heads: int, layers: int, **extra) -> dict:
    """CLIP text or vision tower arguments."""
    return dict(
        hidden_size=hidden, intermediate_size=intermediate, num_attention_heads=heads, num_hidden_layers=layers, **extra
    )


def standin_configs(name: str) -> tuple[dict, dict, dict, dict]:
    """UNet2DConditionModel, AutoencoderKL, CLIPTextConfig and safety-checker CLIPConfig arguments of a stand-in."""
    if name == "tiny":
        # Shaped like diffusers' test components, but with a VAE that downsamples 8x like SD's, and
        # cross-attention at the highest resolution so that Token Merging has something to merge.
        unet = dict(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=16,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=8,
        )
        vae = _vae((8, 16, 16, 32), layers=1, sample_size=128, norm_num_groups=8)
        text = _transformer(32, 37, 4, 3, projection_dim=32)
        vision = _transformer(32, 37, 4, 2, patch_size=8, image_size=32)
    elif name == "sd15-standin":
        # The SD-1.5 architecture: 859.5 M-parameter UNet (diffusers' default UNet2DConditionModel is SD-1.x's,
        # with CLIP ViT-L/14's 768-wide cross-attention), CLIP ViT-L/14 text encoder, SD VAE.
        unet = dict(sample_size=64, cross_attention_dim=768)
        vae = _vae((128, 256, 512, 512), layers=2, sample_size=512)
        text = _transformer(768, 3072, 12, 12, projection_dim=768)
        # SD-1.x's safety checker: a CLIP ViT-L/14 vision tower projected to 768.
        vision = _transformer(1024, 4096, 16, 24, patch_size=14, image_size=224)
    else:
        raise ValueError(f"unknown stand-in {name!r}; choose one of {', '.join(STANDINS)}")
    # The checker's concept embeddings are 768-wide whatever the tower.
    return unet, vae, text, dict(vision_config=vision, projection_dim=768)


def build_standin(name: str, out: Path) -> None:
    """Write a random-weight diffusers StableDiffusionPipeline directory to `out`."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPTextConfig, CLIPTextModel

    unet_kw, vae_kw, text_kw, checker_kw = standin_configs(name)
    tokenizer = make_clip_tokenizer()
    with torch.random.fork_rng():  # deterministic weights without touching the process's global RNG
        torch.manual_seed(0)
        unet = UNet2DConditionModel(**unet_kw)
        vae = AutoencoderKL(in_channels=3, out_channels=3, **vae_kw)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408,  # CLIP's: same embedding size whatever the generated tokenizer holds
                max_position_embeddings=77,
                hidden_act="quick_gelu",
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                **text_kw,
            )
        )
        # Its concept thresholds start at 1 (diffusers' init): a cosine similarity never exceeds them, so the
        # random-weight checker flags nothing, as the real one flags nothing on ordinary prompts.
        safety_checker = StableDiffusionSafetyChecker(CLIPConfig(**checker_kw))
    size = checker_kw["vision_config"]["image_size"]
    feature_extractor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    scheduler = PNDMScheduler(  # SD-1.5's own scheduler config; rows swap in the requested one per call
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )
    # StableDiffusionPipeline's own argument order.
    pipe = StableDiffusionPipeline(vae, text_encoder, tokenizer, unet, scheduler, safety_checker, feature_extractor)
    pipe.save_pretrained(out)
    _add_the_real_repositorys_other_files(pipe, out)
    (out / "STANDIN.md").write_text(
        f"Random-weight stand-in {name!r} built locally by harness/models/standins.py. Images are noise; "
        "latencies are real.\n"
    )


def _add_the_real_repositorys_other_files(pipe, out: Path) -> None:
    """The SD-1.5 repository also holds fp16 and non-EMA variants of the component weights and single-file
    checkpoints at its root; none of them is what `from_pretrained` loads, so none may be downloaded, counted or
    loaded. The stand-ins hold them too (fp16 variants real, the others hard links) so every test sees them."""
    import copy
    import os

    import torch

    for name in ("unet", "vae", "text_encoder", "safety_checker"):
        config = out / name / "config.json"
        fp32_config = config.read_text()
        copy.deepcopy(getattr(pipe, name)).to(torch.float16).save_pretrained(out / name, variant="fp16")
        config.write_text(fp32_config)  # saving the fp16 copy rewrote the shared config's dtype
    unet_weights = out / "unet" / "diffusion_pytorch_model.safetensors"
    for link in ("unet/diffusion_pytorch_model.non_ema.safetensors", *ROOT_CHECKPOINTS):
        os.link(unet_weights, out / link)
