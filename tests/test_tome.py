"""Token Merging as the int8-tome row configures tomesd: deterministic and really shortening self-attention."""

import numpy as np
import torch


def test_tomesd_as_configured_merges_half_the_tokens_deterministically(tiny_model):
    import tomesd
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model.path)
    pipe.set_progress_bar_config(disable=True)
    tomesd.apply_patch(pipe, ratio=0.5, use_rand=False)
    lengths = []
    for name, module in pipe.unet.named_modules():
        if name.endswith("attn1"):
            module.register_forward_pre_hook(lambda _m, args: lengths.append(args[0].shape[1]))

    def run():
        return pipe(
            "cartoon bird", num_inference_steps=2, height=128, width=128, output_type="np",
            generator=torch.Generator().manual_seed(0),
        ).images[0]  # fmt: skip

    first = run()
    tokens = 16 * 16
    assert set(lengths) == {tokens // 2, tokens // 4}  # merged at full resolution; the mid block is untouched
    np.testing.assert_array_equal(first, run())
