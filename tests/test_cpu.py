"""The CPU capability model on the three CPU kinds this project has run on (their /proc/cpuinfo, abridged), and on
this machine: which rows run, how, and the peak rates the benchmark divides by."""

from __future__ import annotations

import pytest

from backends import backend_class, backend_ids
from core.cpu import parse_cpuinfo, this_cpu

BASE = "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2"
AVX512 = "avx512f avx512dq avx512cd avx512bw avx512vl"
CPUINFO = {  # the kinds seen on this project's machines
    "amd-avx2": ("AuthenticAMD", 25, "AMD EPYC", BASE),
    "amd-avx512": ("AuthenticAMD", 25, "AMD EPYC 9R14", f"{BASE} {AVX512} avx512_bf16 avx512_vnni avx512_bitalg"),
    "intel-amx": (
        "GenuineIntel",
        6,
        "Intel(R) Xeon(R) Platinum 8488C",
        f"{BASE} {AVX512} avx512_bf16 avx512_vnni avx_vnni amx_bf16 amx_tile amx_int8",
    ),
    "intel-icelake": ("GenuineIntel", 6, "Intel(R) Xeon(R) Platinum 8375C", f"{BASE} {AVX512} avx512_vnni"),
}


def cpu(kind: str, max_mhz: float = 0.0):
    vendor, family, model, flags = CPUINFO[kind]
    first = f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel name\t: {model}\n"
    first += f"cpu MHz\t\t: 2600.0\nflags\t\t: {flags}\n"
    return parse_cpuinfo(first + "\nprocessor\t: 1\nflags\t\t: bogus\n", max_mhz)  # only the first processor counts


def test_ipex_bf16_runs_only_with_avx512_and_says_how():
    ipex = backend_class("ipex-bf16")
    avx2 = ipex.support(cpu("amd-avx2"))
    assert not avx2.runs and "AVX-512" in avx2.reason and "AMD EPYC" in avx2.reason
    assert ipex.support(cpu("amd-avx512")).how == "bf16 native (AVX-512-BF16)"
    assert ipex.support(cpu("intel-amx")).how == "bf16 native (AMX-BF16)"
    assert ipex.support(cpu("intel-icelake")).how.startswith("bf16 emulated")


def test_pytorch_bf16_runs_only_with_native_bf16_and_says_why():
    row = backend_class("pytorch-bf16")
    for kind in ("amd-avx2", "intel-icelake"):  # no AVX-512-BF16, AMX or AVX-NE-CONVERT
        support = row.support(cpu(kind))
        assert not support.runs and "native bf16" in support.reason and cpu(kind).model in support.reason
    assert row.support(cpu("amd-avx512")).how == "bf16 native (AVX-512-BF16)"
    assert row.support(cpu("intel-amx")).how == "bf16 native (AMX-BF16)"


def test_openvino_precision_and_int8_kernels_follow_the_instruction_sets():
    openvino = backend_class("openvino-static")
    assert [openvino.support(cpu(k)).compute for k in CPUINFO] == ["fp32", "bf16", "bf16", "fp32"]
    assert [cpu(k).int8_kernels() for k in CPUINFO] == [
        "AVX2 without VNNI (slow int8)",
        "AVX-512-VNNI",
        "AMX-INT8",
        "AVX-512-VNNI",
    ]
    assert "int8 on AMX-INT8, rest bf16" in backend_class("int8-tome").support(cpu("intel-amx")).how


def test_peak_model_knows_amd_double_pumps_avx512():
    # Zen 4 runs 512-bit instructions on 256-bit units: no more fp32 per cycle than AVX2, twice with bf16.
    assert cpu("amd-avx2").flop_per_cycle("fp32") == (32, "AVX2 FP32")
    assert cpu("amd-avx512").flop_per_cycle("fp32") == (32, "AVX-512 FP32")
    assert cpu("amd-avx512").flop_per_cycle("bf16") == (64, "AVX-512-BF16")
    assert cpu("intel-icelake").flop_per_cycle("fp32") == (64, "AVX-512 FP32")
    assert cpu("intel-amx").flop_per_cycle("bf16") == (1024, "AMX-BF16")
    assert cpu("intel-amx").flop_per_cycle("int8") == (2048, "AMX-INT8")
    assert cpu("amd-avx2").flop_per_cycle("int8")[0] < cpu("amd-avx512").flop_per_cycle("int8")[0]
    flops, label = cpu("amd-avx2").peak_flops("fp32", cores=2)
    assert flops == pytest.approx(32 * 2.6e9 * 2) and "2600 MHz (cpuinfo; may boost higher) x 2 cores" in label


