"""The comparison's charts and the slider's pair of images, drawn from the rows' figures dicts."""

from __future__ import annotations

import logging
import os

import gradio as gr
import pandas as pd

from core.request import STAGES

log = logging.getLogger(__name__)

# Every view is drawn from the figures dicts of `RowResult.figures()`, so a request in progress and a
# comparison read back from disk (`harness.records.showcase`) look the same.


STAGE_LABELS = dict(zip(STAGES, ("text encoding", "denoising (UNet steps)", "VAE decoding"), strict=True))


def latency_chart(rows: list[dict], reference: str | None) -> pd.DataFrame:
    done = [r for r in rows if r["status"] == "ok"]
    return pd.DataFrame(
        {
            "row": [r["title"] for r in done],
            "latency (s)": [round(r["latency_s"], 3) for r in done],
            "kind": [
                "reference" if r["backend"] == reference else "other work" if r.get("different_work") else "optimized"
                for r in done
            ],
        }
    )


def stage_chart(rows: list[dict]) -> pd.DataFrame:
    """One stacked bar per row: seconds in text encoding, denoising and VAE decoding, as measured."""
    records = [
        {"row": r["title"], "stage": STAGE_LABELS[stage], "seconds": round(seconds, 3)}
        for r in rows
        if r["status"] == "ok" and r.get("stages")
        for stage, seconds in r["stages"].items()
    ]
    return pd.DataFrame(records, columns=["row", "stage", "seconds"])


LATENCY_COLORS = {"reference": "#d62728", "optimized": "#1f77b4", "other work": "#9467bd"}
STAGE_COLORS = dict(zip(STAGE_LABELS.values(), ("#2ca02c", "#1f77b4", "#ff7f0e"), strict=True))


def row_bars(y: str, color: str, title: str, colors: dict) -> gr.BarPlot:
    """An empty bar chart with one bar per row (drawn when a comparison finishes)."""
    return gr.BarPlot(None, x="row", y=y, color=color, title=title, x_label_angle=-20, color_map=colors, sort=None)


def slider_pair(images: dict, reference: str | None, other: str | None):
    """(reference row's image, chosen row's image) for the slider (PNG files), or None while either is missing."""
    if other is None or images.get(reference) is None or images.get(other) is None:
        return None
    if not all(os.path.exists(images[b]) for b in (reference, other)):  # an old comparison's files, since replaced
        return None
    return images[reference], images[other]
