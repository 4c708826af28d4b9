"""What `benchmark.py` measures, one module per measurement: latency (the main table), FLOP counting,
throughput, start-up, system-level variants, and the reports they print and write."""