def test_peak_label_says_when_the_clock_is_only_cpuinfos():
    """A VM without cpufreq reports its nominal clock: the label warns that the cores may run faster."""
    assert "2600 MHz (cpuinfo; may boost higher) x 2 cores" in cpu("amd-avx512").peak_flops("int8", 2)[1]
    with_max = cpu("amd-avx512", max_mhz=3700.0)  # read from cpufreq's cpuinfo_max_freq
    assert with_max.mhz == 3700.0 and with_max.peak_flops("int8", 2)[1].endswith("x 3700 MHz x 2 cores")


def test_cpu_kinds_have_distinct_file_names():
    slugs = [cpu(k).slug() for k in CPUINFO]
    assert slugs == ["amd-epyc-avx2", "amd-epyc-avx512-bf16-vnni", "intel-xeon-amx", "intel-xeon-avx512-vnni"]


def test_this_machine_is_described():
    here = this_cpu()
    assert here.flags and here.mhz > 0, "could not read /proc/cpuinfo"
    assert all(backend_class(b).support(here).runs or backend_class(b).support(here).reason for b in backend_ids())
    print(f"this CPU: {here.model}, {here.isa_line()}; kind {here.slug()}")


@pytest.mark.parametrize(
    "played, like",
    [("avx2", "amd-avx2"), ("avx512-vnni", "intel-icelake"), ("avx512-bf16", "amd-avx512"), ("amx", "intel-amx")],
)
def test_an_amx_xeon_playing_a_kind_answers_as_that_kind_does(played, like):
    """Every decision that reads the CPU gives, on an AMX Xeon playing a kind, the answer a CPU of that kind gives."""
    from backends.openvino_loading import cannot_play

    as_kind, real = cpu("intel-amx").presenting(played), cpu(like)
    # The one exception, said rather than pretended: OpenVINO cannot be held below AVX-512 on an AVX-512 machine.
    assert bool(cannot_play(as_kind)) == (played == "avx2") and not cannot_play(real)
    for backend_id in backend_ids():
        ours, theirs = backend_class(backend_id).support(as_kind), backend_class(backend_id).support(real)
        if backend_class(backend_id).framework == "openvino" and cannot_play(as_kind):
            assert not ours.runs and ours.reason == cannot_play(as_kind) and theirs.runs, backend_id
            continue
        assert (ours.runs, ours.how, ours.compute) == (theirs.runs, theirs.how, theirs.compute), backend_id
    assert as_kind.native_bf16 == real.native_bf16 and as_kind.int8_vnni == real.int8_vnni
    assert as_kind.int8_kernels() == real.int8_kernels() and as_kind.kind() == played
    assert as_kind.flags <= cpu("intel-amx").flags
    # Playing the machine's own kind hides nothing: the machine itself, not a played kind.
    suffix = "-played" if played != "amx" else ""
    assert as_kind.slug() == real.slug().replace("amd-epyc", "intel-xeon") + suffix
    assert as_kind.presented_as == ("" if played == "amx" else played)


def test_the_int8_row_says_where_it_needs_the_overflow_fix():
    int8 = backend_class("int8-tome")
    assert "7-bit weights" in int8.support(cpu("amd-avx2")).how
    assert all("7-bit" not in int8.support(cpu(k)).how for k in ("amd-avx512", "intel-amx", "intel-icelake"))


def test_presenting_the_machines_own_kind_is_not_playing():
    """An AVX-512 EPYC (Zen 4) told to present avx512-bf16 hides only flags no decision reads: it is itself."""
    zen4 = cpu("amd-avx512")
    own = zen4.presenting("avx512-bf16")
    assert own.presented_as == "" and own.slug() == zen4.slug() and "avx512_bitalg" not in own.flags
    assert zen4.presenting("avx512-vnni").presented_as == "avx512-vnni"
