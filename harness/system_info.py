"""What this process runs with, read from the machine itself (CPU, allocator, OpenMP, libraries, memory): the
app's System panel and the benchmark's header."""

from __future__ import annotations

import os
import platform
from importlib import metadata

from backends import BACKEND_IDS

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
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"  # Debian's libjemalloc2; the Dockerfile sets SBS_JEMALLOC to it


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


def _loaded_libraries() -> str:
    try:
        with open("/proc/self/maps") as f:
            return f.read()
    except OSError:
        return ""


def system_info(threads: int | None = None) -> dict:
    from .cpu import this_cpu

    cpu = this_cpu()
    maps = _loaded_libraries()
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
        "cpu": cpu.model,
        "cpu_kind": cpu.slug(),
        "isa": cpu.isa(),
        "isa_summary": cpu.isa_line(),
        "rows_here": {b: cpu.row(b).how if cpu.row(b).runs else cpu.row(b).reason for b in BACKEND_IDS},
        "logical_cpus_usable": usable,
        "threads_used": threads,
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
