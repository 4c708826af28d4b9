"""The int8-tome row's UNet IR: no random op, really quantized, really merging tokens (read from the graph)."""

from __future__ import annotations

import collections

import pytest
from conftest import TINY_SIZE, make_comparison, ready_or_skip

from core.cpu import this_cpu

RANDOM_OPS = {"RandomUniform", "Multinomial", "RandomNormal"}


@pytest.fixture(scope="module")
def unet_ir(comparison):
    ready_or_skip(comparison, "int8-tome")
    import openvino as ov

    ir_dir = comparison.rows.backends["int8-tome"].ir_dirs[TINY_SIZE]
    return ov.Core().read_model(ir_dir / "unet" / "openvino_model.xml")


def test_no_random_op(unet_ir):
    ops = {op.get_type_name() for op in unet_ir.get_ops()}
    assert not ops & RANDOM_OPS


def test_unet_is_quantized_on_activations_and_weights(unet_ir):
    counts = collections.Counter(op.get_type_name() for op in unet_ir.get_ops())
    assert counts["FakeQuantize"] >= 20, counts  # activations quantized ahead of convolutions and MatMuls
    int8_weights = [
        op
        for op in unet_ir.get_ops()
        if op.get_type_name() == "Constant" and op.get_element_type().get_type_name() in ("i8", "u8")
    ]
    assert len(int8_weights) >= 10


def test_self_attention_runs_on_merged_tokens(unet_ir, tiny_settings):
    tokens = (TINY_SIZE // 8) ** 2
    merged = tokens - int(tokens * tiny_settings.tome_ratio)  # tomesd: r = int(N * ratio) tokens merged away
    self_attention = [
        op
        for op in unet_ir.get_ops()
        if op.get_type_name() == "ScaledDotProductAttention" and "attn1" in op.get_friendly_name()
    ]
    lengths = [op.input(0).get_partial_shape()[2].get_length() for op in self_attention]
    # tiny has three transformer blocks at the highest resolution (one down, two up) and one in the mid block.
    assert sorted(lengths) == sorted([merged] * 3 + [tokens // 4]), lengths
    # Merge and unmerge in gather/MatMul form (backends/token_merging.py): nothing left for OpenVINO's reference
    # scatter/gather kernels, which tomesd's own form exports to.
    ops = collections.Counter(op.get_type_name() for op in unet_ir.get_ops())
    assert ops["ScatterElementsUpdate"] == 0 and ops["GatherElements"] == 0, ops
    assert ops["TopK"] >= 3  # tomesd's greedy choice of the most similar tokens, per merged block


def test_vae_decoder_is_quantized_as_the_recipe_for_this_cpu_says(comparison):
    """int8_vae (default): the VAE decoder computes in 8 bits too, not only stores 8-bit weights — except where the
    CPU lacks VNNI: with the overflow fix it keeps 8-bit weights only (backends/int8_tome.py says why)."""
    ready_or_skip(comparison, "int8-tome")
    import openvino as ov

    from backends.int8_tome import Int8Recipe

    recipe = Int8Recipe.from_settings(comparison.rows.settings)
    assert recipe.vae == this_cpu().int8_vnni and recipe.overflow_fix == ("disable" if recipe.vae else "enable")
    ir_dir = comparison.rows.backends["int8-tome"].ir_dirs[TINY_SIZE]
    decoder = ov.Core().read_model(ir_dir / "vae_decoder" / "openvino_model.xml")
    fake_quantize = sum(op.get_type_name() == "FakeQuantize" for op in decoder.get_ops())
    weights = [op.get_element_type().get_type_name() for op in decoder.get_ops() if op.get_type_name() == "Constant"]
    int8_weights = sum(kind in ("i8", "u8") for kind in weights)
    if recipe.vae:
        assert fake_quantize >= 5, fake_quantize
    else:  # weight-only: 8-bit weights, no quantized activations
        assert fake_quantize == 0 and int8_weights >= 5, (fake_quantize, int8_weights)


def test_hybrid_mode_quantizes_fewer_activations(unet_ir, tiny_model, tmp_path, comparison):
    """The quality-first hybrid mode: int8 convolutions, weight-only int8 MatMuls (fewer FakeQuantize nodes)."""
    import openvino as ov

    from core.request import GenerationRequest, LoadSettings, initial_latents
    from harness.compare.comparison import fidelity

    settings = LoadSettings(
        sizes=(TINY_SIZE,), threads=2, cache_dir=tmp_path, calibration_prompts=2, int8_mode="hybrid"
    )
    hybrid = make_comparison(tiny_model, ["int8-tome"], settings)
    hybrid.load_all()
    assert hybrid.rows.status["int8-tome"].state == "ready", hybrid.rows.status["int8-tome"].detail
    row = hybrid.rows.backends["int8-tome"]
    hybrid_ir = ov.Core().read_model(row.ir_dirs[TINY_SIZE] / "unet" / "openvino_model.xml")

    def fake_quantize(model):
        return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())

    assert 0 < fake_quantize(hybrid_ir) < fake_quantize(unet_ir)
    request = GenerationRequest("cartoon bird", steps=8, height=TINY_SIZE, width=TINY_SIZE)
    latents = initial_latents(request.seed, TINY_SIZE, TINY_SIZE)
    baseline = comparison.rows.backends["baseline"].generate(request, latents, lambda *_: None, lambda *_: None)
    psnr, ssim = fidelity(row.generate(request, latents, lambda *_: None, lambda *_: None), baseline)
    assert psnr >= 25.0 and ssim >= 0.90  # measured on tiny: 32.2 dB / 0.986
