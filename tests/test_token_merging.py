"""The gather form of Token Merging (backends/token_merging.py) computes exactly what tomesd's own code does."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
tomesd_merge = pytest.importorskip("tomesd.merge")

from backends.token_merging import bipartite_soft_matching_gather, merge_form  # noqa: E402


@pytest.mark.parametrize(
    "h, w, channels, ratio",
    [(8, 8, 32, 0.5), (64, 64, 320, 0.5), (7, 9, 16, 0.4), (32, 32, 64, 0.75), (16, 16, 8, 0.3)],
)
def test_gather_form_matches_tomesd(h, w, channels, ratio):
    """Same merged tokens in the same order, same unmerged output; odd sizes exercise tomesd's padding."""
    x = torch.randn(2, h * w, channels, generator=torch.Generator().manual_seed(h * w))
    r = int(h * w * ratio)
    merge, unmerge = tomesd_merge.bipartite_soft_matching_random2d(x, w, h, 2, 2, r, no_rand=True)
    g_merge, g_unmerge = bipartite_soft_matching_gather(x, w, h, 2, 2, r, no_rand=True)
    merged = merge(x)
    assert merged.shape == (2, h * w - r, channels)
    torch.testing.assert_close(g_merge(x), merged, rtol=1e-5, atol=1e-5)
    y = merged * 2 + 1  # what a block computes on the merged tokens
    torch.testing.assert_close(g_unmerge(y), unmerge(y), rtol=1e-5, atol=1e-5)


def test_only_the_deterministic_form():
    x = torch.randn(2, 64, 8)
    with pytest.raises(ValueError, match="deterministic"):
        bipartite_soft_matching_gather(x, 8, 8, 2, 2, 16, no_rand=False)


def test_merge_form_swaps_and_restores_tomesd():
    original = tomesd_merge.bipartite_soft_matching_random2d
    with merge_form("gather"):
        assert tomesd_merge.bipartite_soft_matching_random2d is bipartite_soft_matching_gather
    assert tomesd_merge.bipartite_soft_matching_random2d is original
    with pytest.raises(ValueError, match="scatter"):
        with merge_form("sparse"):
            pass
