"""The quality run (`make quality`, `python benchmark.py --quality`): the shipped prompt set through every row this
machine runs, at the page's default settings, each row's image judged against the baseline's of the same prompt
and seed; and the int8 row's recipe chosen by what it measures.

Per row and prompt: PSNR and SSIM against the baseline image (pixels, as the page shows them), CLIP image similarity
to the baseline image (the same picture?) and CLIP score against the prompt (`benchmarking.clip_judge`); the few-step
row is another model and is judged by its CLIP score only. The int8 row is built with every recipe of
`backends.int8_tome.MODES` ("full" static int8, optimum-intel's "hybrid"); each is timed (rows never overlap, the
same prompts, seeds and latents) and judged, and the report names the fastest that passes `QualityGate`: that is
the recipe the app runs for this model on this CPU kind (`harness.records.quality_reports`).

Writes results/quality-<model>-<size>px-<steps>steps-<cpu kind>.json and a grid (prompt x row) beside it. On a
random-weight stand-in the same code runs end to end and every file says, first, that its figures mean nothing."""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from backends.int8_tome import MODES
from core.assets import ASSETS
from core.cpu import this_cpu
from core.files import write_json
from core.naming import model_slug
from core.request import initial_latents
from harness.compare.comparison import Comparison, fidelity, timed_generate
from harness.compare.rows import RowSet
from harness.models.model_sources import ModelUnavailable, resolve_model
from harness.records.quality_reports import quality_table
from harness.records.results import RESULTS

from .clip_judge import CLIP_JUDGE, ClipJudge
from .report import provenance

log = logging.getLogger(__name__)

PROMPT_SET = ASSETS / "quality_prompts.json"
INT8_ROW = "int8-tome"
OUT_OF_REACH = 3  # the exit status of a run whose model or judge this machine cannot reach (nothing was judged)
THUMBNAIL_PX = 160  # each image's side in the grid


@dataclass(frozen=True)
class QualityPrompt:
    id: str  # stable name, e.g. "animals-03"
    category: str  # people, text, animals, scenes, art styles, objects
    prompt: str
    seed: int  # the prompt's own seed: the set is a fixed input


@dataclass(frozen=True)
class PromptSet:
    name: str
    version: int  # bumped whenever a prompt or seed changes: reports of different versions do not compare
    digest: str  # content hash of the prompts and seeds, recorded in every report
    prompts: tuple[QualityPrompt, ...]


def load_prompt_set(path: Path = PROMPT_SET) -> PromptSet:
    """The versioned prompt set; a malformed file is refused with what is wrong, not half-used."""
    data = json.loads(Path(path).read_text())
    prompts = tuple(QualityPrompt(**entry) for entry in data["prompts"])
    ids = [p.id for p in prompts]
    if not prompts or len(set(ids)) != len(ids):
        raise ValueError(f"{path}: the prompt set needs at least one prompt and unique ids")
    for p in prompts:
        if not p.prompt.strip() or not isinstance(p.seed, int) or isinstance(p.seed, bool):
            raise ValueError(f"{path}: prompt {p.id!r} needs text and an integer seed")
    digest = hashlib.sha256(json.dumps([[p.id, p.prompt, p.seed] for p in prompts]).encode()).hexdigest()[:12]
    return PromptSet(data["name"], int(data["version"]), digest, prompts)


