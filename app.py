"""Stable Diffusion side by side on Xeon: one prompt, one seed, every backend, honest latency.

Run `python app.py --model tiny` (or set SBS_MODEL); `python app.py --help` lists every setting. The page itself is
the `ui` package; this file only reads the settings and launches it.
"""

from __future__ import annotations

import logging
import time

from core.cpu import played_cpu
from harness.records.examples import compute_examples
from harness.settings import Settings, build_comparison
from ui.context import make_page
from ui.gradio_queue import visitors_waiting
from ui.kiosk import start_booth
from ui.layout import build_demo, launch

log = logging.getLogger("app")


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env().updated(Settings.parser(__doc__).parse_args(argv))
    played_cpu()  # a kind the machine cannot present (SBS_CPU_KIND) stops here, with the reason
    started = time.monotonic()
    try:
        page = make_page(build_comparison(settings), settings=settings)
    except ValueError as exc:  # a malformed setting (--remotes, --auth, --trusted-proxies): say which, start nothing
        raise SystemExit(f"app.py: {exc}") from None
    demo = build_demo(page)

    def after_start_up() -> None:  # the booth's own comparisons when nobody asks, then the built-in examples
        alongside = page.kept_alongside()  # kept with the other machines' rows too, when there are others
        start_booth(page, demo, alongside)
        compute_examples(page.comparison, page.showcase, lambda: visitors_waiting(demo), alongside=alongside)

    page.comparison.load_in_background(then=after_start_up)
    log.info("UI up after %.1f s; rows load in the background", time.monotonic() - started)
    launch(page, demo)


if __name__ == "__main__":
    main()
