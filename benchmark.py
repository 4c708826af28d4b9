"""Benchmark every row on this machine, as the source blog measured (see benchmarking/ for each measurement).

    python benchmark.py --model sd15-standin --size 512 --steps 20 --passes 1
    python benchmark.py --model sd15-standin --size 512 --profile int8-tome   # kernels and precisions of one row
    python benchmark.py --model sd15-standin --size 512 --variants ablation,sweep  # the int8 row built 6 ways
    python benchmark.py --quality --quality-prompts 8   # the quality report (make quality), on real weights

By default the JSON goes to results/<model>-<size>px-<steps>steps-<cpu kind>-<cores>cores.json.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from benchmarking.latency import latency_table
from benchmarking.profile import profile_row
from benchmarking.quality import add_arguments as add_quality_arguments
from benchmarking.quality import quality_run
from benchmarking.row_variants import row_variants
from benchmarking.startup import startup
from core.cpu import played_cpu
from harness.settings import Settings


def parse_args(argv: list[str]):
    parser = Settings.parser(__doc__)
    parser.add_argument("--size", type=int, default=None, help="square size (512; --quality: the page default)")
    parser.add_argument("--passes", type=int, default=3, help="paired rounds: timed passes per row, after a warm-up")
    parser.add_argument(
        "--pairing", choices=("auto", "together", "beside"), default="auto",
        help="rows held in memory together, or the reference re-timed beside each row (auto: by memory)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--prompt", default="sailing ship in storm by Rembrandt")
    parser.add_argument("--json", type=Path, default=None, help="report path (default: results/, named per CPU kind)")
    parser.add_argument("--chart", type=Path, default=None, help="PNG bar chart (default: next to the JSON)")
    parser.add_argument("--save-images", type=Path, default=None, help="write <backend>.png per row here")
    parser.add_argument("--throughput", type=int, default=0, help="images in flight for the OpenVINO throughput mode")
    parser.add_argument("--system-variants", action="store_true", help="also measure jemalloc / Intel OpenMP")
    parser.add_argument("--startup", action="store_true", help="measure the app's start-up time and memory instead")
    parser.add_argument("--profile", metavar="ROW", help="profile one UNet call and one VAE decode of ROW instead")
    parser.add_argument("--profile-steps", type=int, default=2, help="steps of the generations --profile runs")
    parser.add_argument(
        "--variants", metavar="LISTS", help="time the row that declares variant lists built several ways instead"
    )
    add_quality_arguments(parser)
    parser.add_argument("--variant-name", default="default", help=argparse.SUPPRESS)  # set by --system-variants
    args = parser.parse_args(argv)
    args.argv = argv
    return args, Settings.from_env().updated(args)


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args, settings = parse_args(argv)
    played_cpu()  # a kind the machine cannot present (SBS_CPU_KIND) stops here, with the reason
    if args.startup:  # start-up uses the app's sizes; results/<model>-startup-<allocator>-<cpu kind>-<cores>cores.json
        return startup(settings, args)
    if args.quality:  # results/quality-<model>-<size>px-<steps>steps-<cpu kind>.json and its grid
        args.size = args.size or settings.size_list()[0]  # the page's default size: 512, 128 for tiny
        return quality_run(settings, args)
    args.size = args.size or 512
    settings.sizes = str(args.size)
    if args.variants:
        return row_variants(settings, args)
    if args.profile:
        return profile_row(settings, args)
    return latency_table(settings, args)


if __name__ == "__main__":
    main()
