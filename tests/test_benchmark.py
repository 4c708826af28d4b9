"""benchmark.py: on `tiny` with the real rows (every row this CPU can run measured, the others named with their
hardware reason), and with rows of known duration (ratios, a missing baseline)."""

import json
import statistics

import pytest
from conftest import FakeBackend

import benchmark
from backends import backend_class, backend_ids
from benchmarking.flops import count_flops
from core.cpu import this_cpu
from core.request import LoadSettings

ROW_FIELDS = {
    "backend", "status", "precision", "compute", "latencies_s", "mean_s", "median_s", "min_s", "max_s", "s_per_step",
    "load_s", "cache", "ram_added_mb", "peak_rss_gb", "disk_mb", "tflops", "peak_share", "peak_unit", "speedup",
    "psnr_db", "ssim", "stages_s", "reference", "speedups", "speedup_range", "within_noise",
}  # fmt: skip


def run(tmp_path, cache_dir, *extra):
    out = tmp_path / "bench.json"
    argv = ["--model", "tiny", "--size", "128", "--steps", "4", "--passes", "1", "--threads", "2",
            "--calibration-prompts", "2", "--cache-dir", str(cache_dir), "--json", str(out), *extra]  # fmt: skip
    benchmark.main(argv)
    return json.loads(out.read_text()), out


def test_benchmark_on_tiny_measures_every_row_this_cpu_can_run(tmp_path, cache_dir, capsys):
    report, out = run(tmp_path, cache_dir, "--save-images", str(tmp_path / "img"), "--throughput", "2")
    cpu = this_cpu()
    assert report["cpu_kind"] == cpu.slug() and report["isa"] == cpu.isa_line() and report["command"]
    rows = {r["backend"]: r for r in report["rows"]}
    assert list(rows) == list(backend_ids())
    printed = capsys.readouterr().out
    for backend_id, row in rows.items():
        support = backend_class(backend_id).support(cpu)
        if not support.runs:
            assert row["status"] == "unavailable" and support.reason in row["reason"]
            assert f"| {backend_id} | unavailable: " in printed
            continue
        assert row["status"] == "ok", row.get("reason")
        if row["different_work"]:  # other work: "sooner" where the others have their speed-up, no FLOP rate
            assert row["speedup"] is None and row["sooner"] > 0 and row["sooner_range"] and row["peak_share"] is None
            assert f"other work: an image {row['sooner']:.2f}x sooner" in printed
            assert (tmp_path / "img" / f"{backend_id}.png").is_file()
            continue
        assert ROW_FIELDS <= set(row), ROW_FIELDS - set(row)
        assert len(row["latencies_s"]) == 1 and 0 < row["s_per_step"] < row["mean_s"]
        assert list(row["stages_s"]) == ["text_encoding", "denoising", "vae_decoding"]
        assert 0 < row["peak_share"] and row["peak_unit"]
        assert (tmp_path / "img" / f"{backend_id}.png").is_file()
    assert (
        rows["openvino-static"]["throughput_images_per_min"] > 0 and rows["openvino-static"]["throughput_streams"] >= 1
    )
    assert report["flops"]["unet_step"] > 0 and report["flops"]["vae_decode"] > 0
    assert out.with_suffix(".png").is_file()


def fake_rows(monkeypatch, delays: dict[str, float]):
    monkeypatch.setattr("harness.compare.rows.create_backend", lambda b: FakeBackend(b, delay=delays[b]))


def test_benchmark_speedup_comes_from_the_measured_latencies(tmp_path, cache_dir, monkeypatch):
    fake_rows(monkeypatch, {"baseline": 0.4, "openvino-static": 0.1})
    report, _ = run(tmp_path, cache_dir, "--backends", "baseline,openvino-static")
    rows = {r["backend"]: r for r in report["rows"]}
    assert rows["baseline"]["speedup"] == 1.0 and rows["baseline"]["psnr_db"] is None
    assert 2.5 < rows["openvino-static"]["speedup"] < 4.5
    assert rows["openvino-static"]["psnr_db"] == 100.0  # the fake rows compute the same image


def test_startup_is_a_results_file_with_its_provenance_and_a_generated_table(tmp_path, cache_dir, monkeypatch):
    """`--startup` writes when each row served and was warm, with the date, command, commit and CPU every results
    file carries; `python -m benchmarking.report` makes its table from that file."""
    from benchmarking.report import generated_blocks

    fake_rows(monkeypatch, {"baseline": 0.0, "openvino-static": 0.0})
    out = tmp_path / "tiny-startup-glibc-test.json"  # named as results/ names start-up files
    benchmark.main(["--model", "tiny", "--threads", "2", "--cache-dir", str(cache_dir), "--backends",
                    "baseline,openvino-static", "--startup", "--json", str(out)])  # fmt: skip
    report = json.loads(out.read_text())
    assert report["mode"] == "startup" and report["cpu_kind"] == this_cpu().slug() and report["commit"]
    assert report["command"].startswith("python benchmark.py ") and "--startup" in report["command"]
    rows = {r["backend"]: r for r in report["rows"]}
    assert list(rows) == ["baseline", "openvino-static"]
    assert all(0 <= r["serving_s"] <= r["warm_s"] <= report["all_warm_s"] for r in rows.values())
    block = generated_blocks(tmp_path)[f"start-up of {out.name}"]
    assert out.name in block and f"| openvino-static | ready | {rows['openvino-static']['serving_s']} |" in block


