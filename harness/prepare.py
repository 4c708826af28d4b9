"""`python -m harness.prepare --model ID --sizes 512`: find or download the model and build every row's IR into
the cache directory ahead of time (the Space image does it when it is built), so that a start only compiles.

A row this CPU cannot run is skipped with its reason (exit 0): it builds at the first start on a CPU that runs it.
`--for-cpu-kinds avx2,avx512-vnni` also builds what those kinds need that this CPU would not (int8 IR without VNNI
needs NNCF's overflow fix): the builder's CPU is rarely the one the image will run on."""

from __future__ import annotations

import logging
import sys
import time

from backends import create_backend
from core.cpu import KINDS, kind_cpu, played_cpu, this_cpu
from harness.settings import Settings, build_comparison


def main(argv: list[str] | None = None) -> dict[str, str]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cpu = played_cpu()  # first: a kind the machine cannot present (SBS_CPU_KIND) stops here, before any build
    parser = Settings.parser(__doc__)
    parser.add_argument(
        "--for-cpu-kinds",
        default="",
        help=f"comma-separated CPU kinds ({', '.join(KINDS)}) whose builds to prepare besides this CPU's",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    settings = Settings.from_env().updated(args)
    kinds = [k.strip() for k in args.for_cpu_kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SystemExit(f"prepare: unknown CPU kind(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    rows = build_comparison(settings).rows
    model = rows.resolve()
    if model.fallback_reason:  # an image prepared with the stand-in instead of the model it names is no use
        raise SystemExit(f"prepare: {model.fallback_reason}")
    done = {}
    for backend_id in rows.order:
        why_not = rows.why_not_here(backend_id)
        if why_not:  # e.g. pytorch-bf16 on a builder without native bf16: it compiles at its first start
            done[backend_id] = f"skipped, cannot run here ({why_not}); it builds at its first start"
            continue
        backend = create_backend(backend_id)
        if not hasattr(backend, "prepare"):
            done[backend_id] = "nothing to build"
            continue
        start = time.perf_counter()
        progress = _changes_only(logging.getLogger(backend_id).info)
        results = [backend.prepare(model, each, progress) for each in _settings_for(backend, rows.settings, kinds)]
        hits = [hit for result in results for _dir, hit in result.values()]
        took = time.perf_counter() - start
        done[backend_id] = "cache hit" if all(hits) else f"built in {took:.0f} s"
    for backend_id, what in done.items():
        print(f"prepare: {backend_id}: {what}")
    played = f" (played as {cpu.presented_as})" if cpu.presented_as else ""
    sizes = list(rows.settings.sizes)
    also = f"; also for {', '.join(kinds)}" if kinds else ""
    print(f"prepare: {model.model_id} at {model.revision}, sizes {sizes}, cache {settings.cache_dir}{also}")
    print(f"prepare: on {cpu.model}{played}: {cpu.isa_line()}")
    return done


def _changes_only(log):
    """A progress callback that logs a message once: a build in a child reports its latest line every second (for a
    card's elapsed time), which in a build log would repeat the same line thousands of times."""
    last = []

    def progress(message: str) -> None:
        if not last or message != last[-1]:
            last[:] = [message]
            log(message)

    return progress


def _settings_for(backend, settings, kinds: list[str]) -> list:
    """The settings to build with: this CPU's, plus every different one the named kinds need (a row whose build
    depends on the CPU it will run on says so with `settings_for`; inductor's code is this CPU's alone)."""
    out = [settings]
    if hasattr(backend, "settings_for"):
        out = [backend.settings_for(settings, this_cpu())]
        for kind in kinds:
            for_kind = backend.settings_for(settings, kind_cpu(kind))
            if for_kind not in out:
                out.append(for_kind)
    return out


if __name__ == "__main__":
    main()