@dataclass(frozen=True)
class QualityGate:
    """When an int8 recipe's images count as the baseline's. Our thresholds, not a published standard: no FID or
    CLIP score of int8 SD-1.5 on CPU has been published to calibrate against, so they are settings, and the first
    report on real weights is where to check them. Medians over the prompt set, against the baseline image of the
    same prompt and seed. Two learned measures carry the judgement, because PSNR and SSIM punish harmless drift of a
    diffusion trajectory (a wave moved a little reads as failed pixels) as much as real damage; a low SSIM floor
    catches only wreckage: 8-bit post-training quantization's known failure (NNCF's SD post; the saturated sums of
    int8 without VNNI) is noise and washed-out pictures, not drift."""

    # The row must still draw the prompt: its median CLIP score may fall at most this many points (0-100 scale)
    # below the baseline's. A point is small beside the gap between a matching and a mismatched prompt (several
    # points with ViT-B/32), large beside rounding: the bf16 rows move it by 0.01 on the stand-in.
    max_clip_score_drop: float = 1.0
    # ...and the same picture: the median cosine of its and the baseline's CLIP image embeddings at least this.
    min_clip_image_similarity: float = 0.85
    # ...and not wrecked: median SSIM at least this. A picture of the same composition keeps well above it; an image
    # drowned in noise does not (0.09 on the stand-in with 80 % noise, where the random-weight judge still says
    # 0.99: a stand-in judge sees little, which is why the gate does not rest on it alone).
    min_ssim: float = 0.3

    def verdict(self, summary: dict, baseline_clip_score: float) -> tuple[bool, str]:
        similarity = summary["clip_image_similarity"]["median"]
        drop = baseline_clip_score - summary["clip_score"]["median"]
        ssim = summary["ssim"]["median"]
        failed = []
        if drop > self.max_clip_score_drop:
            failed.append(f"CLIP score {drop:.2f} below the baseline's (limit {self.max_clip_score_drop:g})")
        if similarity < self.min_clip_image_similarity:
            failed.append(f"CLIP image similarity {similarity:.3f} (limit {self.min_clip_image_similarity:g})")
        if ssim < self.min_ssim:
            failed.append(f"SSIM {ssim:.3f} (limit {self.min_ssim:g})")
        return not failed, "; ".join(failed) or "within the gate"


def spread(values: list[float]) -> dict:
    """Median and range over the prompts."""
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}


def choose_int8_recipe(recipes: dict[str, dict], baseline_clip_score: float, gate: QualityGate) -> dict:
    """The fastest recipe (median latency over the prompts) among those the gate passes. None passing: the one
    closest to the baseline's picture, and the choice says that no recipe met the gate."""
    verdicts = {mode: gate.verdict(summary, baseline_clip_score) for mode, summary in recipes.items()}
    passing = [mode for mode, (ok, _why) in verdicts.items() if ok]
    if passing:
        mode = min(passing, key=lambda m: recipes[m]["latency_s"]["median"])
        reason = f"the fastest recipe within the quality gate ({recipes[mode]['latency_s']['median']:.2f} s median)"
    else:
        mode = max(recipes, key=lambda m: recipes[m]["clip_image_similarity"]["median"])
        reason = "no recipe met the quality gate: the one closest to the baseline's picture"
    return {
        "mode": mode,
        "reason": reason,
        "met_gate": bool(passing),
        "verdicts": {m: {"passes": ok, "why": why} for m, (ok, why) in verdicts.items()},
    }


def quality_path(model: str, size: int, steps: int, cpu_slug: str) -> Path:
    return RESULTS / f"quality-{model_slug(model)}-{size}px-{steps}steps-{cpu_slug}.json"


def model_words(model) -> str:
    """What the report was made on, first thing in every file and panel."""
    if model.standin:
        return (
            f"RANDOM-WEIGHT STAND-IN {model.model_id!r} (no real weights): its images are noise and these figures "
            "say nothing about image quality; they prove the quality run's machinery"
        )
    return f"real weights: {model.model_id} (revision {model.revision})"