@pytest.mark.parametrize("pairing", ["together", "beside"])
def test_paired_rounds_give_each_row_its_median_range_and_speedup_range(tmp_path, cache_dir, monkeypatch, pairing):
    fake_rows(monkeypatch, {"baseline": 0.4, "openvino-static": 0.1, "int8-tome": 0.4})
    report, _ = run(tmp_path, cache_dir, "--backends", "baseline,openvino-static,int8-tome", "--passes", "3",
                    "--pairing", pairing)  # fmt: skip
    assert report["rounds"] == 3 and report["pairing"] == pairing
    rows = {r["backend"]: r for r in report["rows"]}
    # together: one reference pass per round; beside: one beside each of the other two rows' three rounds
    assert len(rows["baseline"]["latencies_s"]) == (3 if pairing == "together" else 6)
    fast, same = rows["openvino-static"], rows["int8-tome"]
    assert len(fast["latencies_s"]) == len(fast["speedups"]) == 3
    assert fast["min_s"] <= fast["median_s"] <= fast["max_s"] and fast["speedup_range"][0] <= fast["speedup"]
    assert 2.5 < fast["speedup"] < 4.5 and fast["within_noise"] is False
    assert fast["speedup"] == pytest.approx(sorted(fast["speedups"])[1])  # the median of the rounds' ratios
    low, high = same["speedup_range"]
    assert same["within_noise"] == (low <= 1.0 <= high)  # equal work: a difference smaller than the spread


def test_benchmark_without_a_baseline_still_prints_every_row(tmp_path, cache_dir, monkeypatch, capsys):
    fake_rows(monkeypatch, {"openvino-static": 0.05, "int8-tome": 0.05})
    report, _ = run(tmp_path, cache_dir, "--backends", "openvino-static,int8-tome")
    assert [r["speedup"] for r in report["rows"]] == [None, None]
    printed = capsys.readouterr().out
    assert "| openvino-static | fake |" in printed and "| int8-tome | fake |" in printed


