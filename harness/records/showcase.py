"""The built-in examples as computed on this instance, kept in the cache directory (per model, machine and
example) so that the page opens on a finished answer and a restart keeps it. Only the operator's examples are
kept there: a visitor's comparison is shown to that visitor alone and never stored (with `--kiosk-visitors`, the
booth screen keeps the latest few in a temporary directory, gone with the process). A kept comparison holds the
other machines' rows too, when the page has other machines (`KeptGroup`)."""

from __future__ import annotations

import datetime
import io
import json
import logging
import secrets
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core.files import write_atomic, write_json
from core.images import to_uint8
from core.naming import slug
from core.request import GenerationRequest, latents_digest
from harness.records.system_info import machine_fingerprint

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
BOOTH_FIRST = 100  # kept comparisons numbered from here on are the booth's prompts' (harness.records.booth)
VISITOR_FIRST = 200  # and from here on visitors', for the booth screen (`--kiosk-visitors`: harness.records.booth)


HEALTH_KEPT = ("cpu", "cpu_kind", "threads", "machine", "titles", "kind", "node", "node_ip")  # of its `/health`


@dataclass
class KeptGroup:
    """Another machine's part of a kept comparison (a remote instance, or a cluster's machines of one CPU kind):
    its rows as it measured them, on its own CPU. The fields a `MachineState` has, once its run ended."""

    label: str  # the operator's name for it, the page's group heading
    state: str  # "done", or why it gave no rows ("unreachable", "too slow", ...: `RunState`'s words)
    detail: str = ""
    health: dict = field(default_factory=dict)  # what its `/health` said of it (`HEALTH_KEPT`): CPU, threads, titles
    latents_sha256: str | None = None  # the hash of the starting noise it used
    rows: list[dict] = field(default_factory=list)  # its rows' figures, in the page's row order
    images: dict[str, Path] = field(default_factory=dict)  # backend id -> PNG file, as shown

    @classmethod
    def from_state(cls, state, noise: str) -> tuple[KeptGroup, dict[str, np.ndarray]]:
        """A `MachineState` once its run ended, and its images (read from its files). Its rows are kept only when
        they started from the page's noise `noise` (else its pictures are not the same picture's)."""
        health = {k: v for k, v in (state.health or {}).items() if k in HEALTH_KEPT}
        group = cls(str(state.label), str(state.state), str(state.detail), health, state.latents_sha256)
        if state.latents_sha256 not in (None, noise):
            return group, {}
        images = {}
        for backend, path in state.images.items():
            try:
                with Image.open(path) as png:
                    images[backend] = np.asarray(png.convert("RGB"))
            except OSError as exc:  # its file went (pruned): the row is kept without its picture
                log.warning("%s: the image of %s could not be read: %s", state.label, backend, exc)
        group.rows = [r for r in state.rows if isinstance(r, dict) and "backend" in r]
        return group, images

    @property
    def machine(self) -> str:
        """Its CPU in words ("" when it did not answer)."""
        health = self.health
        return f"{health['cpu']}, {health.get('threads')} threads" if health.get("cpu") else ""

    @property
    def same_machine(self) -> bool:
        """It ran on this instance's own machine: the two disturbed each other's timings."""
        return bool(self.health.get("machine")) and self.health.get("machine") == machine_fingerprint()


@dataclass
class ShownRun:
    """A finished comparison as the page shows it: the request, where and when it ran, every row's figures."""

    request: GenerationRequest
    finished: str  # ISO time (UTC) this machine's last row finished
    machine: str  # the CPU and threads it ran on
    example: int  # which built-in example (its index)
    rows: list[dict]  # `RowResult.figures()` of every row, in display order
    images: dict[str, Path] = field(default_factory=dict)  # backend id -> PNG file, as shown
    groups: list[KeptGroup] = field(default_factory=list)  # the other machines' parts, in the page's order

    @classmethod
    def from_results(
        cls, request, results, machine: str, example: int, states=(), finished: str = ""
    ) -> tuple[ShownRun, dict]:
        """The run and its images (uint8, to be written by `Showcase.record`: this machine's by backend id, each
        other machine's by `group_image(index, backend id)`); `states`: the other machines' `MachineState`s."""
        noise = latents_digest(request.seed, request.height, request.width)
        kept = [KeptGroup.from_state(state, noise) for state in states]
        images = {r.backend: to_uint8(r.image) for r in results if r.image is not None}
        for index, (_group, pictures) in enumerate(kept):
            images.update({group_image(index, b): picture for b, picture in pictures.items()})
        run = cls(
            request=request,
            finished=finished or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            machine=machine,
            example=example,
            rows=[r.figures() for r in results],
            groups=[group for group, _pictures in kept],
        )
        # `Comparison.run` blanks the images from the first flagged row on; the page blanks the earlier ones too
        # (every row's image of a flagged request), and so must what is kept to be shown again: every machine's.
        return run, {key: np.zeros_like(image) if run.flagged else image for key, image in images.items()}

    @property
    def flagged(self) -> bool:
        """Whether the safety checker flagged an image of it (on any machine)."""
        return any(row.get("flagged") for rows in [self.rows, *(g.rows for g in self.groups)] for row in rows)

    def label(self) -> str:
        """Operator-chosen text only (the example's prompt), so it may be shown as Markdown."""
        r = self.request
        return (
            f"**{self.kind_words()}**: “{r.prompt}”, seed {r.seed}, {r.steps} steps, "
            f"{r.width}x{r.height}, {r.scheduler}, guidance {r.guidance_scale:g} — computed {self.finished_words()} "
            f"on {self.machine}."
        )

    def finished_words(self) -> str:
        """When it finished, as the page says it: "2026-12-07 10:00:47 UTC"."""
        return self.finished.replace("T", " ").replace("+00:00", " UTC")

    def kind_words(self) -> str:
        """ "Built-in example N", "Booth prompt N" for a booth comparison, "A visitor's prompt"."""
        if self.example >= VISITOR_FIRST:
            return "A visitor's prompt"
        if self.example >= BOOTH_FIRST:
            return f"Booth prompt {self.example - BOOTH_FIRST + 1}"
        return f"Built-in example {self.example + 1}"


