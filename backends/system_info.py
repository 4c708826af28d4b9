"""What this is running on, read from the machine itself: the app's System panel and the benchmark's header."""

from __future__ import annotations

import os
import platform
from importlib import metadata

LIBRARIES = (
    "torch",
    "intel-extension-for-pytorch",
    "openvino",
    "optimum-intel",
    "nncf",
    "diffusers",
    "transformers",
    "gradio",
)
ISA_FLAGS = ("amx_bf16", "amx_int8", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx2")


def package_versions(names) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return set(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:
        return set()


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


def _loaded_libraries() -> str:
    try:
        with open("/proc/self/maps") as f:
            return f.read()
    except OSError:
        return ""


def system_info(threads: int | None = None) -> dict:
    maps = _loaded_libraries()
    flags = cpu_flags()
    allocator = next(
        (name for lib, name in (("libjemalloc", "jemalloc"), ("libtcmalloc", "tcmalloc")) if lib in maps),
        "glibc malloc",
    )
    openmp = [
        name
        for lib, name in (("libiomp5", "Intel OpenMP (libiomp5)"), ("libgomp", "GNU OpenMP (libgomp)"))
        if lib in maps
    ]
    versions = package_versions(LIBRARIES)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "cpu": cpu_model(),
        "logical_cpus_usable": usable,
        "threads_used": threads,
        "isa": {flag: flag in flags for flag in ISA_FLAGS},
        "allocator": allocator,
        "malloc_conf": os.environ.get("MALLOC_CONF", ""),
        "openmp": openmp or ["none loaded yet"],
        "env": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "KMP_AFFINITY", "KMP_BLOCKTIME", "LD_PRELOAD")
            if k in os.environ
        },
        "python": platform.python_version(),
        "libraries": versions,
    }
