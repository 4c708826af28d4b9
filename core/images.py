"""Image conversions shared by the harness, the safety checker and the page."""

from __future__ import annotations

import numpy as np


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] (what every row returns) as 8-bit RGB, as a visitor sees it."""
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
