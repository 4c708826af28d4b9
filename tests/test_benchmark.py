"""benchmark.py on `tiny`, one pass: it runs, its JSON has every field, ratios come from the same run."""

import json

import pytest

import benchmark
from benchmarking.flops import count_flops

ROW_FIELDS = {
    "backend", "status", "precision", "latencies_s", "mean_s", "median_s", "min_s", "max_s", "s_per_step",
    "load_s", "cache", "ram_added_mb", "peak_rss_gb", "disk_mb", "tflops", "peak_share", "speedup", "psnr_db", "ssim",
    "compute", "peak_unit",
}  # fmt: skip


def test_benchmark_on_tiny(tmp_path, cache_dir, capsys):
    out = tmp_path / "bench.json"
    report = benchmark.main(
        ["--model", "tiny", "--size", "128", "--steps", "4", "--passes", "1", "--threads", "2", "--calibration-prompts",
         "2", "--cache-dir", str(cache_dir), "--json", str(out), "--save-images", str(tmp_path / "img"),
         "--throughput", "2"]
    )  # fmt: skip
    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(report["rows"], default=str))
    rows = {r["backend"]: r for r in report["rows"]}
    assert list(rows) == ["baseline", "ipex-bf16", "openvino-static", "int8-tome"]
    baseline = rows["baseline"]
    for backend_id, row in rows.items():
        if row["status"] != "ok":
            assert row["reason"]
            continue
        assert ROW_FIELDS <= set(row), ROW_FIELDS - set(row)
        assert len(row["latencies_s"]) == 1
        assert row["speedup"] == pytest.approx(baseline["mean_s"] / row["mean_s"])
        assert (tmp_path / "img" / f"{backend_id}.png").is_file()
    assert rows["openvino-static"]["throughput_images_per_min"] > 0
    assert (
        report["flops"]["unet_step"] > 0
        and report["flops"]["vae_decode"] > 0
        and all(r["peak_share"] > 0 for r in report["rows"] if r["status"] == "ok")
    )
    assert out.with_suffix(".png").is_file()
    assert "| baseline |" in capsys.readouterr().out


def test_flop_count_matches_the_published_sd15_figure(tmp_path):
    """SD-1.5's UNet at 512x512 is ~0.8 TFLOP per latent (~0.4 TMAC), so ~1.6 TFLOP per guided step (batch 2)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from harness.model_sources import standin_configs

    unet_kw, vae_kw, _ = standin_configs("sd15-standin")
    with torch.device("meta"):  # configs only: no weights are allocated
        UNet2DConditionModel(**unet_kw).save_config(tmp_path / "unet")
        AutoencoderKL(**vae_kw).save_config(tmp_path / "vae")
    flops = count_flops(tmp_path, 512)
    assert 1.4e12 < flops["unet_step"] < 1.8e12
    assert 1.0e12 < flops["vae_decode"] < 3.0e12
