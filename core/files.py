"""Writing files so that a reader never sees half of one: a temporary sibling, then an atomic rename."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes | str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, record) -> None:
    write_atomic(path, json.dumps(record, indent=1, default=str))
