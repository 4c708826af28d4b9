"""Validation of visitor input: every limit named in the message, nothing silently corrected."""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.request import SCHEDULERS, GenerationRequest

MAX_PROMPT_CHARS = 1000  # far beyond CLIP's 77 tokens; longer input is rejected, not processed
MAX_SEED = 2**32 - 1
STEPS_RANGE = (1, 50)
GUIDANCE_RANGE = (1.0, 20.0)  # exclusive low end: the static-shape rows are compiled for classifier-free guidance


class InvalidRequest(ValueError):
    """Shown to the visitor as is."""


@dataclass(frozen=True)
class Limits:
    sizes: tuple[int, ...]  # square sizes the static rows were compiled for
    max_steps: int = STEPS_RANGE[1]  # the operator's cap on steps (a public instance sets a lower one)
    max_size: int = 0  # the operator's cap on the side of an image; 0: every compiled size
    why: str = ""  # said after a cap's refusal, e.g. "on this public demo (the operator's limit)"

    def offered(self) -> tuple[int, ...]:
        return tuple(s for s in self.sizes if not self.max_size or s <= self.max_size)


def side_of(size):
    """The side of a size as the page offers it ("512x512" -> "512"); anything else as given, for the checks below
    to name."""
    return str(size).split("x")[0] if size else size


def _shown(value) -> str:
    """A visitor's value quoted in a message: short, and with no character a page could read as markup."""
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return "".join(c if c.isalnum() or c in " .,:;'+-_" else "?" for c in text)


def _number(value, name: str, kind: type):
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidRequest(f"{name} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be a number, got {_shown(value)}") from None
    if not math.isfinite(number):
        raise InvalidRequest(f"{name} must be a finite number, got {_shown(value)}")
    if kind is int:
        if number != int(number):
            raise InvalidRequest(f"{name} must be a whole number, got {_shown(value)}")
        return int(number)
    return number


def validate_request(
    *,
    prompt,
    negative_prompt="",
    seed=42,
    steps=20,
    guidance_scale=7.5,
    height=512,
    width=512,
    scheduler="dpm++",
    limits: Limits,
) -> GenerationRequest:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequest("prompt is empty: type what you want to see")
    negative_prompt = negative_prompt or ""
    if not isinstance(negative_prompt, str):
        raise InvalidRequest("negative prompt must be text")
    for name, text in (("prompt", prompt), ("negative prompt", negative_prompt)):
        if len(text) > MAX_PROMPT_CHARS:
            raise InvalidRequest(f"{name} is {len(text)} characters; the limit is {MAX_PROMPT_CHARS}")
    seed = _number(seed, "seed", int)
    if not 0 <= seed <= MAX_SEED:
        raise InvalidRequest(f"seed must be between 0 and {MAX_SEED}, got {seed}")
    steps = _number(steps, "steps", int)
    if not STEPS_RANGE[0] <= steps <= STEPS_RANGE[1]:
        raise InvalidRequest(f"steps must be between {STEPS_RANGE[0]} and {STEPS_RANGE[1]}, got {steps}")
    if steps > limits.max_steps:
        raise InvalidRequest(f"steps must be at most {limits.max_steps}{limits.why}, got {steps}")
    guidance = _number(guidance_scale, "guidance", float)
    if not GUIDANCE_RANGE[0] < guidance <= GUIDANCE_RANGE[1]:
        raise InvalidRequest(
            f"guidance must be above {GUIDANCE_RANGE[0]:g} and at most {GUIDANCE_RANGE[1]:g}, got {guidance:g}"
        )
    height, width = _number(height, "height", int), _number(width, "width", int)
    offered = ", ".join(f"{s}x{s}" for s in limits.offered())
    for name, size in (("height", height), ("width", width)):
        if size <= 0 or size % 8:
            raise InvalidRequest(f"{name} must be a positive multiple of 8, got {size}")
    if limits.max_size and height in limits.sizes and height > limits.max_size:
        cap = limits.max_size
        raise InvalidRequest(f"size {width}x{height} is above {cap}x{cap}, the largest{limits.why}; use {offered}")
    if height != width or height not in limits.offered():
        raise InvalidRequest(f"size {width}x{height} is not offered; the rows are compiled for {offered}")
    if scheduler not in SCHEDULERS:
        raise InvalidRequest(f"unknown scheduler {_shown(scheduler)}; choose one of {', '.join(SCHEDULERS)}")
    return GenerationRequest(prompt, negative_prompt, seed, steps, guidance, height, width, scheduler)
