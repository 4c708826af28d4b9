"""`python -m harness.prepare --model ID --sizes 512`: find or download the model and build every row's IR into
the cache directory ahead of time (the Space image does it when it is built), so that a start only compiles."""

from __future__ import annotations

import logging
import sys
import time

from backends import create_backend

from .settings import Settings, build_comparison


def main(argv: list[str] | None = None) -> dict[str, str]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = Settings.parser(__doc__)
    settings = Settings.from_env().updated(parser.parse_args(sys.argv[1:] if argv is None else argv))
    rows = build_comparison(settings).rows
    model = rows.resolve()
    if model.fallback_reason:  # an image prepared with the stand-in instead of the model it names is no use
        raise SystemExit(f"prepare: {model.fallback_reason}")
    done = {}
    for backend_id in rows.order:
        backend = create_backend(backend_id)
        if not hasattr(backend, "prepare"):
            done[backend_id] = "nothing to build"
            continue
        start = time.perf_counter()
        result = backend.prepare(model, rows.settings, lambda line, b=backend_id: logging.getLogger(b).info(line))
        hits = [hit for _dir, hit in result.values()]
        took = time.perf_counter() - start
        done[backend_id] = "cache hit" if all(hits) else f"built in {took:.0f} s"
    for backend_id, what in done.items():
        print(f"prepare: {backend_id}: {what}")
    print(
        f"prepare: {model.model_id} at {model.revision}, sizes {list(rows.settings.sizes)}, cache {settings.cache_dir}"
    )
    return done


if __name__ == "__main__":
    main()
