"""Do open pages disturb a timed row? Every open tab runs the page's load handler once and its timer handler (status
lines, model banner, the awaited example) every few seconds, outside the row lock. This serves the real page,
then times a comparison through the API with 0 and with N simulated tabs (HTTP clients posting exactly what a
browser's tab posts, not browsers: those would take the same 2 cores; in a process of their own, so that their
Python does not share the server's lock), in paired rounds, alternating which goes first, and reports each row's
latency at both, with the spread of the rounds. `--kiosk-tabs N` also opens N booth screens (`/kiosk`), each asking
for its next comparison and that comparison's images as a kiosk does, once per replay.

    python -m benchmarking.polling --model tiny --tabs 20 --rounds 5 --steps 8 [--kiosk-tabs 1] [--json FILE]
"""

from __future__ import annotations

import json
import multiprocessing
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path

import core  # noqa: F401  (first: a played kind caps the engines before torch is imported)

TICK_S = 2.0  # the page's gr.Timer at first; each tick's answer sets the next interval (its last output)


def page_handlers(demo) -> tuple[list, list]:
    """(load handlers, timer handlers) of the page: (fn index, its inputs' values as a fresh page sends them)."""
    loads, ticks = [], []
    for index, fn in demo.fns.items():
        events = {event for _block, event in fn.targets}
        values = [getattr(component, "value", None) for component in fn.inputs]
        if "tick" in events:
            ticks.append((index, values))
        elif "load" in events:
            loads.append((index, values))
    return loads, ticks


class Tab(threading.Thread):
    """One open page: its load handlers once, then every timer handler every 2 s, as the browser posts them."""

    def __init__(self, url: str, loads: list, ticks: list):
        super().__init__(daemon=True)
        self.url, self.loads, self.ticks = url, loads, ticks
        self.session = secrets.token_hex(6)
        self.stop = threading.Event()
        self.posts = 0

    def post(self, http, index: int, values: list) -> list:
        body = {"data": values, "fn_index": index, "session_hash": self.session, "event_data": None}
        response = http.post(f"{self.url}gradio_api/run/predict", json=body)
        response.raise_for_status()
        self.posts += 1
        return response.json()["data"]

    def run(self) -> None:
        import httpx

        with httpx.Client(timeout=60) as http:
            for index, values in self.loads:
                self.post(http, index, values)
            interval = TICK_S
            while not self.stop.wait(interval):
                for index, values in self.ticks:
                    answer = self.post(http, index, values)
                    if answer and isinstance(answer[-1], (int, float)):  # the timer's own value: its interval
                        interval = float(answer[-1])


class KioskTab(Tab):
    """One booth screen: its page once, then per comparison its JSON and images, replayed for as long as the slowest
    row took, then held (what the kiosk's script asks for; the replay itself asks nothing)."""

    def run(self) -> None:
        import httpx

        from ui.kiosk import KIOSK_JSON, KIOSK_PATH

        with httpx.Client(timeout=60, base_url=self.url) as http:
            http.get(KIOSK_PATH).raise_for_status()
            shown = ""
            while not self.stop.is_set():
                entry = http.get(KIOSK_JSON, params={"after": shown}).json()
                self.posts += 1
                for row in entry.get("rows", []):
                    http.get(row["image"]).raise_for_status()
                    self.posts += 1
                shown = entry.get("key") or ""
                replay = max((row["latency_s"] for row in entry.get("rows", [])), default=0.0)
                self.stop.wait(replay + entry.get("hold_s", 10.0))


def open_tabs(url: str, loads: list, ticks: list, tabs: int, stop, posts, kiosks: int = 0) -> None:
    """The tabs of one run, in a process of their own, until `stop` is set; `posts` gets each tab's post count."""
    running = [Tab(url, loads, ticks) for _ in range(tabs)] + [KioskTab(url, [], []) for _ in range(kiosks)]
    for tab in running:
        tab.start()
    stop.wait()
    for tab in running:
        tab.stop.set()
    for tab in running:
        tab.join()
    posts.put([tab.posts for tab in running])


