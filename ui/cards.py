"""The page's words: row cards, status lines, the headline, the banner; every text a visitor may have typed is
shown as typed (`plain`), and no Markdown here renders maths (`text`)."""

from __future__ import annotations

import html
import logging
import re

import gradio as gr

from core.request import GenerationRequest
from harness.comparison import Comparison

log = logging.getLogger(__name__)

STANDIN_BANNER = "**Random-weight stand-in model `{name}`: images are noise, latencies are real.**"
# Markdown's punctuation, and ':' and '@' so that no URL or e-mail address in a visitor's text becomes a link
# (GitHub-flavoured Markdown links bare URLs).
MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:@])")


def text(value: str = "", **kwargs) -> gr.Markdown:
    """A Markdown component that renders no maths: nothing on the page is LaTeX, and a visitor's `$$...$$` (which
    Gradio's Markdown renders by default) stays as typed."""
    return gr.Markdown(value, latex_delimiters=[], **kwargs)


def plain(text: str) -> str:
    """A visitor's text for a Markdown component: shown as typed, never read as Markdown or HTML."""
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", html.escape(text, quote=False))


# ------------------------------------------------------------------------------------------ view helpers


def card_markdown(comparison: Comparison, backend_id: str, row: dict | None = None, tables=()) -> str:
    """A row's result: the big ratio, its figures and notes; until its first result, what the row is. A row this
    CPU cannot run says what it needs and, from the committed results (`tables`), what it did on CPUs that ran it."""
    lines = [f"### {comparison.rows.titles[backend_id]}"]
    if not comparison.rows.runs_here(backend_id) and (row is None or row["status"] != "ok"):
        lines.append(f"**Not on this CPU**: {comparison.rows.why_not_here(backend_id)}")
        lines += measured_elsewhere(tables, backend_id)
    elif row is not None and row["status"] == "ok":
        speedup = row.get("speedup")
        big = (
            "reference"
            if backend_id == comparison.rows.reference
            else (ratio_words(speedup) if speedup else "no baseline")
        )
        lines.append(f"## {big}")
        figures = f"**{row['latency_s']:.2f} s** total · {row['s_per_step']:.3f} s/step"
        if row.get("psnr_db") is not None:
            figures += f" · PSNR {row['psnr_db']:.1f} dB · SSIM {row['ssim']:.3f}"
        lines.append(figures)
        if row.get("message"):
            lines.append(f"_{row['message']}_")
    elif row is not None:
        lines.append(f"**{row['status']}**: {row['message']}")
    else:
        lines.append("_no result yet_")
    return "\n\n".join(lines)


def measured_elsewhere(tables, backend_id: str, most: int = 2) -> list[str]:
    """The row's committed figure on the CPU kinds that ran it (the latest file of each kind, a played kind's never),
    each with its file, date, model, size and steps: what the row does where it runs."""
    lines, kinds = [], set()
    for table in sorted(tables, key=lambda t: t.date, reverse=True):
        row = next((r for r in table.rows if r.backend == backend_id and r.median_s is not None), None)
        if row is None or table.cpu_kind in kinds or table.cpu_kind.endswith("-played"):
            continue
        kinds.add(table.cpu_kind)
        ratio = f", {ratio_words(row.speedup)} than that run's baseline" if row.speedup else ""
        lines.append(
            f"_Measured on **{table.cpu_kind}** ({table.date}, `{table.path.name}`): {row.median_s:.1f} s for "
            f"{table.model} at {table.size}px, {table.steps} steps{ratio}._"
        )
    return lines[:most]


def ratio_words(speedup: float) -> str:
    return f"{speedup:.1f}× faster" if speedup >= 1 else f"{1 / speedup:.1f}× slower"


def status_line(comparison: Comparison, backend_id: str) -> str:
    """How the row runs here and whether it is ready: refreshed by the status timer, apart from the results."""
    status = comparison.rows.status[backend_id]
    load = status.load
    parts = []
    if load is not None:
        parts.append(
            f"{load.precision} · loaded in {load.seconds:.0f} s (cache {load.cache}), +{load.ram_added_mb:.0f} MB RAM"
            + (f", {load.disk_mb:.0f} MB on disk" if load.disk_mb else "")
        )
    parts.append(f"status: {status.describe()}")
    return "<small>" + " · ".join(parts) + "</small>"


def headline(rows: list[dict], reference: str | None) -> str:
    done = [r for r in rows if r["status"] == "ok" and r.get("speedup")]
    fastest = max(done, key=lambda r: r["speedup"], default=None)
    if fastest is None or fastest["backend"] == reference:
        return ""
    psnr = f", PSNR {fastest['psnr_db']:.0f} dB vs baseline" if fastest.get("psnr_db") is not None else ""
    if any(r.get("inflated_by") for r in rows):  # never a headline from a ratio that is not clean
        return "_Some rows were timed while another row was loading: the ratios are not clean, so no headline._"
    return f"# {fastest['title']}: {fastest['speedup']:.1f}× faster than baseline{psnr}"


def model_banner(comparison: Comparison) -> str:
    """What the visitor must know about the model before the figures: still downloading, a stand-in, a fallback."""
    model = comparison.rows.model
    if model is None:
        first = comparison.rows.status[comparison.rows.order[0]]
        return f"**Preparing the model** — {first.detail or 'waiting'}. The rows load once it is here."
    lines = [STANDIN_BANNER.format(name=model.model_id)] if model.standin else []
    if model.fallback_reason:
        lines.append(f"**Fell back to the `tiny` stand-in**: {model.fallback_reason}")
    return "\n\n".join(lines)


def status_lines(comparison: Comparison) -> list[str]:
    """The status timer's update: every row's status line (the result cards are left alone: they keep the
    figures of the comparison shown until the next one replaces them)."""
    return [status_line(comparison, b) for b in comparison.rows.order]


def run_label(request: GenerationRequest) -> str:
    """The label of a visitor's own comparison: their prompt shown as plain text."""
    return (
        f"**Your comparison** (shown to you only): “{plain(request.prompt)}”, seed {request.seed}, {request.steps} "
        f"steps, {request.width}x{request.height}, {request.scheduler}, guidance {request.guidance_scale:g}."
    )
