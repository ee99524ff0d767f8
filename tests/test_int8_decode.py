"""Weight-only int8 layers for one-stream decoding on CPU: they track the float model in both
paths (the int8 kernel for a few rows, a bf16 matmul for a prompt), they replace every linear
layer, one token reads about half the bytes of bf16, and the setting refuses unknown values."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def float_and_int8(tiny_base):
    import torch
    from transformers import AutoModelForCausalLM

    from workbench.models.int8_decode import quantize_linears

    reference = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.bfloat16).eval()
    int8 = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.bfloat16).eval()
    replaced = quantize_linears(int8)
    return reference, int8, replaced


def test_every_linear_layer_is_replaced_and_a_token_reads_half_the_bytes(float_and_int8):
    from torch import nn

    from workbench.models.int8_decode import Int8Linear, decode_bytes, describe_weights

    reference, int8, replaced = float_and_int8
    linears = [m for m in reference.modules() if isinstance(m, nn.Linear)]
    assert replaced == len(linears) == 2 * 7 + 1  # q k v o gate up down per layer, and the head
    assert not any(isinstance(m, nn.Linear) for m in int8.modules())
    assert sum(isinstance(m, Int8Linear) for m in int8.modules()) == replaced
    assert describe_weights(int8) == "int8 weights, bfloat16 activations"
    assert describe_weights(reference) == "bfloat16 weights"
    # the tied head is read in full, the embedding table once through it (bf16) or apart (int8: a row)
    assert 0.45 < decode_bytes(int8) / decode_bytes(reference) < 0.6


def test_both_paths_track_the_float_model(float_and_int8):
    import torch

    reference, int8, _ = float_and_int8
    ids = torch.arange(5, 17).unsqueeze(0)  # 12 tokens: the prompt path
    with torch.inference_mode():
        want = reference(input_ids=ids, use_cache=True)
        got = int8(input_ids=ids, use_cache=True)
        scale = want.logits.abs().max()
        assert (got.logits - want.logits).abs().max() / scale < 0.05
        step = torch.tensor([[42]])  # then one token at a time: the int8 kernel's path
        want_next = reference(input_ids=step, cache=want.cache, use_cache=True).logits
        got_next = int8(input_ids=step, cache=got.cache, use_cache=True).logits
        assert (got_next - want_next).abs().max() / want_next.abs().max() < 0.05
        assert got_next.argmax() == want_next.argmax()


def test_few_rows_and_many_rows_give_the_same_product():
    import torch
    from torch import nn

    from workbench.models.int8_decode import FEW_ROWS, Int8Linear

    torch.manual_seed(0)
    linear = nn.Linear(64, 96, bias=True)
    layer = Int8Linear(linear, torch.bfloat16)
    rows = torch.randn(FEW_ROWS + 4, 64, dtype=torch.bfloat16)
    with torch.inference_mode():
        together = layer(rows)  # more than FEW_ROWS: dequantized matmul
        apart = torch.cat([layer(rows[i:i + 1]) for i in range(len(rows))])  # the int8 kernel
        exact = linear(rows.float())
    assert together.shape == apart.shape == (FEW_ROWS + 4, 96)
    assert torch.allclose(together.float(), apart.float(), atol=0.03, rtol=0.02)
    assert (together.float() - exact).abs().max() < 0.05


def test_unknown_decode_weights_are_refused():
    from workbench.models.loading import use_int8
    from workbench.settings import Settings

    with pytest.raises(ValueError, match="WORKBENCH_DECODE_WEIGHTS='fast': choose one of auto, int8, full"):
        Settings.from_env({"WORKBENCH_DECODE_WEIGHTS": "fast"})
    assert Settings.from_env({"WORKBENCH_DECODE_WEIGHTS": "int8"}).decode_weights == "int8"
    with pytest.raises(ValueError, match="choose one of auto, int8, full"):
        use_int8("int4", None)
    assert use_int8("full", None) is False and use_int8("int8", None) is True
