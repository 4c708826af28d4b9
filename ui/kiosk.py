"""The booth screen (`/kiosk`): full screen, no controls, readable from a few metres. It races the rows of each
kept comparison (the operator's examples and the booth's own; visitors' only when the operator turns that on) at
the speed they were measured, every machine's rows at its own: every row's bar fills over its measured stages, its
picture appears when its bar ends, then the headline; then the next comparison. The replay is the browser's own
animation: the server answers one small JSON request per comparison shown, and nothing while it plays.

Two routes beside Gradio's, registered through `launch`'s `app_kwargs` (FastAPI's own `routes`): `/kiosk`, the page
(HTML, CSS and a short script, no framework), and `/kiosk.json?after=KEY&fresh=KEY`, the comparison to show next."""

from __future__ import annotations

import html
import json
import logging
import re
from pathlib import Path
from urllib.parse import quote

from harness.records.booth import BoothLoop, booth_runs
from harness.records.examples import EXAMPLES
from harness.records.showcase import KeptGroup, ShownRun

from .cards import headline_rows
from .context import Page
from .gradio_queue import visitors_waiting

log = logging.getLogger(__name__)

KIOSK_PATH = "/kiosk"
KIOSK_JSON = "/kiosk.json"
HOLD_S = 12.0  # how long a finished race stays on the screen before the next
WAIT_S = 10.0  # how often a kiosk with nothing to show asks again
FILE_ROUTE = "/gradio_api/file="  # where Gradio serves the kept images (the showcase is in its allowed paths)


def start_booth(page: Page, demo, alongside=None) -> BoothLoop | None:
    """The booth's own comparisons on this page (`harness.records.booth`), started: idle is no visitor's comparison
    started for `--kiosk-idle-s` and none running or waiting in Gradio's queue. None when that setting is 0."""
    if page.settings.kiosk_idle_s <= 0:
        return None

    def last_visitor() -> float | None:
        return page.fair_share.last_started if page.fair_share else None

    return BoothLoop(page.comparison, page.showcase, page.booth_prompts, page.settings.kiosk_idle_s, last_visitor,
                     lambda: visitors_waiting(demo), alongside=alongside).start()  # fmt: skip


def kept_comparisons(page: Page) -> list[ShownRun]:
    """What the kiosk cycles through: the built-in examples computed here, the booth's comparisons, then (with the
    operator's `--kiosk-visitors`) the latest visitors', newest first."""
    model = page.comparison.rows.model
    runs = page.showcase.computed(model, len(EXAMPLES))
    runs += booth_runs(page.showcase, model, page.booth_prompts) if page.booth_prompts else []
    return runs + (page.visitors_shown.latest(model) if page.visitors_shown else [])


def run_key(run: ShownRun) -> str:
    """A kept comparison's key: which one, and when it was computed (letters and digits only: safe in a URL)."""
    return f"{run.example}-" + re.sub(r"[^0-9A-Za-z]", "", run.finished)


def next_comparison(page: Page, after: str = "", fresh: str = "") -> dict:
    """The kiosk's next comparison after the one keyed `after` (the first when `after` is unknown), as the page
    replays it; `{"key": None, "message": ...}` while there is none yet. With `--kiosk-visitors`, a visitor's
    comparison newer than the one keyed `fresh` (the newest this kiosk has shown) comes first, marked `"fresh"`:
    the kiosk shows it, then goes on after `after`."""
    newest = page.visitors_shown.latest(page.comparison.rows.model)[:1] if page.visitors_shown else []
    if newest and run_key(newest[0]) != fresh:
        return {**replay(page, newest[0]), "fresh": True}
    runs = [r for r in kept_comparisons(page) if any(row.get("status") == "ok" for row in r.rows)]
    if not runs:
        return {"key": None, "message": "The first comparison is being computed on this machine…"}
    keys = [run_key(r) for r in runs]
    chosen = runs[(keys.index(after) + 1) % len(runs)] if after in keys else runs[0]
    return {**replay(page, chosen), "fresh": False}


