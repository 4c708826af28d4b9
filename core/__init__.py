"""What the rows (`backends`) and everything around them (`harness`, `benchmarking`, the app) both build on: the
request and load-settings types, the CPU's facts, the build cache, memory/disk/version probes, asset paths and
naming. It imports neither `backends` nor `harness`; the arrows point one way: app -> harness -> backends -> core.
"""

# A played CPU kind (SBS_CPU_KIND) caps the engines through their environment, which they read once, at their first
# kernel; `import torch` already runs some (ATen picks its instruction set then). Every program here imports `core`
# before torch (tests/test_cpu_kinds.py checks the entry points), so the caps are set here, at import.
from .cpu import cap_engines  # noqa: E402

cap_engines()
