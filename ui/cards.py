"""The page's words: row cards, status lines, the headline, the banner; every text a visitor may have typed is
shown as typed (`plain`), and no Markdown here renders maths (`text`)."""

from __future__ import annotations

import html
import logging
import re

import gradio as gr

from core.request import GenerationRequest
from harness.compare.comparison import Comparison

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


def card_markdown(comparison: Comparison, backend_id: str, row: dict | None = None, tables=(), ran_on=()) -> str:
    """A row's result: the big ratio, its figures and notes; until its first result, what the row is. A row this
    CPU cannot run says what it needs, the remotes that ran it in this comparison (`ran_on`: (label, figures)), and from
    the committed results (`tables`) what it did on CPUs that ran it."""
    lines = [f"### {comparison.rows.titles[backend_id]}"]
    if not comparison.rows.runs_here(backend_id) and (row is None or row["status"] != "ok"):
        lines.append(f"**Not on this CPU**: {comparison.rows.why_not_here(backend_id)}")
        for label, remote_row in ran_on:  # the row's figures from a remote that ran it, in this comparison
            checked = checked_remote_row(remote_row)
            if checked is not None and checked["status"] == "ok":
                ratio = f", {ratio_words(checked['speedup'])} than its own baseline" if checked["speedup"] else ""
                lines.append(f"**Ran on {plain(label)}**: {checked['latency_s']:.2f} s{ratio} (its group below).")
        lines += measured_elsewhere(tables, backend_id)
    else:
        lines += result_lines(row, is_reference=backend_id == comparison.rows.reference)
    load = comparison.rows.status[backend_id].load
    if load is not None and load.recipe_note:  # which recipe runs and why, in words (the int8 row)
        lines.append(f"_{load.recipe_note}_")
    return "\n\n".join(lines)


def result_lines(row: dict | None, is_reference: bool, versus: str = "", against_page: float | None = None) -> list:
    """A row's figures as a card shows them, the local rows' and the remote rows' alike: the big ratio against its
    own machine's reference row (`versus` names that machine, for a remote), figures, notes; `against_page`, for a
    remote row, is its speed-up over this page's own reference row."""
    if row is None:
        return ["_no result yet_"]
    if row["status"] != "ok":
        return [f"**{row['status']}**: {row['message']}"]
    other_work = row.get("different_work")
    if other_work:  # fewer steps, another decoder: how soon its image came, never a speed-up nor a fidelity
        lines = [f"## an image in {row['latency_s']:.1f} s"]
        if row.get("sooner"):
            lines.append(f"**{row['sooner']:.1f}× sooner than the baseline's image** (not a speed-up: other work)")
    elif is_reference:
        lines = ["## reference" + (f" <small>({versus})</small>" if versus else "")]
    else:
        speedup = row.get("speedup")
        lines = [
            f"## {ratio_words(speedup) if speedup else 'no baseline'}"
            + (f" <small>than {versus}</small>" if versus else "")
        ]
    figures = f"**{row['latency_s']:.2f} s** total · {row['s_per_step']:.3f} s/step"
    if row.get("psnr_db") is not None and row.get("ssim") is not None:
        figures += f" · PSNR {row['psnr_db']:.1f} dB · SSIM {row['ssim']:.3f}"
    lines.append(figures)
    if other_work:
        lines.append(f"_{plain(str(other_work))}. No PSNR/SSIM: a different model's image is not measured "
                     "against the baseline's._")  # fmt: skip
    elif against_page:
        lines.append(f"{ratio_words(against_page)} than this page's baseline (across machines)")
    if row.get("message"):
        lines.append(f"_{row['message']}_")
    return lines


def remote_card_markdown(
    title: str, row: dict | None, reference: str | None, page_baseline_s: float | None, missing="_no result yet_"
) -> str:
    """A remote row's card: the same figures as a local card, its ratio against its own machine's baseline and,
    labelled apart, against this page's baseline."""
    lines = [f"### {plain(title)}"]
    row = checked_remote_row(row)
    if row is None:
        return "\n\n".join([*lines, missing])
    ok = row["status"] == "ok"
    against = page_baseline_s / row["latency_s"] if ok and page_baseline_s else None
    is_reference = row.get("backend") == reference
    versus = "its machine's baseline" if is_reference else "its own baseline"
    return "\n\n".join([*lines, *result_lines(row, is_reference, versus, against)])