def replay(page: Page, run: ShownRun) -> dict:
    """A kept comparison as the kiosk races it: this machine's rows that gave an image, in the page's order, each
    with the durations it was measured at, and the headline the page gives it; then each other machine's, raced at
    its own measured times beside them, with its own headline (its rows' speed-ups are against its own baseline)."""
    reference = page.comparison.rows.reference
    fastest, other_work = headline_rows(run.rows, reference)
    groups = [(group, group_replay(group, reference)) for group in run.groups]
    racing = [replayed for _group, replayed in groups if replayed["rows"]]
    return {
        "key": run_key(run),
        "prompt": run.request.prompt,
        "label": run.kind_words(),
        "steps": run.request.steps,
        "size": f"{run.request.width}x{run.request.height}",
        "machine": run.machine,
        "replay": f"Replayed at the measured speed, measured on {run.machine}, {run.finished_words()}"
        + (" and on the machines named beside their rows" if racing else ""),
        "headline": headline_words(
            fastest, "the baseline on this machine's CPU" if racing else "the baseline on this CPU"
        ),
        "other_work": [other_work_words(r) for r in other_work],
        "rows": race_rows(run.rows, run.images),
        "groups": racing,
        "absent": [f"{group.label}: {group.state}" for group, replayed in groups if not replayed["rows"]],
        "hold_s": HOLD_S,
    }


def race_rows(rows: list[dict], images: dict) -> list[dict]:
    """The rows that gave an image, as the kiosk races them: each with its measured latency and stages."""
    return [
        {
            "backend": r["backend"],
            "title": r["title"],
            "latency_s": r["latency_s"],
            "stages": r.get("stages") or {"denoising": r["latency_s"]},
            "image": FILE_ROUTE + quote(str(Path(images[r["backend"]]).resolve())),
            "other_work": bool(r.get("different_work")),
            "recipe": r.get("recipe", ""),
        }
        for r in rows
        if r.get("status") == "ok" and r["backend"] in images and r.get("latency_s")
    ]


def group_replay(group: KeptGroup, reference: str) -> dict:
    """Another machine's part of the race: its label and CPU, its rows, its own headline in a few words (its rows'
    speed-ups are against its own baseline)."""
    fastest, _other_work = headline_rows(group.rows, reference)
    return {
        "label": group.label,
        "machine": group.machine,
        "note": "on this same machine: timings disturbed" if group.same_machine else "",
        "rows": race_rows(group.rows, group.images),
        "headline": headline_words(fastest, "its baseline"),
    }


def headline_words(fastest: dict | None, against: str) -> str:
    """The fastest same-work row's speed-up, "… faster than `against`" ("" without one)."""
    if fastest is None:
        return ""
    recipe = f" ({fastest['recipe']})" if fastest.get("recipe") else ""
    return f"{fastest['title']}{recipe}: {fastest['speedup']:.1f}× faster than {against}"


def other_work_words(row: dict) -> str:
    sooner = f"{row['sooner']:.1f}× sooner than the baseline's"
    return f"Other work, {row['title']}: an image in {row['latency_s']:.1f} s, {sooner}"


def visitor_address(page: Page, request) -> str:
    """Where a visitor's phone opens the page: the operator's `--kiosk-url`, else the address this kiosk reached."""
    return page.settings.kiosk_url or str(request.base_url)


def qr_svg(address: str) -> str:
    """The address as a QR code (segno), an SVG to put in the page."""
    import segno

    return segno.make(address, error="m").svg_inline(scale=1, border=2, dark="#000", light="#fff", omitsize=True)


def kiosk_page(page: Page, request) -> str:
    """The kiosk's HTML: the layout, the QR code and the script that races each comparison."""
    address = visitor_address(page, request)
    config = {"json": KIOSK_JSON, "wait_s": WAIT_S}
    return (
        KIOSK_HTML.replace("{{QR}}", qr_svg(address))
        .replace("{{ADDRESS}}", html.escape(address))
        .replace("{{CONFIG}}", json.dumps(config))
    )


