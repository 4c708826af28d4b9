"""The app's start-up as `app.py` does it (model resolved, rows loaded in order, then warmed up): when each row
serves and when it is warm, and the process's memory with every row loaded (`--startup`)."""

from __future__ import annotations

import threading
import time

from core.cpu import this_cpu
from core.files import write_json
from core.naming import model_slug
from core.probes import process_memory_mb
from harness.records.results import RESULTS
from harness.records.system_info import system_info
from harness.settings import build_comparison

from .report import provenance, recipe, startup_table


def startup(settings, args) -> dict:
    """Start-up as the app does it (model resolved, rows loaded in order, then warmed up), timed from the start
    of this function: when each row could serve a request and when it was warm."""

    start = time.perf_counter()
    comparison = build_comparison(settings)
    rows = comparison.rows
    seen: dict[str, dict] = {b: {} for b in rows.order}
    done = threading.Event()

    def poll():
        now = round(time.perf_counter() - start, 1)
        for b, status in rows.status.items():
            if status.state == "ready":
                seen[b].setdefault("serving_s", now)
            if b in rows.warm():
                seen[b].setdefault("warm_s", now)

    def watch():  # polls the statuses the app's cards show; 0.1 s resolution
        while not done.wait(0.1):
            poll()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    comparison.load_all()
    done.set()
    watcher.join()
    poll()
    total = round(time.perf_counter() - start, 1)
    table = []
    for b in rows.order:
        status = rows.status[b]
        row = {"backend": b, "state": status.state, **seen[b]}
        if status.load is not None:
            load, warmup = round(status.load.seconds, 1), round(status.warmup_s, 1)
            row.update(load_s=load, cache=status.load.cache, warmup_s=warmup)
        else:
            row["reason"] = status.detail
        table.append(row)
    ready = [r for r in table if r["state"] == "ready"]
    cores = settings.thread_count()
    info = system_info(cores, rows.order)
    report = {
        **provenance(args.argv),
        "mode": "startup",
        "recipe": recipe(rows.settings),
        "cores": cores,
        "system": info,
        "model": rows.model.model_id,
        "sizes": list(rows.settings.sizes),
        "all_serving_s": max((r.get("serving_s", total) for r in ready), default=None),
        "all_warm_s": total,
        "memory_gb": {k: round(v / 1024, 2) for k, v in process_memory_mb().items()},
        "rows": table,
    }
    allocator = info["allocator"].split()[0]  # jemalloc, tcmalloc, glibc
    name = f"{model_slug(rows.model.model_id)}-startup-{allocator}-{this_cpu().slug()}-{cores}cores.json"
    args.json = args.json or RESULTS / name
    write_json(args.json, report)
    print(startup_table(report))
    print(f"\nJSON: {args.json}")
    return report