def quality_run(settings, args, factory=None) -> dict:
    """Run the prompt set through every row and the int8 recipes; returns the report (also written as JSON, with
    the grid beside it). `factory` makes the rows (default: the registry's), as `RowSet` takes it.

    1. the model and the judge, 2. the page's rows, 3. the int8 row's other recipes, 4. every prompt through all of
    them, judged, 5. each row's figures over the prompts, 6. the report, written with its grid."""
    import torch

    prompt_set = load_prompt_set()
    prompts = prompt_set.prompts[: args.quality_prompts] if args.quality_prompts else prompt_set.prompts
    size = args.size
    torch.set_num_threads(settings.thread_count())
    model, judge = model_and_judge(settings, args)
    load_settings = settings.load_settings((size,))
    rows, comparison = load_rows(model, settings, load_settings, size, factory)
    other_recipes = load_other_recipes(model, rows, load_settings, size, factory)
    columns = [b for b in rows.order if b in rows.backends]
    labels = {b: (f"{b} [{load_settings.int8_mode}]" if b == INT8_ROW else b) for b in columns}
    labels.update({f"{INT8_ROW}:{m}": f"{INT8_ROW} [{m}]" for m in other_recipes})
    per_row: dict[str, list[dict]] = {label: [] for label in labels.values()}
    thumbnails: dict[tuple[str, str], np.ndarray] = {}
    baseline_scores = []
    for n, item in enumerate(prompts, 1):
        log.info("[quality %d/%d] %s: %s (seed %d)", n, len(prompts), item.id, item.prompt, item.seed)
        request = comparison.validate(prompt=item.prompt, seed=item.seed, steps=settings.steps, height=size, width=size)
        images = run_prompt(comparison, other_recipes, request, columns, labels)
        if labels[rows.reference] not in images:  # its error is in the log; no row of this prompt can be judged
            log.warning("[quality] %s: the baseline row failed, so this prompt judges no row", item.id)
            continue
        for label, entry in judge_prompt(judge, item, images, labels[rows.reference]).items():
            per_row[label].append(entry)
            thumbnails[(item.id, label)] = _thumbnail(images[label][0])
        baseline_scores.append(per_row[labels[rows.reference]][-1]["clip_score"])
    if not baseline_scores:
        raise SystemExit("quality run: the baseline row failed on every prompt (the log says why): nothing to judge")
    report_rows = row_figures(rows, columns + [f"{INT8_ROW}:{m}" for m in other_recipes], labels, per_row,
                              len(prompts), load_settings.int8_mode)  # fmt: skip
    gate = QualityGate(args.quality_max_clip_drop, args.quality_min_similarity, args.quality_min_ssim)
    report = quality_report(settings, args, model, judge, gate, prompt_set, len(prompts), request, report_rows)
    baseline_clip = statistics.median(baseline_scores)
    report["baseline_clip_score"] = round(baseline_clip, 4)
    recipes = {r["recipe"]: r for r in report_rows if r["backend"] == INT8_ROW and r["status"] == "ok"}
    report["int8_choice"] = choose_int8_recipe(recipes, baseline_clip, gate) if recipes else None
    report["unavailable"] = [{"backend": b, "status": rows.status[b].describe()} for b in rows.order
                             if b not in rows.backends]  # fmt: skip
    json_path = args.json or quality_path(model.model_id, size, settings.steps, report["cpu_kind"])
    write_json(json_path, report)
    grid_path = json_path.with_suffix(".png")
    grid(prompts, list(labels.values()), thumbnails, grid_path, report["made_on"])
    report["json"], report["grid"] = str(json_path), str(grid_path)
    print(f"\n{report['made_on']}\n")
    print(quality_table(report))
    print(f"\nJSON: {json_path}\ngrid: {grid_path}")
    return report


def model_and_judge(settings, args):
    """The model and the CLIP judge, before any row loads; where either is out of reach, the words and the exit
    status OUT_OF_REACH (the image build goes on without a report: scripts/image-quality.sh)."""
    try:
        model = resolve_model(settings.model, Path(settings.cache_dir), strict=settings.strict)
    except ModelUnavailable as exc:
        raise out_of_reach(
            f"quality run: {exc}. It needs the model's weights: run it where the Hub is reachable, or pass --model "
            "DIR (a local copy); --model tiny runs the machinery on the random-weight stand-in"
        ) from exc
    try:
        judge = ClipJudge.for_model(
            model.model_id if model.standin else None, Path(settings.cache_dir), args.quality_judge
        )
    except RuntimeError as exc:  # the judge's repository out of reach
        raise out_of_reach(f"quality run: {exc}") from exc
    return model, judge


def out_of_reach(words: str) -> SystemExit:
    print(words, file=sys.stderr)
    return SystemExit(OUT_OF_REACH)


