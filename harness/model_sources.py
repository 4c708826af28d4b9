"""Where the weights come from: a Hub id, a local diffusers directory, or a locally built stand-in (a real
diffusers pipeline with random weights, built from configs as diffusers' own tests do, so every row loads it
through the path it uses for a real model)."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .build_cache import BuildCache

log = logging.getLogger(__name__)

STANDINS = ("tiny", "sd15-standin")
STANDIN_REVISION = "standin-v2"  # bump when a stand-in's config changes, so caches keyed on it are rebuilt
DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
ASSETS = Path(__file__).resolve().parent.parent / "assets"
ROOT_CHECKPOINTS = ("v1-5-pruned-emaonly.safetensors", "v1-5-pruned.safetensors")  # single-file, as on the hub
HUB_PROBE_TIMEOUT_S = 5.0  # how long we wait to learn the Hub is unreachable before falling back


@dataclass(frozen=True)
class ModelSource:
    """A local diffusers directory every backend loads from, and where it came from."""

    requested: str  # what the user asked for (CLI flag / env var)
    model_id: str  # hub id, local path or stand-in name actually loaded
    path: Path  # local diffusers directory (model_index.json inside)
    revision: str  # hub commit, STANDIN_REVISION, or "local-<content hash>"; part of every cache key
    standin: bool  # random weights: images are noise, latencies are real
    fallback_reason: str | None = None  # set when `requested` could not be loaded and we fell back to tiny


class ModelUnavailable(RuntimeError):
    """The requested model cannot be loaded (and strict mode forbids the fallback)."""


def resolve_model(requested: str, cache_dir: Path, strict: bool = False, progress=lambda _line: None) -> ModelSource:
    """Turn a model setting into a local directory, building a stand-in or downloading from the Hub.

    An unreachable, uncached Hub model falls back to `tiny` (with the reason recorded) unless `strict`.
    """
    if requested in STANDINS:
        progress(f"building or reading the {requested!r} stand-in")
        return _standin(requested, cache_dir)
    local = Path(requested).expanduser()
    if local.is_dir():
        if not (local / "model_index.json").is_file():
            raise ModelUnavailable(f"{local} is not a diffusers model directory (no model_index.json)")
        return ModelSource(requested, str(local), local.resolve(), local_revision(local), standin=False)
    try:
        path, revision = _from_hub(requested, progress)
    except Exception as exc:  # network, auth, missing repo: all mean "cannot load it here"
        reason = f"could not load {requested!r} from the Hugging Face Hub ({type(exc).__name__}: {exc})"
        if strict:
            raise ModelUnavailable(reason) from exc
        log.warning("%s; falling back to the 'tiny' stand-in", reason)
        progress("the Hub is unreachable: building or reading the 'tiny' stand-in")
        standin = _standin("tiny", cache_dir)
        return ModelSource(requested, standin.model_id, standin.path, standin.revision, True, reason)
    return ModelSource(requested, requested, path, revision, standin=False)


def local_revision(path: Path) -> str:
    """A revision for a local model directory, from its content: `model_index.json` and the names, sizes and
    modification times of its weight files. Changed weights at the same path get new IR, not the old one's."""
    import hashlib

    digest = hashlib.sha256((path / "model_index.json").read_bytes())
    for f in sorted(path.rglob("*")):
        if f.is_file() and f.suffix in (".safetensors", ".bin", ".json"):
            stat = f.stat()
            digest.update(f"{f.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return "local-" + digest.hexdigest()[:16]


def _from_hub(repo_id: str, progress=lambda _line: None) -> tuple[Path, str]:
    """Download (or find in the cache) what `from_pretrained` needs, chosen by diffusers itself: the component
    weights without fp16/non-EMA variants or root single-file checkpoints (SD-1.5: ~5.5 GB of its ~40 GB)."""
    from diffusers import DiffusionPipeline
    from huggingface_hub import HfApi

    try:  # cached already: no network at all
        path = DiffusionPipeline.download(repo_id, local_files_only=True)
    except Exception:
        # One quick metadata call tells us whether the Hub is reachable, instead of a time-out per file.
        info = HfApi().model_info(repo_id, timeout=HUB_PROBE_TIMEOUT_S)
        log.info("downloading %s at %s", repo_id, info.sha)
        with _reporting_download_size(repo_id, progress):
            path = DiffusionPipeline.download(repo_id, revision=info.sha)
    return Path(path), Path(path).name  # snapshot folders are named after the commit


@contextmanager
def _reporting_download_size(repo_id: str, progress):
    """Report every 2 s how much of `repo_id` is in the Hub cache (finished and partial files alike)."""
    import threading

    from huggingface_hub.constants import HF_HUB_CACHE

    blobs = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "blobs"
    done = threading.Event()

    def report():
        while not done.wait(2.0):
            size = sum(f.stat().st_size for f in blobs.glob("*") if f.is_file()) if blobs.is_dir() else 0
            progress(f"downloading {repo_id}: {size / 1e9:.2f} GB so far")

    thread = threading.Thread(target=report, name="download-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def component_weights_mb(path: Path, components=("unet", "vae", "text_encoder")) -> float:
    """Size of the weight files `from_pretrained` reads for these components (not variants, not single-file
    checkpoints beside them), in MB."""
    total = 0
    for component in components:
        for name in ("diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.bin",
                     "pytorch_model.bin"):  # fmt: skip
            weights = Path(path) / component / name
            if weights.is_file():
                total += weights.stat().st_size
                break
    return total / 2**20


# ---------------------------------------------------------------------------------------------- stand-ins


def _standin(name: str, cache_dir: Path) -> ModelSource:
    if name not in STANDINS:
        raise ValueError(f"unknown stand-in {name!r}; choose one of {', '.join(STANDINS)}")

    def build(out: Path) -> None:
        log.info("building the %r stand-in (once)", name)
        build_standin(name, out)

    path, _hit = BuildCache.standins(cache_dir).get_or_build(f"{name}-{STANDIN_REVISION}", build)
    return ModelSource(name, name, path, STANDIN_REVISION, standin=True)


def standin_configs(name: str) -> tuple[dict, dict, dict, dict]:
    """UNet2DConditionModel, AutoencoderKL, CLIPTextConfig and safety-checker CLIPConfig arguments of a stand-in."""
    if name == "tiny":
        # Shaped like diffusers' test components, but with a VAE that downsamples 8x like SD's, and
        # cross-attention at the highest resolution so that Token Merging has something to merge.
        unet_kw = dict(
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
        vae_kw = dict(
            block_out_channels=(8, 16, 16, 32),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=128,
        )
        text_kw = dict(
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=3,
            projection_dim=32,
        )
        checker_kw = dict(
            vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                               patch_size=8, image_size=32),
            projection_dim=768,  # the checker's concept embeddings are 768-wide whatever the tower
        )  # fmt: skip
    elif name == "sd15-standin":
        # The SD-1.5 architecture: 859.5 M-parameter UNet (diffusers' default UNet2DConditionModel is SD-1.x's,
        # with CLIP ViT-L/14's 768-wide cross-attention), CLIP ViT-L/14 text encoder, SD VAE.
        unet_kw = dict(sample_size=64, cross_attention_dim=768)
        vae_kw = dict(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=2,
            sample_size=512,
        )
        text_kw = dict(
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            projection_dim=768,
        )
        # SD-1.x's safety checker: a CLIP ViT-L/14 vision tower projected to 768.
        checker_kw = dict(
            vision_config=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24,
                               patch_size=14, image_size=224),
            projection_dim=768,
        )  # fmt: skip
    else:
        raise ValueError(f"unknown stand-in {name!r}; choose one of {', '.join(STANDINS)}")
    return unet_kw, vae_kw, text_kw, checker_kw


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
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=safety_checker,
        feature_extractor=feature_extractor,
    )
    pipe.save_pretrained(out)
    _add_the_real_repositorys_other_files(pipe, out)
    (out / "STANDIN.md").write_text(
        f"Random-weight stand-in {name!r} built locally by backends/models.py. Images are noise; latencies are real.\n"
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


def make_clip_tokenizer():
    """A CLIP tokenizer whose BPE vocabulary we learn locally from our own prompts (no Hub download).

    CLIP's byte-level BPE needs every byte symbol, alone and word-final ("x</w>"), so any input tokenizes;
    the merges are learned with the `tokenizers` trainer so prompts split into word pieces as with CLIP.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_symbols = list(bytes_to_unicode().values())
    corpus = (ASSETS / "calibration_prompts.txt").read_text().splitlines()
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Lowercase()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=2048, end_of_word_suffix="</w>", initial_alphabet=byte_symbols, show_progress=False
    )
    bpe.train_from_iterator(corpus, trainer)
    merges = [m.split(" ") if isinstance(m, str) else m for m in json.loads(bpe.to_str())["model"]["merges"]]

    vocab = byte_symbols + [s + "</w>" for s in byte_symbols]
    known = set(vocab)
    kept = []
    for a, b in merges:
        if a in known and b in known and a + b not in known:
            kept.append((a, b))
            known.add(a + b)
            vocab.append(a + b)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={tok: i for i, tok in enumerate(vocab)}, merges=kept, model_max_length=77)
