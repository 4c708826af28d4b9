"""Cluster mode on a real local Ray cluster of several nodes on this one machine (`ray.cluster_utils.Cluster`): each
node advertises one CPU kind and presents it with the played-kind machinery of `core/cpu.py` (its SBS_CPU_KIND), the
rows are the `tiny` stand-in's baseline, the cluster has token authentication, and the front is `ClusterSet` as the
page uses it."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.cpu import KINDS, this_cpu
from core.request import GenerationRequest, latents_digest
from harness.machines.cluster import NO_MACHINE_S, ClusterSet, kind_resource
from harness.machines.runs import Expected
from harness.models.model_sources import resolve_model
from harness.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PRESENTABLE = this_cpu().kinds_presentable()
HIGH, LOW = PRESENTABLE[-1], PRESENTABLE[0]  # the machine's own kind and its least (the same on an AVX2-only EPYC)
OTHERS = [k for k in KINDS if k not in (HIGH, LOW)]
LIAR, MISSING = OTHERS[0], OTHERS[-1]  # a node advertising LIAR plays LOW; no node advertises MISSING
TOKEN = "0123456789abcdef" * 4
# 384 for the long call a machine is unplugged in (a few seconds of the tiny model on one thread)
SETTINGS = {"model": "tiny", "backends": "baseline", "sizes": "128,384", "safety_checker": False}


def inputs(seed: int, steps: int = 30, side: int = 128) -> GenerationRequest:
    return GenerationRequest("a lighthouse at dusk", "", seed, steps, 7.5, side, side, "dpm++")


def node_env(kind: str) -> dict:
    return {"SBS_CPU_KIND": kind, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cluster():
    """A head without rows, a node of HIGH and one of LOW (one node of both on an AVX2-only machine), a node that
    advertises LIAR while playing LOW, and the front connected with the token."""
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN)  # before Ray reads its configuration (at import)
    import ray
    from ray.cluster_utils import Cluster

    local = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    nodes = {HIGH: [local.add_node(num_cpus=1, resources={kind_resource(HIGH): 1}, env_vars=node_env(HIGH))]}
    if LOW != HIGH:
        nodes[LOW] = [local.add_node(num_cpus=1, resources={kind_resource(LOW): 1}, env_vars=node_env(LOW))]
    local.add_node(num_cpus=1, resources={kind_resource(LIAR): 1}, env_vars=node_env(LOW))
    cache = Path(Settings().cache_dir)
    model = resolve_model("tiny", cache)
    kinds = list(dict.fromkeys([HIGH, LOW, LIAR, MISSING]))
    front = ClusterSet(local.address, kinds, SETTINGS, timeout_s=180).connect()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not all(front.deployers[k].ready.is_set() for k in (HIGH, LOW)):
        time.sleep(0.5)
    try:
        yield local, nodes, front, model
    finally:
        front.close()
        ray.shutdown()
        local.shutdown()
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def compare(front, model, seed: int, visitor: str = "v", steps: int = 30, wait_s: float = 240):
    expected = Expected(model.model_id, model.revision, latents_digest(seed, 128, 128))
    runs = front.start(inputs(seed, steps), expected, visitor)
    return runs, finish(runs, wait_s)


def finish(runs, wait_s: float = 240) -> dict:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not all(r.state().done for r in runs):
        time.sleep(0.1)
    return {r.deployer.kind: r.state() for r in runs}


def node_ids(nodes) -> set[str]:
    return {n.node_id for n in nodes}


def timed(state) -> list[tuple[float, float]]:
    return [(r["started_at"], r["finished_at"]) for r in state.rows if r.get("status") == "ok"]


def test_each_kind_runs_on_a_machine_of_its_kind_from_the_same_noise(cluster):
    local, nodes, front, model = cluster
    _, states = compare(front, model, seed=11)
    for kind in dict.fromkeys([HIGH, LOW]):
        state = states[kind]
        assert state.state == "done", (kind, state.state, state.detail)
        assert state.health["kind"] == kind and state.health["node"] in node_ids(nodes[kind])
        assert [(r["backend"], r["status"]) for r in state.rows] == [("baseline", "ok")]
        assert Path(state.images["baseline"]).read_bytes()[:4] == b"\x89PNG"
        assert state.latents_sha256 == latents_digest(11, 128, 128)  # the same float64 draw on every node


def test_a_node_advertising_a_kind_its_cpu_lacks_is_refused(cluster):
    _local, _nodes, front, model = cluster
    _, states = compare(front, model, seed=12)
    state = states[LIAR]
    assert state.state == "refused" and not state.rows and not state.images, (state.state, state.detail)
    assert f"advertises the CPU kind {LIAR}" in state.detail and f"is {LOW}" in state.detail, state.detail


def test_a_kind_without_a_machine_is_said_within_the_stated_time(cluster):
    _local, _nodes, front, model = cluster
    runs, states = compare(front, model, seed=13)
    state = states[MISSING]
    assert (state.state, state.detail) == ("unreachable", "no machine of this kind in the cluster")
    assert state.finished - state.started <= NO_MACHINE_S
    assert front.healths()[f"Cluster: {MISSING} machines"] == "no machine of this kind in the cluster"


def test_a_kept_comparison_holds_every_kind_and_the_kiosk_races_each(cluster, cache_dir, tmp_path):
    """An example computed on a page with a cluster keeps each kind's rows beside this machine's (cheap fake rows
    here), and the booth screen races each kind's line at its own measured times; a kind that gave none is named."""
    from conftest import fake_comparison

    import ui.context
    import ui.kiosk
    from harness.machines.runs import KeptAlongside
    from harness.records.examples import compute_example
    from harness.records.showcase import Showcase

    _local, _nodes, front, model = cluster
    comparison = fake_comparison(model, cache_dir, backends=["baseline"])
    page = ui.context.make_page(comparison, Showcase(tmp_path / "showcase", "test machine"), Settings())
    page.machines = front
    run = compute_example(page.comparison, page.showcase, 0, KeptAlongside(front, model))
    groups = {g.label: g for g in run.groups}
    assert list(groups) == front.labels()
    for kind in dict.fromkeys([HIGH, LOW]):
        group = groups[f"Cluster: {kind} machines"]
        assert group.state == "done" and [r["backend"] for r in group.rows] == ["baseline"], group
        assert (
            group.images["baseline"].read_bytes()[:4] == b"\x89PNG"
            and page.showcase.root in group.images["baseline"].parents
        )
    assert groups[f"Cluster: {MISSING} machines"].state == "unreachable"
    shown = ui.kiosk.next_comparison(page)
    raced = {g["label"]: [r["latency_s"] for r in g["rows"]] for g in shown["groups"]}
    assert raced == {label: [r["latency_s"] for r in g.rows] for label, g in groups.items() if g.rows}
    assert f"Cluster: {MISSING} machines: unreachable" in shown["absent"]


