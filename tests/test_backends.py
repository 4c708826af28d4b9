"""Every row on the `tiny` stand-in: real pipelines, identical latents, stated tolerances against the baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_SIZE, fake_comparison, make_comparison, ready_or_skip

from backends import BACKEND_IDS
from backends.base import GenerationRequest
from harness.comparison import fidelity, make_latents
from harness.cpu import this_cpu

REQUEST = GenerationRequest("sailing ship in storm by Rembrandt", seed=42, steps=8, height=TINY_SIZE, width=TINY_SIZE)

# Fidelity to the baseline image on identical latents, measured on `tiny` with this request on an AVX2 CPU:
# openvino-static 92.0 dB / SSIM 1.000 (OpenVINO ran f32); int8-tome 31.4 dB / SSIM 0.984 (calibration 2 prompts).
TOLERANCES = {  # backend -> (min PSNR dB, min SSIM)
    "openvino-static": (30.0, 0.95),  # margin for OpenVINO's automatic bf16 on AMX Xeons (not measured here)
    "ipex-bf16": (25.0, 0.90),  # bf16 end to end; not measurable on a CPU without AVX-512 (row unavailable)
    "int8-tome": (25.0, 0.90),  # int8 UNet + merged tokens: ~6 dB below what we measured
}


def generate(comparison, backend_id, request=REQUEST):
    return comparison.rows.backends[backend_id].generate(
        request, make_latents(request.seed, request.height, request.width), lambda *_: None
    )


@pytest.mark.parametrize("backend_id", BACKEND_IDS)
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


def test_baseline_is_plain_diffusers(comparison):
    """Passing our latents changes nothing: the baseline equals diffusers seeded with the same generator."""
    import torch

    row = comparison.rows.backends["baseline"]
    pipe = row.pipe
    from backends.pipeline import make_scheduler

    pipe.scheduler = make_scheduler("dpm++", row.scheduler_config)
    plain = pipe(
        REQUEST.prompt,
        num_inference_steps=REQUEST.steps,
        height=TINY_SIZE,
        width=TINY_SIZE,
        generator=torch.Generator("cpu").manual_seed(REQUEST.seed),
        output_type="np",
    ).images[0]
    np.testing.assert_array_equal(plain, generate(comparison, "baseline"))


def test_run_gives_every_row_identical_inputs_and_figures(comparison):
    rows = list(comparison.run(REQUEST))
    assert [r.backend for r in rows] == list(BACKEND_IDS)
    by_id = {r.backend: r for r in rows}
    assert by_id["baseline"].speedup == 1.0
    for row in rows:
        if comparison.rows.status[row.backend].state == "ready":
            assert row.status == "ok", row.message
            assert row.latency_s > 0 and row.s_per_step > 0
            if row.backend != "baseline":
                assert row.speedup == pytest.approx(by_id["baseline"].latency_s / row.latency_s)
                assert row.psnr_db is not None and row.ssim is not None
        else:
            assert row.status == "skipped" and "not ready" in row.message
    sections = sorted(comparison.timed_sections[-len(comparison.rows.ready()) :], key=lambda s: s[1])
    for (_, _, end), (_, start, _) in zip(sections[:-1], sections[1:], strict=True):
        assert end <= start  # rows never overlap


def test_ipex_row_is_ready_or_says_why(comparison):
    status = comparison.rows.status["ipex-bf16"]
    if this_cpu().ipex_bf16().runs:
        assert status.state == "ready", status.detail
    else:
        assert status.state == "unavailable" and "AVX-512" in status.detail


def test_long_prompt_is_truncated_and_reported(comparison):
    words = " ".join(f"word{i}" for i in range(120))
    request = GenerationRequest(words + " FINALWORD", steps=2, height=TINY_SIZE, width=TINY_SIZE)
    note = comparison.truncation(request)
    assert note is not None and "finalword" in note.lower() and "77" not in note.split(";")[0][:3]
    assert comparison.truncation(REQUEST) is None
    rows = list(comparison.run(request, backend_ids=["baseline"]))
    assert rows[0].status == "ok"


def test_unknown_backend_id_is_named(comparison):
    from backends import create_backend
    from harness.validation import InvalidRequest

    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        create_backend("nope")
    with pytest.raises(InvalidRequest, match="nope"):
        list(comparison.run(REQUEST, backend_ids=["nope"]))


def test_failed_load_leaves_other_rows_working(tiny_model, cache_dir):
    from backends.base import LoadSettings
    from backends.baseline import BaselinePyTorch

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
    assert all(first[b].status == "ok" for b in BACKEND_IDS if b != "openvino-static")
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

    from backends.base import LoadSettings
    from backends.openvino_loading import load_static_pipelines
    from backends.pipeline import run_pipeline

    ready_or_skip(comparison, "openvino-static")
    backend = comparison.rows.backends["openvino-static"]
    ir_dir = shutil.copytree(backend.ir_dirs[TINY_SIZE], tmp_path / "ir")  # mapped by this load only
    pipes = load_static_pipelines(ir_dir, LoadSettings((TINY_SIZE,), 2, tmp_path), lambda _: None)
    weights_kb = sum(f.stat().st_size for f in ir_dir.rglob("*.bin")) / 1024
    # Compiling touches every weight (OpenVINO repacks them); without the release they stay resident.
    assert weights_kb > 0 and resident_kb(ir_dir) < 0.05 * weights_kb
    latents = make_latents(REQUEST.seed, TINY_SIZE, TINY_SIZE)
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
