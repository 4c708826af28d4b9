"""Token Merging (ToMe, Bolya & Hoffman 2023) for the self-attention of a diffusers UNet, in a form that exports.

Why not `tomesd` itself: tomesd 0.1.3 replaces diffusers' BasicTransformerBlock with a copy of an old
`forward` that reads attributes diffusers has since removed, and its merge bakes the trace's token counts
into the graph. This is the smallest variant that does the same merge and exports to OpenVINO:

- it wraps only each high-resolution block's self-attention (`attn1`): tokens are merged before it and
  unmerged after it, which is tomesd's default (`merge_attn=True`, cross-attention and MLP untouched);
- the source/destination partition is tomesd's `use_rand=False` choice (the top-left token of every 2x2
  cell is a destination), computed once per latent size with no random op, so the same seed gives the same
  image and the exported graph is deterministic;
- every shape comes from the latent size the UNet is called with; export at the static size it will run at.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import nn


@functools.lru_cache(maxsize=16)
def _partition(h: int, w: int, sx: int, sy: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of source and destination tokens: one destination (top-left) per sy x sx cell.

    Computed in numpy, outside the traced graph, so the export sees them as constants (a traced `nonzero`
    would give OpenVINO a data-dependent shape it cannot bound).
    """
    is_dst = np.zeros((h, w), dtype=bool)
    is_dst[: (h // sy) * sy : sy, : (w // sx) * sx : sx] = True
    flat = is_dst.ravel()
    return np.flatnonzero(~flat), np.flatnonzero(flat)


class ToMeSelfAttention(nn.Module):
    """Wraps a self-attention module: merge the r most redundant source tokens into their most similar
    destination token (mean), attend over the shorter sequence, then copy results back to every token."""

    def __init__(self, attention: nn.Module, ratio: float, latent_size: dict, downsample: int, sx=2, sy=2):
        super().__init__()
        self.attention = attention
        self.ratio = ratio
        self.latent_size = latent_size  # filled by a forward pre-hook on the UNet: {"hw": (H, W)}
        self.downsample = downsample
        self.sx, self.sy = sx, sy

    def forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        batch, _tokens, channels = hidden_states.shape
        lat_h, lat_w = self.latent_size["hw"]
        h, w = math.ceil(lat_h / self.downsample), math.ceil(lat_w / self.downsample)
        src_np, dst_np = _partition(h, w, self.sx, self.sy)
        n_src, n_dst = len(src_np), len(dst_np)
        r = min(int(h * w * self.ratio), n_src)
        if r <= 0:
            return self.attention(hidden_states, encoder_hidden_states, attention_mask, **kwargs)
        src_idx = torch.from_numpy(src_np).to(hidden_states.device)
        dst_idx = torch.from_numpy(dst_np).to(hidden_states.device)

        metric = hidden_states / hidden_states.norm(dim=-1, keepdim=True)
        scores = metric[:, src_idx] @ metric[:, dst_idx].transpose(-1, -2)  # (B, n_src, n_dst)
        node_max, node_idx = scores.max(dim=-1)
        order = node_max.argsort(dim=-1, descending=True)[..., None]  # most similar sources first
        merged_src, kept_src = order[:, :r], order[:, r:]
        merged_dst = node_idx[..., None].gather(1, merged_src)

        def expand(index, n):
            return index.expand(batch, n, channels)

        src, dst = hidden_states[:, src_idx], hidden_states[:, dst_idx]
        kept = src.gather(1, expand(kept_src, n_src - r))
        dst = dst.scatter_reduce(1, expand(merged_dst, r), src.gather(1, expand(merged_src, r)), reduce="mean")
        out = self.attention(torch.cat([kept, dst], dim=1), encoder_hidden_states, attention_mask, **kwargs)

        n_kept = n_src - r
        kept_out, dst_out = out[:, :n_kept], out[:, n_kept:]
        src_positions = src_idx[None, :, None].expand(batch, -1, 1)
        result = torch.zeros_like(hidden_states)
        result = result.scatter(1, expand(dst_idx[None, :, None], n_dst), dst_out)
        result = result.scatter(1, expand(src_positions.gather(1, kept_src), n_kept), kept_out)
        merged_out = dst_out.gather(1, expand(merged_dst, r))
        return result.scatter(1, expand(src_positions.gather(1, merged_src), r), merged_out)


def apply_tome(unet: nn.Module, ratio: float, max_downsample: int = 1) -> int:
    """Patch the self-attention of every transformer block whose resolution is at most `max_downsample` times
    below the latent's (1: only the highest resolution, tomesd's default). Returns how many were patched."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ToMe ratio must be between 0 and 1 (exclusive), got {ratio}")
    latent_size: dict = {}

    def remember_size(_module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        latent_size["hw"] = (int(sample.shape[-2]), int(sample.shape[-1]))

    unet.register_forward_pre_hook(remember_size, with_kwargs=True)
    levels = len(unet.down_blocks)
    blocks = [(2**i, b) for i, b in enumerate(unet.down_blocks)]
    blocks += [(2 ** (levels - 1), unet.mid_block)]
    blocks += [(2 ** (levels - 1 - i), b) for i, b in enumerate(unet.up_blocks)]
    patched = 0
    for downsample, block in blocks:
        if downsample > max_downsample or block is None:
            continue
        for attention in getattr(block, "attentions", []):
            for transformer in attention.transformer_blocks:
                transformer.attn1 = ToMeSelfAttention(transformer.attn1, ratio, latent_size, downsample)
                patched += 1
    if patched == 0:
        raise ValueError("this UNet has no transformer block at the highest resolution for Token Merging")
    return patched
