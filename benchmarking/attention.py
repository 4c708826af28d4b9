"""SD-1.5's largest attention on this CPU, alone: what it costs, in which part, and what changes it.

The profiles show the UNet's six self-attentions at the highest resolution (64x64 latents: 4096 tokens, 8 heads of
dimension 40, batch 2 for classifier-free guidance) taking the largest single share of a bf16 UNet call, in OpenVINO
(fused `Subgraph` nodes) and PyTorch (flash attention) alike. This times that one operation at the shapes the UNet
gives it: in PyTorch and OpenVINO, at head dimension 40 and zero-padded to 64 (AMX tiles take 32 bf16 values along
the dot product), with OpenVINO's fused kernel and without it (`SNIPPETS_MODE=DISABLE`: MatMul, Softmax, MatMul),
with Token Merging's halved token count, and split into its matrix products and its softmax.

    python -m benchmarking.attention [--size 512] [--threads 2]
writes results/attention-<size>px-<cpu kind>-<threads>cores.json (tabulated by `python -m benchmarking.report`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from core.cpu import this_cpu
from core.files import write_json
from harness.records.results import RESULTS

from .report import attention_table, provenance

HEADS, HEAD_DIM, BATCH = 8, 40, 2  # SD-1.5's highest-resolution transformer blocks; batch 2 = guidance


def median_ms(fn, calls: int = 5) -> float:
    fn()  # first call: allocation and kernel creation, not what is measured
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def torch_cases(tokens: int, threads: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    scale = HEAD_DIM**-0.5
    out = {}
    for dim in (HEAD_DIM, 64):
        q, k, v = (torch.randn(BATCH, HEADS, tokens, dim, dtype=torch.bfloat16) for _ in range(3))
        with torch.no_grad():
            out[f"sdpa_d{dim}"] = median_ms(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v, scale=scale))
    q, k, v = (torch.randn(BATCH, HEADS, tokens, HEAD_DIM, dtype=torch.bfloat16) for _ in range(3))
    scores = q @ k.transpose(-1, -2)
    weights = scores.softmax(-1)
    with torch.no_grad():
        out["qk_matmul"] = median_ms(lambda: q @ k.transpose(-1, -2))
        out["softmax"] = median_ms(lambda: scores.softmax(-1))
        out["pv_matmul"] = median_ms(lambda: weights @ v)
    return out


def openvino_cases(tokens: int, threads: int) -> dict[str, float]:
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    core = ov.Core()
    out = {}
    for dim, snippets in ((HEAD_DIM, "ENABLE"), (64, "ENABLE"), (HEAD_DIM, "DISABLE")):
        params = [ops.parameter([BATCH, HEADS, tokens, dim], np.float32) for _ in range(3)]
        scale = ops.constant(np.array(HEAD_DIM**-0.5, np.float32))
        model = ov.Model([ops.scaled_dot_product_attention(*params, None, scale, causal=False)], params)
        config = {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": str(threads), "NUM_STREAMS": "1",
                  "PERFORMANCE_HINT": "LATENCY", "SNIPPETS_MODE": snippets}  # fmt: skip
        request = core.compile_model(model, "CPU", config).create_infer_request()
        inputs = [np.random.rand(BATCH, HEADS, tokens, dim).astype(np.float32) for _ in range(3)]
        name = f"sdpa_d{dim}" + ("" if snippets == "ENABLE" else "_unfused")
        out[name] = median_ms(lambda request=request, inputs=inputs: request.infer(inputs))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="image size; the latents are size/8 square")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    cpu = this_cpu()
    tokens = (args.size // 8) ** 2
    peak, peak_label = cpu.peak_flops("bf16", args.threads)
    cases = {}
    for label, n in (("full", tokens), ("tome-0.5", tokens // 2)):  # Token Merging 0.5 halves the tokens
        cases[label] = {"tokens": n, "torch": torch_cases(n, args.threads), "openvino": openvino_cases(n, args.threads)}
        matmul_flop = 2 * 2 * BATCH * HEADS * n * n * HEAD_DIM  # Q.K^T and P.V
        cases[label]["matmul_gflop"] = matmul_flop / 1e9
        cases[label]["matmul_ms_at_peak"] = matmul_flop / peak * 1000
        cases[label]["softmax_scores_m"] = BATCH * HEADS * n * n / 1e6
    report = {
        **provenance(argv if argv is not None else sys.argv[1:], program="python -m benchmarking.attention"),
        "mode": "attention",
        "size": args.size,
        "cores": args.threads,
        "shape": f"batch {BATCH}, {HEADS} heads, head dimension {HEAD_DIM}",
        "peak": peak_label,
        "cases": cases,
    }
    path = args.json or RESULTS / f"attention-{args.size}px-{cpu.slug()}-{args.threads}cores.json"
    write_json(path, report)
    print(attention_table(report))
    print(f"\nJSON: {path}")
    return report


if __name__ == "__main__":
    main()
