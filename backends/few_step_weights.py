"""Where the few-step row's two extra pieces come from: the LCM-LoRA (a latent-consistency LoRA distilled from SD-1.5)
and TAESD (a tiny autoencoder's decoder). For a real model, from the Hugging Face Hub into its cache, as the model
itself; for a random-weight stand-in model, random-weight stand-ins of both, built locally and laid out like the real
repositories (`pytorch_lora_weights.safetensors`; `config.json` + `diffusion_pytorch_model.safetensors`), so that the
row loads both through diffusers' own loaders either way (`load_lora_weights`, `AutoencoderTiny.from_pretrained`)."""

from __future__ import annotations

from pathlib import Path

from core.build_cache import BuildCache, cache_key
from core.request import ProgressCallback

LCM_LORA = "latent-consistency/lcm-lora-sdv1-5"  # openrail++ licence; 67 M parameters
TAESD = "madebyollin/taesd"  # MIT licence; decoder 1.2 M parameters
LORA_FILE = "pytorch_lora_weights.safetensors"  # what diffusers' `save_lora_weights` writes, and the repository holds
TAESD_FILES = ("config.json", "diffusion_pytorch_model.safetensors")  # what `AutoencoderTiny.from_pretrained` reads
STANDIN_REVISION = "standin-v1"  # bump when a stand-in's shape changes
# The UNet layers the LCM-LoRA adapts (its adapter config): attention projections, feed-forwards, resnet convs.
LORA_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2",
    "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj",
)  # fmt: skip


def lcm_lora(model, cache_dir: Path, progress: ProgressCallback) -> tuple[Path, str]:
    """(directory holding the LoRA's `pytorch_lora_weights.safetensors`, its revision) for `model`."""
    if model.standin:
        key = cache_key(model.model_id, model.revision, f"lcm-lora-{STANDIN_REVISION}")
        path, _hit = BuildCache.standins(cache_dir).get_or_build(key, lambda out: _build_lora(model.path, out))
        return path, STANDIN_REVISION
    return _from_hub(LCM_LORA, (LORA_FILE,), progress)


def taesd(model, cache_dir: Path, progress: ProgressCallback) -> tuple[Path, str]:
    """(TAESD's diffusers directory, its revision)."""
    if model.standin:
        path, _hit = BuildCache.standins(cache_dir).get_or_build(f"taesd-{STANDIN_REVISION}", _build_taesd)
        return path, STANDIN_REVISION
    return _from_hub(TAESD, TAESD_FILES, progress)


def _from_hub(repo_id: str, files: tuple[str, ...], progress: ProgressCallback) -> tuple[Path, str]:
    """The snapshot of `repo_id` holding `files`, from the Hugging Face cache or the Hub. With HF_HUB_OFFLINE=1 (a
    booth without the network) the cache alone, and a clear error naming the repository and the files it lacks."""
    from huggingface_hub import constants, snapshot_download

    progress(f"fetching {repo_id} (the Hugging Face cache)")
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=[*files, "*.json", "*.md"]))
    except Exception as exc:  # offline, or the Hub refused: the row is unavailable with the reason
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else f"the Hub did not give it ({type(exc).__name__})"
        raise RuntimeError(f"{repo_id} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}; this "
                           f"row needs its {', '.join(files)}") from exc  # fmt: skip
    # Offline, the Hub's client returns a cached snapshot without checking which files it holds.
    missing = [f for f in files if not (path / f).is_file()]
    if missing:
        raise RuntimeError(f"{repo_id}'s snapshot in the Hugging Face cache ({path}) lacks {', '.join(missing)}; "
                           "this row needs it (fetch it again with the Hub in reach)")  # fmt: skip
    return path, path.name  # a snapshot's directory is named by its commit


def _build_lora(model_path: Path, out: Path) -> None:
    """A random LoRA over the stand-in's UNet, on the layers the LCM-LoRA adapts, written as the real one is."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(Path(model_path) / "unet")
    with torch.random.fork_rng():
        torch.manual_seed(1)
        unet.add_adapter(LoraConfig(r=8, lora_alpha=8, target_modules=list(LORA_TARGETS), init_lora_weights=False))
    StableDiffusionPipeline.save_lora_weights(out, unet_lora_layers=get_peft_model_state_dict(unet))
    (out / "STANDIN.md").write_text("Random-weight stand-in for latent-consistency/lcm-lora-sdv1-5 (harness tests).\n")


def _build_taesd(out: Path) -> None:
    """A random-weight AutoencoderTiny with TAESD's configuration (diffusers' defaults are TAESD's)."""
    import torch
    from diffusers import AutoencoderTiny

    with torch.random.fork_rng():
        torch.manual_seed(2)
        AutoencoderTiny().save_pretrained(out)
    (out / "STANDIN.md").write_text("Random-weight stand-in for madebyollin/taesd (harness tests).\n")