def load_rows(model, settings, load_settings, size: int, factory):
    """The page's rows, loaded, in a comparison without the safety checker (its blanking would replace a row's
    picture by black: the run judges what the rows computed)."""
    rows = RowSet(model, settings.backend_ids(), load_settings, factory=factory)
    comparison = Comparison(rows, False, settings.limits((size,)), None, False)
    rows.load_all()
    if rows.reference is None:
        raise SystemExit("quality run: every figure is against the baseline row: keep it in --backends")
    if rows.reference not in rows.backends:
        raise SystemExit(f"quality run: the baseline row did not load: {rows.status[rows.reference].describe()}")
    return rows, comparison


def load_other_recipes(model, rows, load_settings, size: int, factory) -> dict:
    """The int8 row with every recipe but the page's, one RowSet each, loaded after the page's rows and warm."""
    other_recipes = {}
    if INT8_ROW not in rows.backends:
        return other_recipes
    for mode in (m for m in MODES if m != load_settings.int8_mode):
        extra = RowSet(model, [INT8_ROW], replace(load_settings, int8_mode=mode), factory=factory)
        extra.load_row(INT8_ROW)
        if extra.status[INT8_ROW].state != "ready":
            log.warning("int8 recipe %s unavailable: %s", mode, extra.status[INT8_ROW].describe())
            continue
        with extra.lock:
            extra.warm_up(INT8_ROW, size)
        other_recipes[mode] = extra
    return other_recipes


def run_prompt(comparison, other_recipes: dict, request, columns: list[str], labels: dict) -> dict:
    """One prompt through the page's rows, then the int8 row's other recipes right after them: label -> (image,
    latency, different work, (PSNR, SSIM) where the comparison already measured them)."""
    images = {}
    for result in comparison.run(request, backend_ids=columns):
        if result.status == "ok":
            measured = None if result.psnr_db is None else (result.psnr_db, result.ssim)
            images[labels[result.backend]] = (result.image, result.latency_s, result.different_work, measured)
    latents = initial_latents(request.seed, request.height, request.width)
    for mode, extra in other_recipes.items():
        with extra.lock:
            timed = timed_generate(extra.backends[INT8_ROW], request, latents)
        images[labels[f"{INT8_ROW}:{mode}"]] = (timed.image, timed.latency_s, "", None)
    return images


def judge_prompt(judge, item, images: dict, reference: str) -> dict[str, dict]:
    """Each image's figures for one prompt, judged after every row has run (nothing of the judge's inside a timed
    section): CLIP score; for the same work, PSNR, SSIM and CLIP similarity to the baseline's image."""
    order = list(images)
    embeddings = dict(zip(order, judge.image_embeddings([images[label][0] for label in order]), strict=True))
    text = judge.text_embeddings([item.prompt])[0]
    entries = {}
    for label, (image, latency, different_work, measured) in images.items():
        entry = {
            "prompt": item.id,
            "latency_s": round(latency, 4),
            "clip_score": judge.clip_score(embeddings[label], text),
        }
        if not different_work and label != reference:
            entry["psnr_db"], entry["ssim"] = measured or fidelity(image, images[reference][0])
            entry["clip_image_similarity"] = judge.similarity(embeddings[label], embeddings[reference])
        entries[label] = entry
    return entries


def row_figures(rows, columns: list[str], labels: dict, per_row: dict, n_prompts: int, shipped_mode: str) -> list:
    """Each column's figures over the prompts (median and range of each measure), with its prompts' entries."""
    report_rows = []
    for backend in columns:
        entries = per_row[labels[backend]]
        row_id = backend.split(":")[0]
        row = {
            "backend": row_id,
            "label": labels[backend],
            "recipe": (backend.split(":")[1] if ":" in backend else shipped_mode) if row_id == INT8_ROW else "",
            "status": "ok" if len(entries) == n_prompts else "incomplete",
            "different_work": rows.different_work(row_id),
            "prompts": entries,
        }
        for measure in ("latency_s", "clip_score", "psnr_db", "ssim", "clip_image_similarity"):
            values = [e[measure] for e in entries if measure in e]
            if values:
                row[measure] = spread(values)
        report_rows.append(row)
    return report_rows


