"""The CPU capability model's facts: which instruction sets this CPU has, what they give (native bf16, which int8
kernels) and the CPU's peak FLOP rate per precision. Whether a row runs here, and how, each row says itself
(`Backend.support(cpu)`), from these facts.

The project can be told to play a lesser CPU kind than the machine's (`SBS_CPU_KIND`, one of `KINDS`): the model then
hides every instruction set above that kind, never adds one, and caps the engines that can be capped the same way
(`engine_caps`), so that one machine can show what the app does on the CPUs below it."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

# Linux /proc/cpuinfo flag -> the name used on cards and in reports
ISA = {
    "avx2": "AVX2",
    "avx512f": "AVX-512F",
    "avx512bw": "AVX-512BW",
    "avx512vl": "AVX-512VL",
    "avx512dq": "AVX-512DQ",
    "avx512_vnni": "AVX-512-VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX-512-BF16",
    "amx_bf16": "AMX-BF16",
    "amx_int8": "AMX-INT8",
    "avx_ne_convert": "AVX-NE-CONVERT",
}
AVX512_CORE = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})
# Flags a presented kind may hide: the vector and matrix extensions above AVX2 (the rest of /proc/cpuinfo stays).
HIDEABLE_PREFIXES = ("avx512", "amx", "avx_vnni", "avx_ne_convert", "avx_ifma", "avx10")


@dataclass(frozen=True)
class CpuKind:
    """A kind of CPU the project can present on a machine that has at least its instruction sets."""

    name: str  # SBS_CPU_KIND's value, e.g. "avx512-vnni"
    needs: frozenset[str]  # /proc/cpuinfo flags the machine must have to present it
    keeps: frozenset[str] | None  # hideable flags left visible (None: every flag, i.e. nothing hidden)
    onednn_isa: str  # ONEDNN_MAX_CPU_ISA: the most oneDNN (PyTorch's, IPEX's and OpenVINO's copies) may use
    aten_capability: str  # ATEN_CPU_CAPABILITY: PyTorch's own vectorized kernels (softmax, norms, elementwise)
    example: str  # the CPUs of this kind, for messages


_VNNI = AVX512_CORE | {"avx512cd", "avx512_vnni"}
KINDS: dict[str, CpuKind] = {  # least to most
    "avx2": CpuKind("avx2", frozenset({"avx2", "fma"}), frozenset(), "AVX2", "avx2", "AVX2-only EPYC (Zen 2/3)"),
    "avx512-vnni": CpuKind(
        "avx512-vnni", _VNNI, _VNNI, "AVX512_CORE_VNNI", "avx512", "Xeon Cascade Lake/Ice Lake (3rd gen)"
    ),
    "avx512-bf16": CpuKind(
        "avx512-bf16", _VNNI | {"avx512_bf16"}, _VNNI | {"avx512_bf16"}, "AVX512_CORE_BF16", "avx512", "EPYC Zen 4"
    ),
    "amx": CpuKind(
        "amx",
        _VNNI | {"avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"},
        None,
        "AVX512_CORE_AMX",
        "avx512",
        "Xeon Sapphire Rapids and later",
    ),
}


@dataclass(frozen=True)
class RowSupport:
    """Whether a row can run on this CPU, and how; `reason` names the missing instruction set when it cannot."""

    runs: bool
    how: str  # e.g. "bf16 native (AMX-BF16)", shown on the card and in the System panel
    compute: str = "fp32"  # the precision most of its work runs in here: "fp32", "bf16" or "int8" (peak model)
    reason: str = ""


@dataclass(frozen=True)
class Cpu:
    model: str
    vendor: str  # "GenuineIntel", "AuthenticAMD", ...
    family: int  # CPU family from /proc/cpuinfo (AMD: 25 = Zen 3/4, 26 = Zen 5)
    flags: frozenset[str]
    mhz: float  # highest clock the kernel reports (max frequency, else the current one)
    mhz_source: str = "max"  # "max" (cpufreq) or "cpuinfo" (a VM without cpufreq: often the nominal clock)
    presented_as: str = ""  # a `KINDS` name when the project plays a lesser kind than the machine (SBS_CPU_KIND)
    hidden: frozenset[str] = frozenset()  # the machine's flags a presented kind hides (engines may still use them)

    def has(self, *flags: str) -> bool:
        return all(f in self.flags for f in flags)

    @property
    def avx512(self) -> bool:
        return AVX512_CORE <= self.flags

    @property
    def native_bf16(self) -> bool:
        """bf16 arithmetic in hardware: OpenVINO then runs bf16 by default, and IPEX's bf16 is not emulated."""
        return self.has("amx_bf16") or self.has("avx512_bf16")

    def isa(self) -> dict[str, bool]:
        return {name: flag in self.flags for flag, name in ISA.items()}

    def isa_line(self) -> str:
        """The instruction sets that matter here, e.g. "AVX2, AVX-512 (F/BW/VL/DQ), AVX-512-VNNI; no AMX"."""
        have = [name for flag, name in ISA.items() if flag in self.flags and flag not in AVX512_CORE]
        if self.avx512:
            have.insert(1 if "AVX2" in have else 0, "AVX-512 (F/BW/VL/DQ)")
        missing = [n for n in ("AVX-512", "AMX") if not any(h.startswith(n) for h in have)]
        return ", ".join(have or ["no AVX2"]) + (f"; no {', no '.join(missing)}" if missing else "")

    @property
    def int8_vnni(self) -> bool:
        """int8 products summed in 32 bits in one instruction (VNNI or AMX); without it they pass through 16-bit
        saturating sums (see `backends.int8_tome`'s overflow fix)."""
        return self.has("amx_int8") or self.has("avx512_vnni") or self.has("avx_vnni")

    def int8_kernels(self) -> str:
        """The int8 instruction set OpenVINO's and oneDNN's int8 kernels use on this CPU, best first."""
        if self.has("amx_int8"):
            return "AMX-INT8"
        if self.has("avx512_vnni"):
            return "AVX-512-VNNI"
        if self.has("avx_vnni"):
            return "AVX-VNNI"
        return "AVX2 without VNNI (slow int8)" if self.has("avx2") else "SSE (no AVX2: very slow int8)"

    # ------------------------------------------------------------------------------------------ peak
    def flop_per_cycle(self, precision: str) -> tuple[int, str]:
        """Peak operations per cycle per core for `precision` ("fp32", "bf16" or "int8"), and the unit giving it.

        Assumptions: Intel cores with AVX-512 have two 512-bit FMA ports; AMD Zen 4 (family 25) runs AVX-512
        double-pumped on 256-bit units, so its AVX-512 peak equals its AVX2 peak; Zen 5 (family 26) has 512-bit
        units. AVX-512-BF16 (VDPBF16PS) does twice the fp32 rate; VNNI int8 (VPDPBUSD) four times it; without
        VNNI, int8 takes three instructions (VPMADDUBSW, VPMADDWD, VPADDD) for what VNNI does in one. AMX: 1024
        bf16 and 2048 int8 operations per cycle per core (Intel's figures for Sapphire Rapids).
        """
        wide = self.avx512 and not (self.vendor == "AuthenticAMD" and self.family < 26)
        fp32 = 64 if wide else 32
        unit = "AVX-512" if self.avx512 else "AVX2"
        if precision == "bf16":
            if self.has("amx_bf16"):
                return 1024, "AMX-BF16"
            if self.has("avx512_bf16"):
                return 2 * fp32, f"{unit}-BF16"
            return fp32, f"{unit} FP32 (bf16 emulated)"
        if precision == "int8":
            if self.has("amx_int8"):
                return 2048, "AMX-INT8"
            if self.has("avx512_vnni") or self.has("avx_vnni"):
                return 4 * fp32, f"{unit}-VNNI" if self.has("avx512_vnni") else "AVX-VNNI"
            return 4 * fp32 // 3, f"{unit} int8 without VNNI"
        return fp32, f"{unit} FP32"

    def peak_flops(self, precision: str, cores: int) -> tuple[float, str]:
        per_cycle, unit = self.flop_per_cycle(precision)
        # Without cpufreq (virtual machines) the only clock is /proc/cpuinfo's, often the nominal one while the cores
        # boost above it: shares of this peak can then pass 100 % (seen on an AMD EPYC VM at 2596 MHz).
        clock = f"{self.mhz:.0f} MHz" + (" (cpuinfo; may boost higher)" if self.mhz_source == "cpuinfo" else "")
        label = f"{unit}: {per_cycle} op/cycle/core x {clock} x {cores} cores"
        return per_cycle * self.mhz * 1e6 * cores, label

    def kinds_presentable(self) -> list[str]:
        """The `KINDS` this CPU can present (it has every instruction set they need), least first."""
        return [name for name, kind in KINDS.items() if kind.needs <= self.flags]

    def kind(self) -> str:
        """The most capable `KINDS` name this CPU is (or presents), e.g. "avx512-vnni"; "" below AVX2."""
        presentable = self.kinds_presentable()
        return presentable[-1] if presentable else ""

    def presenting(self, kind_name: str) -> Cpu:
        """This CPU with every instruction set above `kind_name` hidden. Raises when the kind is unknown, or needs
        an instruction set this CPU lacks: a presented kind hides features, never adds them."""
        if kind_name not in KINDS:
            raise ValueError(f"unknown CPU kind {kind_name!r}; choose from {', '.join(KINDS)}")
        kind = KINDS[kind_name]
        lacking = kind.needs - self.flags
        missing = sorted(ISA.get(f, f) for f in lacking - AVX512_CORE) + (["AVX-512"] if lacking & AVX512_CORE else [])
        if missing:
            can = ", ".join(self.kinds_presentable()) or "none"
            raise ValueError(
                f"SBS_CPU_KIND={kind_name}: {self.model} lacks {', '.join(missing)}, so it cannot present "
                f"{kind_name} (a presented kind only hides instruction sets); it can present: {can}"
            )
        if kind.keeps is None:
            flags = self.flags
        else:
            flags = frozenset(f for f in self.flags if not f.startswith(HIDEABLE_PREFIXES) or f in kind.keeps)
        # Presenting the machine's own kind hides nothing any decision reads (at most minor flags such as Zen 4's
        # AVX-512-BITALG): it is then simply this machine, not a played kind.
        hides = {f for f in self.flags - flags if f in ISA}
        return replace(self, flags=flags, presented_as=kind_name if hides else "", hidden=self.flags - flags)

    def slug(self) -> str:
        """A short file-name tag for this CPU kind, e.g. "amd-epyc-avx2" or "intel-xeon-amx"."""
        vendor = {"AuthenticAMD": "amd", "GenuineIntel": "intel"}.get(self.vendor, "cpu")
        words = [w for w in self.model.lower().replace("(r)", "").replace("(tm)", "").split() if w.isalpha()]
        family = next((w for w in words if w in ("epyc", "xeon", "ryzen", "core")), words[0] if words else "cpu")
        if self.has("amx_bf16"):
            isa = "amx"
        elif self.avx512:
            isa = "avx512" + ("-bf16" if self.has("avx512_bf16") else "") + ("-vnni" if self.has("avx512_vnni") else "")
        else:
            isa = "avx2" if self.has("avx2") else "sse"
        # A played kind's timings are not that kind's: some kernels still use what the machine has (see engine_caps).
        return f"{vendor}-{family}-{isa}" + ("-played" if self.presented_as else "")

    def __str__(self) -> str:
        played = f", played as {self.presented_as} (SBS_CPU_KIND)" if self.presented_as else ""
        return f"this CPU ({self.model}{played}) has {self.isa_line()}"


