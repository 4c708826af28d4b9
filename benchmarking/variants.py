"""The source blog's system-level settings as measured variants: the benchmark re-run in child processes started
through scripts/runtime-env.sh (jemalloc on every row, jemalloc + Intel OpenMP on the PyTorch rows)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from backends import backend_class

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
RUNTIME_ENV = REPO / "scripts" / "runtime-env.sh"  # the launcher's environment
BENCHMARK = REPO / "benchmark.py"


def system_variants(argv: list[str], args, order: list[str]) -> list[dict]:
    """Re-run this benchmark in child processes under the blog's system-level settings, each child started
    through scripts/runtime-env.sh: the allocator and OpenMP environment the app's launcher applies."""
    n = len(os.sched_getaffinity(0))
    iomp = Path(sys.prefix) / "lib" / "libiomp5.so"
    torch_rows = [b for b in order if backend_class(b).framework == "pytorch"]
    # SBS_JEMALLOC=1: Debian's jemalloc, whose path runtime-env.sh holds; every row, as the Docker image runs the app
    variants = {"jemalloc": ({"SBS_JEMALLOC": "1"}, order)}
    if iomp.exists() and torch_rows:
        # PyTorch rows only, as the blog tuned them: Intel OpenMP replaces PyTorch's OpenMP runtime.
        variants["jemalloc + Intel OpenMP"] = ({"SBS_JEMALLOC": "1", "SBS_IOMP": str(iomp)}, torch_rows)
    results = []
    for name, (env, variant_rows) in variants.items():
        out = args.json.with_suffix(f".{name.replace(' ', '').replace('+', '-')}.json")
        child = [a for a in argv if a != "--system-variants"]
        child += ["--json", str(out), "--variant-name", name, "--throughput", "0", "--backends", ",".join(variant_rows)]
        launch = f'source "{RUNTIME_ENV}" && exec "$0" "$@"'
        # Pinned to the cores we use, and the same thread count as the default run: Intel OpenMP narrows the
        # main thread's affinity when it loads, so a child must not derive its thread count from its own.
        cmd = ["taskset", "-c", f"0-{n - 1}", "bash", "-c", launch, sys.executable, str(BENCHMARK), *child]
        log.info("variant %s: %s", name, " ".join(cmd))
        threads = str(args.threads or n)
        env = {**os.environ, **env, "PYTHON": sys.executable, "SBS_THREADS": threads, "OMP_NUM_THREADS": threads}
        done = subprocess.run(cmd, env=env, check=False)
        if done.returncode != 0:
            results.append({"variant": name, "status": "error", "reason": f"exit code {done.returncode}"})
            continue
        report = json.loads(out.read_text())
        if report["system"]["allocator"] != "jemalloc":  # the child says what it ran with, not what was asked
            reason = "jemalloc was not loaded (apt libjemalloc2; scripts/install.sh installs it as root)"
            results.append({"variant": name, "status": "unavailable", "reason": reason})
            continue
        results.append({"variant": name, "status": "ok", **report})
    return results
