"""The second tab: the same comparison on other CPUs."""

from __future__ import annotations

import logging

import pandas as pd

from harness.records.results import LatencyTable

from .cards import plain

log = logging.getLogger(__name__)


def other_cpus_table(tables: list[LatencyTable]) -> pd.DataFrame:
    """Every committed latency table: one line per CPU kind and row, short enough for a laptop and a phone (the
    CPU kind, not its model string; what the row computed in as its recipe; the file's date and commit)."""
    records = []
    for table in tables:
        for r in table.rows:
            ok = r.status == "ok"
            recipe = r.precision if ok else f"{r.status}: {r.reason}"[:120]
            if ok and r.different_work:  # its own line, never a speed-up (and so never in the chart)
                soon = f", an image {r.sooner:.1f}× sooner than the baseline's" if r.sooner else ""
                recipe = f"other work{soon} ({r.different_work}); {r.precision}"
            records.append(
                {
                    "CPU kind": table.cpu_kind,
                    "row": r.backend,
                    "latency (s)": round(r.median_s, 1) if r.median_s is not None else None,
                    "speed-up": round(r.speedup, 2) if r.speedup else None,
                    "recipe": recipe,
                    "date, commit": f"{table.date}, {table.commit}",
                }
            )
    return pd.DataFrame(records, columns=["CPU kind", "row", "latency (s)", "speed-up", "recipe", "date, commit"])


def other_cpus_sources(tables: list[LatencyTable]) -> str:
    """Each file behind the table: CPU, model, size, steps, passes and command."""
    return "\n".join(
        f"- **{t.cpu_kind}** ({t.cpu}, {t.cores} cores; {t.isa}): {t.model}, {t.size}px, {t.steps} steps, "
        f"{t.passes} timed pass(es), {t.date}, commit {t.commit}: `{t.command}`"
        for t in tables
    )


def other_cpus_chart(table: pd.DataFrame) -> pd.DataFrame:
    """One bar per CPU kind and row (each its own x position: bars never stack), coloured by CPU kind. Where several
    files of one kind measured a row (a kind's full table and a later run of some rows), the latest file's figure."""
    done = table.dropna(subset=["speed-up"])
    done = done.sort_values("date, commit", kind="stable").drop_duplicates(["CPU kind", "row"], keep="last")
    return pd.DataFrame(
        {"CPU kind · row": done["CPU kind"] + " · " + done["row"], "speed-up": done["speed-up"],
         "CPU kind": done["CPU kind"]}
    )  # fmt: skip


def ratio(row: dict) -> str:
    """A remote example row's ratio as the page words it: a speed-up for the same work, "sooner" for other work."""
    if isinstance(row.get("speedup"), (int, float)):
        return f" ({row['speedup']:.1f}×)"
    if isinstance(row.get("sooner"), (int, float)):
        return f" (other work: an image {row['sooner']:.1f}× sooner)"
    return ""


def remotes_markdown(healths: dict) -> str:
    """The live remotes first: each one's CPU, model and rows as it answers now (`RemoteSet.healths`)."""
    lines = ["### Live remotes (other machines running this app; a comparison runs on them at the same time)"]
    for label, health in healths.items():
        if not isinstance(health, dict):
            lines.append(f"- **{plain(label)}**: {plain(str(health))}")
            continue
        rows = health.get("rows") if isinstance(health.get("rows"), dict) else {}
        described = "; ".join(f"{plain(str(b))}: {plain(str(state))[:80]}" for b, state in rows.items())
        lines.append(
            f"- **{plain(label)}**: {plain(str(health.get('cpu')))} ({plain(str(health.get('cpu_kind')))}), "
            f"model `{plain(str(health.get('model')))}`. Rows: {described}"
        )
        example = health.get("example") if isinstance(health.get("example"), dict) else None
        if example and isinstance(example.get("rows"), list):
            figures = [
                f"{plain(str(r.get('title')))} {r['latency_s']:.2f} s" + ratio(r)
                for r in example["rows"]
                if isinstance(r, dict) and r.get("status") == "ok" and isinstance(r.get("latency_s"), (int, float))
            ]
            lines.append(
                f"  - its example 1 ({example.get('size')}px, {example.get('steps')} steps, "
                f"{plain(str(example.get('finished')))}): " + "; ".join(figures)
            )
    return "\n".join(lines)