def quality_report(settings, args, model, judge, gate, prompt_set, n_prompts: int, request, report_rows) -> dict:
    """The report's record: on what it was made first, then how, the gate, and every row's figures."""
    cpu = this_cpu()
    return {
        "made_on": model_words(model),
        **provenance(args.argv),
        "mode": "quality",
        "model": model.model_id,
        "model_revision": model.revision,
        "standin": model.standin,
        "cpu_kind": cpu.slug(),
        "isa": cpu.isa_line(),
        "cores": settings.thread_count(),
        "size": args.size,
        "steps": settings.steps,
        "guidance_scale": request.guidance_scale,
        "scheduler": request.scheduler,
        "safety_checker": "off for the run: a blanked image would be judged as the row's",
        "prompt_set": {
            "name": prompt_set.name,
            "version": prompt_set.version,
            "digest": prompt_set.digest,
            "prompts": n_prompts,
            "of": len(prompt_set.prompts),
        },
        "judge": {"id": judge.name, "standin": judge.standin},
        "gate": {
            "max_clip_score_drop": gate.max_clip_score_drop,
            "min_clip_image_similarity": gate.min_clip_image_similarity,
            "min_ssim": gate.min_ssim,
        },
        "baseline_clip_score": None,
        "int8_choice": None,
        "rows": report_rows,
        "unavailable": [],
    }


def _thumbnail(image: np.ndarray) -> np.ndarray:
    from PIL import Image

    from core.images import to_uint8

    return np.asarray(Image.fromarray(to_uint8(image)).resize((THUMBNAIL_PX, THUMBNAIL_PX), Image.LANCZOS))


def grid(prompts, labels: list[str], thumbnails: dict, path: Path, heading: str) -> None:
    """A PNG of every image, one line per prompt and one column per row (missing: grey), drawn with Pillow."""
    from PIL import Image, ImageDraw

    left, top, px, pad = 260, 56, THUMBNAIL_PX, 6
    width = left + len(labels) * (px + pad)
    image = Image.new("RGB", (width, top + len(prompts) * (px + pad)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((pad, pad), heading[: width // 6], fill="red")
    for j, label in enumerate(labels):
        draw.text((left + j * (px + pad), top - 18), label, fill="black")
    for i, item in enumerate(prompts):
        y = top + i * (px + pad)
        words, lines = item.prompt.split(), [""]
        for word in words:  # wrap the prompt into the left margin
            lines[-1] = f"{lines[-1]} {word}".strip() if len(lines[-1]) + len(word) < 40 else lines[-1]
            if not lines[-1].endswith(word):
                lines.append(word)
        draw.text((pad, y), f"{item.id} (seed {item.seed})", fill="black")
        for k, line in enumerate(lines[:8]):
            draw.text((pad, y + 16 + 14 * k), line, fill="dimgray")
        for j, label in enumerate(labels):
            thumb = thumbnails.get((item.id, label))
            x = left + j * (px + pad)
            if thumb is None:
                draw.rectangle([x, y, x + px, y + px], fill="lightgray")
            else:
                image.paste(Image.fromarray(thumb), (x, y))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def add_arguments(parser) -> None:
    """The quality run's flags, on benchmark.py's parser."""
    parser.add_argument("--quality", action="store_true", help="run the quality report instead (make quality)")
    parser.add_argument("--quality-prompts", type=int, default=0, help="the first N prompts of the set (0: all)")
    parser.add_argument("--quality-judge", default=CLIP_JUDGE, help="the CLIP judge: hub id or local directory")
    gate = QualityGate()
    parser.add_argument("--quality-max-clip-drop", type=float, default=gate.max_clip_score_drop)
    parser.add_argument("--quality-min-similarity", type=float, default=gate.min_clip_image_similarity)
    parser.add_argument("--quality-min-ssim", type=float, default=gate.min_ssim)
