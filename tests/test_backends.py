"""Every row on the `tiny` stand-in: real pipelines, identical latents, stated tolerances against the baseline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_SIZE, fake_comparison, make_comparison, ready_or_skip

from backends import backend_class, backend_ids
from core.cpu import this_cpu
from core.request import GenerationRequest, initial_latents
from harness.compare.comparison import fidelity

REQUEST = GenerationRequest("sailing ship in storm by Rembrandt", seed=42, steps=8, height=TINY_SIZE, width=TINY_SIZE)

# Fidelity to the baseline image on identical latents (this request, `tiny`), as measured and on which CPU:
# - openvino-static: 92.0 dB / SSIM 1.000 on AMD EPYC AVX2 (OpenVINO runs f32 there). On CPUs with native bf16
#   OpenVINO runs bf16 by default: 49.2 and 50.3 dB / SSIM 1.000 on an Intel Xeon with AMX (two app runs, 20 and
#   4 steps; sd15-standin: 86.1 dB f32 on AVX2, 47.9 dB / 1.000 bf16 on AMX at 4 steps).
# - int8-tome: 35.4 dB / SSIM 0.993 on AMD EPYC AVX2 with the overflow fix (UNet 7-bit weights, VAE decoder 8-bit
#   weights; without the fix 24.6 dB / 0.928: see backends/int8_tome.py); 34.4 dB at 256x256 on AMD EPYC
#   AVX-512-BF16/VNNI with the export check at f32 (issue 10); 39.3 and 39.5 dB / 0.997 on an Intel Xeon with AMX.
# - ipex-bf16: 49.2 and 49.6 dB / SSIM 1.000 on an Intel Xeon with AMX (the same two runs; sd15-standin: 47.7 dB
#   / 0.999). Runs only with AVX-512: native bf16 on AVX-512-BF16/AMX, emulated otherwise (not measured there).
# - pytorch-bf16: runs only with native bf16; measured in test_pytorch_bf16_compiles_once_and_reuses_inductors_cache's
#   run (printed) on an Intel Xeon with AMX.
TOLERANCES = {  # backend -> (min PSNR dB, min SSIM)
    "openvino-static": (30.0, 0.95),  # f32: far above; bf16 end to end loses ~30-40 dB against f32 at most
    "ipex-bf16": (25.0, 0.90),  # bf16 end to end
    "pytorch-bf16": (25.0, 0.90),  # bf16 end to end, as IPEX's
    "int8-tome": (30.0, 0.97),  # int8 UNet + merged tokens: 4 dB below the lowest measured; AVX2's saturated sums
    # without the overflow fix gave 24.6 dB / 0.928 (issue 25): this floor catches them
}


def generate(comparison, backend_id, request=REQUEST):
    return comparison.rows.backends[backend_id].generate(
        request, initial_latents(request.seed, request.height, request.width), lambda *_: None, lambda *_: None
    )


@pytest.mark.parametrize("backend_id", backend_ids())
def test_image_size_and_determinism(comparison, backend_id):
    ready_or_skip(comparison, backend_id)
    first, again = generate(comparison, backend_id), generate(comparison, backend_id)
    assert first.shape == (TINY_SIZE, TINY_SIZE, 3)
    assert first.dtype == np.float32 and 0.0 <= first.min() and first.max() <= 1.0
    np.testing.assert_array_equal(first, again)
    other_seed = generate(comparison, backend_id, GenerationRequest(**{**REQUEST.__dict__, "seed": 43}))
    assert np.abs(other_seed - first).mean() > 0.01


@pytest.mark.parametrize("backend_id", sorted(TOLERANCES))
def test_fidelity_to_baseline(comparison, backend_id):
    ready_or_skip(comparison, backend_id)
    min_psnr, min_ssim = TOLERANCES[backend_id]
    psnr, ssim = fidelity(generate(comparison, backend_id), generate(comparison, "baseline"))
    assert psnr >= min_psnr and ssim >= min_ssim, (psnr, ssim)


@pytest.mark.parametrize("backend_id", backend_ids())
def test_stage_split_adds_up_to_the_latency(comparison, backend_id):
    """Text encoding, denoising and VAE decoding are each measured inside the timed call, and together they
    are the row's latency: what lies outside them (the scheduler's set-up, input checks: 1-6 ms on `tiny`) is
    small beside a request of the app's default 20 steps, even on `tiny`. The few-step row runs its own 4 steps
    whatever the request says, so there the same milliseconds are a larger share (5.1-5.9 % of a 28 ms call on
    the AMX Xeon, which a 5 % bound failed on once): it is held to 10 %, which a stage timer that missed its
    stage still fails (its text encoding alone is 8 % of the call, its VAE decoding 22 %)."""
    from dataclasses import replace

    from harness.compare.comparison import timed_generate

    ready_or_skip(comparison, backend_id)
    backend = comparison.rows.backends[backend_id]
    request = replace(REQUEST, steps=20)
    latents = initial_latents(request.seed, TINY_SIZE, TINY_SIZE)
    runs = [timed_generate(backend, request, latents) for _ in range(5)]  # the closest of 5: a busy machine can
    for timed in runs:  # preempt the call between two stages; a missing stage shows in every run
        assert timed.stages is not None and list(timed.stages) == ["text_encoding", "denoising", "vae_decoding"]
        assert all(seconds > 0 for seconds in timed.stages.values()), timed.stages
    gaps = [abs(sum(t.stages.values()) - t.latency_s) / t.latency_s for t in runs]
    allowed = 0.10 if backend_id == "lcm-taesd" else 0.05
    assert min(gaps) <= allowed, [(t.stages, t.latency_s) for t in runs]
    pipe = backend.pipe if hasattr(backend, "pipe") else backend.pipes[TINY_SIZE]
    assert "encode_prompt" not in vars(pipe) and "decode" not in vars(pipe.vae)  # the timers go after the call
    assert "postprocess" not in vars(pipe.image_processor)


def test_baseline_is_plain_diffusers(comparison):
    """The baseline row is plain diffusers: its image equals the pipeline's own call handed the same latents (drawn
    in float64 so that every CPU kind draws the same noise: `core.request.initial_latents`)."""
    row = comparison.rows.backends["baseline"]
    pipe = row.pipe
    from backends.pipeline import make_scheduler

    pipe.scheduler = make_scheduler("dpm++", row.scheduler_config)
    plain = pipe(
        REQUEST.prompt,
        num_inference_steps=REQUEST.steps,
        height=TINY_SIZE,
        width=TINY_SIZE,
        latents=initial_latents(REQUEST.seed, TINY_SIZE, TINY_SIZE),
        output_type="np",
    ).images[0]
    np.testing.assert_array_equal(plain, generate(comparison, "baseline"))


def test_ready_rows_are_exactly_what_this_cpu_can_run(comparison):
    """A row may be missing only where the CPU capability model says this CPU cannot run it, and says why."""
    cpu = this_cpu()
    expected = [b for b in backend_ids() if backend_class(b).support(cpu).runs]
    described = {b: comparison.rows.status[b].describe() for b in backend_ids()}
    assert comparison.rows.ready() == expected, described
    for backend_id in set(backend_ids()) - set(expected):
        assert backend_class(backend_id).support(cpu).reason in comparison.rows.status[backend_id].detail


def test_run_gives_every_ready_row_a_result_with_figures(comparison):
    rows = list(comparison.run(REQUEST))
    assert [r.backend for r in rows] == list(backend_ids())
    for row in rows:
        if row.backend in comparison.rows.ready():
            assert row.status == "ok", row.message
            assert row.latency_s > 0 and 0 < row.s_per_step < row.latency_s
            if row.different_work:  # other work (the few-step row): how much sooner, never a speed-up or a fidelity
                assert row.sooner > 0 and row.speedup is None and row.psnr_db is None
                continue
            assert row.speedup > 0 and (row.backend == "baseline") == (row.psnr_db is None)
        elif not comparison.rows.runs_here(row.backend):
            assert row.status == "skipped" and "not on this CPU" in row.message, row.message
        else:
            assert row.status == "skipped" and "not ready" in row.message


def test_speedup_is_baseline_latency_over_row_latency(tiny_model, cache_dir):
    """Rows of known least duration (a loaded machine only adds to it): openvino-static sleeps a quarter of the
    baseline's time and comes out faster, int8-tome as long and comes out neither 4x faster nor slower."""
    delays = {"baseline": 0.8, "openvino-static": 0.2, "int8-tome": 0.8}
    comparison = fake_comparison(
        tiny_model, cache_dir, backends=list(delays), **{b: {"delay": d} for b, d in delays.items()}
    )
    by_id = {r.backend: r for r in comparison.run(REQUEST)}
    assert all(by_id[b].latency_s >= delay for b, delay in delays.items())
    assert by_id["baseline"].speedup == 1.0
    for backend_id in ("openvino-static", "int8-tome"):
        row = by_id[backend_id]
        assert row.speedup == pytest.approx(by_id["baseline"].latency_s / row.latency_s)
    assert by_id["openvino-static"].speedup > 1.5
    assert 0.5 < by_id["int8-tome"].speedup < 2.0


