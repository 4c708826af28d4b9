"""What the process and its files measure: library versions, resident memory, loaded libraries, sizes on disk."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path


def package_versions(names) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def process_memory_mb() -> dict[str, float]:
    """This process's resident memory from /proc/self/status, in MB: total (rss), anonymous, file-backed (mapped
    files, e.g. model weights read with mmap) and the peak; empty where /proc is not available."""
    keys = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "VmHWM": "peak"}
    out = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in keys:
                    out[keys[name]] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def loaded_libraries() -> str:
    """The text of /proc/self/maps (which shared libraries this process has loaded), or '' elsewhere."""
    try:
        with open("/proc/self/maps") as f:
            return f.read()
    except OSError:
        return ""


def files_mb(path, suffixes: tuple[str, ...] = ()) -> float:
    """Size of the files under `path` (only those ending in one of `suffixes`, when given), in MB."""
    total = 0
    for root, _dirs, names in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in names if not suffixes or f.endswith(suffixes))
    return total / 2**20


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
