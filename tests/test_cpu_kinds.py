"""The suite plays every CPU kind this machine can present (`SBS_CPU_KIND`, `core.cpu.KINDS`): the Space image's build
step, a start with a comparison asked for in its first second, the page's cards and the benchmark's table, each in a
process of its own as that kind, on the `tiny` stand-in. Expectations follow each row's declared support on the
kind: a row the kind cannot run is a card with its reason and is skipped by prepare, never a failure; any other
failure turns the test red. A kind above this machine's is a hardware skip (`pytest -rs` names the machine).

What a played kind reaches (checked here on every machine, below): oneDNN's dispatcher in PyTorch, IPEX and
OpenVINO's CPU plugin (ONEDNN_MAX_CPU_ISA), ATen's and inductor's vector code (ATEN_CPU_CAPABILITY), OpenVINO's bf16
default (an explicit inference precision), and every decision of ours (row support, precision labels, peak rates,
cache keys, the int8 overflow fix). What it does not reach: the clock and caches (a played kind's timings are the
machine's, so its results files say "-played"), and OpenVINO's own kernels that read cpuid themselves: below AVX-512 on
a machine with it they run AVX-512 code (and int8 FullyConnected layers fail to compile), so there the OpenVINO rows
say they cannot play the kind (`backends.openvino_loading.cannot_play`) and their kernel check is a hardware skip;
the AVX2 int8 recipe is proven where AVX2 is the machine's own kind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from test_backends import TOLERANCES

from backends import backend_class, backend_ids
from core.cpu import KINDS, Cpu, kind_cpu, machine_cpu

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).with_name("kind_run.py")
# What each kind's engines may run at most: names of ISAs above it, as oneDNN's and OpenVINO's kernel names spell them
ABOVE = {"avx2": ("avx512", "amx"), "avx512-vnni": ("amx",), "avx512-bf16": ("amx",), "amx": ()}
ONEDNN_ISA_WORDS = {  # oneDNN's verbose "isa:" line for each kind's cap: words it must hold, words it must not
    "avx2": (("AVX2",), ("AVX-512", "AMX")),
    "avx512-vnni": (("AVX-512", "DL Boost"), ("bfloat16", "AMX")),
    "avx512-bf16": (("AVX-512", "bfloat16"), ("AMX",)),
    "amx": (("AMX",), ()),
}


def played(kind: str) -> Cpu:
    """This machine presenting `kind`, or a hardware skip."""
    machine = machine_cpu()
    if kind not in machine.kinds_presentable():
        pytest.skip(f"hardware: this machine ({machine.model}: {machine.isa_line()}) cannot present {kind}")
    return machine.presenting(kind)


def run_as(kind: str, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
    env.update(SBS_CPU_KIND=kind, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"as {kind}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


@pytest.fixture(scope="session")
def kind_runs(cache_dir, tmp_path_factory):
    """kind -> (prepare's output, the start's report, the start's stdout), each run once per session. The kinds share
    the session's cache directory: what does not depend on the CPU is built once for all of them."""
    out = tmp_path_factory.mktemp("kinds")

    @cache
    def run(kind: str):
        prepared = run_as(kind, "prepare", str(cache_dir), str(out / f"{kind}-prepare.json"))
        started = run_as(kind, "start", str(cache_dir), str(out / f"{kind}-start.json"))
        report = json.loads((out / f"{kind}-start.json").read_text())
        return json.loads((out / f"{kind}-prepare.json").read_text()), prepared.stdout, report, started.stdout

    return run


@pytest.mark.parametrize("kind", KINDS)
def test_prepare_exits_0_and_skips_only_what_the_kind_cannot_run(kind, kind_runs):
    cpu = played(kind)
    prepared, stdout, _report, _ = kind_runs(kind)
    for backend_id in backend_ids():
        support = backend_class(backend_id).support(cpu)
        what = prepared["done"][backend_id]
        if support.runs:
            assert not what.startswith("skipped"), (backend_id, what)
        else:
            assert what.startswith("skipped, cannot run here") and support.reason in what, (backend_id, what)
            assert f"prepare: {backend_id}: skipped" in stdout


@pytest.mark.parametrize("kind", KINDS)
def test_a_comparison_asked_for_at_start_gives_each_row_its_verdict(kind, kind_runs):
    """The request is made as the start begins: it waits for every row the kind runs (each gives its image within
    its fidelity tolerance); a row the kind cannot run is skipped with its reason, in words, on its card."""
    cpu = played(kind)
    _prepared, _, report, _ = kind_runs(kind)
    rows = {r["backend"]: r for r in report["rows"]}
    for backend_id in backend_ids():
        support, row, card = backend_class(backend_id).support(cpu), rows[backend_id], report["cards"][backend_id]
        if support.runs:
            assert row["status"] == "ok", (backend_id, row)
            assert report["health"]["rows"][backend_id].startswith("ready"), report["health"]
            if backend_id in TOLERANCES:
                min_psnr, min_ssim = TOLERANCES[backend_id]
                assert row["psnr_db"] >= min_psnr and row["ssim"] >= min_ssim, (kind, backend_id, row)
        else:
            assert row["status"] == "skipped" and support.reason in row["message"], row
            assert "**Not on this CPU**" in card and "failed" not in card and "Error" not in card, card
            assert report["health"]["rows"][backend_id].startswith("unavailable: not on this CPU")
    assert "error" not in report["message"].lower() and "failed" not in report["message"].lower()


@pytest.mark.parametrize("kind", KINDS)
def test_the_page_and_the_benchmark_say_which_kind_ran(kind, kind_runs):
    cpu = played(kind)
    _prepared, _, report, _ = kind_runs(kind)
    assert report["slug"] == cpu.slug() and report["benchmark_system"]["cpu_kind"] == cpu.slug()
    assert report["benchmark_system"]["played_as"] == cpu.presented_as
    if cpu.presented_as:  # a lesser kind than the machine's: said on the System panel and in the files' names
        assert f"played as the kind {kind}" in report["system"] and cpu.slug().endswith("-played")
    for row in report["benchmark_rows"]:
        support = backend_class(row["backend"]).support(cpu)
        assert row["status"] == ("ok" if support.runs else "unavailable"), row
        if support.runs:
            assert row["peak_unit"] == cpu.peak_flops(support.compute, 2)[1].split(":")[0], row
        else:
            assert support.reason in row["reason"], row
    # `--profile openvino-static`: OpenVINO's kernel names differ by kind (the AVX2 attention Subgraph is named after
    # its last transpose), yet every kind's profile finds the attention and the precisions (where the row runs)
    profile = report["profile_unet"]
    if not backend_class("openvino-static").support(cpu).runs:
        assert profile == {"attention_share": None, "precision_share": None}, profile
        return
    assert 0 < profile["attention_share"] < 1 and sum(profile["precision_share"].values()) == pytest.approx(1.0)
    assert profile["precision_share"].get("fp32", 0) + profile["precision_share"].get("bf16", 0) > 0.5, profile


def kernels_above(kind: str, kernels: list[str]) -> list[str]:
    """The kernels (oneDNN's and OpenVINO's names) of an instruction set above `kind`."""
    return [k for k in kernels if any(isa in k for isa in ABOVE[kind])]


@pytest.mark.parametrize("kind", KINDS)
def test_the_engines_run_no_kernel_above_the_kind(kind, kind_runs):
    """ATen (and inductor) at the kind's vector width, oneDNN dispatching at most to the kind's ISA in PyTorch, and
    every component of every OpenVINO row that runs built from kernels of the kind's ISA or below. Where OpenVINO
    cannot be held to the kind on this machine (its rows say so in their support), that part is a hardware skip."""
    cpu = played(kind)
    _prepared, _, report, stdout = kind_runs(kind)
    above = {}  # engine -> what it ran above the kind (every engine's, so that one failure does not hide another's)
    if report["aten_capability"] != KINDS[kind].aten_capability.upper():
        above["ATen"] = report["aten_capability"]
    (isa_line,) = [line.split("isa:")[1] for line in stdout.splitlines() if ",cpu,isa:" in line]
    must, must_not = ONEDNN_ISA_WORDS[kind]
    if not all(w in isa_line for w in must) or any(w in isa_line for w in must_not):
        above["oneDNN in PyTorch"] = isa_line
    openvino_rows = [b for b in backend_ids() if backend_class(b).framework == "openvino"]
    running = [b for b in openvino_rows if backend_class(b).support(cpu).runs]
    assert sorted(report["openvino_kernels"]) == sorted(running), report["openvino_kernels"]
    for backend_id in running:
        for component, kernels in report["openvino_kernels"][backend_id].items():
            assert kernels, (backend_id, component)  # a check of nothing is no check
            if kernels_above(kind, kernels):
                above[f"OpenVINO {backend_id} {component}"] = kernels_above(kind, kernels)
    assert not above, above
    if not running:
        why = backend_class(openvino_rows[0]).support(cpu).reason
        pytest.skip(f"hardware: OpenVINO on this machine ({cpu.model}) as {kind}: {why}")


def test_the_kernel_check_sees_an_engine_run_above_a_kind():
    """The check above can fail: OpenVINO uncapped on this machine runs kernels above the least kind it presents
    (AVX-512 or AMX ones, where the machine has them), and `kernels_above` names them."""
    machine = machine_cpu()
    least = machine.kinds_presentable()[0]
    if least == machine.kind():
        pytest.skip(f"hardware: this machine ({machine.model}: {machine.isa_line()}) has nothing above {least}")
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
    done = subprocess.run(
        [sys.executable, "-c", ENGINE_CAP_PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("openvino"))
    assert kernels_above(least, line.split(" ", 1)[1].split("'")), line


def cross_kinds() -> list[tuple[str, str]]:
    """An image prepared on one kind and started on another, both ways, between the least and the most capable kind
    this machine presents (they differ on both the VNNI and the native-bf16 lines wherever the machine has AVX-512);
    a machine that presents one kind gives none (skipped as hardware)."""
    kinds = machine_cpu().kinds_presentable()
    return [(kinds[-1], kinds[0]), (kinds[0], kinds[-1])] if len(kinds) > 1 else []


@pytest.mark.parametrize("built_as, started_as", cross_kinds() or [pytest.param("", "", marks=pytest.mark.skip(
    reason=f"hardware: this machine ({machine_cpu().model}: {machine_cpu().isa_line()}) presents one CPU kind only"
))])  # fmt: skip
def test_an_image_prepared_as_one_kind_starts_as_another(
    built_as, started_as, cache_dir, comparison, tmp_path, monkeypatch
):
    """`harness.prepare --for-cpu-kinds` as the image's build on one kind, then two starts on another sharing its
    cache, as two starts of the image on a Space of the other kind would: every row the other kind runs serves;
    the IR is found (the int8 IR that kind needs included); pytorch-bf16's compiled code is never taken from another
    kind (its first start there compiles into its own directory) and the second start compiles nothing. A row the
    builder's kind cannot run builds at the first start; one the started kind cannot be played with here still finds
    the IR its kind needs prepared."""
    fresh = tmp_path / "cache"
    # The stand-in and the fp32 OpenVINO IR (the session's `comparison` built it), which no CPU kind changes, from the
    # session's cache (saves an export);
    # the int8 IR and inductor's code, which the kinds change, start afresh.
    shutil.copytree(cache_dir / "standins", fresh / "standins")
    for entry in (cache_dir / "ir").glob("*openvino-ir-*"):
        if entry.is_dir() and ".tmp-" not in entry.name and ".damaged-" not in entry.name:
            shutil.copytree(entry, fresh / "ir" / entry.name)
    run_as(built_as, "prepare", str(fresh), str(tmp_path / "prepare.json"), "--for-cpu-kinds", started_as)
    cpu = played(started_as)
    for start in ("first", "restart"):
        run_as(started_as, "serve", str(fresh), str(tmp_path / f"{start}.json"))
        report = json.loads((tmp_path / f"{start}.json").read_text())
        rows = {r["backend"]: r for r in report["rows"]}
        for backend_id in backend_ids():
            runs = backend_class(backend_id).support(cpu).runs
            assert rows[backend_id]["status"] == ("ok" if runs else "skipped"), (start, rows[backend_id])
        cache = report["health"]["cache"]
        if backend_class("openvino-static").support(cpu).runs:
            assert cache["openvino-static"] == "hit", (start, cache)  # copied in above
        for backend_id in ("int8-tome", "lcm-taesd"):  # the int8 IR the build prepared, if it ran the row
            if backend_class(backend_id).support(cpu).runs:
                built_here = backend_class(backend_id).support(played(built_as)).runs
                assert cache[backend_id] == ("hit" if built_here or start == "restart" else "built"), (start, cache)
        if backend_class("pytorch-bf16").support(cpu).runs:
            assert cache["pytorch-bf16"] == ("hit" if start == "restart" else "built"), (start, cache)
    kinds_dirs = {p.name for p in (fresh / "torchinductor").iterdir()} if (fresh / "torchinductor").exists() else set()
    assert kinds_dirs <= {built_as, started_as}, kinds_dirs
    # An int8 row the started kind cannot be played with here: the IR a real CPU of that kind needs was prepared (its
    # row's own prepare, asked here with that kind's settings, finds it without building)
    import backends.int8_tome
    import backends.lcm_taesd
    from harness.settings import Settings, build_comparison

    def no_build(*args, **kwargs):
        raise AssertionError(f"not prepared for {started_as}: {args[-1]}")

    monkeypatch.setattr(backends.int8_tome, "run_in_child", no_build)
    monkeypatch.setattr(backends.lcm_taesd, "run_in_child", no_build)
    fresh_rows = build_comparison(
        Settings(model="tiny", sizes="128", cache_dir=str(fresh), threads=2, calibration_prompts=2)
    ).rows
    for backend_id in ("int8-tome", "lcm-taesd"):
        backend = backend_class(backend_id)()
        if not backend.support(cpu).runs and backend.support(played(built_as)).runs:
            for_kind = backend.settings_for(fresh_rows.settings, kind_cpu(started_as))
            found = backend.prepare(fresh_rows.resolve(), for_kind, lambda _line: None)
            assert all(hit for _dir, hit in found.values()), (backend_id, found)


def test_the_int8_ir_is_chosen_by_the_cpu_it_will_run_on():
    """Without VNNI the int8 IR (both int8 rows') is built with NNCF's overflow fix (7-bit weights), with VNNI
    without it; the choice is in the IR's cache key, so an IR made for one never loads on the other."""
    from backends.int8_tome import Int8Recipe
    from core.request import LoadSettings

    settings = LoadSettings(sizes=(128,), threads=2, cache_dir=Path("/nonexistent"))
    recipes = {kind: Int8Recipe.from_settings(settings, kind_cpu(kind)) for kind in KINDS}
    assert recipes["avx2"].overflow_fix == "enable" and recipes["avx2"].slug().endswith("-of")
    assert {recipes[k].overflow_fix for k in ("avx512-vnni", "avx512-bf16", "amx")} == {"disable"}
    assert len({r.slug() for r in recipes.values()}) == 2
    forced = LoadSettings(sizes=(128,), threads=2, cache_dir=Path("/nonexistent"), int8_overflow_fix="disable")
    assert Int8Recipe.from_settings(forced, kind_cpu("avx2")).overflow_fix == "disable"  # the operator's choice
    # The few-step row's int8 UNet makes the same choice, and `harness.prepare --for-cpu-kinds` asks it the same way.
    from backends.lcm_taesd import LcmTaesd

    for kind in KINDS:
        assert LcmTaesd.settings_for(settings, kind_cpu(kind)).int8_overflow_fix == recipes[kind].overflow_fix, kind


def test_a_kind_is_presented_by_hiding_never_by_adding():
    machine = machine_cpu()
    for kind in KINDS:
        if kind in machine.kinds_presentable():
            assert machine.presenting(kind).flags <= machine.flags
        else:
            with pytest.raises(ValueError, match=f"cannot present {kind}"):
                machine.presenting(kind)
    with pytest.raises(ValueError, match="unknown CPU kind 'avx9'"):
        machine.presenting("avx9")


def test_a_kind_this_machine_cannot_present_stops_the_program_with_the_reason(tmp_path):
    above = [k for k in KINDS if k not in machine_cpu().kinds_presentable()]
    kind = above[0] if above else "avx9"  # a machine with AMX presents every kind: a misspelt one instead
    env = {**os.environ, "SBS_CPU_KIND": kind, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "harness.prepare", "--model", "tiny", "--cache-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1 and ("cannot present" in done.stderr or "unknown CPU kind" in done.stderr), done.stderr
    assert "Traceback" not in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("entry", ["app", "benchmark", "harness.prepare"])
def test_every_program_caps_the_engines_before_torch_is_imported(entry):
    """The engines read their caps once (`import torch` already runs ATen kernels): every entry point imports
    `core`, which sets them, before torch."""
    env = {**os.environ, "SBS_CPU_KIND": "avx2", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {entry}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    order = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "core" in order and "torch" in order, done.stderr[-2000:]
    assert order.index("core") < order.index("torch")


ENGINE_CAP_PROBE = """
import numpy as np, openvino as ov, torch
from openvino import opset13 as ops
x = ops.parameter([1, 16, 32, 32], np.float32, name="x")
conv = ops.convolution(x, ops.constant(np.ones((32, 16, 3, 3), np.float32)), [1, 1], [1, 1], [1, 1], [1, 1])
compiled = ov.Core().compile_model(ov.Model([conv], [x]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
compiled.create_infer_request().infer({0: np.ones((1, 16, 32, 32), np.float32)})
ops_run = compiled.get_runtime_model().get_ops()
print("openvino", sorted({op.get_rt_info()["primitiveType"].astype(str) for op in ops_run}))
print("aten", torch.backends.cpu.get_cpu_capability())
channels_last = torch.ones(2, 64, 56, 56).to(memory_format=torch.channels_last)  # a size ATen gives oneDNN
with torch.no_grad(), torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
    torch.nn.Conv2d(64, 64, 3).to(memory_format=torch.channels_last)(channels_last)
"""


def test_both_engines_honour_the_caps_on_any_machine():
    """The caps `core.cpu.engine_caps` sets, proven on whatever machine runs the suite by capping below every kind
    (SSE4.1): OpenVINO's CPU plugin and PyTorch's oneDNN then dispatch to SSE4.1 kernels, ATen to its scalar code."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default"}
    done = subprocess.run(
        [sys.executable, "-c", ENGINE_CAP_PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    openvino = next(line for line in done.stdout.splitlines() if line.startswith("openvino"))
    assert "sse42" in openvino and "avx" not in openvino and "amx" not in openvino, openvino
    assert "aten NO AVX" in done.stdout and "isa:Intel SSE4.1" in done.stdout, done.stdout[-2000:]
    assert "convolution,jit:sse41" in done.stdout, done.stdout[-2000:]


def test_every_cpu_kind_draws_the_same_starting_noise():
    """A remote row on another CPU kind starts from the page's noise: the latents are the same bits under every ATen
    build this machine can run (float32 `randn` is vectorised only in the AVX2 build, and differed: 39 % of the
    elements, by up to 1.7e-6, between `default` and `avx2`)."""
    script = "from core.request import latents_digest; print(latents_digest(42, 128, 128), latents_digest(7, 512, 512))"
    digests = {}
    for capability in ("default", "avx2", "avx512"):
        env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        digests[capability] = done.stdout.split()
    assert digests["default"] == digests["avx2"] == digests["avx512"], digests
