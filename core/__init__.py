"""What the rows (`backends`) and everything around them (`harness`, `benchmarking`, the app) both build on: the
request and load-settings types, the CPU's facts, the build cache, memory/disk/version probes, asset paths and
naming. It imports neither `backends` nor `harness`; the arrows point one way: app -> harness -> backends -> core.
"""
