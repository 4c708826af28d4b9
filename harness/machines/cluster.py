"""Rows on a Ray Serve cluster, each on a machine of its CPU kind (cluster mode: the front's `--cluster ADDRESS`).

One Serve application per CPU kind (`rows-<kind>`). Its deployment, `RowsOnKind`, wraps this app's own `Comparison`
(the registry's rows as they are, on identical inputs, one row at a time). Its replicas need the custom resource
`sbs-kind-<kind>`, which a machine advertises once, as the kind `core/cpu.py` finds it to be (`make cluster-worker`):
so a replica lands only on a machine of its kind, one per machine, and takes one comparison at a time
(`max_ongoing_requests=1`): rows on one machine never overlap. A replica checks its machine at start and refuses to
serve a kind it is not (`WrongKind`): a machine that advertises a kind it lacks never produces a figure.

The front counts the machines of each kind (`ray.nodes()`) every few seconds and asks Serve for that many replicas:
a machine that joins takes work without a restart, one that leaves is dropped, and Serve replaces a replica that
died where a machine of its kind remains. For each comparison the front calls every kind at once through a
`DeploymentHandle`, in a `ClusterRun` per kind: a `MachineRun`, as a remote instance's is (`harness.machines.runs`),
so the page and the figures JSON show both alike.

Ray is imported here only, and only in cluster mode: `make demo` never loads it.
"""

from __future__ import annotations

import io
import logging
import re
import secrets
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

from core.cpu import KINDS, this_cpu
from core.request import GenerationRequest
from harness.api import health
from harness.machines.remotes import incomparable
from harness.machines.runs import Expected, MachineRun, RunState

log = logging.getLogger(__name__)

NAMESPACE = "sd-side-by-side"
WATCH_S = 2.0  # how often the front counts the machines of each kind
NO_MACHINE_S = 5.0  # a kind without a machine is said so within this (two counts of the machines, and then some)
HEALTH_TIMEOUT_S = 10.0
NODE_GONE_S = 30.0  # how long the front waits for the cluster to say whether a silent replica's machine left
REFUSAL = "refusing to serve: "  # starts a `WrongKind`'s words, found again in Serve's status message
INSTALL_HINT = "cluster mode needs Ray Serve: `make setup` (ray[serve]==2.60.0 is in requirements.txt)"


def kind_resource(kind: str) -> str:
    """The custom resource a machine of `kind` advertises (one unit): `ray start --resources`."""
    return f"sbs-kind-{kind}"


def app_name(kind: str) -> str:
    return f"rows-{kind}"


def import_ray():
    """Ray and Ray Serve, or a SystemExit saying how to install them."""
    try:
        import ray
        from ray import serve
    except ImportError:
        raise SystemExit(INSTALL_HINT) from None
    return ray, serve


class WrongKind(RuntimeError):
    """A machine that advertises a CPU kind it is not."""


class RowsOnKind:
    """The rows of this app on one machine of one CPU kind: a Ray Serve replica (wrapped by `deploy_kind`).

    `compare(request)` streams one comparison: first what ran it (`health`: node, CPU, kind, model) and when it
    started, then each row's figures and PNG as the row finishes, the timed sections in wall-clock time."""

    def __init__(self, kind: str, settings: dict):
        import ray

        from harness.settings import Settings, build_comparison

        try:
            cpu = this_cpu()  # as the machine presents itself (its SBS_CPU_KIND, when it plays a lesser kind)
        except ValueError as exc:
            raise WrongKind(f"{REFUSAL}{exc}") from None
        if cpu.kind() != kind:
            raise WrongKind(
                f"{REFUSAL}this machine advertises the CPU kind {kind}, but its CPU ({cpu.model}"
                + (f", played as {cpu.presented_as}" if cpu.presented_as else "")
                + f") is {cpu.kind() or 'below AVX2'}: its figures would not be {kind}'s"
            )
        self.kind = kind
        self.comparison = build_comparison(Settings(**settings))
        self.comparison.load_all()
        context = ray.get_runtime_context()
        self.node = {"node": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(), "kind": kind}

    def health(self) -> dict:
        return {**health(self.comparison), **self.node}

    def compare(self, request: GenerationRequest):
        from PIL import Image

        from core.images import to_uint8
        from core.request import latents_digest

        request = self.comparison.validate(**asdict(request))  # the front validated it: the same rules, again here
        started = time.time()
        yield {
            "health": self.health(), "started_at": started,
            "latents_sha256": latents_digest(request.seed, request.height, request.width),
        }  # fmt: skip
        wall = time.time() - time.perf_counter()  # perf_counter -> wall clock, to compare machines' timings
        for row in self.comparison.run(request):
            figures = row.figures()
            if row.timed is not None:
                figures["started_at"], figures["finished_at"] = row.timed[0] + wall, row.timed[1] + wall
            png = None
            if row.image is not None:
                buffer = io.BytesIO()
                Image.fromarray(to_uint8(row.image)).save(buffer, format="PNG")
                png = buffer.getvalue()
            yield {"row": figures, "png": png}