def parse_cpuinfo(text: str, max_mhz: float = 0.0) -> Cpu:
    """A `Cpu` from the text of /proc/cpuinfo (its first processor)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    mhz = max_mhz or float(fields.get("cpu MHz", "0") or 0)
    return Cpu(
        model=fields.get("model name", platform.processor() or "unknown CPU"),
        vendor=fields.get("vendor_id", "unknown"),
        family=int(fields.get("cpu family", "0") or 0),
        flags=frozenset(fields.get("flags", "").split()),
        mhz=mhz,
        mhz_source="max" if max_mhz else "cpuinfo",
    )


def engine_caps(kind_name: str) -> dict[str, str]:
    """The environment that caps the engines at `kind_name`: oneDNN's dispatcher (PyTorch's, IPEX's and OpenVINO's
    CPU plugin's copies all read ONEDNN_MAX_CPU_ISA, once, at their first kernel) and ATen's own kernels. Inductor's
    generated C++ follows ATEN_CPU_CAPABILITY too (`pick_vec_isa`). OpenVINO's default precision may read the
    machine's own instruction sets: the OpenVINO rows ask for f32 where the kind has no native bf16
    (`backends.openvino_loading`). Some of OpenVINO's own kernels read cpuid as well, which no cap reaches: below
    AVX-512 on a machine with it the OpenVINO rows do not play the kind (`backends.openvino_loading.cannot_play`)."""
    kind = KINDS[kind_name]
    return {"ONEDNN_MAX_CPU_ISA": kind.onednn_isa, "ATEN_CPU_CAPABILITY": kind.aten_capability}


def kind_cpu(kind_name: str) -> Cpu:
    """A CPU of the kind `kind_name` with nothing but that kind's instruction sets: for the capability model's
    answers about a CPU this process does not run on (e.g. what an image's build must prepare for it)."""
    kind = KINDS[kind_name]
    return Cpu(model=f"a {kind_name} CPU ({kind.example})", vendor="", family=0, flags=kind.needs, mhz=0.0)


def machine_cpu() -> Cpu:
    """The machine's own CPU, whatever kind the project presents."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    max_mhz = 0.0
    for path in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq"):
        try:
            max_mhz = max(max_mhz, int(path.read_text()) / 1000)
        except (OSError, ValueError):
            pass
    return parse_cpuinfo(text, max_mhz)


@cache
def this_cpu() -> Cpu:
    """The CPU this process runs as (read once): the machine's, or the lesser kind `SBS_CPU_KIND` names, with the
    engines capped at it (`cap_engines`, which importing `core` has done already, before torch could run a kernel)."""
    kind = os.environ.get("SBS_CPU_KIND", "").strip()
    if not kind:
        return machine_cpu()
    presented = machine_cpu().presenting(kind)  # raises on a kind the machine cannot present
    cap_engines()
    return presented


def cap_engines() -> None:
    """Set the engines' caps for the kind SBS_CPU_KIND names (nothing without one, or for an unknown name: `this_cpu`
    says what is wrong); an operator's own ONEDNN_MAX_CPU_ISA or ATEN_CPU_CAPABILITY is kept."""
    kind = os.environ.get("SBS_CPU_KIND", "").strip()
    if kind in KINDS:
        for name, value in engine_caps(kind).items():
            os.environ.setdefault(name, value)


def played_cpu() -> Cpu:
    """`this_cpu()` at a program's start: a kind the machine cannot present (or a misspelt one) ends the program with
    the reason, before it loads anything, instead of a traceback later."""
    try:
        return this_cpu()
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
