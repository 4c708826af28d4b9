"""Visitors served per hour by cluster mode with 1 and with 2 machines of this CPU's kind (`make benchmark-cluster`).

A real local Ray cluster on this one machine (`ray.cluster_utils.Cluster`, token authentication), each "machine" a
Ray node advertising this CPU's kind, the rows the `tiny` stand-in's baseline, the front
`harness.machines.cluster.ClusterSet` as the page uses it. For each machine count: one warm-up comparison per
machine, then `visitors` comparisons sent at once, timed from the first start to the last finish; a few passes. On
one 2-core machine this proves routing and overlap (two visitors' rows really run at once on two nodes), not speed:
the "machines" share the same cores.

    python -m benchmarking.cluster_visitors [--visitors 6] [--passes 3] [--out results/...json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from core.assets import REPO as ROOT

SETTINGS = {"model": "tiny", "backends": "baseline", "sizes": "128", "safety_checker": False}
CAVEAT = (
    "Every 'machine' is a Ray node on the same 2-core machine: this proves that a second machine takes a second "
    "visitor (routing, overlap), not what a second real machine gives; see results/README.md for that, on paper."
)


def served_per_hour(machines: int, visitors: int, passes: int, steps: int) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from core.cpu import this_cpu
    from core.request import GenerationRequest, latents_digest
    from harness.machines.cluster import ClusterSet, kind_resource
    from harness.machines.runs import Expected
    from harness.models.model_sources import resolve_model
    from harness.settings import Settings

    kind = this_cpu().kind()
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    local = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(machines):
        local.add_node(num_cpus=1, resources={kind_resource(kind): 1}, env_vars=env)
    model = resolve_model("tiny", Path(Settings().cache_dir))
    front = ClusterSet(local.address, [kind], SETTINGS, timeout_s=600).connect()
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and front.deployers[kind].serving != machines:
            time.sleep(0.5)
        if front.deployers[kind].serving != machines:
            raise SystemExit(f"cluster_visitors: {machines} machine(s) did not all get a replica within 300 s")

        def run_all(seeds: list[int]) -> tuple[float, list]:
            started = time.monotonic()
            runs = [
                front.start(GenerationRequest("a lighthouse at dusk", seed=s, steps=steps, height=128, width=128),
                            Expected(model.model_id, model.revision, latents_digest(s, 128, 128)), f"visitor-{s}")[0]
                for s in seeds
            ]  # fmt: skip
            while not all(r.state().done for r in runs):
                time.sleep(0.05)
            states = [r.state() for r in runs]
            bad = [s.detail for s in states if s.state != "done"]
            if bad:
                raise SystemExit(f"cluster_visitors: a comparison was not served: {bad}")
            return time.monotonic() - started, states

        run_all(list(range(machines)))  # warm-up: every replica's first comparison
        rounds = []
        for p in range(passes):
            elapsed, states = run_all([100 * (p + 1) + v for v in range(visitors)])
            rounds.append(
                {
                    "seconds": elapsed,
                    "visitors_per_hour": visitors / elapsed * 3600,
                    "nodes_used": len({s.health["node"] for s in states}),
                }
            )
    finally:
        front.close()
        ray.shutdown()
        local.shutdown()
    per_hour = [r["visitors_per_hour"] for r in rounds]
    return {
        "machines": machines,
        "visitors_per_hour_median": statistics.median(per_hour),
        "visitors_per_hour_range": [min(per_hour), max(per_hour)],
        "rounds": rounds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visitors", type=int, default=6, help="comparisons sent at once in each pass")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="denoising steps per comparison (tiny, 128x128)")
    parser.add_argument("--out", type=Path, default=None, help="the results file (default results/cluster-visitors-…)")
    args = parser.parse_args(argv)
    # Token authentication as in cluster mode; set before Ray is imported (it reads its configuration then).
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    from core.cpu import this_cpu

    cpu = this_cpu()
    cores = len(os.sched_getaffinity(0))
    results = [served_per_hour(n, args.visitors, args.passes, args.steps) for n in (1, 2)]
    report = {
        "mode": "cluster-visitors",  # not a latency table (harness.records.results skips files with a mode)
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cpu": cpu.model,
        "cpu_kind": cpu.slug(),
        "cores": cores,
        "model": "tiny (random-weight stand-in), baseline row, 128x128",
        "steps": args.steps,
        "visitors_per_pass": args.visitors,
        "caveat": CAVEAT,
        "results": results,
    }
    out = args.out or ROOT / "results" / f"cluster-visitors-tiny-{cpu.slug()}-{cores}cores.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    for r in results:
        low, high = r["visitors_per_hour_range"]
        used = sorted({x["nodes_used"] for x in r["rounds"]})
        print(f"{r['machines']} machine(s): {r['visitors_per_hour_median']:.0f} visitors/hour "
              f"({low:.0f}-{high:.0f} over {args.passes} passes), nodes used per pass: {used}")  # fmt: skip
    print(CAVEAT)
    print(f"written: {out}")


if __name__ == "__main__":
    main()
