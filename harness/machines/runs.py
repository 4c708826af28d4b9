"""What a run on another machine is, for remote instances and cluster kinds alike.

A `MachineRun` is one group's part of one comparison (a remote instance, or a cluster's machines of one CPU kind),
called in a thread of its own while the local rows run. It owns what every such run shares: its states, the
deadline, cancellation, the error id of an unexpected failure and the final check that the rows started from the
page's noise. A subclass supplies only `_call` (how it calls) and, where a call blocks, `_interrupt`.

A `MachineGroup` is what the page holds: the machines it calls for every comparison, one page group per label.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from core.errors import logged_error
from core.request import GenerationRequest, latents_digest

log = logging.getLogger(__name__)

IMAGES_KEPT_S = 3600.0  # a page's files live an hour, as Gradio's own
CANCELLED = "cancelled: the visitor left before it finished"
NOISE_DIFFERS = "its starting noise differs from this page's: images not comparable"
KEPT_VISITOR = "this instance's kept comparisons"  # the visitor key of an example's or a booth prompt's calls
CONNECT_TIMEOUT_S = 10.0  # connecting, logging in and `/health` each answer within this, or the machine is unreachable
CONNECT_ALLOWANCE_S = 3 * CONNECT_TIMEOUT_S  # how long the page waits beyond a run's deadline, for those three


class RunState(StrEnum):
    """Where a run is. The first four are its way; the others end it and say why (shown as written)."""

    CONNECTING = "connecting"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"
    BUSY = "busy"
    NOT_COMPARABLE = "not comparable"
    FAILED = "failed"
    TOO_SLOW = "too slow"
    LOST = "lost"

    @property
    def final(self) -> bool:
        return self not in (RunState.CONNECTING, RunState.QUEUED, RunState.RUNNING)


@dataclass
class MachineState:
    """One group's part of one comparison, as the page shows it."""

    label: str  # the group's heading on the page, e.g. "Xeon 6 (AMX)" or "Cluster: amx machines"
    state: RunState = RunState.CONNECTING
    detail: str = ""  # what the state means here, in words
    health: dict = field(default_factory=dict)  # what answered: its `/health` (CPU, model, rows)
    rows: list[dict] = field(default_factory=list)  # its rows' figures dicts, as they finish
    images: dict[str, str] = field(default_factory=dict)  # backend id -> the image's file here
    latents_sha256: str | None = None  # the hash of the starting noise it used
    started: float = 0.0  # time.time() of the call, the first answer and the end
    answered: float | None = None
    finished: float | None = None
    connect_s: float | None = None  # connecting + `/health`: the network round trip, apart from the rows

    @property
    def done(self) -> bool:
        return self.state.final


@dataclass(frozen=True)
class Expected:
    """What another machine must match for its images to be comparable with the page's."""

    model_id: str
    revision: str
    latents_sha256: str


@dataclass(frozen=True)
class Stop:
    """Why a run was stopped from outside: its final state and words."""

    state: RunState
    detail: str


class MachineRun:
    """One group's part of one comparison, in a thread; `state()` is a copy of where it is.

    Subclasses implement `_call`, which reports through `_update`, `_show` and `_end` (or `_finish` when every row
    came) and checks `stopped()` where it waits; a call that blocks is woken by `_interrupt`."""

    def __init__(self, label: str, expected: Expected, timeout_s: float, image_dir: Path):
        self.label = label
        self.expected = expected
        self.timeout_s = timeout_s
        self.image_dir = image_dir
        prune(image_dir)
        image_dir.mkdir(parents=True, exist_ok=True)
        self._state = MachineState(label, started=time.time())
        self._lock = threading.Lock()
        self.changed = threading.Event()  # set on every change (the page yields when it sees it)
        self._cancelled = threading.Event()
        self._timed_out = threading.Event()
        self._deadline = threading.Timer(timeout_s, self._time_out)
        self._deadline.daemon = True
        self._thread = threading.Thread(target=self._run, name=f"machines {label}", daemon=True)

    # What the page calls.
    def start(self) -> MachineRun:
        self._deadline.start()
        self._thread.start()
        return self

    def state(self) -> MachineState:
        with self._lock:
            return replace(self._state, rows=list(self._state.rows), images=dict(self._state.images))

    def cancel(self) -> None:
        """Stop waiting (the visitor left, or the comparison ended): a call under way there is cancelled."""
        self._cancelled.set()
        self._interrupt()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # What a subclass supplies.
    def _call(self) -> None:
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Wake a call that blocks (on cancellation or the deadline); a call that polls `stopped()` needs nothing."""

    # What a subclass uses.
    def stopped(self) -> Stop | None:
        """Why the run must stop now (the visitor left, or the deadline passed), or None."""
        if self._cancelled.is_set():
            return Stop(RunState.FAILED, CANCELLED)
        if self._timed_out.is_set():
            return Stop(RunState.TOO_SLOW, f"no answer within {self.timeout_s:.0f} s; the next comparison retries")
        return None

    def _update(self, **changes) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self._state, name, value)
        self.changed.set()

    def _show(self, rows: list[dict], images: dict[str, str], **changes) -> None:
        """Its rows so far (each time all of them) and their images: the run is running."""
        self._update(state=RunState.RUNNING, detail="", rows=rows, images=images, **changes)

    def _end(self, state: RunState, detail: str) -> None:
        self._update(state=state, detail=detail, finished=time.time())

    def _finish(self) -> None:
        """Every row came: done, and said so when they did not start from the page's noise."""
        mismatch = self.state().latents_sha256 not in (None, self.expected.latents_sha256)
        self._end(RunState.DONE, NOISE_DIFFERS if mismatch else "")

    # The thread.
    def _time_out(self) -> None:
        self._timed_out.set()
        self._interrupt()

    def _run(self) -> None:
        try:
            self._call()
        except Exception:  # whatever the other machine or the network does, the local rows go on
            stop = self.stopped()  # an interrupted call raises: the reason is the stop's
            if stop is not None:
                self._end(stop.state, stop.detail)
            else:  # the details (addresses included) go to the log only
                self._end(RunState.FAILED, f"failed ({logged_error(log, 'machines %s failed', self.label)})")
        finally:
            self._deadline.cancel()


