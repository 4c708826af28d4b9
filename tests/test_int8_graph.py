"""The int8-tome row's UNet IR: no random op, really quantized, really merging tokens (read from the graph)."""

from __future__ import annotations

import collections

import pytest
from conftest import TINY_SIZE, ready_or_skip

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
    means = [
        op
        for op in unet_ir.get_ops()
        if op.get_type_name() == "ScatterElementsUpdate" and op.get_attributes()["reduction"] == "mean"
    ]
    assert len(means) >= 3  # at least one merge per merged block
