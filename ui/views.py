"""What the page shows of a comparison, as `/generate`'s outputs (`harness.api.GenerateOutputs`): this machine's
rows, the groups of other machines, a kept example."""

from __future__ import annotations

from dataclasses import asdict

import gradio as gr

from core.request import latents_digest
from harness.machines.runs import MachineState, RunState
from harness.records.examples import EXAMPLES, missing
from harness.records.system_info import machine_fingerprint

from .cards import card_markdown, headline, remote_card_markdown, remote_header, remote_waiting_header
from .charts import latency_chart, slider_pair, stage_chart
from .context import Page


def page_outputs(page: Page, seed, message: str, shown: dict, awaiting, groups: list) -> list:
    """`/generate`'s outputs: the seed, the message, `shown` (`view`'s parts), the page's awaited example and the
    groups of other machines (`machine_groups`)."""
    parts = {**shown, "seed": seed, "message": message, "awaiting": awaiting}
    return page.outputs.assemble(parts, shown["images"], shown["cards"], groups)


def view(page: Page, about: dict, rows: list[dict], images: dict, compare_with, final: bool, states=()) -> dict:
    """This machine's part of the outputs, by name: headline, latency chart, figures JSON (`about` the request, then
    every row, then every other machine's part), one image (a PNG file) and one card per row, stage chart, slider,
    the slider's choice of row (another machine's rows too), and the images kept for the slider. `states`: the other
    machines' `MachineState`s (their own outputs are `machine_groups`')."""
    comparison = page.comparison
    order, reference = comparison.rows.order, comparison.rows.reference
    by_id = {r["backend"]: r for r in rows}
    # Charts are drawn once, for a finished comparison: Gradio's bar plot keeps the colour legend of its first data.
    chart = gr.BarPlot(latency_chart(rows, reference), sort=[r["title"] for r in rows]) if final else gr.skip()
    stages = gr.BarPlot(stage_chart(rows), sort=[r["title"] for r in rows]) if final else gr.skip()
    images = {**images, **machine_images(states)}
    titles = {**comparison.rows.titles, **machine_titles(states)}
    others = list(dict.fromkeys(b for b in [*order, *images] if b != reference and b in images))
    chosen = compare_with if compare_with in others else (others[-1] if others else None)
    ran_on = {b: [(s.label, r) for s in states for r in s.rows if r.get("backend") == b] for b in order}
    figures = {**about, "rows": rows}
    if states:
        figures["remotes"] = [machine_figures(s) for s in states]
    return {
        "headline": headline(rows, reference),
        "latency_chart": chart,
        "figures": figures,
        "images": [images.get(b) for b in order],
        "cards": [card_markdown(comparison, b, by_id.get(b), page.tables, ran_on[b]) for b in order],
        "stage_chart": stages,
        "slider": gr.ImageSlider(
            slider_pair(images, reference, chosen), label=f"Baseline ◀ ▶ {titles.get(chosen, '')}"
        ),
        "compare_with": gr.Radio(choices=[(titles[b], b) for b in others], value=chosen),
        "kept_images": images,
    }


def machine_key(label: str, backend_id: str) -> str:
    """Another machine's row among the page's images (the slider's choices)."""
    return f"{label} · {backend_id}"


def machine_images(states) -> dict:
    return {machine_key(s.label, b): path for s in states for b, path in s.images.items()}


def machine_titles(states) -> dict:
    titles = {}
    for s in states:
        names = (s.health or {}).get("titles") or {}
        for b in s.images:
            titles[machine_key(s.label, b)] = f"{s.label}: {names.get(b, b)}"
    return titles


