"""Each row's image as a PNG file, written once under the row lock, so the page and the API hand Gradio a file
instead of an array it would encode again (beside a timed row) on every page load and slider move."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from core.files import write_atomic

KEEP = 400  # files kept: a few hundred comparisons' images, then the oldest go (bounded disk, never accumulated)


class PageImages:
    def __init__(self, directory: Path, keep: int = KEEP):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self._lock = threading.Lock()

    def save(self, image: np.ndarray) -> Path:
        """`image` (uint8 HWC) as a new PNG file; the oldest files beyond `keep` are deleted."""
        import io

        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        path = self.directory / f"{secrets.token_hex(8)}.png"
        write_atomic(path, buffer.getvalue())
        with self._lock:
            files = sorted(self.directory.glob("*.png"), key=_mtime)
            for old in files[: max(0, len(files) - self.keep)]:
                old.unlink(missing_ok=True)
        return path


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # deleted meanwhile
        return 0.0
