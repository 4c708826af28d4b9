"""The rows of the comparison. One file per backend; this registry is the only place that lists them.

Each entry is imported lazily, so a missing package (say, intel-extension-for-pytorch) makes only its row
unavailable.
"""

from __future__ import annotations

import importlib

from .base import Backend, GenerationRequest, LoadInfo, LoadSettings

# id -> "module:Class", in the order the rows are shown (baseline first: every ratio is against it)
REGISTRY = {
    "baseline": "backends.baseline:BaselinePyTorch",
    "ipex-bf16": "backends.ipex_bf16:IpexBf16",
    "openvino-static": "backends.openvino_static:OpenVinoStatic",
    "int8-tome": "backends.int8_tome:Int8Tome",
}
BACKEND_IDS = tuple(REGISTRY)


def create_backend(backend_id: str) -> Backend:
    if backend_id not in REGISTRY:
        raise ValueError(f"unknown backend {backend_id!r}; choose from {', '.join(BACKEND_IDS)}")
    module_name, class_name = REGISTRY[backend_id].split(":")
    return getattr(importlib.import_module(module_name), class_name)()


__all__ = ["BACKEND_IDS", "Backend", "GenerationRequest", "LoadInfo", "LoadSettings", "create_backend"]
