"""The source blog's system-level settings as measured variants: the benchmark re-run in child processes started
through scripts/runtime-env.sh (jemalloc on every row, jemalloc + Intel OpenMP on the PyTorch rows)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from harness.system_info import JEMALLOC

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
RUNTIME_ENV = REPO / "scripts" / "runtime-env.sh"  # the launcher's environment
BENCHMARK = REPO / "benchmark.py"


def system_variants(argv: list[str], args) -> list[dict]:
    """Re-run this benchmark in child processes under the blog's system-level settings, each child started
    through scripts/runtime-env.sh: the allocator and OpenMP environment the app's launcher applies."""
    n = len(os.sched_getaffinity(0))
    iomp = Path(sys.prefix) / "lib" / "libiomp5.so"
    rows = args.backends.split(",") if args.backends else []
    torch_rows = [b for b in rows if b in ("baseline", "ipex-bf16")] or ["baseline", "ipex-bf16"]
    variants = {"jemalloc": ({"SBS_JEMALLOC": JEMALLOC}, rows)}  # every row, as the Docker image runs the app
    if iomp.exists():
        # PyTorch rows only, as the blog tuned them: Intel OpenMP replaces PyTorch's OpenMP runtime.
        variants["jemalloc + Intel OpenMP"] = ({"SBS_JEMALLOC": JEMALLOC, "SBS_IOMP": str(iomp)}, torch_rows)
    results = []
    for name, (env, variant_rows) in variants.items():
        if not Path(JEMALLOC).exists():
            results.append(
                {"variant": name, "status": "unavailable", "reason": f"{JEMALLOC} missing (apt libjemalloc2)"}
            )
            continue
        out = args.json.with_suffix(f".{name.replace(' ', '').replace('+', '-')}.json")
        child = [a for a in argv if a != "--system-variants"]
        child += ["--json", str(out), "--variant-name", name, "--throughput", "0"]
        if variant_rows:
            child += ["--backends", ",".join(variant_rows)]
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
        else:
            results.append({"variant": name, "status": "ok", **json.loads(out.read_text())})
    return results