def test_rows_of_concurrent_requests_never_overlap(tiny_model, cache_dir):
    """Two requests at once (two threads): every row call, warm-ups included, runs alone."""
    import threading

    comparison = fake_comparison(tiny_model, cache_dir, load=False, **{b: {"delay": 0.05} for b in backend_ids()})
    for backend_id in backend_ids():
        comparison.rows.load_row(backend_id)  # not warmed up: the requests warm the rows up as they go
    threads = [threading.Thread(target=lambda: list(comparison.run(REQUEST))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    calls = sorted((start, end) for fake in comparison.fakes.values() for _prompt, start, end in fake.runs)
    assert len(calls) == 3 * len(backend_ids())  # one warm-up and two timed runs per row
    for (_, end), (start, _) in zip(calls[:-1], calls[1:], strict=True):
        assert end <= start, "two row calls overlapped"


def test_a_baseline_timed_while_a_row_loads_marks_every_ratio(tiny_model, cache_dir):
    import ui.cards

    comparison = fake_comparison(
        tiny_model, cache_dir, backends=["baseline", "openvino-static", "int8-tome"], baseline={"delay": 0.2}
    )
    baseline, int8 = comparison.fakes["baseline"], comparison.rows.status["int8-tome"]
    original = baseline.generate

    def generate_while_int8_finishes_loading(request, latents, on_step, on_stage):
        int8.set("ready") if int8.state == "loading" else None
        return original(request, latents, on_step, on_stage)

    int8.set("loading", "building")  # loading when the baseline starts, ready when it ends: checked before too
    baseline.generate = generate_while_int8_finishes_loading
    rows = {r.backend: r for r in comparison.run(REQUEST, backend_ids=["baseline", "openvino-static"])}
    assert "int8-tome was loading: latency inflated" in rows["baseline"].message
    assert "baseline timed while another row was loading" in rows["openvino-static"].message
    assert "not clean" in ui.cards.headline([row.figures() for row in rows.values()], "baseline")


def test_an_abandoned_request_does_not_keep_the_rows(tiny_model, cache_dir):
    comparison = fake_comparison(tiny_model, cache_dir)
    abandoned = comparison.run(REQUEST)
    assert next(abandoned).status == "ok"  # the client reads one row, then goes away
    assert not comparison.rows.lock.locked()
    assert [r.status for r in comparison.run(REQUEST)] == ["ok"] * len(backend_ids())


def test_ipex_row_is_ready_or_says_why(comparison):
    status = comparison.rows.status["ipex-bf16"]
    if backend_class("ipex-bf16").support(this_cpu()).runs:
        assert status.state == "ready", status.detail
    else:
        assert status.state == "unavailable" and "AVX-512" in status.detail


def test_long_prompt_is_truncated_and_reported(comparison):
    words = " ".join(f"word{i}" for i in range(120))
    prompt = words + " FINALWORD"
    request = GenerationRequest(prompt, steps=2, height=TINY_SIZE, width=TINY_SIZE)
    note = comparison.truncation(request)
    assert note is not None and note.startswith("prompt is ") and "CLIP reads the first 75," in note
    dropped = note.split("this was dropped: ")[1].strip("'").replace(" ", "")
    squeezed = prompt.lower().replace(" ", "")
    # What is reported dropped is the end of the prompt, and only the end: the first 75 tokens are kept.
    assert squeezed.endswith(dropped) and "finalword" in dropped and 0 < len(dropped) < len(squeezed) - 75
    assert comparison.truncation(REQUEST) is None
    rows = list(comparison.run(request, backend_ids=["baseline"]))
    assert rows[0].status == "ok"


def test_unknown_backend_id_is_named(comparison):
    from backends import create_backend
    from harness.compare.validation import InvalidRequest

    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        create_backend("nope")
    with pytest.raises(InvalidRequest, match="nope"):
        list(comparison.run(REQUEST, backend_ids=["nope"]))


def test_failed_load_leaves_other_rows_working(tiny_model, cache_dir):
    from backends.baseline import BaselinePyTorch
    from core.request import LoadSettings

    def factory(backend_id):
        if backend_id == "openvino-static":
            raise MemoryError("injected: out of memory while loading")
        return BaselinePyTorch()

    comparison = make_comparison(
        tiny_model, ["baseline", "openvino-static"], LoadSettings((TINY_SIZE,), 2, cache_dir), factory
    )
    comparison.load_all()
    assert comparison.rows.status["openvino-static"].state == "unavailable"
    assert "out of memory" in comparison.rows.status["openvino-static"].detail
    rows = list(comparison.run(REQUEST))
    assert rows[0].status == "ok" and rows[1].status == "skipped"


def test_row_failing_mid_request_shows_error_and_next_request_works(tiny_model, cache_dir):
    comparison = fake_comparison(tiny_model, cache_dir, **{"openvino-static": {"fail_on": {1}}})
    first = {r.backend: r for r in comparison.run(REQUEST)}
    assert first["openvino-static"].status == "error" and "injected failure" in first["openvino-static"].message
    assert all(first[b].status == "ok" for b in backend_ids() if b != "openvino-static")
    second = {r.backend: r for r in comparison.run(REQUEST)}
    assert all(r.status == "ok" for r in second.values())


def test_a_row_serves_before_its_warm_up_and_is_warmed_outside_the_timed_section(tiny_model, cache_dir):
    comparison = fake_comparison(tiny_model, cache_dir, load=False)
    for backend_id in comparison.rows.order:
        comparison.rows.load_row(backend_id)  # loaded, not warmed: what a request sees right after start-up
    assert comparison.rows.ready() == comparison.rows.order and comparison.rows.warm() == []
    assert "warm-up pending" in comparison.rows.status["baseline"].describe()
    warmed = []
    rows = list(comparison.run(REQUEST, on_warmup=warmed.append))
    assert warmed == comparison.rows.order and all(r.status == "ok" for r in rows)
    for row in rows:
        (warm_up, timed) = comparison.fakes[row.backend].runs
        assert warm_up[0] == "warm-up" and warm_up[2] <= row.timed[0]  # finished before the timed section
        assert timed[1] >= row.timed[0] and timed[2] <= row.timed[1]
    assert comparison.rows.warm() == comparison.rows.order
    warmed.clear()
    list(comparison.run(REQUEST, on_warmup=warmed.append))
    assert warmed == []  # once per row and size


def test_release_mapped_weights_drops_resident_pages_and_keeps_the_data(tmp_path):
    import mmap

    from backends.openvino_loading import release_mapped_weights

    data = np.random.default_rng(0).bytes(8 * 2**20)
    (tmp_path / "weights.bin").write_bytes(data)
    with open(tmp_path / "weights.bin", "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        touched = bytes(mapped[i] for i in range(0, len(data), 4096))  # read one byte of every page
        assert len(touched) == len(data) // 4096
        assert resident_kb(tmp_path) >= 8 * 1024 - 4
        assert release_mapped_weights(tmp_path) >= 7
        assert resident_kb(tmp_path) == 0
        assert mapped[:] == data  # read back from the page cache, unchanged


def test_openvino_rows_do_not_keep_the_ir_weights_resident(comparison, tmp_path):
    import shutil

    from backends.openvino_loading import load_static_pipelines
    from backends.pipeline import run_pipeline
    from core.request import LoadSettings

    ready_or_skip(comparison, "openvino-static")
    backend = comparison.rows.backends["openvino-static"]
    ir_dir = shutil.copytree(backend.ir_dirs[TINY_SIZE], tmp_path / "ir")  # mapped by this load only
    pipes = load_static_pipelines(ir_dir, LoadSettings((TINY_SIZE,), 2, tmp_path), lambda _: None)
    weights_kb = sum(f.stat().st_size for f in ir_dir.rglob("*.bin")) / 1024
    # Compiling touches every weight (OpenVINO repacks them); without the release they stay resident.
    assert weights_kb > 0 and resident_kb(ir_dir) < 0.05 * weights_kb
    latents = initial_latents(REQUEST.seed, TINY_SIZE, TINY_SIZE)
    image = run_pipeline(pipes[TINY_SIZE], backend.scheduler_config, REQUEST, latents, lambda *_: None)
    np.testing.assert_array_equal(image, generate(comparison, "openvino-static"))  # the same model still


def resident_kb(directory: Path) -> int:
    """Resident kB of this process's mappings of files under `directory`."""
    root, total, inside = str(Path(directory).resolve()), 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            first = line.split(maxsplit=5)
            if "-" in first[0] and len(first) >= 5:  # a mapping's header line
                inside = len(first) == 6 and first[5].strip().startswith(root)
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


def test_openvino_sizes_share_one_compiled_text_encoder(tiny_model, cache_dir):
    """Two sizes: two compiled UNets and VAE decoders, one text encoder; the second size's image is the one a
    pipeline compiled for that size alone gives."""
    from dataclasses import replace

    from backends.openvino_static import OpenVinoStatic
    from core.request import LoadSettings

    settings = LoadSettings(sizes=(TINY_SIZE, 64), threads=2, cache_dir=cache_dir)
    settings = replace(
        settings, scheduler_config=json.loads((tiny_model.path / "scheduler/scheduler_config.json").read_text())
    )
    both, alone = OpenVinoStatic(), OpenVinoStatic()
    both.load(tiny_model, settings, lambda _line: None)
    alone.load(tiny_model, replace(settings, sizes=(64,)), lambda _line: None)
    assert both.pipes[64].text_encoder is both.pipes[TINY_SIZE].text_encoder
    assert both.pipes[64].unet is not both.pipes[TINY_SIZE].unet
    request = GenerationRequest("cartoon bird", steps=2, height=64, width=64)
    latents = initial_latents(request.seed, 64, 64)
    images = [row.generate(request, latents, lambda *_: None, lambda *_: None) for row in (both, alone)]
    np.testing.assert_array_equal(*images)


LOAD_AND_GENERATE = """
import hashlib, json, sys
from pathlib import Path
import torch._dynamo.utils
from core.request import GenerationRequest, LoadSettings, initial_latents
from harness.models.model_sources import resolve_model
from harness.compare.rows import RowSet

rows_ids = sys.argv[3].split(",")
rows = RowSet(resolve_model("tiny", Path(sys.argv[1])), rows_ids, LoadSettings((128,), 2, Path(sys.argv[2])))
for row in rows_ids:  # one after the other, in this order, as the app's start loads them
    rows.load_row(row)
    assert rows.status[row].state == "ready", rows.status[row].detail
request = GenerationRequest("sailing ship in storm by Rembrandt", seed=42, steps=4, height=128, width=128)
image = rows.backends["pytorch-bf16"].generate(request, initial_latents(42, 128, 128), lambda *_: None, lambda *_: None)
counters = torch._dynamo.utils.counters["inductor"]
print(json.dumps({
    "seconds": rows.status["pytorch-bf16"].load.seconds, "cache": rows.status["pytorch-bf16"].load.cache,
    "hits": counters["fxgraph_cache_hit"], "misses": counters["fxgraph_cache_miss"],
    "image": hashlib.sha256(image.tobytes()).hexdigest(),
}))
"""


def test_pytorch_bf16_compiles_once_and_reuses_inductors_cache(comparison, cache_dir, tmp_path):
    """A start (a new process on the same cache directory) loads the compiled graphs from inductor's cache instead
    of compiling them again, and computes the same image, also when the IPEX row is loaded before it in that
    process, as in the app (IPEX re-registers PyTorch's CPU autocast kernels: the Space image once compiled at
    build without IPEX and again at start with it)."""
    import subprocess
    import sys
    import tempfile

    ready_or_skip(comparison, "pytorch-bf16")
    psnr, ssim = fidelity(generate(comparison, "pytorch-bf16"), generate(comparison, "baseline"))
    print(f"pytorch-bf16 vs baseline on tiny: {psnr:.1f} dB, SSIM {ssim:.3f}")
    repo = Path(__file__).resolve().parent.parent

    def load(rows: str) -> dict:
        # A fresh TMPDIR: inductor's default cache directory (under it) holds nothing, so a hit can only come from
        # the cache directory the row chose.
        env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
        env["TMPDIR"] = tempfile.mkdtemp(dir=tmp_path)
        done = subprocess.run(
            [sys.executable, "-c", LOAD_AND_GENERATE, str(cache_dir), str(tmp_path), rows], cwd=repo, env=env,
            capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    prepared = load("pytorch-bf16")  # as `harness.prepare` compiles when the image is built
    assert prepared["misses"] > 0 and prepared["cache"] == "built", prepared
    ipex_runs = backend_class("ipex-bf16").support(this_cpu()).runs
    started = load("ipex-bf16,pytorch-bf16" if ipex_runs else "pytorch-bf16")  # as the app's start loads them
    assert started["misses"] == 0 and started["hits"] > 0 and started["cache"] == "hit", started
    assert started["image"] == prepared["image"]
    print(f"pytorch-bf16 load on tiny: {prepared['seconds']:.1f} s compiling, {started['seconds']:.1f} s from cache")