def machine_figures(state) -> dict:
    """Another machine's part of the figures JSON: where its run is, its CPU, the network apart, its rows' figures."""
    health = state.health or {}
    return {
        "label": state.label,
        "state": state.state,
        "detail": state.detail,
        "cpu": health.get("cpu"),
        "cpu_kind": health.get("cpu_kind"),
        "machine": health.get("machine"),
        # cluster rows: the kind the machine serves, its Ray node and address (None for a remote instance)
        "kind": health.get("kind"),
        "node": health.get("node"),
        "node_ip": health.get("node_ip"),
        "latents_sha256": state.latents_sha256,
        "connect_s": state.connect_s,
        "call_s": (state.finished - state.started) if state.finished else None,
        "started_at": state.started or None,  # wall-clock (time.time()) of the call and of its end (None: kept)
        "finished_at": state.finished,
        "rows": state.rows,
    }


def machine_groups(page: Page, states=None, page_noise: str = "", page_baseline_s: float | None = None) -> list:
    """Every group of other machines' outputs: [heading, one image per row, one card per row] in this page's row
    order (they run this same app). `states` None: no comparison of the visitor's yet."""
    if page.machines is None:
        return []
    comparison = page.comparison
    order, titles, reference = comparison.rows.order, comparison.rows.titles, comparison.rows.reference
    by_label = {s.label: s for s in states or ()}
    machine = machine_fingerprint()
    groups = []
    for label in page.machines.labels():
        state = by_label.get(label)
        if state is None:
            waiting = [remote_card_markdown(titles[b], None, reference, None) for b in order]
            groups.append([remote_waiting_header(label), *[None] * len(order), *waiting])
            continue
        rows = {r.get("backend"): r for r in state.rows if isinstance(r, dict)}
        names = (state.health or {}).get("titles") or {}
        absent = f"_no result: {state.state} (above)_" if state.done else "_no result from it yet_"
        cards = [
            remote_card_markdown(str(names.get(b, titles[b])), rows.get(b), reference, page_baseline_s, absent)
            for b in order
        ]
        groups.append([remote_header(state, machine, page_noise), *[state.images.get(b) for b in order], *cards])
    return groups


def show_example(page: Page, index) -> list:
    """The page's outputs for built-in example `index` as computed here; until it is, a line saying so (and the
    page's "awaiting" state, so the status timer fills it in when it exists)."""
    index = index if isinstance(index, int) and 0 <= index < len(EXAMPLES) else 0
    run = page.showcase.example(page.comparison.rows.model, index)
    if run is None:
        waiting = (
            f"_Example {index + 1} is computed here once every row is warm"
            + (" and no visitor is waiting" if index else "")
            + "; it appears by itself._"
        )
        empty = view(page, {}, [], {}, None, final=False)
        return page_outputs(page, gr.skip(), waiting, empty, index, machine_groups(page))
    about = {"seed": run.request.seed, "request": asdict(run.request), "finished": run.finished, "machine": run.machine}
    images = {b: str(path) for b, path in run.images.items()}
    label = run.label()
    absent = missing(page.comparison, run.rows)
    if absent:
        titles = ", ".join(page.comparison.rows.titles[b] for b in absent)
        label += (
            f"\n\n_Missing from this example: {titles} (each card says why). It is computed again, with every row,"
            " when the missing rows are ready._"
        )
    states = kept_states(run)
    shown = view(page, about, run.rows, images, None, final=True, states=states)
    noise = latents_digest(run.request.seed, run.request.height, run.request.width)
    groups = machine_groups(page, states, noise, baseline_seconds(page, run.rows))
    return page_outputs(page, run.request.seed, label, shown, None, groups)


def baseline_seconds(page: Page, rows: list[dict]) -> float | None:
    """The baseline row's latency among `rows` (figures dicts), None when it gave no image."""
    reference = next((r for r in rows if r["backend"] == page.comparison.rows.reference), None)
    return reference["latency_s"] if reference and reference["status"] == "ok" else None


def kept_states(run) -> list[MachineState]:
    """A kept comparison's other machines (`KeptGroup`s) as the page shows a comparison's ended runs."""
    return [
        MachineState(
            g.label,
            RunState(g.state) if g.state in {s.value for s in RunState} else RunState.LOST,
            g.detail,
            g.health,
            g.rows,
            {b: str(path) for b, path in g.images.items()},
            g.latents_sha256,
        )  # fmt: skip
        for g in run.groups
    ]