class MachineGroup(Protocol):
    """Machines the page calls beside its own rows for every comparison: one page group per label, each group
    headed by its label and CPU, its rows in the page's row order.

    Implemented by `remotes.RemoteSet` (instances of this app), `cluster.ClusterSet` (a Ray cluster's CPU kinds)
    and `OtherMachines` (several of them, in order)."""

    timeout_s: float  # a run's deadline: its group's rows come within this, or its cards say it was too slow

    def labels(self) -> list[str]:
        """The page's groups, in order."""
        ...

    def start(self, request: GenerationRequest, expected: Expected, visitor_key: str) -> list[MachineRun]:
        """Call every group with `request` (its seed resolved) for the visitor `visitor_key`: one started run per
        label, in the order of `labels()`."""
        ...

    def healths(self) -> dict[str, dict | str]:
        """Each label's `/health` answer, or in words why there is none: for the tab of other CPUs."""
        ...

    def serving_now(self) -> str:
        """How many visitors are served at once and on what, in words, for the wait line ("" when one at a time)."""
        ...


class OtherMachines:
    """Several groups of machines (remote instances, then cluster kinds) as one: one page group per label, in
    order, all called for every comparison."""

    def __init__(self, groups: list[MachineGroup]):
        self.groups = groups

    @property
    def timeout_s(self) -> float:
        return max(g.timeout_s for g in self.groups)

    def labels(self) -> list[str]:
        return [label for g in self.groups for label in g.labels()]

    def start(self, request: GenerationRequest, expected: Expected, visitor_key: str) -> list[MachineRun]:
        return [run for g in self.groups for run in g.start(request, expected, visitor_key)]

    def healths(self) -> dict[str, dict | str]:
        return {label: answer for g in self.groups for label, answer in g.healths().items()}

    def serving_now(self) -> str:
        return next((line for g in self.groups if (line := g.serving_now())), "")


class KeptAlongside:
    """The other machines' part of a comparison the app keeps (a built-in example, a booth prompt): `__call__` starts
    them for a request before the local rows run, as a visitor's comparison does; `wait()` then gives their states.
    No visitor is behind it: the calls reach the other machines under the key `KEPT_VISITOR`."""

    def __init__(self, machines: MachineGroup, model):
        self.machines, self.model = machines, model

    def __call__(self, request: GenerationRequest) -> RunsAlongside:
        noise = latents_digest(request.seed, request.height, request.width)
        expected = Expected(self.model.model_id, self.model.revision, noise)
        return RunsAlongside(self.machines.start(request, expected, KEPT_VISITOR), self.machines.timeout_s)


class RunsAlongside:
    """Started runs of the other machines for one kept comparison; leaving its `with` block cancels what still runs
    (the local rows failed, or the comparison was dropped)."""

    def __init__(self, runs: list[MachineRun], timeout_s: float):
        self.runs = runs
        self.until = time.monotonic() + timeout_s + CONNECT_ALLOWANCE_S

    def wait(self, give_way: Callable[[], bool] = lambda: False, poll_s: float = 0.25) -> list[MachineState] | None:
        """Every run's state once it ended, or its deadline passed (a run still going then is cancelled); None when
        `give_way()` says a visitor's comparison goes first: the runs are cancelled, so that the visitor's calls
        on those machines do not queue behind them."""
        while time.monotonic() < self.until and not all(run.state().done for run in self.runs):
            if give_way():
                self.cancel()
                return None
            time.sleep(poll_s)
        self.cancel()
        return [run.state() for run in self.runs]

    def cancel(self) -> None:
        for run in self.runs:
            run.cancel()

    def __enter__(self) -> RunsAlongside:
        return self

    def __exit__(self, *exc_info) -> None:
        self.cancel()


def prune(directory: Path, keep_s: float = IMAGES_KEPT_S) -> None:
    """Delete the images in `directory` older than `keep_s`."""
    cutoff = time.time() - keep_s
    for child in directory.glob("*"):
        try:
            if child.stat().st_mtime < cutoff:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        except OSError:
            pass
