"""Settings shared by the app and the benchmark: one dataclass, read from env vars, overridable by CLI flags."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from pathlib import Path

from backends import BACKEND_IDS
from backends.base import LoadSettings

from .model_sources import DEFAULT_MODEL


@dataclass
class Settings:
    model: str = DEFAULT_MODEL  # hub id, local diffusers dir, "tiny" or "sd15-standin"
    backends: str = ",".join(BACKEND_IDS)  # comma-separated row ids, shown in this order
    sizes: str = ""  # comma-separated square sizes; "" = 512 for real models and sd15-standin, 128 for tiny
    strict: bool = False  # error instead of falling back to "tiny" when the model cannot be loaded
    cache_dir: str = str(Path.home() / ".cache" / "sd-side-by-side")  # stand-ins and exported IR
    threads: int = 0  # intra-op threads for every row; 0 = the CPUs this process may use
    tome_ratio: float = 0.5  # Token Merging ratio of the int8-tome row
    int8_mode: str = "full"  # "full" (int8 activations+weights) or "hybrid" (quality-first)
    tome_max_downsample: int = 1  # Token Merging at the highest resolution only (1) or also one level down (2)
    int8_vae: bool = True  # quantize the int8-tome row's VAE decoder too (calibrated on its own latents)
    int8_source: str = ""  # prebuilt OpenVINO INT8/ToMe pipeline (dir or hub id) instead of building one
    calibration_prompts: int = 4  # prompts used to calibrate int8 (small: calibration is slow)
    steps: int = 20  # default steps; also used for warm-up and calibration
    safety_checker: bool = True  # apply the model's safety checker (when it has one) to every row
    port: int = 7860  # app only
    queue_size: int = 16  # app only: visitors beyond this are told the queue is full

    @classmethod
    def from_env(cls, environ=os.environ) -> Settings:
        """SBS_MODEL, SBS_BACKENDS, ... (upper-case field names with the SBS_ prefix)."""
        values = {}
        for f in fields(cls):
            raw = environ.get(f"SBS_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(raw, type(getattr(cls, f.name)))
        return cls(**values)

    @classmethod
    def parser(cls, description: str) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(description=description)
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            kind = type(getattr(cls, f.name))
            if kind is bool:
                parser.add_argument(flag, type=lambda v: _parse(v, bool), metavar="{true,false}")
            else:
                parser.add_argument(flag, type=kind)
        return parser

    def updated(self, args: argparse.Namespace) -> Settings:
        overrides = {k: v for k, v in vars(args).items() if v is not None and hasattr(self, k)}
        return Settings(**{**self.__dict__, **overrides})

    def backend_ids(self) -> list[str]:
        return [b.strip() for b in self.backends.split(",") if b.strip()]

    def size_list(self, standin_name: str | None) -> tuple[int, ...]:
        if self.sizes:
            return tuple(int(s) for s in self.sizes.split(","))
        return (128,) if standin_name == "tiny" else (512,)

    def load_settings(self, sizes: tuple[int, ...]) -> LoadSettings:
        return LoadSettings(
            sizes=sizes,
            threads=self.thread_count(),
            cache_dir=Path(self.cache_dir),
            tome_ratio=self.tome_ratio,
            int8_mode=self.int8_mode,
            tome_max_downsample=self.tome_max_downsample,
            int8_vae=self.int8_vae,
            int8_source=self.int8_source or None,
            calibration_prompts=self.calibration_prompts,
            steps=self.steps,
        )

    def thread_count(self) -> int:
        return self.threads or len(os.sched_getaffinity(0))


def _parse(raw: str, kind: type):
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    return kind(raw)


def build_comparison(settings: Settings):
    """The (not yet loaded) comparison the settings describe. The model is found or downloaded by its
    `load_all`, so an app can serve its page while a first download runs."""
    import torch

    from .comparison import Comparison
    from .model_sources import STANDINS, resolve_model
    from .rows import RowSet

    torch.set_num_threads(settings.thread_count())  # every torch row runs on the same threads as OpenVINO's

    def resolve(progress):
        return resolve_model(settings.model, Path(settings.cache_dir), strict=settings.strict, progress=progress)

    resolve.model_name = settings.model
    sizes = settings.size_list(settings.model if settings.model in STANDINS else None)
    rows = RowSet(None, settings.backend_ids(), settings.load_settings(sizes), resolve=resolve)
    return Comparison(rows, safety_checker=settings.safety_checker)
