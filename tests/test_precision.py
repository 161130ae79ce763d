"""The precision matrix: every dtype a method declares is run here, against the same model in float32.

A `dtypes` flag on a `MethodSpec` is a claim that this test checks (fp32 is the reference; bf16 and fp16 must
stay close to it on a tiny input with random weights); an undeclared dtype is refused by `build_model`.
"""
import copy

import pytest
import torch

import asr_bench as ab
from asr_bench.registry import DTYPES, TORCH_DTYPES, get_method, method_specs

# error against fp32, relative to the fp32 output's mean / max magnitude (bf16 keeps 8 mantissa bits, fp16 11)
TOLERANCE = {"bf16": (0.05, 0.2), "fp16": (0.01, 0.05)}
MATRIX = [(spec.name, dtype) for spec in method_specs() for dtype in DTYPES]


@pytest.mark.parametrize("name, dtype", MATRIX)
def test_declared_dtypes_run_close_to_fp32_and_others_are_refused(name, dtype):
    spec = get_method(name)
    if dtype not in spec.dtypes:
        with pytest.raises(ab.UserError, match=f"not tested in {dtype}"):
            ab.build_model(name, dtype=dtype)
        return
    torch.manual_seed(0)
    reference = ab.build_model(name)
    model = ab.build_model(name, dtype=dtype)
    model.load_state_dict(copy.deepcopy(reference.state_dict()))     # same weights, cast by load_state_dict
    assert all(p.dtype == TORCH_DTYPES[dtype] for p in model.parameters())
    torch.manual_seed(1)
    lr = torch.rand(1, 3, 12, 14)
    scale = 2.5 if spec.scales == "any" else min(spec.scales)
    expect = reference.upscale(lr, scale=scale, clamp=False)      # raw: clamping could hide a difference
    out = model.upscale(lr.to(TORCH_DTYPES[dtype]), scale=scale, clamp=False).float()
    assert out.shape == expect.shape and torch.isfinite(out).all() and expect.std() > 0
    if dtype != "fp32":
        err = (out - expect).abs()
        mean_tol, max_tol = TOLERANCE[dtype]
        rel_mean, rel_max = float(err.mean() / expect.abs().mean()), float(err.max() / expect.abs().max())
        assert rel_mean < mean_tol and rel_max < max_tol, (rel_mean, rel_max)
        assert not torch.equal(out, expect)                          # it really ran in the lower precision