class KindDeployer:
    """Keeps as many replicas of one kind's rows as the cluster has machines of that kind (a thread per kind)."""

    def __init__(self, kind: str, settings: dict):
        self.kind = kind
        self.settings = settings
        self.machines = 0  # machines of this kind in the cluster, at the latest count
        self.deployed = 0  # replicas asked for
        self.serving = 0  # replicas Serve has started (the latest `serve.run` came back)
        self.refused = ""  # why Serve could not start this kind's replicas ("" when it could)
        self.ready = threading.Event()

    def deploy(self, machines: int) -> None:
        ray, serve = import_ray()
        self.machines = machines
        if machines == self.deployed:
            return
        name = app_name(self.kind)
        if machines == 0:
            serve.delete(name, _blocking=False)
            self.deployed, self.serving, self.refused = 0, 0, ""
            self.ready.clear()
            return
        deployment = serve.deployment(
            RowsOnKind,
            name="RowsOnKind",
            num_replicas=machines,
            max_ongoing_requests=1,  # one comparison at a time per machine: its rows never overlap
            max_queued_requests=-1,
            max_replicas_per_node=1,
            max_constructor_retry_count=2,  # a machine of the wrong kind is refused, not tried forever
            ray_actor_options={"num_cpus": 0, "resources": {kind_resource(self.kind): 1}},
            health_check_period_s=5,
        )
        self.deployed = machines
        try:
            serve.run(deployment.bind(self.kind, self.settings), name=name, route_prefix=None)
            self.serving, self.refused = machines, ""
            self.ready.set()
        except Exception as exc:  # a replica's constructor failed: the machine's words, from Serve's status
            self.refused = refusal(serve, name) or f"its rows could not start ({type(exc).__name__})"
            log.warning("cluster: the %s rows were refused: %s", self.kind, self.refused)


def refusal(serve, name: str) -> str:
    """A failed deployment's reason in the replica's own words (`WrongKind`), from Serve's status."""
    try:
        status = serve.status().applications[name]
        messages = [status.message] + [d.message for d in status.deployments.values()]
    except Exception:
        return ""
    for message in messages:
        found = re.search(re.escape(REFUSAL) + r"(.*?)(?:\n|$)", message or "")
        if found:
            return found.group(1).strip()
    return next((m.strip().splitlines()[-1] for m in messages if m and m.strip()), "")