def checked_remote_row(row) -> dict | None:
    """A remote's figures dict as a card may show it: its words as plain text, its figures numbers (else None)."""
    if not isinstance(row, dict) or not isinstance(row.get("status"), str):
        return None
    numbers = ("latency_s", "s_per_step")
    if row["status"] == "ok" and not all(isinstance(row.get(k), (int, float)) and row[k] > 0 for k in numbers):
        return None
    clean = {**row, "status": plain(row["status"]), "message": plain(str(row.get("message") or ""))}
    for key in ("speedup", "psnr_db", "ssim", "sooner"):
        if not isinstance(row.get(key), (int, float)):
            clean[key] = None
    return clean


def remote_header(state, page_machine: str, page_noise: str) -> str:
    """A remote group's heading: its label and CPU, where its comparison is, the network apart from the rows, and
    whether it ran on this page's machine or from other noise."""
    health = state.health or {}
    cpu = f" — {plain(str(health['cpu']))} ({plain(str(health.get('cpu_kind', '')))})" if health.get("cpu") else ""
    lines = [f"## {plain(state.label)}{cpu}"]
    if health.get("node"):  # a cluster kind: which of its machines ran this visitor's rows
        lines.append(f"<small>ran on the machine at {plain(str(health.get('node_ip')))} (Ray node "
                     f"{plain(str(health['node'])[:12])})</small>")  # fmt: skip
    done = sum(r.get("status") == "ok" for r in state.rows)
    words = {
        "connecting": "connecting…",
        "queued": state.detail,
        "running": f"running: {done} row(s) done",
        "done": f"done: {done} row(s)",
    }
    lines.append(f"**{state.state}**: {plain(state.detail)}" if state.state not in words else words[state.state])
    timing = []
    if state.connect_s is not None:
        timing.append(f"network: connecting and asking its state took {state.connect_s:.2f} s")
    if state.finished and state.started:
        timing.append(f"the whole call {state.finished - state.started:.1f} s (its rows are timed on its machine)")
    if timing:
        lines.append("<small>" + "; ".join(timing) + "</small>")
    if health.get("machine") and health.get("machine") == page_machine:
        lines.append(
            "_This remote runs on the same machine as this page: the two disturb each other's timings, so no figure "
            "here is clean._"
        )
    if state.latents_sha256 and state.latents_sha256 != page_noise:
        lines.append(f"**Other starting noise** (its {state.latents_sha256}, this page's {page_noise}).")
    elif state.latents_sha256:
        lines.append(f"<small>Same starting noise as this page (hash {state.latents_sha256}).</small>")
    return "\n\n".join(lines)


def remote_waiting_header(label: str) -> str:
    return f"## {plain(label)}\n\n_Runs your comparison at the same time as this machine: press Generate._"


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
    """The fastest row of the same work against the baseline; a row of other work (`different_work`) gets a line of
    its own below it, never the headline's claim."""
    if any(r.get("inflated_by") for r in rows):  # never a headline from a ratio that is not clean
        return "_Some rows were timed while another row was loading: the ratios are not clean, so no headline._"
    fastest, other_work = headline_rows(rows, reference)
    lines = []
    if fastest is not None:
        psnr = f", PSNR {fastest['psnr_db']:.0f} dB vs baseline" if fastest.get("psnr_db") is not None else ""
        recipe = f" ({fastest['recipe']})" if fastest.get("recipe") else ""
        lines.append(f"# {fastest['title']}{recipe}: {fastest['speedup']:.1f}× faster than baseline{psnr}")
    for r in other_work:
        lines.append(
            f"### Other work: {r['title']}: an image in {r['latency_s']:.1f} s on this CPU, {r['sooner']:.1f}× "
            f"sooner than the baseline's image\n_{plain(str(r['different_work']))}._"
        )
    return "\n\n".join(lines)


def headline_rows(rows: list[dict], reference: str | None) -> tuple[dict | None, list[dict]]:
    """What a headline claims: the fastest row of the same work against the baseline (None when no row but the
    baseline gave one, or a ratio is not clean), and the rows of other work, each said apart."""
    if any(r.get("inflated_by") for r in rows):
        return None, []
    done = [r for r in rows if r["status"] == "ok" and r.get("speedup") and not r.get("different_work")]
    fastest = max(done, key=lambda r: r["speedup"], default=None)
    other = [r for r in rows if r["status"] == "ok" and r.get("different_work") and r.get("sooner")]
    return (fastest if fastest is not None and fastest["backend"] != reference else None), other


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
