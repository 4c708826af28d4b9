"""One request through every ready row, one row at a time, on identical inputs, measured the same way.

The fairness rules live here: one set of initial latents per request, a fresh generator per row, rows never
overlapping (the row set's lock, taken per row), a warm-up before a row's first timed run at each size,
latency of the pipeline call only, fidelity against the baseline image of the same request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from core.errors import logged_error
from core.images import to_uint8
from core.request import GenerationRequest, initial_latents
from harness.compare.prompt_tokens import truncation_note
from harness.compare.rows import RowSet, reason
from harness.compare.safety import SafetyFilter
from harness.compare.validation import InvalidRequest, Limits, validate_request
from harness.models.model_sources import ModelUnavailable

log = logging.getLogger(__name__)

PSNR_IDENTICAL = 100.0  # dB reported for pixel-identical images (true PSNR is infinite; JSON has no inf)


@dataclass
class RowResult:
    backend: str
    title: str
    status: str  # "ok", "skipped" or "error"
    message: str = ""
    image: np.ndarray | None = None  # float32 HWC in [0, 1]
    latency_s: float | None = None  # the pipeline call, from entry to image
    s_per_step: float | None = None  # mean interval between denoising step ends
    speedup: float | None = None  # reference row's latency / this latency, same request
    psnr_db: float | None = None  # vs the reference row's image of the same request
    ssim: float | None = None
    precision: str = ""
    recipe: str = ""  # which of its recipes the row ran, where it has several (`LoadInfo.recipe`)
    timed: tuple[float, float] | None = None  # perf_counter start/end of the timed section
    inflated_by: tuple[str, ...] = ()  # rows that were loading while this one was timed
    flagged: bool = False  # the safety checker flagged this row's image
    blanks_all: bool = False  # the first flagged row of its request: every row's image is blanked from here on
    stages: dict[str, float] | None = None  # seconds in text encoding, denoising, VAE decoding (timed call)
    image_path: Path | None = None  # the image as a PNG file, when the comparison has an image store
    # A row that does other work than the reference (`Backend.different_work`): its words, and how many times sooner
    # than the reference row's its image came (its `speedup`, `psnr_db` and `ssim` stay None: not the same work).
    different_work: str = ""
    sooner: float | None = None

    def figures(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("image", "timed", "blanks_all", "image_path")}
        out["inflated_by"] = list(self.inflated_by)  # as JSON gives it back
        if self.stages is not None:
            out["stages"] = {k: round(v, 4) for k, v in self.stages.items()}
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


@dataclass
class Timed:
    """One timed pipeline call."""

    image: np.ndarray
    start: float  # perf_counter at entry
    end: float  # perf_counter when the image was returned
    s_per_step: float
    stages: dict[str, float] | None = None  # seconds per stage (backends.base.STAGES), measured in this call

    @property
    def latency_s(self) -> float:
        return self.end - self.start


def timed_generate(backend, request: GenerationRequest, latents, on_step=lambda *_: None) -> Timed:
    """The timed section, the same for the app and the benchmark: the row's `generate` call and nothing else.
    Seconds per step is the mean interval between denoising step ends (text encoding and VAE decode
    excluded); the whole latency when there was a single step. Stages: text encoding and VAE decoding (with
    the conversion to pixels) as the row reported them, denoising from the end of text encoding to the end of
    the last step."""
    steps: list[float] = []
    stage_times: dict[str, list[tuple[float, float]]] = {}

    def step_done(step: int, total: int) -> None:
        steps.append(time.perf_counter())
        on_step(step, total)

    def stage_done(stage: str, start: float, end: float) -> None:
        stage_times.setdefault(stage, []).append((start, end))

    start = time.perf_counter()
    image = backend.generate(request, latents, step_done, stage_done)
    end = time.perf_counter()
    per_step = (steps[-1] - steps[0]) / (len(steps) - 1) if len(steps) > 1 else end - start
    stages = None
    if steps and {"text_encoding", "vae_decoding"} <= stage_times.keys():
        text, decode = stage_times["text_encoding"], stage_times["vae_decoding"]
        stages = {
            "text_encoding": sum(e - s for s, e in text),
            "denoising": steps[-1] - max(e for _s, e in text),
            "vae_decoding": sum(e - s for s, e in decode),
        }
    return Timed(image, start, end, per_step, stages)


def against_reference(latency, image, reference_latency, reference_image) -> tuple[float, float, float]:
    """(speed-up, PSNR dB, SSIM) of a row against the reference row (the baseline) of the same run."""
    return (reference_latency / latency, *fidelity(image, reference_image))


def fidelity(image: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and SSIM of an image against the reference, both on 8-bit RGB like what a visitor sees."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = to_uint8(image), to_uint8(reference)
    psnr = (
        PSNR_IDENTICAL if np.array_equal(a, b) else min(PSNR_IDENTICAL, peak_signal_noise_ratio(b, a, data_range=255))
    )
    ssim = structural_similarity(b, a, channel_axis=-1, data_range=255)
    return float(psnr), float(ssim)


class Comparison:
    """Runs requests through a `RowSet`, applying the model's safety checker (when it has one) to every row's
    image outside the timed section; if it flags any row's image, every row's image of that request is blanked.

    Nothing heavy runs beside a timed section: the safety checker, fidelity and saving a row's image happen under
    the row lock, after the row's timed call, and are recorded in `activities` (with `activity`) like the timed
    sections are in `timed_sections`, so a test can check that none overlaps."""

    def __init__(
        self,
        rows: RowSet,
        safety_checker: bool = True,
        limits: Limits | None = None,
        image_store=None,
        public: bool = False,
    ):
        self.rows = rows
        rows.public = public  # errors reach visitors as a short message and an id, the details the log (`public`)
        self.limits = limits or Limits(sizes=rows.settings.sizes)
        self.safety = None  # a SafetyFilter once `load_all` finds the model ships a checker and it is enabled
        self.safety_enabled = safety_checker
        self.image_store = image_store  # a `PageImages`: each row's image saved as PNG under the lock, for the page
        self.timed_sections: list[tuple[str, float, float]] = []  # every timed section, for overlap checks
        self.activities: list[tuple[str, float, float]] = []  # every other heavy activity, likewise

    @property
    def public(self) -> bool:
        """A public instance: every failure reaches visitors as a short message and an error id, the rows' too."""
        return self.rows.public

    @public.setter
    def public(self, value: bool) -> None:
        self.rows.public = value

    @contextmanager
    def activity(self, name: str):
        """Record the interval of a piece of heavy work (the caller holds the row lock)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.activities.append((name, start, time.perf_counter()))
            del self.activities[:-1000]

    def load_all(self) -> None:
        self.rows.starting.set()  # the safety checker loads first: requests wait for it too
        try:
            self.rows.resolve()
            if self.safety_enabled and SafetyFilter.available(self.rows.model.path):
                self.safety = SafetyFilter(self.rows.model.path)
            self.rows.load_all()
        finally:
            self.rows.starting.clear()

    def load_in_background(self, then: Callable[[], None] = lambda: None, retry_s: float = 60.0):
        """`load_all` in a thread (the app serves meanwhile), then `then()` in the same thread. A model that cannot
        be had (the Hub unreachable in strict mode) leaves the rows unavailable with the reason, and is tried
        again after `retry_s` seconds, doubling up to ten minutes."""

        def run():
            wait = retry_s
            while True:
                try:
                    self.load_all()
                    break
                except ModelUnavailable as exc:
                    failed = self.rows.failure("the model could not load", exc)
                    self.rows.mark_all("unavailable", f"{failed}; retrying in {wait:.0f} s")
                    time.sleep(wait)
                    wait = min(wait * 2, 600.0)
                    self.rows.mark_all("waiting", "retrying the model")
            then()

        self.rows.starting.set()  # from now on, a request waits for the start-up rather than skip the rows
        thread = threading.Thread(target=run, name="row-loader", daemon=True)
        thread.start()
        return thread

    def validate(self, **fields) -> GenerationRequest:
        return validate_request(limits=self.limits, **fields)

    def truncation(self, request: GenerationRequest) -> str | None:
        if self.rows.model is None:  # still downloading: no row runs this request anyway
            return None
        return truncation_note(self.rows.model.path / "tokenizer", request)

    def run(
        self,
        request: GenerationRequest,
        on_step: Callable[[str, int, int], None] = lambda *_: None,
        backend_ids: list[str] | None = None,
        on_warmup: Callable[[str], None] = lambda *_: None,
        on_wait: Callable[[str], None] = lambda *_: None,
    ) -> Iterator[RowResult]:
        """Yield one RowResult per row, in the fixed order, as soon as each row finishes. Nothing is timed before
        the start-up is over (`on_wait(what)` says what it is doing meanwhile): a request never skips a row that
        is still loading, and never times one beside another's loading; an unavailable row is skipped with its
        reason. `on_step` follows the timed run's steps; `on_warmup(backend_id)` says a row is being warmed up
        first (untimed)."""
        rows = self.rows
        wanted = rows.order if backend_ids is None else backend_ids
        unknown = [b for b in wanted if b not in rows.order]
        if unknown:
            raise InvalidRequest(f"unknown backend id(s) {', '.join(unknown)}; this app runs {', '.join(rows.order)}")
        rows.wait_for_start_up(on_wait)
        latents = initial_latents(request.seed, request.height, request.width)
        reference: RowResult | None = None
        reference_image = None  # unfiltered: fidelity compares what the rows computed, not the checker's verdicts
        blanked = False
        for backend_id in wanted:
            # The lock is taken per row, not across the yield: a client that stops reading cannot keep it.
            with rows.lock:
                row = self._run_row(backend_id, request, latents, on_step, on_warmup)
                notes = [row.message] if row.message else []
                if backend_id == rows.reference and row.status == "ok":
                    reference, reference_image = row, row.image
                    row.speedup = 1.0
                row.different_work = rows.different_work(backend_id)
                if reference is not None and row.status == "ok" and row.different_work:
                    row.sooner = reference.latency_s / row.latency_s  # no fidelity: a different model's image
                elif reference is not None and row.status == "ok" and row is not reference:
                    with self.activity("fidelity"):
                        row.speedup, row.psnr_db, row.ssim = against_reference(
                            row.latency_s, row.image, reference.latency_s, reference_image
                        )
                if row.status == "ok" and self.safety is not None:
                    with self.activity("safety checker"):
                        _, row.flagged = self.safety(row.image)
                    row.blanks_all = row.flagged and not blanked
                    blanked = blanked or row.flagged
                    if blanked:  # one row's image flagged: no row shows its image (the checker sees them alike)
                        row.image = np.zeros_like(row.image)
                        notes.append(
                            "safety checker flagged " + ("this image" if row.flagged else "another row's image")
                        )
                if row.image is not None and self.image_store is not None:
                    with self.activity("saving the image"):
                        row.image_path = self.image_store.save(to_uint8(row.image))
            if row.inflated_by:
                # Requests wait for the start-up, so only a row loaded later (the model retried) can get here;
                # say so rather than show a latency inflated by it as if it were clean.
                notes.append(f"timed while {', '.join(row.inflated_by)} was loading: latency inflated")
            if reference is not None and reference.inflated_by and row is not reference and row.status == "ok":
                notes.append("speed-up against a baseline timed while another row was loading")
            row.message = "; ".join(notes)
            yield row

    def _run_row(self, backend_id, request, latents, on_step, on_warmup) -> RowResult:
        rows = self.rows
        backend = rows.backends.get(backend_id)
        title = rows.titles[backend_id]
        if backend is None:
            return RowResult(backend_id, title, "skipped", rows.status[backend_id].describe())
        try:
            if request.height not in rows.status[backend_id].warm_sizes:
                on_warmup(backend_id)
                rows.warm_up(backend_id, request.height)
            loading_before = rows.loading()
            timed = timed_generate(backend, request, latents, lambda step, total: on_step(backend_id, step, total))
            loading = tuple(dict.fromkeys(loading_before + rows.loading_during(timed.start, timed.end)))
        except Exception as exc:  # the row shows its error; the other rows and the next request go on
            shown = f"failed ({logged_error(log, 'row %s failed', backend_id)})" + (
                "" if self.public else f": {reason(exc)}"
            )
            return RowResult(backend_id, title, "error", shown)
        self.timed_sections.append((backend_id, timed.start, timed.end))
        del self.timed_sections[:-1000]
        load = rows.status[backend_id].load
        return RowResult(
            backend_id,
            title,
            "ok",
            image=timed.image,
            latency_s=timed.latency_s,
            s_per_step=timed.s_per_step,
            stages=timed.stages,
            precision=load.precision if load else "",
            recipe=load.recipe if load else "",
            timed=(timed.start, timed.end),
            inflated_by=loading,
        )
