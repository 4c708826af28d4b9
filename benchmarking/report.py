"""The benchmark's reports: the Markdown tables it prints and the PNG chart it writes (where the JSON goes:
`harness.results`)."""

from __future__ import annotations

from pathlib import Path


def markdown_table(rows: list[dict]) -> str:
    """One line per row, whatever happened to it: a row that could not run says why."""
    columns = (
        "row", "runs as", "mean s/image", "median", "min", "max", "s/step", "speed-up", "PSNR dB", "SSIM",
        "text / denoise / decode s", "TFLOP/s", "% of peak (unit)", "load s (cache)", "peak RSS GB", "disk MB",
    )  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['backend']} | {r['status']}: {r.get('reason', '')} |" + " |" * (len(columns) - 2))
            continue
        speedup = _fmt(r.get("speedup"), ".2f") + ("x" if r.get("speedup") is not None else "")
        lines.append(
            f"| {r['backend']} | {r['precision']} | {r['mean_s']:.2f} | {r['median_s']:.2f} | {r['min_s']:.2f} "
            f"| {r['max_s']:.2f} | {r['s_per_step']:.3f} | {speedup} | {_fmt(r.get('psnr_db'), '.1f')} "
            f"| {_fmt(r.get('ssim'), '.3f')} | {_stages(r.get('stages_s'))} "
            f"| {r['tflops']:.2f} | {r['peak_share'] * 100:.0f} ({r['peak_unit']}) "
            f"| {r['load_s']:.0f} ({r['cache']}) | {r['peak_rss_gb']:.1f} | {_fmt(r['disk_mb'], '.0f')} |"
        )
    return "\n".join(lines)


def startup_table(report: dict) -> str:
    lines = [
        f"\n{report['model']} start-up, sizes {report['sizes']}",
        "| row | state | serving after (s) | warm after (s) | load (s) | cache | warm-up (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        if r["state"] == "ready":
            lines.append(
                f"| {r['backend']} | ready | {r['serving_s']} | {r['warm_s']} | {r['load_s']} | {r['cache']} "
                f"| {r['warmup_s']} |"
            )
        else:
            lines.append(f"| {r['backend']} | {r['state']}: {r['reason']} | | | | | |")
    memory = report["memory_gb"]
    lines.append(
        f"\nall rows serving after {report['all_serving_s']} s, all warm after {report['all_warm_s']} s; "
        f"RSS with every row loaded {memory['rss']} GB (anonymous {memory['anon']}, file-backed {memory['file']}), "
        f"peak {memory['peak']} GB"
    )
    return "\n".join(lines)


def _stages(stages: dict | None) -> str:
    return "-" if not stages else " / ".join(f"{v:.2f}" for v in stages.values())


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def bar_chart(rows: list[dict], path: Path, title: str) -> None:
    """A PNG bar chart drawn with Pillow (already a dependency) to keep matplotlib out of the image."""
    from PIL import Image, ImageDraw

    done = [r for r in rows if r["status"] == "ok"]
    width, bar_h, pad = 900, 44, 16
    image = Image.new("RGB", (width, 60 + len(done) * (bar_h + pad)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((pad, pad), title, fill="black")
    top = max((r["mean_s"] for r in done), default=1.0)
    for i, r in enumerate(done):
        y = 50 + i * (bar_h + pad)
        length = int((width - 330) * r["mean_s"] / top)
        draw.rectangle([200, y, 200 + length, y + bar_h], fill="#d62728" if r.get("reference") else "#1f77b4")
        draw.text((pad, y + bar_h // 3), r["backend"], fill="black")
        ratio = f"  ({r['speedup']:.1f}x)" if r.get("speedup") is not None else ""
        draw.text((210 + length, y + bar_h // 3), f"{r['mean_s']:.1f} s{ratio}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
