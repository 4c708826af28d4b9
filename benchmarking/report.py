"""The benchmark's reports: the Markdown tables it prints and the PNG chart it writes (where the JSON goes:
`harness.records.results`)."""

from __future__ import annotations

import datetime
import json
import subprocess
from dataclasses import asdict
from pathlib import Path

from backends import backend_ids
from core.cpu import this_cpu

REPO = Path(__file__).resolve().parent.parent


def provenance(argv: list[str], program: str = "python benchmark.py") -> dict:
    """What every results file starts with: when, by which command (`program` and its arguments `argv`), at which
    commit (with "+changes" when the working tree's code differed from it; results files written by earlier runs do
    not count), on which CPU."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"):  # code, not earlier results
        commit += "+changes"
    cpu = this_cpu()
    return {
        "date": datetime.date.today().isoformat(),
        "command": " ".join([program, *argv]),
        "commit": commit,
        "cpu": {
            "model": cpu.model,
            "vendor": cpu.vendor,
            "family": cpu.family,
            "mhz": cpu.mhz,
            "mhz_source": cpu.mhz_source,
            "isa": cpu.isa_line(),
        },  # fmt: skip
        "cpu_kind": cpu.slug(),
        "isa": cpu.isa_line(),
    }


def recipe(load_settings) -> dict:
    """The rows' build recipe (ToMe ratio and levels, merge form, int8 mode and VAE, calibration) as loaded."""
    fields = asdict(load_settings)
    keep = ("tome_ratio", "tome_max_downsample", "tome_form", "int8_mode", "int8_mode_note", "int8_vae", "int8_source",
            "calibration_prompts", "calibration_steps", "threads")  # fmt: skip
    return {k: fields[k] for k in keep}


def markdown_table(rows: list[dict]) -> str:
    """One line per row, whatever happened to it: a row that could not run says why. Latency is the median over
    the paired rounds with its range; the speed-up is the median of the rounds' ratios with their range, and
    "within noise" where that range reaches 1.0."""
    columns = (
        "row", "runs as", "median s/image", "min-max s", "s/step", "speed-up (range)", "PSNR dB", "SSIM",
        "text / denoise / decode s", "TFLOP/s", "% of peak (unit)", "load s (cache)", "peak RSS GB", "disk MB",
    )  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['backend']} | {r['status']}: {r.get('reason', '')} |" + " |" * (len(columns) - 2))
            continue
        lines.append(
            f"| {r['backend']} | {r['precision']} | {r['median_s']:.2f} | {r['min_s']:.2f}-{r['max_s']:.2f} "
            f"| {r['s_per_step']:.3f} | {speedup_text(r)} | {_fmt(r.get('psnr_db'), '.1f')} "
            f"| {_fmt(r.get('ssim'), '.3f')} | {_stages(r.get('stages_s'))} "
            f"| {_fmt(r.get('tflops'), '.2f')} | {_share(r)} "
            f"| {_fmt(r.get('load_s'), '.0f')} ({r.get('cache', '-')}) | {_fmt(r.get('peak_rss_gb'), '.1f')} "
            f"| {_fmt(r.get('disk_mb'), '.0f')} |"
        )
    return "\n".join(lines)


def speedup_text(r: dict) -> str:
    """ "4.25x (4.18-4.31)", "1.02x (0.97-1.06), within noise", or "-" without a reference."""
    if r.get("different_work") and r.get("sooner"):  # other work: how much sooner its image came, never a speed-up
        low, high = r.get("sooner_range") or (r["sooner"], r["sooner"])
        return f"other work: an image {r['sooner']:.2f}x sooner ({low:.2f}-{high:.2f})"
    if r.get("speedup") is None:
        return "-"
    text = f"{r['speedup']:.2f}x"
    if r.get("speedup_range") and not r.get("reference"):
        low, high = r["speedup_range"]
        text += f" ({low:.2f}-{high:.2f})" + (", within noise" if r.get("within_noise") else "")
    return text


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


