"""The int8-tome row's UNet IR: no random op, really quantized, really merging tokens (read from the graph)."""

from __future__ import annotations

import collections

import pytest
from conftest import TINY_SIZE, ready_or_skip

from backends.tome import _partition

RANDOM_OPS = {"RandomUniform", "Multinomial", "RandomNormal"}


@pytest.fixture(scope="module")
def unet_ir(comparison):
    ready_or_skip(comparison, "int8-tome")
    import openvino as ov

    ir_dir = comparison.backends["int8-tome"].ir_dirs[TINY_SIZE]
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
    latent = TINY_SIZE // 8
    tokens = latent * latent
    src, _dst = _partition(latent, latent, 2, 2)
    merged = tokens - min(int(tokens * tiny_settings.tome_ratio), len(src))
    self_attention = [
        op
        for op in unet_ir.get_ops()
        if op.get_type_name() == "ScaledDotProductAttention" and "attn1" in op.get_friendly_name()
    ]
    assert self_attention, "no self-attention found in the IR"
    high_res = [op for op in self_attention if ".attention/" in op.get_friendly_name()]  # the ToMe-wrapped ones
    assert high_res
    for op in high_res:
        assert op.input(0).get_partial_shape()[2].get_length() == merged < tokens
    means = [
        op
        for op in unet_ir.get_ops()
        if op.get_type_name() == "ScatterElementsUpdate" and op.get_attributes()["reduction"] == "mean"
    ]
    assert len(means) == len(high_res)  # one merge per wrapped block