class ClusterRun(MachineRun):
    """One kind's part of one comparison, streamed from one of its machines through Serve."""

    def __init__(self, label: str, deployer: KindDeployer, request: GenerationRequest, expected: Expected,
                 image_dir: Path, timeout_s: float):  # fmt: skip
        super().__init__(label, expected, timeout_s, image_dir)
        self.deployer = deployer
        self.request = request
        self._stream = None

    def _interrupt(self) -> None:
        stream = self._stream
        if stream is not None:
            stream.cancel()

    def _call(self) -> None:
        ray, serve = import_ray()
        from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

        if not self._wait_for_machines():
            return
        handle = serve.get_deployment_handle("RowsOnKind", app_name=app_name(self.deployer.kind))
        self._stream = handle.options(stream=True).compare.remote(self.request)
        if self.stopped() is not None:  # stopped before the stream existed to be cancelled
            self._stream.cancel()
        node = None
        try:
            for item in self._stream:
                if "health" in item:
                    node = item["health"].get("node")
                    if not self._answered(item):
                        return
                else:
                    self._take(item)
        except Exception as exc:
            if self.stopped() is None and isinstance(exc, RayActorError | ActorUnavailableError):
                return self._lost(ray, node)
            if self.stopped() is None and isinstance(exc, RayTaskError):  # the rows raised: their own words
                return self._end(RunState.FAILED, str(exc.cause if exc.cause else exc).splitlines()[-1][:300])
            raise  # a stopped run ends with the stop's words (`MachineRun._run`)
        self._finish()

    def _wait_for_machines(self) -> bool:
        """Wait while this kind's machines load their rows; False (the run ended) when there is none, they were
        refused, or the run was stopped."""
        deployer = self.deployer
        while deployer.machines and not deployer.ready.is_set() and not deployer.refused:
            stop = self.stopped()
            if stop is not None:
                too_slow = f"its machines did not get their rows ready within {self.timeout_s:.0f} s"
                self._end(stop.state, too_slow if stop.state is RunState.TOO_SLOW else stop.detail)
                return False
            self._update(state=RunState.QUEUED, detail="a machine of this kind is loading its rows")
            time.sleep(0.2)
        if not deployer.machines:
            self._end(RunState.UNREACHABLE, "no machine of this kind in the cluster")
            return False
        if deployer.refused:
            self._end(RunState.REFUSED, deployer.refused)
            return False
        detail = f"waiting for one of its {deployer.machines} machine(s), busy with other visitors' comparisons"
        self._update(state=RunState.QUEUED, detail=detail, connect_s=None)
        return True

    def _answered(self, item: dict) -> bool:
        """The machine that took the comparison, and its starting noise; False (the run ended) when its model is not
        the page's."""
        self._update(state=RunState.RUNNING, detail="", health=item["health"], latents_sha256=item["latents_sha256"],
                     answered=time.time())  # fmt: skip
        problem = incomparable(item["health"], self.expected)
        if problem:
            self._stream.cancel()
            self._end(RunState.NOT_COMPARABLE, problem)
        return not problem

    def _lost(self, ray, node: str | None) -> None:
        """A replica that stopped answering: its machine left, or the replica crashed on a machine still there. The
        cluster declares a machine dead only after its missed health checks (Ray's defaults: about 15 s), so the
        front asks for up to NODE_GONE_S before it says the replica crashed."""
        self._update(detail="lost contact with its machine mid-run; asking the cluster whether the machine left")
        deadline = time.monotonic() + NODE_GONE_S
        while node is not None:
            if node not in {n["NodeID"] for n in ray.nodes() if n.get("Alive")}:
                return self._end(RunState.LOST, "lost, the machine left mid-run; the other rows are done")
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        return self._end(RunState.LOST, "its replica crashed mid-run; Serve restarts it, the next comparison retries")

    def _take(self, item: dict) -> None:
        """One more row: its figures, and its image written here."""
        figures = item.get("row") or {}
        state = self.state()
        images = dict(state.images)
        if item.get("png") and figures.get("backend"):
            path = self.image_dir / f"{secrets.token_hex(8)}.png"
            path.write_bytes(item["png"])
            images[figures["backend"]] = str(path)
        self._show([*state.rows, figures], images)


