"""CLIP as the quality run's learned judge (`transformers`' CLIPModel, nothing written by hand but the cosine).

Two figures per image, both from one CLIP model's embeddings:
- CLIP score: how well the image agrees with its prompt, 100 x max(cosine(image, text), 0) (the definition of
  torchmetrics' `CLIPScore`, Hessel et al. 2021, without its extra dependency);
- CLIP image similarity: cosine of the row's and the baseline's image embeddings, i.e. whether the row drew the
  same picture, tolerant of the pixel drift that PSNR and SSIM punish.

The judge is `openai/clip-vit-base-patch32` from the Hub (what the Space can reach). For a random-weight stand-in
model the judge is a random-weight stand-in too, laid out like the real repository and built locally: its figures
prove the machinery and mean nothing, and every report says so."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from core.build_cache import BuildCache

log = logging.getLogger(__name__)

CLIP_JUDGE = "openai/clip-vit-base-patch32"
JUDGE_STANDIN_REVISION = "clip-judge-standin-v1"


class ClipJudge:
    """One CLIP model, its tokenizer and image processor, on the CPU in fp32."""

    def __init__(self, path: str | Path, name: str, standin: bool):
        import torch
        from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

        self.name, self.standin = name, standin
        self.model = CLIPModel.from_pretrained(path, torch_dtype=torch.float32).eval()
        self.tokenizer = CLIPTokenizer.from_pretrained(path)
        self.processor = CLIPImageProcessor.from_pretrained(path)

    @classmethod
    def for_model(cls, standin_name: str | None, cache_dir: Path, source: str = CLIP_JUDGE) -> ClipJudge:
        """The judge for a model: the Hub's CLIP for real weights; for the stand-in `standin_name`, a stand-in CLIP
        of the matching size (`tiny` small, `sd15-standin` shaped like ViT-B/32). A judge that cannot be reached
        stops the run with the reason: a quality report without its learned measure would be half a report."""
        if standin_name is not None:
            return cls(judge_standin_path(standin_name, cache_dir), f"random-weight stand-in of {source}", True)
        local = Path(source).expanduser()
        if local.is_dir():
            return cls(local, str(local), False)
        from huggingface_hub import snapshot_download

        try:
            path = snapshot_download(source, allow_patterns=["*.json", "*.txt", "*.safetensors"])
        except Exception as exc:
            raise RuntimeError(
                f"the quality run's judge {source!r} could not be loaded from the Hugging Face Hub "
                f"({type(exc).__name__}: {exc}); run it where the Hub is reachable, or pass --quality-judge DIR "
                "(a local copy of the repository)"
            ) from exc
        return cls(path, source, False)

    def _unit(self, features) -> np.ndarray:
        # transformers 5 returns a model output from get_*_features; 4.x a tensor: accept both
        tensor = getattr(features, "pooler_output", features)
        vectors = tensor.detach().float().numpy()
        return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)

    def text_embeddings(self, prompts: list[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        with torch.inference_mode():
            return self._unit(self.model.get_text_features(**tokens))

    def image_embeddings(self, images: list[np.ndarray]) -> np.ndarray:
        """Embeddings of float HWC images in [0, 1] (what every row returns), seen as 8-bit RGB like a visitor's."""
        import torch

        from core.images import to_uint8

        pixels = self.processor(images=[to_uint8(i) for i in images], return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            return self._unit(self.model.get_image_features(pixel_values=pixels))

    @staticmethod
    def clip_score(image_embedding: np.ndarray, text_embedding: np.ndarray) -> float:
        return float(100.0 * max(float(image_embedding @ text_embedding), 0.0))

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b)


def judge_standin_config(name: str) -> dict:
    """CLIPConfig arguments of the judge's stand-in for the model stand-in `name`."""
    if name == "tiny":
        text = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2)
        vision = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, patch_size=8)
        return dict(text_config=text, vision_config={**vision, "image_size": 224}, projection_dim=32)
    # openai/clip-vit-base-patch32's shape
    text = dict(hidden_size=512, intermediate_size=2048, num_attention_heads=8, num_hidden_layers=12)
    vision = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12)
    return dict(text_config=text, vision_config={**vision, "patch_size": 32, "image_size": 224}, projection_dim=512)


def judge_standin_path(name: str, cache_dir: Path) -> Path:
    """The judge's stand-in directory in the cache (config, safetensors, tokenizer, image processor), built once."""

    def build(out: Path) -> None:
        import torch
        from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

        from harness.models.clip_tokenizer import make_clip_tokenizer

        log.info("building the quality judge's %r stand-in (once)", name)
        tokenizer = make_clip_tokenizer()
        config = judge_standin_config(name)
        config["text_config"].update(
            vocab_size=49408,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        with torch.random.fork_rng():  # deterministic weights without touching the process's global RNG
            torch.manual_seed(0)
            model = CLIPModel(CLIPConfig(**config))
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        size = config["vision_config"]["image_size"]
        CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(out)
        (out / "STANDIN.md").write_text(
            f"Random-weight stand-in of {CLIP_JUDGE} for the {name!r} model stand-in, built locally by "
            "benchmarking/clip_judge.py. Its scores mean nothing.\n"
        )

    path, _hit = BuildCache.standins(cache_dir).get_or_build(f"{JUDGE_STANDIN_REVISION}-{name}", build)
    return path