def kiosk_routes(page: Page) -> list:
    """The kiosk's two routes, for FastAPI's `routes` (launch's `app_kwargs`)."""
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse
    from starlette.routing import Route

    def closed():
        return PlainTextResponse("The kiosk view serves open instances only (this one asks for a login).", 403)

    def kiosk(request):
        return closed() if page.settings.auth else HTMLResponse(kiosk_page(page, request))

    def kiosk_json(request):
        if page.settings.auth:
            return closed()
        asked = {name: str(request.query_params.get(name, ""))[:200] for name in ("after", "fresh")}
        return JSONResponse(next_comparison(page, asked["after"], asked["fresh"]))

    return [Route(KIOSK_PATH, kiosk, methods=["GET"]), Route(KIOSK_JSON, kiosk_json, methods=["GET"])]


KIOSK_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Stable Diffusion side by side on Xeon</title>
<style>
  html, body { margin: 0; height: 100%; overflow: hidden; background: #0b1020; color: #f2f4f8;
               font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  #kiosk { display: flex; flex-direction: column; height: 100vh; box-sizing: border-box; padding: 2vh 2vw; gap: 1.5vh; }
  header { display: flex; align-items: center; gap: 2vw; }
  header .words { flex: 1; min-width: 0; }
  #prompt { font-size: 4.2vh; font-weight: 700; line-height: 1.15; overflow: hidden; display: -webkit-box;
            -webkit-line-clamp: 2; -webkit-box-orient: vertical; }
  #machine { font-size: 2.2vh; opacity: 0.85; margin-top: 0.6vh; }
  #replay { font-size: 1.8vh; opacity: 0.7; margin-top: 0.4vh; }
  .qr { display: flex; align-items: center; gap: 1vw; }
  .qr svg { width: 15vh; height: 15vh; background: #fff; border-radius: 0.6vh; shape-rendering: crispEdges; }
  .qr .try { font-size: 2.1vh; max-width: 14vw; line-height: 1.3; }
  .qr .try b { display: block; font-size: 2.6vh; }
  #rows { flex: 1; min-height: 0; display: grid; column-gap: 1.5vw; row-gap: 1.2vh; align-content: start;
          grid-template-columns: repeat(var(--n, 5), minmax(0, 1fr)); }
  #rows.several { grid-template-columns: minmax(0, 1.1fr) repeat(var(--n, 5), minmax(0, 1fr)); }
  #rows .title { font-size: 2.2vh; font-weight: 600; line-height: 1.2; overflow: hidden; align-self: end;
                 display: -webkit-box; -webkit-line-clamp: 3; -webkit-box-orient: vertical; }
  .row { display: flex; flex-direction: column; gap: 0.8vh; min-width: 0; }
  .row .frame { width: min(100%, var(--frame-h, 48vh)); aspect-ratio: 1; background: #1b2238; border-radius: 1vh;
                overflow: hidden; position: relative; }
  .row img { width: 100%; height: 100%; object-fit: contain; opacity: 0; transition: opacity 0.6s; display: block; }
  .row.done img { opacity: 1; }
  .row .recipe { position: absolute; left: 0.6vh; top: 0.6vh; font-size: 1.6vh; padding: 0.2vh 0.6vh;
                 background: rgba(11, 16, 32, 0.75); border-radius: 0.5vh; }
  .row .bar { height: 1.6vh; background: #1b2238; border-radius: 0.8vh; overflow: hidden; position: relative; }
  .row .fill { height: 100%; width: 0; background: linear-gradient(90deg, #2f80ed, #56ccf2); }
  .row.other .fill { background: linear-gradient(90deg, #8e44ad, #c39bd3); }
  .row .time { font-size: 3.4vh; font-weight: 700; font-variant-numeric: tabular-nums; white-space: nowrap; }
  .row .time small { font-size: 1.8vh; font-weight: 400; opacity: 0.75; }
  .machine-label { min-width: 0; font-size: 1.8vh; line-height: 1.3; overflow: hidden; }
  .machine-label b { display: block; font-size: 2.4vh; }
  .machine-label .note { opacity: 0.7; font-size: 1.6vh; }
  .machine-label .said { font-weight: 700; font-size: 2.2vh; margin: 0.4vh 0; opacity: 0; transition: opacity 0.8s; }
  .machine-label .said.shown { opacity: 1; }
  #headline { font-size: 5.5vh; font-weight: 800; text-align: center; min-height: 6.5vh; opacity: 0;
              transition: opacity 0.8s; }
  #headline.shown { opacity: 1; }
  #other { font-size: 2.4vh; text-align: center; opacity: 0; transition: opacity 0.8s; min-height: 3vh; }
  #other.shown { opacity: 0.9; }
  #waiting { font-size: 3vh; text-align: center; opacity: 0.8; }
  #absent { font-size: 1.8vh; text-align: center; opacity: 0.6; }
</style></head>
<body><div id="kiosk">
  <header>
    <div class="words"><div id="prompt">Stable Diffusion side by side on Xeon</div><div id="machine"></div>
      <div id="replay"></div></div>
    <div class="qr">{{QR}}<div class="try"><b>Try your own prompt</b>scan, or open {{ADDRESS}}</div></div>
  </header>
  <div id="waiting"></div>
  <div id="rows"></div>
  <div id="headline"></div>
  <div id="other"></div>
  <div id="absent"></div>
</div>
<script id="kiosk-config" type="application/json">{{CONFIG}}</script>
<script>
"use strict";
const config = JSON.parse(document.getElementById("kiosk-config").textContent);
let shown = "";  // the kept comparison shown last in the cycle
let fresh = "";  // the newest visitor's comparison shown (with the operator's --kiosk-visitors)
const el = (id) => document.getElementById(id);

function text(node, value) { node.textContent = value; return node; }
function make(tag, cls) { const node = document.createElement(tag); if (cls) node.className = cls; return node; }

async function next() {
  let entry;
  try {
    const asked = new URLSearchParams({ after: shown, fresh: fresh });
    const answer = await fetch(config.json + "?" + asked.toString());
    entry = await answer.json();
  } catch (error) {
    setTimeout(next, config.wait_s * 1000);
    return;
  }
  if (!entry.key) {
    text(el("waiting"), entry.message || "");
    setTimeout(next, config.wait_s * 1000);
    return;
  }
  if (entry.fresh) fresh = entry.key; else shown = entry.key;
  race(entry);
}

// Every row of every machine starts at once; each bar fills over the row's measured seconds, its picture shows
// when it ends. One column per row of the page, one line per machine (this one first).
function race(entry) {
  text(el("waiting"), "");
  text(el("prompt"), "\u201c" + entry.prompt + "\u201d");
  text(el("machine"), entry.label + " \u00b7 " + entry.size + ", " + entry.steps + " steps \u00b7 " + entry.machine);
  text(el("replay"), entry.replay);
  text(el("absent"), entry.absent.length ? "No rows this time from " + entry.absent.join("; ") : "");
  // The closing words are set now, unseen, so that the pictures are sized for the room they leave.
  text(el("headline"), entry.headline).classList.remove("shown");
  text(el("other"), entry.other_work.join(" \u00b7 ")).classList.remove("shown");
  const here = { label: "This machine", machine: entry.machine, note: "", rows: entry.rows, headline: "" };
  const machines = [here, ...entry.groups];
  const several = machines.length > 1;
  const columns = [];
  const titles = {};
  for (const m of machines) for (const r of m.rows) {
    if (!(r.backend in titles)) { columns.push(r.backend); titles[r.backend] = r.title; }
  }
  const rows = el("rows");
  rows.replaceChildren();
  rows.classList.toggle("several", several);
  rows.style.setProperty("--n", String(Math.max(columns.length, 1)));
  rows.style.setProperty("--frame-h", (48 / machines.length).toFixed(1) + "vh");
  if (several) rows.append(make("div", "corner"));
  for (const b of columns) rows.append(text(make("div", "title"), titles[b]));
  const cards = [];
  const saids = [];
  machines.forEach((m, group) => {
    let said = null;
    if (several) {
      const label = make("div", "machine-label");
      label.dataset.group = String(group);
      said = text(make("div", "said"), m.headline);
      label.append(text(make("b"), m.label), said, text(make("div"), m.machine));
      if (m.note) label.append(text(make("div", "note"), m.note));
      rows.append(label);
    }
    const mine = [];
    for (const b of columns) {
      const row = m.rows.find((r) => r.backend === b);
      if (!row) { rows.append(make("div", "row empty")); continue; }
      const c = card(row, group);
      rows.append(c.card);
      mine.push(c);
    }
    cards.push(...mine);
    saids.push({ said, mine });
  });
  fitFrames(rows, machines.length);
  const start = performance.now();
  function frame() {
    const elapsed = (performance.now() - start) / 1000;
    let running = 0;
    for (const c of cards) {
      const done = elapsed >= c.row.latency_s;
      const seconds = Math.min(elapsed, c.row.latency_s);
      c.fill.style.width = (100 * seconds / c.row.latency_s).toFixed(2) + "%";
      const stage = done ? "done" : stageNow(c.row.stages, seconds);
      c.time.innerHTML = seconds.toFixed(1) + " s <small>" + stage + "</small>";
      if (done) c.card.classList.add("done"); else running += 1;
    }
    for (const s of saids) {
      if (s.said && s.said.textContent && s.mine.every((c) => c.card.classList.contains("done"))) {
        s.said.classList.add("shown");
      }
    }
    if (running) { requestAnimationFrame(frame); return; }
    el("headline").classList.add("shown");
    el("other").classList.add("shown");
    setTimeout(next, entry.hold_s * 1000);
  }
  requestAnimationFrame(frame);
}

// One row's card: its picture (fetched now, shown when its bar ends), its bar and its time.
function card(row, group) {
  const card = make("div", "row" + (row.other_work ? " other" : ""));
  card.dataset.backend = row.backend;
  card.dataset.group = String(group);
  card.dataset.duration = String(row.latency_s);
  card.dataset.stages = JSON.stringify(row.stages);
  const frame = make("div", "frame");
  const image = make("img");
  image.alt = row.title;
  image.src = row.image;
  frame.append(image);
  if (row.recipe) frame.append(text(make("div", "recipe"), row.recipe));
  const bar = make("div", "bar");
  const fill = make("div", "fill");
  bar.append(fill);
  const time = make("div", "time");
  card.append(frame, bar, time);
  return { row, card, fill, time };
}

// The pictures as large as the screen allows: the lines of machines share the height left under the titles, each
// line exactly its share (a machine's words longer than its line are cut, never pushed onto the headline).
function fitFrames(rows, lines) {
  const card = rows.querySelector(".row:not(.empty)");
  if (!card) return;
  card.querySelector(".time").innerHTML = "0.0 s <small>text encoding</small>";
  const title = rows.querySelector(".title");
  const gap = parseFloat(getComputedStyle(rows).rowGap) || 0;
  const around = card.offsetHeight - card.querySelector(".frame").offsetHeight;
  const line = Math.floor((rows.clientHeight - title.offsetHeight - gap * lines) / lines);
  rows.style.gridTemplateRows = "auto repeat(" + lines + ", " + line + "px)";
  rows.style.setProperty("--frame-h", Math.max(40, line - Math.ceil(around)) + "px");
}

// The stage a row is in after `seconds` of its measured run: text encoding, denoising (the UNet steps), decoding.
function stageNow(stages, seconds) {
  const names = { text_encoding: "text encoding", denoising: "denoising", vae_decoding: "decoding" };
  let until = 0;
  for (const key of ["text_encoding", "denoising", "vae_decoding"]) {
    if (!(key in stages)) continue;
    until += stages[key];
    if (seconds < until) return names[key];
  }
  return "done";
}

next();
</script>
</body></html>
"""
