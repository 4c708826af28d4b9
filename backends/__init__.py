"""The rows of the comparison. One file per backend; this registry is the only place that lists them.

Each entry is imported only when asked for, so a missing package (say, intel-extension-for-pytorch) makes only
its row unavailable. A row defined elsewhere (a test, a plug-in) is one more entry: "id": "module:Class".
"""

from __future__ import annotations

import importlib

from .base import Backend, LoadInfo

# id -> "module:Class", in the order the rows are shown (the reference row first: every ratio is against it)
REGISTRY: dict[str, str] = {
    "baseline": "backends.baseline:BaselinePyTorch",
    "ipex-bf16": "backends.ipex_bf16:IpexBf16",
    "pytorch-bf16": "backends.pytorch_bf16:PyTorchBf16",
    "openvino-static": "backends.openvino_static:OpenVinoStatic",
    "int8-tome": "backends.int8_tome:Int8Tome",
    "lcm-taesd": "backends.lcm_taesd:LcmTaesd",  # different work (few steps, another decoder): labelled as such
}


def backend_ids() -> tuple[str, ...]:
    """Every registered row id, in display order."""
    return tuple(REGISTRY)


def backend_class(backend_id: str) -> type[Backend]:
    """The class of a registered row (imports its module, which imports nothing heavy at the top)."""
    if backend_id not in REGISTRY:
        raise ValueError(f"unknown backend {backend_id!r}; choose from {', '.join(REGISTRY)}")
    module_name, class_name = REGISTRY[backend_id].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def is_reference(backend_id: str) -> bool:
    """Whether the row is the one every speed-up and fidelity figure is measured against (`reference = True`)."""
    return getattr(backend_class(backend_id), "reference", False)


def create_backend(backend_id: str) -> Backend:
    return backend_class(backend_id)()


__all__ = ["Backend", "LoadInfo", "backend_class", "backend_ids", "create_backend", "is_reference"]
