"""Token Merging for the int8-tome row: tomesd's patch, with its merge and unmerge rewritten in gather/MatMul form.

tomesd (the maintained implementation, applied here with `tomesd.apply_patch`) merges with `scatter_reduce` and
unmerges with three `scatter_`s. Exported to OpenVINO these become `ScatterElementsUpdate`, which the CPU plugin
runs in a generic reference kernel, and tomesd's batched `gather` becomes `GatherElements` (also a reference
kernel): together 8-20 % of the int8 UNet's time (benchmark.py --profile int8-tome). No maintained library has an
export-friendly form, hence `bipartite_soft_matching_gather` below: tomesd's own algorithm (same partition, same
similarity, same greedy choice of the r most similar tokens, mean merge), computed with what OpenVINO runs in
optimized kernels: `Gather` with batch offsets, a one-hot `MatMul` for the mean, and `TopK`. Checked against
tomesd's output in tests/test_token_merging.py, and by the int8 build's export check, which compares the exported
UNet with the PyTorch one that runs tomesd's own code.
"""

from __future__ import annotations

import contextlib

MERGE_FORMS = ("gather", "scatter")  # "scatter": tomesd's own code, exported as it is


def apply_token_merging(pipe, ratio: float, max_downsample: int = 1) -> int:
    """tomesd's patch (merging before self-attention, 2x2 strides, deterministic destinations) on `pipe`'s UNet,
    merging in the blocks whose resolution is at most `max_downsample` times below the latent's (1: the highest
    only, tomesd's default; 2: also one level down). Returns the number of patched blocks."""
    import tomesd

    # use_rand=False picks destinations deterministically, so the graph has no random op and a seed gives one image.
    tomesd.apply_patch(pipe, ratio=ratio, max_downsample=max_downsample, use_rand=False)
    return sum(type(m).__name__.startswith("ToMe") for m in pipe.unet.modules())


@contextlib.contextmanager
def merge_form(form: str):
    """Within this block, tomesd's patched UNets merge in `form` ("gather": this module's; "scatter": tomesd's).

    tomesd looks its matching function up on its `merge` module at every call, so swapping that attribute is the
    one hook it offers; it is restored on exit. Used around the export only: the export check then compares the
    gather form's graph with tomesd's own PyTorch output."""
    if form not in MERGE_FORMS:
        raise ValueError(f"unknown Token Merging form {form!r}; choose one of {', '.join(MERGE_FORMS)}")
    from tomesd import merge

    original = merge.bipartite_soft_matching_random2d
    if form == "gather":
        merge.bipartite_soft_matching_random2d = bipartite_soft_matching_gather
    try:
        yield
    finally:
        merge.bipartite_soft_matching_random2d = original


def _batched_gather(x, index):
    """x[b, index[b, k], :] for every b and k, as one `Gather` on the flattened batch (torch.gather would export
    as `GatherElements`, a reference kernel in OpenVINO's CPU plugin)."""
    import torch

    batch, tokens, channels = x.shape
    offsets = torch.arange(batch, device=x.device).unsqueeze(1) * tokens
    return (
        x.reshape(batch * tokens, channels).index_select(0, (index + offsets).reshape(-1)).reshape(batch, -1, channels)
    )


def bipartite_soft_matching_gather(
    metric, w: int, h: int, sx: int, sy: int, r: int, no_rand: bool = False, generator=None
):
    """tomesd.merge.bipartite_soft_matching_random2d (same arguments, same results) without scatter operations.

    Only its deterministic form (`no_rand=True`: the top-left token of every sy x sx cell is a destination)."""
    import torch
    from tomesd.merge import do_nothing

    if not no_rand:
        raise ValueError("the gather form of Token Merging is deterministic only (tomesd use_rand=False)")
    batch, tokens, _ = metric.shape
    if r <= 0:
        return do_nothing, do_nothing

    with torch.no_grad():
        # The source/destination partition, computed exactly as tomesd does: it depends on the shape only, so
        # these are constants of the exported graph.
        hsy, wsx = h // sy, w // sx
        buffer = torch.zeros(hsy, wsx, sy * sx, dtype=torch.int64)
        buffer[:, :, 0] = -1  # tomesd: the destination is index 0 of every cell when no_rand
        buffer = buffer.view(hsy, wsx, sy, sx).transpose(1, 2).reshape(hsy * sy, wsx * sx)
        if hsy * sy < h or wsx * sx < w:
            padded = torch.zeros(h, w, dtype=torch.int64)
            padded[: hsy * sy, : wsx * sx] = buffer
            buffer = padded
        order = buffer.reshape(1, -1, 1).argsort(dim=1)[0, :, 0].to(metric.device)  # dst tokens, then src tokens
        num_dst = hsy * wsx
        b_idx, a_idx = order[:num_dst], order[num_dst:]
        to_original = order.argsort()  # where each original token sits in `order`
        num_src = tokens - num_dst

        metric = metric / metric.norm(dim=-1, keepdim=True)
        a, b = metric.index_select(1, a_idx), metric.index_select(1, b_idx)
        scores = a @ b.transpose(-1, -2)
        r = min(num_src, r)
        node_max, node_idx = scores.max(dim=-1)  # each source token's most similar destination
        edge_idx = node_max.argsort(dim=-1, descending=True)  # source tokens, most similar first
        unm_idx, src_idx = edge_idx[:, r:], edge_idx[:, :r]  # kept apart / merged into their destination
        dst_idx = _batched_gather(node_idx.unsqueeze(-1), src_idx).squeeze(-1)  # (batch, r)
        one_hot = (dst_idx.unsqueeze(-1) == torch.arange(num_dst, device=metric.device)).to(metric.dtype)
        rank = edge_idx.argsort(dim=-1)  # position of every source token in edge_idx
        unm_len = num_src - r
        # Where each token of the unmerged output reads from the merged sequence [unmerged sources; destinations]:
        # a kept source its place among the kept ones, a merged source its destination, a destination itself.
        src_pos = torch.where(rank < r, unm_len + node_idx, rank - r)
        dst_pos = (unm_len + torch.arange(num_dst, device=metric.device)).expand(batch, num_dst)
        read_from = torch.cat([dst_pos, src_pos], dim=1).index_select(1, to_original)

    def merge(x, mode="mean"):
        if mode != "mean":
            raise ValueError(f"the gather form of Token Merging merges by mean only, not {mode!r}")
        src, dst = x.index_select(1, a_idx), x.index_select(1, b_idx)
        unm = _batched_gather(src, unm_idx)
        merged = _batched_gather(src, src_idx)
        weights = one_hot.to(x.dtype)
        # scatter_reduce(mean, include_self) of tomesd: (destination + its merged sources) / (1 + their count)
        total = dst + weights.transpose(1, 2) @ merged
        return torch.cat([unm, total / (1 + weights.sum(dim=1).unsqueeze(-1))], dim=1)

    def unmerge(x):
        return _batched_gather(x, read_from)

    return merge, unmerge
