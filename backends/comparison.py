"""Runs one request through every ready row, one row at a time, on identical inputs, and measures it.

This is where the fairness rules live: one set of initial latents per request, the same scheduler config
and thread settings on every row, rows never overlapping (one lock), a warm-up before a row's first timed
run at each size, latency of the pipeline call only, fidelity against the baseline image of the same request.

Start-up is two passes: every row is loaded (exported, quantized or read from the cache, then compiled) and
serves at once; then each row is warmed up. A request that reaches a row before its warm-up warms it
first, outside the timed section, so no latency ever includes first-call costs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from . import BACKEND_IDS, create_backend
from .base import GenerationRequest, LoadInfo, LoadSettings
from .models import ModelSource
from .requests import InvalidRequest, Limits, validate_request

log = logging.getLogger(__name__)

BASELINE = "baseline"
PSNR_IDENTICAL = 100.0  # dB reported for pixel-identical images (true PSNR is infinite; JSON has no inf)
WARMUP_STEPS = 1  # runs every component once: first-call compilation and primitive creation happen here


@dataclass
class RowStatus:
    state: str = "waiting"  # waiting | loading | ready | unavailable | error
    detail: str = ""
    since: float = field(default_factory=time.monotonic)
    load: LoadInfo | None = None
    warm_sizes: set[int] = field(default_factory=set)  # sizes this row has run its warm-up at
    warmup_s: float = 0.0  # time spent in warm-ups so far

    def describe(self) -> str:
        if self.state == "loading":
            return f"loading: {self.detail} ({time.monotonic() - self.since:.0f} s)"
        if self.state == "ready" and self.detail:
            return f"ready, {self.detail}"
        return f"{self.state}: {self.detail}" if self.detail else self.state


@dataclass
class RowResult:
    backend: str
    title: str
    status: str  # "ok", "skipped" or "error"
    message: str = ""
    image: np.ndarray | None = None  # float32 HWC in [0, 1]
    latency_s: float | None = None  # the pipeline call, from entry to image
    s_per_step: float | None = None  # mean interval between denoising step ends
    speedup: float | None = None  # baseline latency / this latency, same request
    psnr_db: float | None = None  # vs the baseline image of the same request
    ssim: float | None = None
    precision: str = ""
    timed: tuple[float, float] | None = None  # perf_counter start/end of the timed section

    def figures(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("image", "timed")}
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def make_latents(seed: int, height: int, width: int, channels: int = 4, vae_scale: int = 8):
    """The request's initial noise, made once and handed to every row; equals what diffusers makes from a
    CPU generator seeded with `seed`, so the baseline row is exactly plain diffusers."""
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    return torch.randn((1, channels, height // vae_scale, width // vae_scale), generator=generator)


def fidelity(image: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and SSIM of an image against the reference, both on 8-bit RGB like what a visitor sees."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = to_uint8(image), to_uint8(reference)
    psnr = (
        PSNR_IDENTICAL if np.array_equal(a, b) else min(PSNR_IDENTICAL, peak_signal_noise_ratio(b, a, data_range=255))
    )
    ssim = structural_similarity(b, a, channel_axis=-1, data_range=255)
    return float(psnr), float(ssim)


def seconds_per_step(step_ends: list[float], latency: float) -> float:
    """Mean interval between denoising step ends (text encoding and VAE decode excluded); the whole latency
    when there was a single step."""
    return (step_ends[-1] - step_ends[0]) / (len(step_ends) - 1) if len(step_ends) > 1 else latency


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


class Comparison:
    """The loaded rows of one model and the lock that keeps their timed sections apart."""

    def __init__(
        self,
        model: ModelSource,
        backend_ids: list[str],
        settings: LoadSettings,
        factory=create_backend,
        safety_checker: bool = True,
    ):
        unknown = [b for b in backend_ids if b not in BACKEND_IDS]
        if unknown:
            raise ValueError(f"unknown backend id(s) {', '.join(unknown)}; choose from {', '.join(BACKEND_IDS)}")
        self.model = model
        self.settings = settings
        self.order = list(backend_ids)
        self.limits = Limits(sizes=settings.sizes)
        self._factory = factory
        self.backends: dict = {}
        self.status = {b: RowStatus() for b in self.order}
        self.lock = threading.Lock()  # one request at a time through the rows
        self.timed_sections: list[tuple[str, float, float]] = []  # every timed section, for overlap checks
        self.titles = {b: b for b in self.order}  # replaced by each backend's own title once created
        self.safety = None  # a SafetyFilter when the model ships a checker and it is enabled
        self.safety_enabled = safety_checker
        self._tokenizer = None

    def tokenizer(self):
        """The model's CLIP tokenizer (every row uses the same one), for reporting prompt truncation."""
        if self._tokenizer is None:
            from transformers import CLIPTokenizer

            self._tokenizer = CLIPTokenizer.from_pretrained(self.model.path / "tokenizer")
        return self._tokenizer

    # ------------------------------------------------------------------------------------------ loading
    def load_all(self) -> None:
        """Load every row in order, then warm each up; a row that fails is marked unavailable and the others
        go on. Rows serve as soon as they are loaded (see `warm_up`)."""
        from .safety import SafetyFilter

        if self.safety_enabled and SafetyFilter.available(self.model.path):
            self.safety = SafetyFilter(self.model.path)
        for backend_id in self.order:
            self.load_row(backend_id)
        for backend_id in self.ready():
            for size in self.settings.sizes:
                with self.lock:  # a warm-up must not overlap a request being timed on another row
                    try:
                        self.warm_up(backend_id, size)
                    except Exception as exc:  # the row cannot run at all: unavailable, not the app
                        log.exception("row %s failed its warm-up", backend_id)
                        self.backends.pop(backend_id, None)
                        status = self.status[backend_id]
                        status.state, status.detail, status.since = "unavailable", _reason(exc), time.monotonic()
                        break

    def load_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.load_all, name="row-loader", daemon=True)
        thread.start()
        return thread

    def load_row(self, backend_id: str) -> None:
        import psutil

        status = self.status[backend_id]
        status.state, status.detail, status.since = "loading", "starting", time.monotonic()

        def progress(line: str) -> None:
            status.detail = line
            log.info("[%s] %s", backend_id, line)

        rss0 = psutil.Process().memory_info().rss
        t0 = time.perf_counter()
        try:
            backend = self._factory(backend_id)
            self.titles[backend_id] = backend.title
            info = backend.load(self.model, self.settings, progress)
        except Exception as exc:  # any failure makes this row unavailable, never the app
            log.exception("row %s could not load", backend_id)
            status.state, status.detail, status.since = "unavailable", _reason(exc), time.monotonic()
            return
        info.seconds = time.perf_counter() - t0
        info.ram_added_mb = (psutil.Process().memory_info().rss - rss0) / 2**20
        self.backends[backend_id] = backend
        status.load = info
        status.state, status.detail, status.since = "ready", "warm-up pending", time.monotonic()

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
        warm = GenerationRequest("warm-up", steps=WARMUP_STEPS, height=size, width=size)
        self.backends[backend_id].generate(warm, make_latents(0, size, size), lambda *_: None)
        status.warmup_s += time.perf_counter() - start
        status.warm_sizes.add(size)
        pending = [s for s in self.settings.sizes if s not in status.warm_sizes]
        status.detail = f"warm-up pending at {', '.join(map(str, pending))}" if pending else ""
        status.since = time.monotonic()

    def warm(self) -> list[str]:
        """Rows warmed up at every offered size."""
        return [b for b in self.ready() if set(self.settings.sizes) <= self.status[b].warm_sizes]

    def ready(self) -> list[str]:
        return [b for b in self.order if self.status[b].state == "ready"]

    # ------------------------------------------------------------------------------------------ requests
    def validate(self, **fields) -> GenerationRequest:
        return validate_request(limits=self.limits, **fields)

    def truncation(self, request: GenerationRequest) -> str | None:
        """A note on what CLIP's 77-token limit drops from the prompts (diffusers truncates the same way, on
        every row alike), or None when nothing is dropped."""
        tokenizer = self.tokenizer()
        keep = tokenizer.model_max_length - 2  # the start and end tokens take two of the 77 places
        notes = []
        for name, text in (("prompt", request.prompt), ("negative prompt", request.negative_prompt)):
            ids = tokenizer(text, truncation=False, add_special_tokens=False).input_ids
            if len(ids) > keep:
                dropped = tokenizer.decode(ids[keep:]).strip()
                notes.append(
                    f"{name} is {len(ids)} tokens; CLIP reads the first {keep}, so this was dropped: {dropped!r}"
                )
        return "; ".join(notes) or None

    def run(
        self,
        request: GenerationRequest,
        on_step: Callable[[str, int, int], None] = lambda *_: None,
        backend_ids: list[str] | None = None,
        on_warmup: Callable[[str], None] = lambda *_: None,
    ) -> Iterator[RowResult]:
        """Yield one RowResult per row, in the fixed order, as soon as each row finishes. `on_step` follows
        the timed run's steps; `on_warmup(backend_id)` says a row is being warmed up first (untimed)."""
        wanted = self.order if backend_ids is None else backend_ids
        unknown = [b for b in wanted if b not in self.order]
        if unknown:
            raise InvalidRequest(f"unknown backend id(s) {', '.join(unknown)}; this app runs {', '.join(self.order)}")
        with self.lock:
            latents = make_latents(request.seed, request.height, request.width)
            baseline: RowResult | None = None
            for backend_id in wanted:
                row = self._run_row(backend_id, request, latents, on_step, on_warmup)
                if backend_id == BASELINE and row.status == "ok":
                    baseline = row
                    row.speedup = 1.0
                if baseline is not None and row.status == "ok" and row is not baseline:
                    row.speedup = baseline.latency_s / row.latency_s
                    row.psnr_db, row.ssim = fidelity(row.image, baseline.image)
                loading = [b for b in self.order if self.status[b].state == "loading"]
                if row.status == "ok" and loading:
                    # Loading (export, quantization) runs beside requests so the app serves at once; say so
                    # rather than show a latency inflated by it as if it were clean.
                    note = f"timed while {', '.join(loading)} was loading: latency inflated"
                    row.message = f"{row.message}; {note}" if row.message else note
                yield row

    def _run_row(self, backend_id, request, latents, on_step, on_warmup) -> RowResult:
        backend = self.backends.get(backend_id)
        title = self.titles[backend_id]
        if backend is None:
            return RowResult(backend_id, title, "skipped", f"not ready ({self.status[backend_id].describe()})")
        steps: list[float] = []

        def step_done(step: int, total: int) -> None:
            steps.append(time.perf_counter())
            on_step(backend_id, step, total)

        try:
            if request.height not in self.status[backend_id].warm_sizes:
                on_warmup(backend_id)
                self.warm_up(backend_id, request.height)
            start = time.perf_counter()
            image = backend.generate(request, latents, step_done)
            end = time.perf_counter()
        except Exception as exc:  # the row shows its error; the other rows and the next request go on
            log.exception("row %s failed", backend_id)
            return RowResult(backend_id, title, "error", _reason(exc))
        self.timed_sections.append((backend_id, start, end))
        del self.timed_sections[:-1000]
        if self.safety is not None:
            image, flagged = self.safety(image)
            note = "safety checker blanked this image" if flagged else ""
        else:
            note = ""
        per_step = seconds_per_step(steps, end - start)
        load = self.status[backend_id].load
        return RowResult(
            backend_id,
            title,
            "ok",
            note,
            image=image,
            latency_s=end - start,
            s_per_step=per_step,
            precision=load.precision if load else "",
            timed=(start, end),
        )


def _reason(exc: BaseException) -> str:
    """One line for a card. OpenVINO and oneDNN put the specific cause on the last line of their messages."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if len(lines) < 2 else f"{lines[0].split(':')[0]}: ... {lines[-1]}"
    return f"{type(exc).__name__}: {text}"[:400]
