"""The app's API, written once: `/generate`'s inputs and outputs, and `/health`'s answer.

The page's layout, its handler and admission validator, the remote client (`machines.remotes`) and the cluster's
replicas (`machines.cluster`) all read this module, so an input or output is added here and nowhere else; the tests
check every reader against it. The README documents the endpoint from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from core.cpu import this_cpu
from core.request import GenerationRequest
from harness.compare.validation import side_of
from harness.records.system_info import machine_fingerprint

API_VERSION = 1  # `/health`'s "api": the /generate inputs and figures a front relies on; raised when they change
VISITOR_HEADER = "X-SBS-Visitor"  # a front's visitor, for a remote's one-comparison-per-visitor rule


@dataclass(frozen=True)
class Input:
    name: str  # the handler's parameter
    example: object  # the README's call sends this
    what: str  # the README's words


GENERATE_INPUTS = (
    Input("prompt", "sailing ship in storm by Rembrandt", "text, at most 1000 characters"),
    Input("negative_prompt", "", "text, may be empty"),
    Input("seed", 42, "0 to 4294967295"),
    Input("random_seed", False, "true: draw a new seed (the answer says which)"),
    Input("steps", 20, "1 to 50 (a public instance caps it lower)"),
    Input("guidance", 7.5, "above 1, at most 20"),
    Input("size", "512x512", "one of the offered sizes, e.g. 512x512"),
    Input("scheduler", "dpm++", "dpm++, euler, euler-a or ddim"),
    Input("compare_with", None, "the row the page's slider compares with the baseline; null: the last one"),
)
INPUT_NAMES = tuple(i.name for i in GENERATE_INPUTS)


def generate_inputs(request: GenerationRequest) -> list:
    """`/generate`'s inputs for a request already validated (its seed resolved): what a front sends a remote."""
    values = {
        **asdict(request),
        "guidance": request.guidance_scale,
        "random_seed": False,
        "size": size_label(request.height),
        "compare_with": None,
    }
    return [values[name] for name in INPUT_NAMES]


def request_fields(prompt, negative_prompt, seed, steps, guidance, size, scheduler) -> dict:
    """`/generate`'s inputs as `validate_request`'s keywords ("512x512" -> height and width)."""
    side = side_of(size)
    return {
        "prompt": prompt, "negative_prompt": negative_prompt, "seed": seed, "steps": steps, "guidance_scale": guidance,
        "height": side, "width": side, "scheduler": scheduler,
    }  # fmt: skip


def size_label(side: int) -> str:
    """A square size as the page offers it: 512 -> "512x512"."""
    return f"{side}x{side}"


class GenerateOutputs:
    """`/generate`'s outputs, in order, for `n_rows` local rows and `n_groups` groups of other machines:

    the named outputs of `BEFORE_ROWS`; one image per row, then one card per row (the page's row order, which the
    figures' "order" gives); the named outputs of `AFTER_ROWS`; then per group of other machines a heading, one
    image per row and one card per row. Over plain HTTP a client receives them all; `gradio_client` leaves out the
    page's own states (`PAGE_STATES`)."""

    BEFORE_ROWS = ("seed", "message", "headline", "latency_chart", "figures")
    AFTER_ROWS = ("stage_chart", "slider", "compare_with", "kept_images", "awaiting")
    PAGE_STATES = ("kept_images", "awaiting")  # the page's memory (gr.State), which gradio_client leaves out
    FIGURES = BEFORE_ROWS.index("figures")

    def __init__(self, n_rows: int, n_groups: int = 0):
        self.n_rows, self.n_groups = n_rows, n_groups

    def __len__(self) -> int:
        return len(self.BEFORE_ROWS) + 2 * self.n_rows + len(self.AFTER_ROWS) + self.n_groups * self.group_size

    def api_len(self) -> int:
        """How many outputs `gradio_client` returns."""
        return len(self) - len(self.PAGE_STATES)

    @property
    def group_size(self) -> int:
        return 1 + 2 * self.n_rows

    def assemble(self, parts: dict, images: list, cards: list, groups: list) -> list:
        """The output list from its named `parts`, the rows' `images` and `cards`, and the `groups`' outputs (each
        [heading, *images, *cards])."""
        if len(images) != self.n_rows or len(cards) != self.n_rows or len(groups) != self.n_groups:
            raise ValueError(f"{len(images)} images, {len(cards)} cards, {len(groups)} groups for {self!r}")
        outputs = [parts[name] for name in self.BEFORE_ROWS] + list(images) + list(cards)
        outputs += [parts[name] for name in self.AFTER_ROWS]
        for group in groups:
            if len(group) != self.group_size:
                raise ValueError(f"a group of {len(group)} outputs for {self!r}")
            outputs += group
        return outputs

    def read(self, outputs: list) -> dict:
        """The named outputs, plus "images", "cards" and "groups" (each group [heading, *images, *cards])."""
        n, before, after = self.n_rows, len(self.BEFORE_ROWS), len(self.AFTER_ROWS)
        named = dict(zip(self.BEFORE_ROWS, outputs[:before], strict=True))
        named["images"], named["cards"] = outputs[before : before + n], outputs[before + n : before + 2 * n]
        named.update(zip(self.AFTER_ROWS, outputs[before + 2 * n : before + 2 * n + after], strict=True))
        rest = outputs[before + 2 * n + after :]
        named["groups"] = [rest[i : i + self.group_size] for i in range(0, len(rest), self.group_size)]
        return named

    @classmethod
    def figures_and_images(cls, outputs) -> tuple[dict, dict]:
        """Another instance's figures and its images by row (backend id -> file), from its outputs so far: what a
        front needs of a remote, whose rows it does not know beforehand."""
        figures = outputs[cls.FIGURES] if len(outputs) > cls.FIGURES else None
        figures = figures if isinstance(figures, dict) else {}
        order = figures.get("order") or []
        start = len(cls.BEFORE_ROWS)
        return figures, dict(zip(order, outputs[start : start + len(order)], strict=False))

    def __repr__(self) -> str:
        return f"GenerateOutputs(n_rows={self.n_rows}, n_groups={self.n_groups})"


def health(comparison) -> dict:
    """`/health`'s answer as every instance and cluster replica gives it: the API version, the machine and its CPU,
    the model, and each row's state."""
    rows, cpu = comparison.rows, this_cpu()
    model = rows.model
    return {
        "api": API_VERSION,
        "ready": rows.ready(),
        "rows": {b: rows.status[b].describe() for b in rows.order},
        "titles": dict(rows.titles),
        "model": model.model_id if model else None,
        "revision": model.revision if model else None,
        "standin": model.standin if model else None,
        "cpu": cpu.model,
        "cpu_kind": cpu.slug(),
        "threads": rows.settings.threads,
        "machine": machine_fingerprint(),
    }