def _share(r: dict) -> str:
    """ "65 (AVX-512 FP32)": the share of the CPU's peak, in % (files older than the peak model have none)."""
    if r.get("peak_share") is None:
        return "-"
    return f"{r['peak_share'] * 100:.0f} ({r.get('peak_unit', '?')})"


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
    top = max((r["median_s"] for r in done), default=1.0)
    for i, r in enumerate(done):
        y = 50 + i * (bar_h + pad)
        length = int((width - 330) * r["median_s"] / top)
        draw.rectangle([200, y, 200 + length, y + bar_h], fill="#d62728" if r.get("reference") else "#1f77b4")
        draw.text((pad, y + bar_h // 3), r["backend"], fill="black")
        ratio = f"  ({r['speedup']:.1f}x)" if r.get("speedup") is not None else ""
        draw.text((210 + length, y + bar_h // 3), f"{r['median_s']:.1f} s{ratio}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


# ------------------------------------------------------------------------------------------ results/README.md
# `python -m benchmarking.report results/` writes the tables below from the latency files into results/README.md,
# between markers, so that no figure there is typed by hand; tests/test_benchmark.py fails when they disagree.
BEGIN = "<!-- generated by `python -m benchmarking.report results/`: {name} -->"
END = "<!-- end of generated {name} -->"


def summary_table(reports: list[dict]) -> str:
    """One column per CPU kind, one line per row: median seconds per image, the speed-up's median and range over the
    paired rounds (or the single pass), and what the row computed in. Where a kind has several latency files (a row
    measured on its own later), each cell comes from the newest file in which the row ran (dated in the cell), and the
    column's head names every file of the kind."""
    kinds: dict[str, list[dict]] = {}
    for report in sorted(reports, key=lambda r: (r["date"], r["file"]), reverse=True):  # newest first
        kinds.setdefault(report["cpu_kind"], []).append(report)
    columns = [kinds[kind] for kind in sorted(kinds)]
    heads = [f"{files[0]['system']['cpu']} ({files[0]['cpu_kind']}, {files[0]['cores']} cores)" for files in columns]
    sources = ["; ".join(f"`{r['file']}`, {r['date']}, {r.get('commit', 'not recorded')}" for r in files)
               for files in columns]  # fmt: skip
    passes = ["; ".join(f"{r.get('rounds', r['passes'])} ({r.get('pairing', 'one pass per row, one after another')})"
                        for r in files) for files in columns]  # fmt: skip
    lines = ["| row | " + " | ".join(heads) + " |", "|---|" + "---|" * len(columns)]
    lines.append("| file, date, commit | " + " | ".join(sources) + " |")
    lines.append("| timed passes | " + " | ".join(passes) + " |")
    measured = {row["backend"] for r in reports for row in r["rows"]}
    for backend_id in [b for b in backend_ids() if b in measured] + sorted(measured - set(backend_ids())):
        cells = []
        for files in columns:
            row, report = _newest_row(files, backend_id)
            dated = f" [{report['date']}]" if row is not None and len(files) > 1 else ""
            if row is None:
                cells.append("not measured")
            elif row["status"] != "ok":
                cells.append(f"{row['status']}: {row.get('reason', '')[:60]}{dated}")
            else:
                compute = f"; {row['compute']}" if row.get("compute") else ""
                cells.append(f"{row['median_s']:.1f} s ({speedup_text(row)}{compute}){dated}")
        lines.append(f"| {backend_id} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _newest_row(files: list[dict], backend_id: str) -> tuple[dict | None, dict | None]:
    """A row's entry in the newest of `files` where it ran, else in the newest that names it: (row, file)."""
    found = [(row, report) for report in files for row in report["rows"] if row["backend"] == backend_id]
    return next((f for f in found if f[0]["status"] == "ok"), found[0] if found else (None, None))


def generated_blocks(directory: Path) -> dict[str, str]:
    """Every generated table of results/README.md, by name, from the files in `directory`."""
    from harness.records.quality_reports import quality_table
    from harness.records.results import read_results

    reports = read_results(directory)
    for report in reports:
        report["file"] = report["_path"].name
    blocks = {"latency summary": summary_table(reports)} if reports else {}
    for report in sorted(reports, key=lambda r: r["file"]):
        blocks[f"details of {report['file']}"] = _source(report["file"], report) + markdown_table(report["rows"])
    profiles = {}
    for name, report in _files(directory, "profile-*.json"):
        profiles.setdefault(report["cpu_kind"], []).append((name, report))
    for cpu_kind, files in profiles.items():
        blocks[f"profiles on {cpu_kind}"] = profiles_table(files)
    for name, report in _files(directory, "*-variants-*.json"):
        blocks[f"variants of {name}"] = _source(name, report) + variants_table(report["rows"])
    for name, report in _files(directory, "attention-*.json"):
        blocks[f"attention of {name}"] = _source(name, report) + attention_table(report)
    starts = [report | {"file": name} for name, report in _files(directory, "image-start-*.json")]
    if starts:
        blocks["image starts"] = image_starts_table(starts)
    for name, report in _files(directory, "*-startup-*.json"):
        blocks[f"start-up of {name}"] = _source(name, report) + startup_table(report).lstrip("\n")
    for name, report in _files(directory, "quality-*.json"):
        blocks[f"quality of {name}"] = (
            f"**Made on {report['made_on']}.**\n\n" + _source(name, report) + quality_table(report)
        )
    return blocks


def _files(directory: Path, pattern: str) -> list[tuple[str, dict]]:
    """(file name, contents) of the JSON files in `directory` matching `pattern`, by name."""
    return [(path.name, json.loads(path.read_text())) for path in sorted(Path(directory).glob(pattern))]


def variants_table(rows: list[dict]) -> str:
    """The variants of a row against the reference: median seconds (the mean in files of one pass), the paired
    speed-up with its range, and whether it differs from the row as it ships by more than the spread."""
    lines = [
        "| variant | s/image | s/step | speed-up (range) | vs the shipped recipe | PSNR dB | SSIM "
        "| text / denoise / decode s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['backend']} | {r['status']}: {r['reason']} | | | | | | |")
            continue
        stages = " / ".join(f"{v:.2f}" for v in (r.get("stages_s") or {}).values()) or "-"
        psnr = "-" if r.get("psnr_db") is None else f"{r['psnr_db']:.1f}"
        ssim = "-" if r.get("ssim") is None else f"{r['ssim']:.3f}"
        step = f"{r['s_per_step']:.3f}" if "s_per_step" in r else "-"
        seconds = r.get("median_s", r["mean_s"])
        versus = ("shipped" if r.get("shipped") else
                  {True: "within noise", False: "differs", None: "-"}[r.get("within_noise_of_default")])  # fmt: skip
        lines.append(
            f"| {r['backend']} | {seconds:.2f} | {step} | {speedup_text(r)} | {versus} | {psnr} | {ssim} | {stages} |"
        )
    return "\n".join(lines)


def profiles_table(files: list[tuple[str, dict]]) -> str:
    """One line per profile file of a CPU kind: the UNet call and the VAE decode, their largest kernels (or ops)
    and the share attention takes where the file records it."""
    lines = [
        "| row (file, date, commit) | UNet call | where it goes | attention | VAE decode | where it goes |",
        "|---|---|---|---|---|---|",
    ]

    def top(part: dict, n: int) -> str:
        return ", ".join(f"`{t['op']} {t['kernel']}` {t['share'] * 100:.0f} %" if t["op"] != t["kernel"] else
                         f"`{t['op']}` {t['share'] * 100:.0f} %" for t in part["top"][:n])  # fmt: skip

    for name, r in files:
        unet, vae = r["unet_call"], r["vae_decode"]
        attention = f"{unet['attention_share'] * 100:.0f} %" if "attention_share" in unet else "not recorded"
        lines.append(
            f"| {r['row']} ({r.get('precision', '?')}; `{name}`, {r['date']}, {r.get('commit', 'not recorded')}) "
            f"| {unet['total_ms']:.0f} ms | {top(unet, 3)} | {attention} | {vae['total_ms']:.0f} ms | {top(vae, 2)} |"
        )
    return "\n".join(lines)


def attention_table(report: dict) -> str:
    """`python -m benchmarking.attention`: SD-1.5's largest attention alone, milliseconds per call (median of 5)."""
    lines = [
        f"{report['shape']}; bf16; {report['peak']}",
        "",
        "| tokens | PyTorch SDPA, d40 / padded to d64 | its Q.K^T / softmax / P.V alone "
        "| OpenVINO SDPA fused, d40 / d64 "
        "| OpenVINO unfused (MatMul, Softmax, MatMul) | the two matrix products at the AMX/bf16 peak |",
        "|---|---|---|---|---|---|",
    ]
    for label, c in report["cases"].items():
        t, o = c["torch"], c["openvino"]
        lines.append(
            f"| {c['tokens']} ({label}) | {t['sdpa_d40']:.1f} / {t['sdpa_d64']:.1f} ms "
            f"| {t['qk_matmul']:.1f} / {t['softmax']:.1f} / {t['pv_matmul']:.1f} ms "
            f"| {o['sdpa_d40']:.1f} / {o['sdpa_d64']:.1f} ms | {o['sdpa_d40_unfused']:.1f} ms "
            f"| {c['matmul_ms_at_peak']:.1f} ms ({c['matmul_gflop']:.1f} GFLOP) |"
        )
    return "\n".join(lines)


def image_starts_table(starts: list[dict]) -> str:
    """One line per start of the Space image that `scripts/image-test.sh` timed (SBS_IMAGE_TEST_RESULTS=1)."""
    lines = [
        "| file, date, commit | CPU kind | model, size | cache | page answers | every row warm | rows | cache state "
        "| RSS after a request | image |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in starts:
        cache = ", ".join(f"{row} {state}" for row, state in r["cache"].items())
        lines.append(
            f"| `{r['file']}`, {r['date']}, {r['commit']} | {r['cpu_kind']} | {r['model']}, {r['size']}px "
            f"| {r['cache_mount']} | {r['page_up_s']} s | {r['all_warm_s']} s | {', '.join(r['rows'])} | {cache} "
            f"| {r['rss_mb_after_request']} MB | {r['image_mb']} MB |"
        )
    return "\n".join(lines)


def _source(name: str, report: dict) -> str:
    """Where a table comes from, as its file says (files from before provenance was recorded say so)."""
    unknown = "not recorded"
    return (
        f"`{name}`: {report.get('date', unknown)}, commit {report.get('commit', unknown)}, "
        f"`{report.get('command', unknown)}`; {report.get('isa', 'ISA ' + unknown)}; "
        f"{report.get('cores', '?')} threads"
        + (f", allocator {report['system']['allocator']}" if "allocator" in report.get("system", {}) else "")
        + ".\n\n"
    )


def regenerate(readme: str, blocks: dict[str, str]) -> str:
    """`readme` with every generated block replaced by its current text; a block the README lacks is appended."""
    for name, text in blocks.items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        if begin in readme and end in readme:
            head, rest = readme.split(begin, 1)
            _old, tail = rest.split(end, 1)
            readme = f"{head}{begin}\n{text}\n{end}{tail}"
        else:
            readme = readme.rstrip("\n") + f"\n\n{begin}\n{text}\n{end}\n"
    return readme


def main(argv: list[str] | None = None) -> None:
    import sys

    directory = Path((argv if argv is not None else sys.argv[1:] or ["results"])[0])
    readme = directory / "README.md"
    text = regenerate(readme.read_text(), generated_blocks(directory))
    readme.write_text(text)
    print(f"{readme}: {len(generated_blocks(directory))} generated tables")


if __name__ == "__main__":
    main()
