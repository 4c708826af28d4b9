"""Error ids: a visitor sees a short id, the log holds the details under it."""

from __future__ import annotations

import logging
import secrets


def logged_error(log: logging.Logger, what: str, *args, exc_info: BaseException | bool = True) -> str:
    """Log `what` (a %-format with `args`) and the current exception's traceback under a new error id; return
    the words a visitor sees: "error <id>, in the log"."""
    error_id = secrets.token_hex(4)
    log.error(f"{what} (error %s)", *args, error_id, exc_info=exc_info)
    return f"error {error_id}, in the log"
