"""At most one running or queued comparison per client (per IP address): one visitor cannot hold the machine.

Gradio 6 has no per-client limit of its own (its queue limits events per function and in all, not per client);
its event `validator` runs before an event is queued and can refuse it, so the check lives there, reading
Gradio's queue for what each client already holds (the caller's `holdings`). A client admitted a moment ago
whose event is not in the queue yet counts too, so two requests sent at once cannot both pass."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

ADMITTED_GRACE_S = 10.0  # how long an admitted request may take to appear in the queue


class FairShare:
    def __init__(self, holdings: Callable[[str], tuple[bool, int | None]]):
        """`holdings(client)` -> (running now?, place in the queue or None)."""
        self.holdings = holdings
        self._lock = threading.Lock()
        self._admitted: dict[str, float] = {}  # client -> monotonic time its last request was admitted
        self.last_started: float | None = None  # monotonic time the latest visitor's comparison started

    def admit(self, client: str) -> str | None:
        """None when `client` may queue a comparison; otherwise what to tell them."""
        with self._lock:
            running, place = self.holdings(client)
            if running:
                return "You already have a comparison running: one at a time per visitor. It finishes soon."
            if place is not None:
                return f"You already have a comparison queued: place {place}. One at a time per visitor."
            admitted = self._admitted.get(client)
            if admitted is not None and time.monotonic() - admitted < ADMITTED_GRACE_S:
                return "You already have a comparison queued. One at a time per visitor."
            self._admitted[client] = time.monotonic()
            return None

    def started(self, client: str) -> None:
        """The client's comparison runs now (Gradio's queue shows it from here on)."""
        with self._lock:
            self._admitted.pop(client, None)
            self.last_started = time.monotonic()