def test_flop_count_matches_the_published_sd15_figure(tmp_path):
    """SD-1.5's UNet at 512x512 is ~0.8 TFLOP per latent (~0.4 TMAC), so ~1.6 TFLOP per guided step (batch 2)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from harness.models.standins import standin_configs

    unet_kw, vae_kw, *_ = standin_configs("sd15-standin")
    with torch.device("meta"):  # configs only: no weights are allocated
        unet = UNet2DConditionModel(**unet_kw)
        assert sum(p.numel() for p in unet.parameters()) == 859_520_964  # SD-1.5's UNet
        unet.save_config(tmp_path / "unet")
        AutoencoderKL(**vae_kw).save_config(tmp_path / "vae")
    flops = count_flops(tmp_path, 512)
    assert 1.4e12 < flops["unet_step"] < 1.8e12
    assert 1.0e12 < flops["vae_decode"] < 3.0e12


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_peak_rate_of_this_cpu_is_positive(precision):
    flops, label = this_cpu().peak_flops(precision, cores=2)
    assert flops > 0 and "op/cycle/core" in label


@pytest.mark.parametrize("backend_id", ["baseline", "openvino-static", "pytorch-bf16"])
def test_profile_lists_operations_kernels_and_precision_shares(tmp_path, cache_dir, capsys, backend_id):
    """`--profile ROW`: one UNet call and one VAE decode, by kernel (OpenVINO) or op (PyTorch), with the share of
    time per precision adding up to the whole and the share attention takes."""
    if not backend_class(backend_id).support(this_cpu()).runs:
        pytest.skip(f"{backend_id} does not run on this CPU")
    report, _ = run(tmp_path, cache_dir, "--profile", backend_id)
    for part in ("unet_call", "vae_decode"):
        profile = report[part]
        assert profile["total_ms"] > 0 and sum(profile["precision_share"].values()) == pytest.approx(1.0)
        assert profile["top"] and all(t["kernel"] and 0 < t["share"] <= 1 for t in profile["top"])
    assert 0 < report["unet_call"]["attention_share"] < 1  # the UNet's transformer blocks
    if backend_id == "openvino-static":  # OpenVINO names the kernel that ran: brgconv_..., jit_..._f32 / _bf16
        kernels = {t["kernel"] for t in report["unet_call"]["top"]}
        assert any(k.lower().endswith(("_f32", "_bf16")) for k in kernels), kernels
        assert "Convolution" in {t["op"] for t in report["unet_call"]["top"]}
        layers = report["unet_call"]["top_layers"]  # the largest single layers, by the exported module's names
        assert layers and all(t["name"] and t["ms"] > 0 for t in layers)
    assert "by precision:" in capsys.readouterr().out


def test_kernel_names_give_their_precision():
    from benchmarking.profile import precision_of

    assert precision_of("brgconv_avx512_amx_I8") == "int8" and precision_of("jit_avx512_bf16") == "bf16"
    assert precision_of("gemm_mlas_f32") == "fp32" and precision_of("ref_i32") == "other"


def test_variant_lists_hold_each_recipe_once():
    from benchmarking.row_variants import row_with_variants, variant_list

    row = row_with_variants()
    lists = backend_class(row).variant_lists
    both = variant_list(row, "ablation,sweep")
    assert len(both) == len(lists["ablation"]) + len(lists["sweep"]) - 1  # the shipped row is in both
    label, recipe = both[len(lists["ablation"]) - 1]
    shipped = LoadSettings((128,), 2, "/tmp")
    assert label == "+ VAE decoder int8" and all(getattr(shipped, k) == v for k, v in recipe.items())
    with pytest.raises(ValueError, match=f"'everything' of {row}; choose from {', '.join(lists)}"):
        variant_list(row, "ablation,everything")


def test_variants_are_timed_in_paired_rounds_beside_the_baseline(tmp_path, cache_dir, capsys):
    if not backend_class("int8-tome").support(this_cpu()).runs:
        pytest.skip(backend_class("int8-tome").support(this_cpu()).reason)
    report, out = run(tmp_path, cache_dir, "--variants", "ablation", "--passes", "2")
    rows = report["rows"]
    ablation = backend_class("int8-tome").variant_lists["ablation"]
    assert report["row"] == "int8-tome"
    assert [r["backend"] for r in rows] == ["baseline"] + [label for label, _ in ablation]
    assert all(r["status"] == "ok" for r in rows), rows
    # one baseline pass of its own, then one beside each of every variant's two rounds
    assert len(rows[0]["latencies_s"]) == 1 + 2 * len(ablation)
    for r in rows[1:]:
        assert len(r["latencies_s"]) == len(r["speedups"]) == 2
        assert r["speedup"] == pytest.approx(statistics.median(r["speedups"]))
        assert r["speedup_range"] == [min(r["speedups"]), max(r["speedups"])]
        assert r["psnr_db"] >= 25.0 and r["ssim"] >= 0.9  # every build still draws the baseline's image
    shipped = [r for r in rows[1:] if r["shipped"]]
    assert [r["backend"] for r in shipped] == ["+ VAE decoder int8"]  # the row as it ships is the last step
    assert all(isinstance(r["within_noise_of_default"], bool) for r in rows[1:] if not r["shipped"])
    # Three different builds (two without VNNI): tomesd's merge form, the gather form, the VAE decoder in int8 too.
    assert "scatter" in rows[1]["precision"] and "gather" in rows[2]["precision"]
    assert "weight-only" in rows[2]["precision"]
    if this_cpu().int8_vnni:
        assert "VAE decoder int8" in rows[3]["precision"]
    else:  # without VNNI the overflow fix keeps the VAE decoder at 8-bit weights: the last two steps are one build
        assert rows[3]["precision"] == rows[2]["precision"] and "overflow fix" in rows[3]["precision"]
    assert out.with_suffix(".png").exists() and report["complete"]
    assert "| + VAE decoder int8 |" in capsys.readouterr().out
    from harness.records.results import read_results

    assert read_results(tmp_path) == []  # not a latency table: the page's other-CPU tab leaves it out


def test_the_results_readmes_tables_are_generated_from_the_files():
    """Every table of results/README.md that a results file holds is the file's, as
    `python -m benchmarking.report results/` writes it: a table typed by hand, or a file changed without it, fails."""
    from benchmarking.report import BEGIN, generated_blocks, regenerate
    from harness.records.results import RESULTS

    readme = (RESULTS / "README.md").read_text()
    blocks = generated_blocks(RESULTS)
    assert blocks and all(BEGIN.format(name=name) in readme for name in blocks)
    assert regenerate(readme, blocks) == readme, "run `python -m benchmarking.report results/`"


def test_attention_alone_is_timed_in_both_frameworks_and_tabulated(tmp_path):
    """`python -m benchmarking.attention`: the UNet's largest attention alone (here at a small size), each way."""
    from benchmarking.attention import main
    from benchmarking.report import generated_blocks

    report = main(["--size", "64", "--json", str(tmp_path / "attention-64px.json")])
    full = report["cases"]["full"]
    assert full["tokens"] == 64 and report["cases"]["tome-0.5"]["tokens"] == 32
    cells = [*full["torch"].values(), *full["openvino"].values()]
    assert len(cells) == 8 and all(ms > 0 for ms in cells)
    assert report["cpu_kind"] == this_cpu().slug() and report["command"].startswith("python -m benchmarking.attention")
    assert "| 64 (full) |" in generated_blocks(tmp_path)["attention of attention-64px.json"]