def test_rows_on_one_machine_never_overlap_visitors_queue(cluster):
    """One visitor more than the LOW kind has machines, all at once: some wait (queued), then all are served, and
    the timed sections of any two on one machine are apart."""
    _local, nodes, front, model = cluster
    visitors = [front.start(inputs(21 + i), expected(model, 21 + i), f"v{i}") for i in range(len(nodes[LOW]) + 1)]
    runs = [r for runs in visitors for r in runs]
    seen = set()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not all(r.state().done for r in runs):
        seen |= {r.state().state for r in runs if r.deployer.kind == LOW}
        time.sleep(0.02)
    states = [finish(runs)[LOW] for runs in visitors]
    assert all(s.state == "done" for s in states), [s.detail for s in states]
    by_node: dict[str, list] = {}
    for state in states:
        by_node.setdefault(state.health["node"], []).extend(timed(state))
    shared = [sorted(spans) for spans in by_node.values() if len(spans) > 1]
    assert shared, "no machine served two visitors"
    for spans in shared:
        assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans)), spans
    assert "queued" in seen


def expected(model, seed: int, side: int = 128) -> Expected:
    return Expected(model.model_id, model.revision, latents_digest(seed, side, side))


def test_a_machine_added_serves_a_second_visitor_at_once_and_one_killed_mid_call_costs_only_its_row(cluster):
    """The operator adds a second HIGH machine while the front runs: two visitors are then served at once, on two
    machines. One of them is unplugged mid-call: that visitor's HIGH rows are lost ("the machine left"), the other
    kinds' are done, and the next comparison is served by the machine that remains."""
    local, nodes, front, model = cluster
    nodes[HIGH].append(local.add_node(num_cpus=1, resources={kind_resource(HIGH): 1}, env_vars=node_env(HIGH)))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and front.deployers[HIGH].serving != 2:
        time.sleep(0.5)
    assert front.deployers[HIGH].serving == 2, "the added machine was not given a replica"
    assert front.visitors_at_once() >= 2
    first, second = front.start(inputs(31), expected(model, 31), "a"), front.start(inputs(32), expected(model, 32), "b")
    a, b = finish(first)[HIGH], finish(second)[HIGH]
    assert a.state == b.state == "done", (a.detail, b.detail)
    assert a.health["node"] != b.health["node"]  # two machines, one visitor each
    (a0, a1), (b0, b1) = (a.answered, a.finished), (b.answered, b.finished)
    assert a0 < b1 and b0 < a1, "the two visitors were served one after the other"

    runs = front.start(inputs(33, steps=50, side=384), expected(model, 33, side=384), "c")
    high = next(r for r in runs if r.deployer.kind == HIGH)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and high.state().state != "running":
        time.sleep(0.01)
    assert high.state().state == "running", high.state()
    victim = next(n for n in nodes[HIGH] if n.node_id == high.state().health["node"])
    local.remove_node(victim, allow_graceful=False)  # unplugged
    unplugged = time.time()
    nodes[HIGH].remove(victim)
    states = finish(runs)
    assert states[HIGH].state == "lost" and "the machine left" in states[HIGH].detail, states[HIGH].detail
    print(f"unplugged: said lost {states[HIGH].finished - unplugged:.1f} s later")
    if LOW != HIGH:
        assert states[LOW].state == "done"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and front.deployers[HIGH].serving != 1:
        time.sleep(0.5)
    _, states = compare(front, model, seed=34)
    assert states[HIGH].state == "done" and states[HIGH].health["node"] == nodes[HIGH][0].node_id, states[HIGH].detail


def test_the_cluster_refuses_a_client_without_the_token(cluster):
    local, _nodes, _front, _model = cluster
    probe = f"import ray; ray.init(address={local.address!r}); print(len(ray.nodes()))"

    def join(token: str | None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        if token is not None:
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)

    assert join(TOKEN).returncode == 0  # the probe itself works
    for token in (None, "f" * 64):
        refused = join(token)
        assert refused.returncode != 0, refused.stdout
        assert "auth" in (refused.stdout + refused.stderr).lower()


def test_cluster_mode_without_ray_says_how_to_install_it(monkeypatch):
    from harness.machines import cluster

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(SystemExit, match="make setup"):
        cluster.import_ray()


def test_the_one_process_app_never_imports_ray():
    probe = "import sys, app, benchmark, ui.layout, harness.machines.cluster; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-2000:]
