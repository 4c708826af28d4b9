"""File and directory names made from free text (model ids, machine labels): one rule everywhere."""

from __future__ import annotations

import re


def slug(text: str, limit: int = 200) -> str:
    """`text` with every run of characters other than letters, digits, '.' and '-' as one '_', at most `limit`
    characters (the end kept: it holds what differs, e.g. a variant after a model id)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text)[-limit:]


def model_slug(model: str) -> str:
    """A model id as a file name part: its last path component."""
    return slug(model.rstrip("/").split("/")[-1])
