"""What this process runs with, read from the machine itself (CPU, allocator, OpenMP, libraries, how each row runs
here): the app's System panel and the benchmark's header."""

from __future__ import annotations

import hashlib
import os
import platform
from functools import cache
from pathlib import Path

from backends import backend_class, backend_ids
from core.cpu import machine_cpu, this_cpu
from core.probes import loaded_libraries, package_versions

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


def rows_here(order: list[str] | tuple[str, ...] | None = None) -> dict[str, str]:
    """How each row runs on this CPU, or why it cannot: each row's own answer (`Backend.support`)."""
    cpu = this_cpu()
    out = {}
    for backend_id in order or backend_ids():
        support = backend_class(backend_id).support(cpu)
        out[backend_id] = support.how if support.runs else support.reason
    return out


def system_info(threads: int | None = None, order: list[str] | None = None) -> dict:
    cpu = this_cpu()
    maps = loaded_libraries()
    allocator = next(
        (name for lib, name in (("libjemalloc", "jemalloc"), ("libtcmalloc", "tcmalloc")) if lib in maps),
        "glibc malloc",
    )
    openmp = [
        name
        for lib, name in (("libiomp5", "Intel OpenMP (libiomp5)"), ("libgomp", "GNU OpenMP (libgomp)"))
        if lib in maps
    ]
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "cpu": cpu.model,
        "cpu_kind": cpu.slug(),
        "isa": cpu.isa(),
        "isa_summary": cpu.isa_line(),
        # SBS_CPU_KIND: the kind this process plays, and the machine's own instruction sets (its figures are the
        # machine's for the kernels no cap reaches: see core.cpu.engine_caps)
        "played_as": cpu.presented_as,
        "machine_isa_summary": machine_cpu().isa_line() if cpu.presented_as else cpu.isa_line(),
        "rows_here": rows_here(order),
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
        "libraries": package_versions(LIBRARIES),
    }


@cache
def machine_fingerprint() -> str:
    """A short hash that two instances on one machine share (its machine id and boot): a front page can say that
    a remote on its own machine disturbs its timings."""
    parts = []
    for path in ("/etc/machine-id", "/proc/sys/kernel/random/boot_id"):
        try:
            parts.append(Path(path).read_text().strip())
        except OSError:
            pass
    parts.append(platform.node())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]
