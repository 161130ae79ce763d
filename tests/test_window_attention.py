"""The window-attention op (asr_bench/ops/window_attention): its compiled CPU backend against the formula in float64,
on the layouts GSASR hands it and on odd sizes; its choice of backend; its refusals."""
from __future__ import annotations

import pytest
import torch

from asr_bench.errors import UserError
from asr_bench.ops.build import ExtensionUnavailable, has_compiler
from asr_bench.ops.window_attention import window_attention, window_attention_torch
from asr_bench.ops.window_attention.cases import SELFTEST_CASES, WindowAttentionCase, window_attention_inputs


def formula(q, k, v, bias, scale):
    """softmax(scale q k^T + bias) v in float64, one (window, head, query) at a time, heads merged."""
    windows, heads, nq, d = q.shape
    out = torch.empty(windows, nq, heads * d, dtype=torch.float64)
    for w in range(windows):
        for h in range(heads):
            qd, kd, vd = q[w, h].double(), k[w, h].double(), v[w, h].double()
            for i in range(nq):
                scores = (qd[i] * scale) @ kd.T + bias[h, i].double()
                p = torch.exp(scores - scores.max())
                out[w, i, h * d:(h + 1) * d] = (p / p.sum()) @ vd
    return out


@pytest.fixture(scope="module")
def cpp():
    if not has_compiler():
        pytest.skip("no C++ compiler: the cpp backend cannot be built here")
    try:
        window_attention(*window_attention_inputs(SELFTEST_CASES[1], torch.device("cpu")), backend="cpp")
    except ExtensionUnavailable as error:
        pytest.fail(f"the cpp backend did not build or failed its self-test: {error}")
    return "cpp"


CASES = [*SELFTEST_CASES,
         WindowAttentionCase("one query, 7 keys, d 1", 2, 1, 1, 7, 1, "separate"),
         WindowAttentionCase("GSASR cross layout (q alone, k and v from one projection)", 2, 6, 144, 144, 30, "separate"),
         WindowAttentionCase("17 queries, 16 keys, d 17", 2, 2, 17, 16, 17, "separate")]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("threads", [1, 2])
def test_cpp_equals_the_formula(cpp, case, threads):
    q, k, v, bias, scale = window_attention_inputs(case, torch.device("cpu"), seed=7)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            got = window_attention(q, k, v, bias, scale, backend=cpp)
    finally:
        torch.set_num_threads(before)
    want = formula(q, k, v, bias, scale)
    assert got.shape == want.shape and got.dtype == torch.float32 and got.is_contiguous()
    torch.testing.assert_close(got.double(), want, rtol=2e-5, atol=2e-6)


def test_cpp_is_the_same_at_any_thread_count(cpp):
    q, k, v, bias, scale = window_attention_inputs(SELFTEST_CASES[0], torch.device("cpu"), seed=2)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = window_attention(q, k, v, bias, scale, backend=cpp)
        torch.set_num_threads(2)
        two = window_attention(q, k, v, bias, scale, backend=cpp)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_torch_path_equals_the_formula():
    q, k, v, bias, scale = window_attention_inputs(CASES[1], torch.device("cpu"), seed=3)
    torch.testing.assert_close(window_attention_torch(q, k, v, bias, scale, group=2).double(),
                               formula(q, k, v, bias, scale), rtol=2e-5, atol=2e-6)


def test_auto_takes_torch_for_float64_and_for_gradients():
    q, k, v, bias, scale = window_attention_inputs(SELFTEST_CASES[1], torch.device("cpu"))
    want = formula(q, k, v, bias, scale)
    got = window_attention(q.double(), k.double(), v.double(), bias.double(), scale)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    q = q.clone().requires_grad_()
    window_attention(q, k, v, bias, scale).sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_cpp_refuses_what_it_cannot_run_in_one_line():
    q, k, v, bias, scale = window_attention_inputs(SELFTEST_CASES[1], torch.device("cpu"))
    with pytest.raises(UserError, match="float32 CPU tensors"):
        window_attention(q.double(), k.double(), v.double(), bias.double(), scale, backend="cpp")
    with pytest.raises(UserError, match="backend"):
        window_attention(q, k, v, bias, scale, backend="fast")
