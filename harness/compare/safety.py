"""The model's own safety checker, applied to every row's image outside the timed section: out of every row's
pipeline so that the rows' latencies hold the same work, on by default so that a public demo stays safe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.images import to_uint8


class SafetyFilter:
    def __init__(self, model_path: Path):
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
        from transformers import CLIPImageProcessor

        self.checker = StableDiffusionSafetyChecker.from_pretrained(model_path / "safety_checker").eval()
        self.processor = CLIPImageProcessor.from_pretrained(model_path / "feature_extractor")

    @staticmethod
    def available(model_path: Path) -> bool:
        """True when the model ships a safety checker (SD-1.x hub models do; our stand-ins do not)."""
        try:
            index = json.loads((Path(model_path) / "model_index.json").read_text())
        except (OSError, ValueError):
            return False
        return bool(index.get("safety_checker") and index["safety_checker"][0])

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        """(image, flagged): a flagged image comes back black, as diffusers does it."""
        import torch

        pixels = self.processor(images=[to_uint8(image)], return_tensors="pt")
        with torch.no_grad():
            images, flagged = self.checker(clip_input=pixels.pixel_values, images=image[None].copy())
        return np.asarray(images[0], dtype=np.float32), bool(flagged[0])
