"""The loaded rows of one model: each row's status, loading every row, and warming each up before its first
timed run. Start-up is two passes: every row is loaded (exported, quantized or read from the cache, then
compiled) and serves at once; then each row is warmed up."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

from backends import LoadInfo, backend_class, create_backend, is_reference
from backends import backend_ids as registered_ids
from core.cpu import this_cpu
from core.errors import logged_error
from core.probes import process_memory_mb
from core.request import GenerationRequest, LoadSettings, ProgressCallback, initial_latents
from harness.models.model_sources import ModelSource

log = logging.getLogger(__name__)

WARMUP_STEPS = 1  # runs every component once: first-call compilation and primitive creation happen here


@dataclass
class RowStatus:
    state: str = "waiting"  # waiting | loading | ready | unavailable | failed (its warm-up failed)
    detail: str = ""
    since: float = field(default_factory=time.monotonic)
    load: LoadInfo | None = None
    warm_sizes: set[int] = field(default_factory=set)  # sizes this row has run its warm-up at
    warmup_s: float = 0.0  # time spent in warm-ups so far

    def set(self, state: str, detail: str = "") -> None:
        self.state, self.detail, self.since = state, detail, time.monotonic()

    def describe(self) -> str:
        if self.state == "loading":
            return f"loading: {self.detail} ({time.monotonic() - self.since:.0f} s)"
        if self.state == "ready" and self.detail:
            return f"ready, {self.detail}"
        return f"{self.state}: {self.detail}" if self.detail else self.state


class RowSet:
    """The rows of one model, in display order, and the lock that keeps their runs (timed or warm-up) apart."""

    def __init__(
        self,
        model: ModelSource | None,
        backend_ids: list[str],
        settings: LoadSettings,
        factory=None,
        resolve: Callable[[ProgressCallback], ModelSource] | None = None,
    ):
        """`model` may be None with a `resolve(progress)` that finds or downloads it: the app then serves its
        page at once and the download is the first thing `load_all` does."""
        unknown = [b for b in backend_ids if b not in registered_ids()]
        if unknown:
            raise ValueError(f"unknown backend id(s) {', '.join(unknown)}; choose from {', '.join(registered_ids())}")
        self.model = None
        self._resolve = resolve
        self.settings = settings
        self.order = list(backend_ids)
        # The row every ratio is measured against (the registry's row that says it is the reference), if shown.
        self.reference = next((b for b in self.order if is_reference(b)), None)
        self._factory = factory or create_backend
        self.backends: dict = {}
        self.status = {b: RowStatus() for b in self.order}
        self.warming = dict.fromkeys(self.order, False)  # a row's warm-up runs now
        # Each row's class title (a row this CPU cannot run is never created, and its card still names it); replaced
        # by the created backend's own title (a test's factory may name its rows).
        self.titles = {b: getattr(backend_class(b), "title", b) for b in self.order}
        self.public = False  # a public instance: failures reach visitors as a short line and an error id (`failure`)
        self.lock = threading.Lock()  # one row at a time runs: timed sections and warm-ups never overlap
        # Set from the start of loading until every row is loaded (or unavailable) and warm: requests wait meanwhile.
        self.starting = threading.Event()
        self.load_log: list[tuple[str, float, float]] = []  # (row, start, end) of every load, perf_counter seconds
        if model is not None:
            self._use(model)

    def resolve(self) -> ModelSource:
        """The model every row loads, found or downloaded now if it was not given; rows wait until then."""
        if self.model is None:

            def progress(line: str) -> None:
                for status in self.status.values():
                    status.detail = f"model: {line}"

            progress(f"looking for {self._resolve_name()}")
            try:
                self._use(self._resolve(progress))
            except Exception as exc:
                self.mark_all("unavailable", self.failure("the model could not load", exc))
                raise
            for status in self.status.values():
                status.detail = ""
        return self.model

    def failure(self, what: str, exc: BaseException) -> str:
        """A failure's line for status lines, cards and /health, its traceback logged under an error id: on a public
        instance a short line and the id (exception text can hold paths and internals), else the reason too."""
        return f"{what} ({logged_error(log, '%s', what, exc_info=exc)})" + ("" if self.public else f": {reason(exc)}")

    def mark_all(self, state: str, detail: str) -> None:
        for status in self.status.values():
            status.set(state, detail)

    def wait_for_start_up(self, on_wait: Callable[[str], None], poll_s: float = 0.5) -> None:
        """Return once the start-up is over (every row loaded or unavailable, and warmed up at every offered size),
        calling `on_wait` with what it is doing meanwhile. A request waits here before it does anything: nothing it
        runs may run beside loading (a row timed while another compiles is not timed fairly, and some libraries'
        imports are not safe from two threads at once: transformers' lazy module raised `ImportError` for a
        request's tokenizer while the loader imported it)."""
        while self.starting.is_set():
            on_wait(self.start_up_progress())
            time.sleep(poll_s)

    def start_up_progress(self) -> str:
        """What the start-up is doing now, in a few words, for a waiting visitor."""
        if self.model is None:
            first = self.status[self.order[0]]
            return f"the model is being prepared ({first.detail or 'waiting'})"
        runs = [b for b in self.order if self.runs_here(b)]
        busy = next((b for b in runs if self.status[b].state == "loading" or self.warming[b]), None)
        if busy is None:
            return "the rows are being loaded"
        return f"{self.titles[busy]}: {self.status[busy].describe()}"

    def loading_during(self, start: float, end: float) -> list[str]:
        """Rows whose loading overlapped [start, end] (perf_counter seconds), including any loading now."""
        overlapped = [b for b, s, e in self.load_log if s < end and e > start]
        return list(dict.fromkeys(overlapped + self.loading()))

    def different_work(self, backend_id: str) -> str:
        """The words of a row that does other work than the reference row ("" for the same work): see
        `Backend.different_work`."""
        words = getattr(backend_class(backend_id), "different_work", "")
        return words.format(**{f.name: getattr(self.settings, f.name) for f in fields(self.settings)})

    def runs_here(self, backend_id: str) -> bool:
        """Whether this CPU runs the row (its `support`); a test's factory decides for the rows it makes."""
        return not self.why_not_here(backend_id)

    def why_not_here(self, backend_id: str) -> str:
        """What the row needs that this CPU lacks (its `support`'s reason); "" where it runs, and for a test's
        factory's rows."""
        if self._factory is not create_backend:
            return ""
        support = backend_class(backend_id).support(this_cpu())
        return "" if support.runs else support.reason

    def _resolve_name(self) -> str:
        return getattr(self._resolve, "model_name", "the model")

    def _use(self, model: ModelSource) -> None:
        self.model = model
        if self.settings.scheduler_config is None:  # every row builds its schedulers from the model's one config
            config = json.loads((model.path / "scheduler" / "scheduler_config.json").read_text())
            self.settings = replace(self.settings, scheduler_config=config)

    def load_all(self) -> None:
        """Load every row in order, then warm each up; a row that fails is marked unavailable and the others
        go on. Requests wait until both passes are over (`wait_for_start_up`)."""
        self.starting.set()
        try:
            self.resolve()
            for backend_id in self.order:
                self.load_row(backend_id)
            for backend_id in self.ready():
                for size in self.settings.sizes:
                    with self.lock:
                        try:
                            self.warm_up(backend_id, size)
                        except Exception:  # warm_up marked the row failed, with the reason; the others go on
                            break
        finally:
            self.starting.clear()

    def load_row(self, backend_id: str) -> None:
        status = self.status[backend_id]
        status.set("loading", "starting")

        def progress(line: str) -> None:
            status.detail = line
            log.info("[%s] %s", backend_id, line)

        if not self.runs_here(backend_id):
            status.set("unavailable", f"not on this CPU: {self.why_not_here(backend_id)}")  # a fact, not an error
            log.info("[%s] %s", backend_id, status.detail)
            return
        rss0 = process_memory_mb().get("rss", 0.0)
        t0 = time.perf_counter()
        try:
            backend = self._factory(backend_id)
            self.titles[backend_id] = backend.title
            if getattr(backend, "traces_on_load", False):
                # Its loading traces or rewrites PyTorch modules (torch.fx patches `torch.nn.Module.__call__` for
                # the whole process while it runs): no other row may run meanwhile, so it loads under the row lock.
                status.detail = "waiting for the running row to finish"
                with self.lock:
                    info = backend.load(self.model, self.settings, progress)
            else:
                info = backend.load(self.model, self.settings, progress)
        except Exception as exc:  # any failure makes this row unavailable, never the app
            status.set("unavailable", self.failure(f"row {backend_id} could not load", exc))
            return
        finally:
            self.load_log.append((backend_id, t0, time.perf_counter()))
        info.seconds = time.perf_counter() - t0
        info.ram_added_mb = process_memory_mb().get("rss", 0.0) - rss0
        self.backends[backend_id] = backend
        status.load = info
        status.set("ready", "warm-up pending")
        cache = {"n/a": "n/a (nothing to build)"}.get(info.cache, info.cache)
        log.info("[%s] loaded in %.1f s, cache: %s", backend_id, info.seconds, cache)

    def warm_up(self, backend_id: str, size: int) -> None:
        """Run a loaded row once at `size`, untimed, unless it has been already; the caller holds the lock.

        One denoising step runs every component once (text encoder, UNet, VAE decoder), which is where
        first-call costs (memory allocation, kernel and primitive creation) are paid."""
        status = self.status[backend_id]
        if size in status.warm_sizes:
            return
        status.detail = f"warming up at {size}x{size}"
        log.info("[%s] %s", backend_id, status.detail)
        start = time.perf_counter()
        self.warming[backend_id] = True
        warm = GenerationRequest("warm-up", steps=WARMUP_STEPS, height=size, width=size)
        try:
            self.backends[backend_id].generate(warm, initial_latents(0, size, size), lambda *_: None, lambda *_: None)
        except Exception as exc:  # a row that cannot run once is failed, with the reason, never "warming up"
            self.backends.pop(backend_id, None)
            status.set("failed", self.failure(f"warm-up at {size}x{size} failed", exc))
            raise
        finally:
            self.warming[backend_id] = False
        status.warmup_s += time.perf_counter() - start
        status.warm_sizes.add(size)
        pending = [s for s in self.settings.sizes if s not in status.warm_sizes]
        status.set("ready", f"warm-up pending at {', '.join(map(str, pending))}" if pending else "")

    def warm(self) -> list[str]:
        """Rows warmed up at every offered size."""
        return [b for b in self.ready() if set(self.settings.sizes) <= self.status[b].warm_sizes]

    def ready(self) -> list[str]:
        return [b for b in self.order if self.status[b].state == "ready"]

    def loading(self) -> list[str]:
        return [b for b in self.order if self.status[b].state == "loading"]


def reason(exc: BaseException) -> str:
    """One line for a card. OpenVINO and oneDNN put the specific cause on the last line of their messages."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if len(lines) < 2 else f"{lines[0].split(':')[0]}: ... {lines[-1]}"
    return f"{type(exc).__name__}: {text}"[:400]
