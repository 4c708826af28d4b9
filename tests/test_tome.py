"""Export-friendly Token Merging in PyTorch: deterministic, shorter attention, shape-preserving."""

import torch

from backends.tome import ToMeSelfAttention, _partition, apply_tome


class Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lengths = []

    def forward(self, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        self.lengths.append(hidden_states.shape[1])
        return hidden_states * 2.0


def test_partition_has_one_destination_per_cell():
    src, dst = _partition(16, 16, 2, 2)
    assert len(dst) == 64 and len(src) == 192 and set(src).isdisjoint(dst)
    assert 0 in dst and 1 in src and 16 in src and 17 in src  # top-left of the first 2x2 cell is the destination


def test_merge_shortens_attention_and_unmerge_restores_shape():
    recorder = Recorder()
    tome = ToMeSelfAttention(recorder, ratio=0.5, latent_size={"hw": (16, 16)}, downsample=1)
    x = torch.randn(2, 256, 8, generator=torch.Generator().manual_seed(0))
    out = tome(x)
    assert recorder.lengths == [128]
    assert out.shape == x.shape
    # Unmerged tokens come back exactly (the wrapped op doubles its input); merged ones carry their group's mean.
    assert torch.isclose(out, 2 * x).all(dim=-1).float().mean() >= 0.25
    torch.testing.assert_close(tome(x), out)  # deterministic: no random choice of destinations


def test_identical_tokens_merge_losslessly():
    tome = ToMeSelfAttention(Recorder(), ratio=0.5, latent_size={"hw": (8, 8)}, downsample=1)
    x = torch.ones(1, 64, 4)
    torch.testing.assert_close(tome(x), 2 * x)


def test_apply_tome_patches_only_the_highest_resolution(tiny_model):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_model.path / "unet")
    assert apply_tome(unet, 0.5) == 3  # tiny: one block down, two up at full resolution; mid block left alone
    assert not isinstance(unet.mid_block.attentions[0].transformer_blocks[0].attn1, ToMeSelfAttention)
