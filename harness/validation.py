"""Validation of visitor input (every limit named in the message, nothing silently corrected) and the note on
what CLIP's 77-token limit drops from a prompt."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from backends.base import SCHEDULERS, GenerationRequest

MAX_PROMPT_CHARS = 1000  # far beyond CLIP's 77 tokens; longer input is rejected, not processed
MAX_SEED = 2**32 - 1
STEPS_RANGE = (1, 50)
GUIDANCE_RANGE = (1.0, 20.0)  # exclusive low end: the static-shape rows are compiled for classifier-free guidance


class InvalidRequest(ValueError):
    """Shown to the visitor as is."""


@dataclass(frozen=True)
class Limits:
    sizes: tuple[int, ...]  # square sizes the static rows were compiled for


def _number(value, name: str, kind: type):
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidRequest(f"{name} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidRequest(f"{name} must be a finite number, got {value!r}")
    if kind is int:
        if number != int(number):
            raise InvalidRequest(f"{name} must be a whole number, got {value!r}")
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
    guidance = _number(guidance_scale, "guidance", float)
    if not GUIDANCE_RANGE[0] < guidance <= GUIDANCE_RANGE[1]:
        raise InvalidRequest(
            f"guidance must be above {GUIDANCE_RANGE[0]:g} and at most {GUIDANCE_RANGE[1]:g}, got {guidance:g}"
        )
    height, width = _number(height, "height", int), _number(width, "width", int)
    offered = ", ".join(f"{s}x{s}" for s in limits.sizes)
    for name, size in (("height", height), ("width", width)):
        if size <= 0 or size % 8:
            raise InvalidRequest(f"{name} must be a positive multiple of 8, got {size}")
    if height != width or height not in limits.sizes:
        raise InvalidRequest(f"size {width}x{height} is not offered; the rows are compiled for {offered}")
    if scheduler not in SCHEDULERS:
        raise InvalidRequest(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    return GenerationRequest(
        prompt=prompt,
        negative_prompt=negative_prompt,
        seed=seed,
        steps=steps,
        guidance_scale=guidance,
        height=height,
        width=width,
        scheduler=scheduler,
    )


@lru_cache(maxsize=4)
def _tokenizer(path: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(path)


def truncation_note(tokenizer_dir: Path, request: GenerationRequest) -> str | None:
    """What CLIP's 77-token limit drops from the prompts (diffusers truncates the same way, on every row
    alike), or None when nothing is dropped. `tokenizer_dir` is the model's `tokenizer` folder."""
    tokenizer = _tokenizer(Path(tokenizer_dir))
    keep = tokenizer.model_max_length - 2  # the start and end tokens take two of the 77 places
    notes = []
    for name, text in (("prompt", request.prompt), ("negative prompt", request.negative_prompt)):
        ids = tokenizer(text, truncation=False, add_special_tokens=False).input_ids
        if len(ids) > keep:
            dropped = tokenizer.decode(ids[keep:]).strip()
            notes.append(f"{name} is {len(ids)} tokens; CLIP reads the first {keep}, so this was dropped: {dropped!r}")
    return "; ".join(notes) or None
