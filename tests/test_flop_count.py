"""count_flops: fused linears, softmax and LayerNorm are counted, and custom ops book what their specs declare."""
from __future__ import annotations

import torch

from asr_bench.engine.execute import LAYER_NORM_FLOPS_PER_ELEMENT, SOFTMAX_FLOPS_PER_ELEMENT, count_flops
from asr_bench.methods.gsasr.decoder import linear, linear_relu
from asr_bench.ops.rasterize import cases, rasterize


def test_fused_linears_softmax_and_layer_norm_by_hand():
    x, w, b, r = torch.randn(4, 6, 8), torch.randn(5, 8), torch.randn(5), torch.randn(4, 6, 5)
    norm = torch.nn.LayerNorm(5)

    def call():
        with torch.inference_mode():
            return norm(linear(linear_relu(x, torch.randn(8, 8), b.new_zeros(8)), w, b, r)).softmax(-1)

    matmuls = 2 * 24 * 8 * 8 + 2 * 24 * 8 * 5
    elementwise = (SOFTMAX_FLOPS_PER_ELEMENT + LAYER_NORM_FLOPS_PER_ELEMENT) * 24 * 5
    assert count_flops(call) == matmuls + elementwise


def test_a_custom_op_books_its_declared_flops_whatever_the_backend_computes():
    params, height, width = cases.gsasr_like_gaussians(3, 4, 2.0, torch.device("cpu"))
    declared = cases.flops(*params, height, width, 0.3)
    assert declared > 0
    # The torch backend runs its own torch ops inside; only the declaration counts, plus a matmul outside.
    a = torch.randn(3, 7)
    total = count_flops(lambda: (rasterize(*params, height, width, 0.3, backend="torch"), a @ a.T))
    assert total == declared + 2 * 3 * 7 * 3