def main(argv=None) -> dict:
    """1. the page served on the settings' model, 2. the paired rounds with 0 and N tabs, 3. the report."""
    import ui.context
    import ui.layout
    from benchmarking.report import provenance
    from core.cpu import played_cpu
    from harness.settings import Settings, build_comparison

    parser = Settings.parser(__doc__)
    parser.add_argument("--tabs", type=int, default=20, help="simulated open tabs")
    parser.add_argument("--kiosk-tabs", type=int, default=0, help="simulated booth screens (/kiosk) besides them")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds (0 tabs and N tabs each)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    settings = Settings.from_env().updated(args)
    played_cpu()
    comparison = build_comparison(settings)
    comparison.load_all()
    page = ui.context.make_page(comparison, settings=settings)
    demo = ui.layout.build_demo(page)
    ui.layout.launch(page, demo, prevent_thread_lock=True, quiet=True)
    if args.kiosk_tabs:  # a kiosk replays kept comparisons: keep one, as the app does once the rows are warm
        from harness.records.examples import compute_example

        compute_example(comparison, page.showcase, 0)
    try:
        latencies, posts, ticks = timed_rounds(demo, page, settings, args)
    finally:
        demo.close()
    rows = {backend_id: spread_with_tabs(quiet, latencies["busy"].get(backend_id, []))
            for backend_id, quiet in latencies["quiet"].items()}  # fmt: skip
    report = {
        **provenance(sys.argv[1:] if argv is None else argv, program="python -m benchmarking.polling"),
        "mode": "polling",
        "model": settings.model,
        "size": comparison.rows.settings.sizes[0],
        "steps": settings.steps,
        "tabs": args.tabs,
        "kiosk_tabs": args.kiosk_tabs,
        "rounds": args.rounds,
        "handlers_per_tick": ticks,
        "posts_per_tab": statistics.median(posts) if posts else 0,
        "rows": rows,
    }
    busy = f"{args.tabs} tabs" + (f" + {args.kiosk_tabs} kiosk" if args.kiosk_tabs else "")
    print(f"{'row':18} {'0 tabs (median, range)':>30} {busy:>30} {'difference':>11}")
    for backend_id, r in rows.items():
        print(
            f"{backend_id:18} {r['quiet_median_s']:9.3f} s ({min(r['quiet_s']):.3f}-{max(r['quiet_s']):.3f})"
            f"      {r['polled_median_s']:9.3f} s ({min(r['polled_s']):.3f}-{max(r['polled_s']):.3f})"
            f" {100 * r['difference']:+9.1f} %{'' if r['within_spread'] else '  (outside the spread)'}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


def timed_rounds(demo, page, settings, args) -> tuple[dict, list, int]:
    """A burn-in comparison, then `args.rounds` paired rounds, each a comparison with no tab open ("quiet") and one
    with `args.tabs` tabs and `args.kiosk_tabs` kiosks ("busy"), in alternating order: each row's latencies by
    condition, the posts each tab made, and the handlers a tab calls per tick."""
    from gradio_client import Client

    from harness.api import GenerateOutputs

    url = f"http://127.0.0.1:{settings.port}/"
    loads, ticks = page_handlers(demo)
    client = Client(url, verbose=False)
    spawn = multiprocessing.get_context("spawn")
    size = f"{page.comparison.rows.settings.sizes[0]}x{page.comparison.rows.settings.sizes[0]}"
    latencies: dict[str, dict[str, list[float]]] = {"quiet": {}, "busy": {}}
    posts = []
    client.predict("warm", "", 1, False, settings.steps, 7.5, size, "dpm++", None, api_name="/generate")  # burn in
    for round_index in range(args.rounds):
        order = ("quiet", "busy") if round_index % 2 == 0 else ("busy", "quiet")
        for condition in order:
            tabs, kiosks = (args.tabs, args.kiosk_tabs) if condition == "busy" else (0, 0)
            stop, counts = spawn.Event(), spawn.Queue()
            tabs_process = spawn.Process(target=open_tabs, args=(url, loads, ticks, tabs, stop, counts, kiosks))
            tabs_process.start()
            time.sleep(2 * TICK_S)  # the tabs process started, every tab loaded and ticking (none: the same wait)
            out = client.predict("a lighthouse at dusk", "", 5, False, settings.steps, 7.5, size, "dpm++", None,
                                 api_name="/generate")  # fmt: skip
            stop.set()
            counted = counts.get(timeout=120)
            tabs_process.join()
            posts += counted
            if tabs and min(counted[:tabs]) < len(loads) + len(ticks):
                raise RuntimeError("a simulated tab stopped posting (see its error above)")
            for row in GenerateOutputs.figures_and_images(out)[0]["rows"]:
                if row["status"] == "ok":
                    latencies[condition].setdefault(row["backend"], []).append(row["latency_s"])
    return latencies, posts, len(ticks)


def spread_with_tabs(quiet: list[float], busy: list[float]) -> dict:
    """A row's latencies with no tab and with tabs open, and whether their difference is within the spread."""
    return {
        "quiet_s": [round(x, 4) for x in quiet],
        "polled_s": [round(x, 4) for x in busy],
        "quiet_median_s": round(statistics.median(quiet), 4),
        "polled_median_s": round(statistics.median(busy), 4),
        "difference": round(statistics.median(busy) / statistics.median(quiet) - 1, 4),
        "quiet_spread": round((max(quiet) - min(quiet)) / statistics.median(quiet), 4),
        "within_spread": min(quiet) <= statistics.median(busy) <= max(quiet)
        or min(busy) <= statistics.median(quiet) <= max(busy),
    }


if __name__ == "__main__":
    main()
