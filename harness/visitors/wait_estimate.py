"""How long a new request will take, from the stages this instance measured in its latest comparison (an example's
or a visitor's: only timings are kept here, never what anyone asked for)."""

from __future__ import annotations

import threading

from harness.compare.validation import side_of


class WaitEstimate:
    def __init__(self):
        self._lock = threading.Lock()
        self._latest: dict[int, tuple[int, dict[str, dict]]] = {}  # size -> (steps, backend id -> stages)

    def record(self, size: int, steps: int, rows: list[dict]) -> None:
        """Keep the stages of every row that has them (`RowResult.figures()` dicts) of a finished comparison."""
        stages = {r["backend"]: r["stages"] for r in rows if r.get("stages")}
        if stages:
            with self._lock:
                self._latest[size] = (steps, stages)

    def estimate(self, backend_ids: list[str], size: int, steps: int) -> tuple[float, list[str]]:
        """(seconds, rows without a measurement): the latest stages of each row at this size, with the denoising
        scaled to `steps` (its per-step time is what the step count changes)."""
        with self._lock:
            measured_steps, stages_by_row = self._latest.get(size, (steps, {}))
        total, unknown = 0.0, []
        for backend_id in backend_ids:
            stages = stages_by_row.get(backend_id)
            if not stages:
                unknown.append(backend_id)
                continue
            total += stages["text_encoding"] + stages["vae_decoding"] + stages["denoising"] * steps / measured_steps
        return total, unknown

    def text(self, comparison, size, steps, at_once: str = "") -> str:
        """The line beside the button: about how long a run of every ready row takes at this size and steps.
        `at_once`: how many visitors are served at once, in words (cluster mode); "" = one at a time."""
        try:
            side, steps = int(side_of(size)), int(steps)
        except (TypeError, ValueError):
            return ""
        ready = comparison.rows.ready()
        if not ready:
            return "_No row is ready yet._"
        seconds, unknown = self.estimate(ready, side, steps)
        if len(unknown) == len(ready):
            return f"_No run at {side}x{side} measured here yet: the first one shows how long it takes._"
        text = f"About **{seconds:.0f} s** for every ready row at {side}x{side}, {steps} steps"
        if unknown:
            text += f" (plus {', '.join(comparison.rows.titles[b] for b in unknown)}, not measured yet)"
        queue = at_once or "Requests run one at a time"
        return text + f", from the latest run here. {queue}: your place in the queue shows below."
