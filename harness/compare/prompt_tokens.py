"""What CLIP's 77-token limit drops from a prompt, told to the visitor (diffusers truncates silently)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from core.request import GenerationRequest


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