def group_image(index: int, backend_id: str) -> str:
    """The key (and file name) of the `index`-th other machine's image of a row."""
    return f"group{index + 1}-{backend_id}"


class Showcase:
    """The computed examples, one entry per model, machine and example: the same cache directory may be shared by
    another model or moved to another CPU, whose figures must not appear here."""

    def __init__(self, root: Path, machine: str):
        self.root = Path(root)
        self.machine = machine
        self._lock = threading.Lock()
        self._runs: dict[str, ShownRun | None] = {}  # entry key -> run, read from disk once

    def key(self, model, example: int) -> str:
        # "noise2": the starting noise drawn in float64 (the same on every CPU kind); an example kept from the
        # earlier float32 draw is computed again.
        return slug(f"{model.model_id}-{model.revision}-{self.machine}-noise2-example{example}")

    def example(self, model, example: int) -> ShownRun | None:
        """Example `example` as computed on this machine (None before it is, or while the model is unknown)."""
        if model is None:
            return None
        key = self.key(model, example)
        with self._lock:
            if key not in self._runs:
                self._runs[key] = _read(self.root / key)
            return self._runs[key]

    def computed(self, model, count: int, first: int = 0) -> list[ShownRun]:
        """The kept runs numbered `first` to `first + count - 1`, in order (those computed so far)."""
        return [run for i in range(first, first + count) if (run := self.example(model, i)) is not None]

    def record(self, model, run: ShownRun, images: dict[str, np.ndarray]) -> None:
        """Keep `run` (in memory and on disk: images first, then run.json, each written atomically; the previous
        run's images of this example are deleted, never accumulated)."""
        key = self.key(model, run.example)
        try:
            _write(self.root / key, run, images)
        except OSError as exc:  # a read-only or full disk costs the restart its answer, not the request
            log.warning("could not keep example %d in %s: %s", run.example, self.root / key, exc)
        with self._lock:
            self._runs[key] = run


def _write(directory: Path, run: ShownRun, images: dict[str, np.ndarray]) -> None:
    """Write the images and run.json; set the run's (and its groups') image paths."""
    token = secrets.token_hex(4)
    paths = {}
    for key, image in images.items():
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        paths[key] = directory / f"{key}-{token}.png"
        write_atomic(paths[key], buffer.getvalue())
    run.images = {row["backend"]: paths[row["backend"]] for row in run.rows if row["backend"] in paths}
    for index, group in enumerate(run.groups):
        keys = {row["backend"]: group_image(index, row["backend"]) for row in group.rows}
        group.images = {backend: paths[key] for backend, key in keys.items() if key in paths}
    names = {b: p.name for b, p in run.images.items()}
    groups = [{**asdict(g), "images": {b: p.name for b, p in g.images.items()}} for g in run.groups]
    write_json(directory / RUN_FILE, {**asdict(run), "request": asdict(run.request), "images": names, "groups": groups})
    for old in directory.glob("*.png"):  # the images of the run this one replaces
        if old not in paths.values():
            old.unlink(missing_ok=True)


def _read(directory: Path) -> ShownRun | None:
    """The stored run, or None when there is none or it cannot be read as one (a damaged or foreign file is
    skipped with a log line: it never stops the page)."""
    path = directory / RUN_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        images = {b: directory / name for b, name in record["images"].items()}
        groups = [
            KeptGroup(**{**g, "images": {b: directory / name for b, name in g["images"].items()}})
            for g in record.get("groups", [])  # none in a run kept before other machines were kept with it
        ]
        run = ShownRun(**{**record, "request": GenerationRequest(**record["request"]), "images": images,
                          "groups": groups})  # fmt: skip
        rows = [*run.rows, *(row for g in groups for row in g.rows)]
        if not isinstance(run.example, int) or not all(isinstance(r, dict) and "backend" in r for r in rows):
            raise ValueError("rows or example of another shape")
        for image in [*images.values(), *(p for g in groups for p in g.images.values())]:
            with Image.open(image) as png:
                png.verify()
        return run
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("ignoring the stored comparison in %s: %s: %s", directory, type(exc).__name__, exc)
        return None