class ClusterSet:
    """The cluster's kinds (a `MachineGroup`): one page group per CPU kind, one `ClusterRun` per kind per comparison.

    `connect()` joins the cluster as a driver (`ray.init`, the token from RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH when
    the cluster has token authentication) and starts the watcher that keeps every kind's replicas."""

    def __init__(self, address: str, kinds: list[str], settings: dict, timeout_s: float = 600.0,
                 image_dir: Path | None = None, visitors: int = 4):  # fmt: skip
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise ValueError(
                f"unknown CPU kind(s) {', '.join(unknown)} in --cluster-kinds; choose from {', '.join(KINDS)}"
            )
        self.address = address
        self.kinds = kinds
        self.deployers = {kind: KindDeployer(kind, settings) for kind in kinds}
        self.timeout_s = timeout_s
        self.visitors = visitors  # comparisons the front runs at once (its --cluster-visitors)
        self.image_dir = Path(image_dir or tempfile.mkdtemp(prefix="sbs-cluster-images-"))
        self._stop = threading.Event()
        self._counted = threading.Event()
        self._threads: list[threading.Thread] = []  # the watcher and its deploying threads, for `close`

    @classmethod
    def from_settings(cls, settings) -> ClusterSet:
        kinds = [k.strip() for k in settings.cluster_kinds.split(",") if k.strip()] or list(KINDS)
        return cls(settings.cluster, kinds, settings.replica_settings(), settings.remote_timeout_s,
                   visitors=settings.cluster_visitors)  # fmt: skip

    def connect(self) -> ClusterSet:
        ray, serve = import_ray()
        if not ray.is_initialized():
            ray.init(address=self.address, namespace=NAMESPACE, logging_level=logging.WARNING,
                     log_to_driver=False)  # fmt: skip
        serve.start(proxy_location="Disabled")  # handles only: no HTTP port of Serve's faces anyone
        watcher = threading.Thread(target=self._watch, name="cluster watcher", daemon=True)
        self._threads.append(watcher)
        watcher.start()
        self._counted.wait(NO_MACHINE_S)
        return self

    def close(self, wait_s: float = 60.0) -> None:
        """Stop watching the cluster, and wait for a deployment under way (before the caller disconnects)."""
        self._stop.set()
        for thread in list(self._threads):
            thread.join(wait_s)

    def machines(self) -> dict[str, int]:
        """The live machines of each kind, as the cluster counts them now."""
        ray, _ = import_ray()
        counts = dict.fromkeys(self.kinds, 0)
        for node in ray.nodes():
            if node.get("Alive"):
                for kind in self.kinds:
                    counts[kind] += int(node.get("Resources", {}).get(kind_resource(kind), 0) >= 1)
        return counts

    def _watch(self) -> None:
        threads: dict[str, threading.Thread] = {}
        while not self._stop.is_set():
            try:
                counts = self.machines()
            except Exception:
                log.exception("cluster: counting the machines failed")
                counts = {}
            for kind, count in counts.items():
                deployer = self.deployers[kind]
                if count == 0:
                    deployer.machines = 0  # said at once; the replicas are dropped below
                busy = threads.get(kind)
                if count != deployer.deployed and not (busy and busy.is_alive()):
                    threads[kind] = threading.Thread(target=deployer.deploy, args=(count,), daemon=True)
                    self._threads.append(threads[kind])
                    threads[kind].start()
                elif count == deployer.deployed:
                    deployer.machines = count
            self._counted.set()
            self._stop.wait(WATCH_S)

    def labels(self) -> list[str]:
        return [f"Cluster: {kind} machines" for kind in self.kinds]

    def start(self, request: GenerationRequest, expected: Expected, visitor_key: str) -> list[ClusterRun]:
        """Call every kind's rows with `request` (its seed resolved); the visitor waits in the kind's queue."""
        return [
            ClusterRun(label, self.deployers[kind], request, expected, self.image_dir / kind, self.timeout_s).start()
            for label, kind in zip(self.labels(), self.kinds, strict=True)
        ]

    def healths(self) -> dict[str, dict | str]:
        """Each kind's rows as one of its machines answers (`RowsOnKind.health`), or why there is none."""
        _, serve = import_ray()
        answers: dict[str, dict | str] = {}
        for label, kind in zip(self.labels(), self.kinds, strict=True):
            deployer = self.deployers[kind]
            if not deployer.machines:
                answers[label] = "no machine of this kind in the cluster"
            elif deployer.refused:
                answers[label] = f"refused: {deployer.refused}"
            elif not deployer.ready.is_set():
                answers[label] = "its machines are loading their rows"
            else:
                try:
                    handle = serve.get_deployment_handle("RowsOnKind", app_name=app_name(kind))
                    answer = handle.health.remote().result(timeout_s=HEALTH_TIMEOUT_S)
                    answers[label] = {**answer, "machines": deployer.machines}
                except Exception as exc:
                    answers[label] = f"no answer ({type(exc).__name__})"
        return answers

    def serving_now(self) -> str:
        machines = ", ".join(f"{d.serving} {k}" for k, d in self.deployers.items() if d.serving) or "none yet"
        return (
            f"Up to {self.visitors} visitors run at once, each kind's rows on one of its machines "
            f"(serving now: {machines})"
        )

    def visitors_at_once(self) -> int:
        """How many comparisons the cluster can run at once: its machines of the kind with the most."""
        return max([d.serving for d in self.deployers.values()] + [1])
