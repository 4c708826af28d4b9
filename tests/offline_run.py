"""The app's start on a model found only in the Hugging Face cache, for tests/test_offline.py: run as a script by a
caller that sets HF_HUB_OFFLINE=1 and HF_HUB_CACHE in the environment, as an operator at a booth without the
network would (libraries read the variable when they are imported, so only a process of its own sees what the
operator's environment does).

    python tests/offline_run.py MODEL_ID CACHE_DIR OUT_JSON [ROWS]   (ROWS: comma-separated row ids; default all)

The rows load (building their IR into CACHE_DIR) and one comparison runs; OUT_JSON gets each row's status and result."""

from __future__ import annotations

import json  # noqa: I001
import sys
from pathlib import Path

import core  # noqa: F401  (first: a played kind caps the engines before torch is imported)


def main(model_id: str, cache_dir: str, out: Path, rows: str = "") -> None:
    from core.request import GenerationRequest
    from harness.settings import Settings, build_comparison

    settings = Settings(model=model_id, strict=True, sizes="128", cache_dir=cache_dir, threads=2, calibration_prompts=2)
    if rows:
        settings.backends = rows
    comparison = build_comparison(settings)
    comparison.load_all()
    rows = comparison.rows
    request = GenerationRequest("sailing ship in storm by Rembrandt", seed=42, steps=4, height=128, width=128)
    results = list(comparison.run(request)) if rows.ready() else []
    report = {
        "model": {"id": rows.model.model_id, "revision": rows.model.revision, "standin": rows.model.standin},
        "status": {b: rows.status[b].describe() for b in rows.order},
        "runs_here": {b: rows.runs_here(b) for b in rows.order},
        "results": {r.backend: {"status": r.status, "message": r.message} for r in results},
    }
    out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), *sys.argv[4:])
