"""The CPU capability model's facts: which instruction sets this CPU has, what they give (native bf16, which int8
kernels) and the CPU's peak FLOP rate per precision. Whether a row runs here, and how, each row says itself
(`Backend.support(cpu)`), from these facts."""

from __future__ import annotations

import platform
from dataclasses import dataclass
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
        return f"{vendor}-{family}-{isa}"

    def __str__(self) -> str:
        return f"this CPU ({self.model}) has {self.isa_line()}"


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


@cache
def this_cpu() -> Cpu:
    """The CPU this process runs on (read once)."""
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
