"""The last comparison this instance ran, kept in the cache directory so that the page opens on a finished
answer (a restart keeps it), and how long a new request will take, from this instance's own measured stages."""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import secrets
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from backends.base import GenerationRequest

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


@dataclass
class ShownRun:
    """A finished comparison as the page shows it: the request, where and when it ran, every row's figures."""

    request: GenerationRequest
    finished: str  # ISO time (UTC) the last row finished
    machine: str  # the CPU and threads it ran on
    example: bool  # a built-in example computed at start, not a visitor's request
    rows: list[dict]  # `RowResult.figures()` of every row, in display order
    images: dict[str, np.ndarray] = field(default_factory=dict)  # backend id -> uint8 image as shown

    @classmethod
    def from_results(cls, request, results, machine: str, example: bool = False) -> ShownRun:
        from .comparison import to_uint8

        # `Comparison.run` blanks the images from the first flagged row on; the page blanks the earlier ones too
        # (every row's image of a flagged request), and so must what is kept to be shown again.
        blank = any(r.flagged for r in results)
        images = {r.backend: to_uint8(r.image) for r in results if r.image is not None}
        return cls(
            request=request,
            finished=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            machine=machine,
            example=example,
            rows=[r.figures() for r in results],
            images={b: np.zeros_like(image) if blank else image for b, image in images.items()},
        )

    def label(self) -> str:
        r = self.request
        what = "Built-in example, computed when this instance started" if self.example else "Last comparison run here"
        when = self.finished.replace("T", " ").replace("+00:00", " UTC")
        return (
            f"**{what}**: “{r.prompt}”, seed {r.seed}, {r.steps} steps, {r.width}x{r.height}, "
            f"{r.scheduler}, guidance {r.guidance_scale:g} — {when}, on {self.machine}. A new run replaces it."
        )


class Showcase:
    """What the page shows before a visitor runs anything, one entry per model and machine: the same cache
    directory may be shared by another model or moved to another CPU, whose figures must not appear here."""

    def __init__(self, root: Path, machine: str):
        self.root = Path(root)
        self.machine = machine
        self._lock = threading.Lock()
        self._latest: dict[str, ShownRun | None] = {}  # entry key -> run, read from disk once

    def key(self, model) -> str:
        return re.sub(r"[^A-Za-z0-9.-]+", "_", f"{model.model_id}-{model.revision}-{self.machine}")[:200]

    def latest(self, model) -> ShownRun | None:
        """The last finished comparison of `model` on this machine (None before the first, or while the model
        is not known yet)."""
        if model is None:
            return None
        key = self.key(model)
        with self._lock:
            if key not in self._latest:
                self._latest[key] = self._read(self.root / key)
            return self._latest[key]

    def record(self, model, run: ShownRun) -> None:
        """Keep `run` as the latest (in memory and on disk: images first, then run.json replaced atomically)."""
        key = self.key(model)
        with self._lock:
            self._latest[key] = run
            try:
                self._write(self.root / key, run)
            except OSError as exc:  # a read-only or full disk costs the restart its answer, not the request
                log.warning("could not keep the last comparison in %s: %s", self.root / key, exc)

    def estimate(self, model, backend_ids: list[str], size: int, steps: int) -> tuple[float, list[str]]:
        """(seconds, rows without a measurement): the latest run's stages of each row at this size, with the
        denoising scaled to `steps` (its per-step time is what the step count changes)."""
        run = self.latest(model)
        figures = {r["backend"]: r for r in run.rows} if run and run.request.height == size else {}
        total, unknown = 0.0, []
        for backend_id in backend_ids:
            stages = (figures.get(backend_id) or {}).get("stages")
            if not stages:
                unknown.append(backend_id)
                continue
            total += stages["text_encoding"] + stages["vae_decoding"] + stages["denoising"] * steps / run.request.steps
        return total, unknown

    @staticmethod
    def _write(directory: Path, run: ShownRun) -> None:
        from PIL import Image

        directory.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(4)
        files = {}
        for backend_id, image in run.images.items():
            name = f"{backend_id}-{token}.png"
            Image.fromarray(image).save(directory / name)
            files[backend_id] = name
        record = {**asdict(run), "request": asdict(run.request), "images": files}
        tmp = directory / f"{RUN_FILE}.{token}"
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, directory / RUN_FILE)
        for old in directory.glob("*.png"):  # the images of earlier runs
            if old.name not in files.values():
                old.unlink(missing_ok=True)

    @staticmethod
    def _read(directory: Path) -> ShownRun | None:
        from PIL import Image

        path = directory / RUN_FILE
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
            images = {
                b: np.asarray(Image.open(directory / name).convert("RGB")) for b, name in record["images"].items()
            }
            return ShownRun(**{**record, "request": GenerationRequest(**record["request"]), "images": images})
        except (OSError, ValueError, TypeError, KeyError) as exc:  # damaged: start without it
            log.warning("ignoring the stored comparison in %s: %s", directory, exc)
            return None
