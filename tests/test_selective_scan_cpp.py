"""The selective scan's C++ CPU backend (csrc/selective_scan/cpu.cpp) and its pure-PyTorch fallback equal the per-step
reference (`selective_scan_reference`, itself checked against a scalar loop in test_mambair.py); the front picks
the C++ op on the CPU, records what ran, and falls back with one warning."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

import asr_bench as ab
from asr_bench.encoders import build_encoder, load_encoder_state
from asr_bench.ops.selective_scan import selective_scan, selective_scan_reference, selective_scan_steps
from asr_bench.ops import backend_log, backends, build
from asr_bench.ops.build import ExtensionUnavailable

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cpp():
    try:
        return build.load_extension("selective_scan", "cpp")
    except ExtensionUnavailable as error:
        pytest.skip(f"the cpp selective_scan backend cannot be built here: {error}")


def scan_inputs(b=2, groups=4, per_group=3, n=5, length=37, seed=0, a_max=4.0, delta_shift=0.0, bias_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    d = groups * per_group
    return [torch.randn(b, d, length, generator=g), torch.randn(b, d, length, generator=g) + delta_shift,
            -torch.rand(d, n, generator=g) * a_max, torch.randn(b, groups, n, length, generator=g),
            torch.randn(b, groups, n, length, generator=g), torch.randn(d, generator=g),
            torch.randn(d, generator=g) * bias_scale]


def rel(ours, reference):
    return ((ours.double() - reference.double()).abs().max() / reference.double().abs().max()).item()


SHAPES = {
    "b2 groups 4 N5 odd L 37": dict(),
    "b2 groups 1 N16 L 1": dict(groups=1, per_group=8, n=16, length=1),
    "b1 groups 4 N16 odd L 129": dict(b=1, per_group=6, n=16, length=129),
    "b2 groups 2 N 33 L 50": dict(groups=2, per_group=2, n=33, length=50),
    "b2 groups 2 of 20 channels (lane blocks of 16 and 4) N16 L 45": dict(groups=2, per_group=20, n=16, length=45),
    "large negative A (to -300): decays underflow to 0": dict(a_max=300.0, length=64),
    "softplus on both sides of its threshold 20, large delta_bias": dict(delta_shift=19.0, bias_scale=3.0),
}


@pytest.mark.parametrize("case", SHAPES)
def test_cpp_equals_the_reference(cpp, case):
    args = scan_inputs(**SHAPES[case])
    reference = selective_scan_reference(*args)
    ours = cpp.forward(*args)
    assert ours.dtype == torch.float32 and ours.shape == reference.shape
    assert rel(ours, reference) < 1e-5


def test_the_large_cases_exercise_what_they_say():
    # the decays really underflow and the softplus really crosses its threshold (else the cases test nothing new)
    u, delta, A, *_, bias = scan_inputs(**SHAPES["large negative A (to -300): decays underflow to 0"])
    dt = F.softplus(delta + bias.view(1, -1, 1))
    assert (torch.exp(dt[..., None] * A[None, :, None, :]) == 0).float().mean() > 0.1
    _, delta, _, *_, bias = scan_inputs(**SHAPES["softplus on both sides of its threshold 20, large delta_bias"])
    x = delta + bias.view(1, -1, 1)
    assert (x > 20).any() and (x < 20).any()


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_dtypes_are_rounded_to_float32_as_the_reference_does(cpp, dtype):
    args = [t.to(dtype) for t in scan_inputs()]
    reference = selective_scan_reference(*args)
    assert rel(cpp.forward(*args), reference) < 1e-5
    # non-contiguous inputs are made contiguous
    u, delta, *rest = scan_inputs(length=20)
    wide = [torch.cat([t, t], dim=-1)[..., ::2] for t in (u, delta)]
    assert not wide[0].is_contiguous()
    assert rel(cpp.forward(*wide, *rest), selective_scan_reference(*wide, *rest)) < 1e-5


def test_cpp_is_bit_identical_for_1_and_2_threads(cpp):
    args = scan_inputs(b=2, groups=4, per_group=21, n=16, length=300, seed=3)  # 16 tasks, partial lane blocks
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cpp.forward(*args)
        torch.set_num_threads(2)
        two = cpp.forward(*args)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_the_vectorised_exp_and_softplus_are_as_accurate_as_torch_float32(cpp):
    x = torch.linspace(-110, 90, 400001)
    for which, exact, torch_f32 in (("exp", torch.exp(x.double()), torch.exp(x)),
                                    ("softplus", F.softplus(x.double()), F.softplus(x))):
        ours = cpp.elementwise(x, which).double()
        normal = (exact > 1.2e-38) & (exact < 3.4e38)
        error = ((ours - exact).abs() / exact)[normal].max().item()
        assert error < max(2.5e-7, 2 * ((torch_f32.double() - exact).abs() / exact)[normal].max().item())
        tiny = exact <= 1.2e-38  # zero or subnormal in float32: within one subnormal step
        assert (ours[tiny] - exact[tiny]).abs().max() < 2 * 2.0**-149
    assert torch.equal(torch.isinf(cpp.elementwise(x, "exp")), torch.isinf(torch.exp(x)))
    specials = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0])
    assert torch.equal(cpp.elementwise(specials, "exp")[1:], torch.tensor([math.inf, 0.0, 1.0]))
    assert cpp.elementwise(specials, "exp")[0].isnan()


def test_cpp_rejects_bad_shapes(cpp):
    u, delta, A, B, C, D, bias = scan_inputs()
    five = [torch.cat([t, t[:, :1]], dim=1) for t in (B, C)]  # 12 channels in 5 groups
    with pytest.raises(RuntimeError, match="multiple of groups"):
        cpp.forward(u, delta, A, *five, D, bias)
    with pytest.raises(RuntimeError, match="B must be"):
        cpp.forward(u, delta, A, B[..., :-1], C[..., :-1], D, bias)


# -- the pure-PyTorch fallback -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", SHAPES)
@pytest.mark.parametrize("block_bytes", [2**30, 3000])
def test_the_torch_fallback_equals_the_reference(case, block_bytes):
    """In one block, and in blocks of a few steps (the state is carried across blocks)."""
    args = scan_inputs(**SHAPES[case])
    reference = selective_scan_reference(*args)
    with torch.no_grad():
        ours = selective_scan_steps(*args, block_bytes=block_bytes)
    assert rel(ours, reference) < 1e-5
    if block_bytes == 2**30:  # the front's 'torch' is this path (one block at these sizes)
        with torch.no_grad(), backend_log() as used:
            assert torch.equal(selective_scan(*args, backend="torch"), ours)
        assert used == {"selective_scan": "torch"}


# -- the front: choice, record, fallback ---------------------------------------------------------------------------


def test_auto_runs_cpp_on_the_cpu_and_records_it(cpp):
    args = scan_inputs()
    with torch.no_grad(), backend_log() as used:
        ours = selective_scan(*args)
    assert used == {"selective_scan": "cpp"}
    assert torch.equal(ours, cpp.forward(*args))


def test_auto_falls_back_with_one_warning_when_the_cpp_op_cannot_be_built(monkeypatch):
    monkeypatch.setattr(build, "_loaded", {k: v for k, v in build._loaded.items() if k[0] != "selective_scan"})
    monkeypatch.setattr(build, "_failed", {**build._failed, ("selective_scan", "cpp"): "no C++ compiler found"})
    monkeypatch.setattr(backends, "_warned", set())
    args = scan_inputs()
    with warnings.catch_warnings(record=True) as caught, torch.no_grad(), backend_log() as used:
        warnings.simplefilter("always")
        first = selective_scan(*args)
        selective_scan(*args)
    messages = [str(w.message) for w in caught if "selective_scan" in str(w.message)]
    assert len(messages) == 1 and "no C++ compiler" in messages[0] and "backend 'torch'" in messages[0]
    assert used == {"selective_scan": "torch"}
    assert rel(first, selective_scan_reference(*args)) < 1e-5
    with pytest.raises(ExtensionUnavailable, match="no C\\+\\+ compiler"):
        selective_scan(*args, backend="cpp")


def test_a_gradient_runs_the_reference_and_cpp_refuses_it(cpp):
    args = [t.requires_grad_() if i == 0 else t for i, t in enumerate(scan_inputs(length=9))]
    with backend_log() as used:
        y = selective_scan(*args)
        y_torch = selective_scan(*args, backend="torch")
    assert used == {"selective_scan": "reference"} and y.requires_grad and y_torch.requires_grad
    (grad,) = torch.autograd.grad(y.sum(), args[0])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    with pytest.raises(ab.UserError, match="forward-only"):
        selective_scan(*args, backend="cpp")
    with torch.no_grad(), backend_log() as used:
        selective_scan(*args)
    assert used == {"selective_scan": "cpp"}


TINY = dict(embed_dim=30, depths=(1, 2), d_state=3, mlp_ratio=1.5)


def test_a_tiny_mambair_light_with_cpp_equals_it_with_the_reference(cpp):
    g = torch.Generator().manual_seed(7)
    outputs = {}
    for backend in ("cpp", "reference"):
        enc = build_encoder("mambair-light", scan_backend=backend, **TINY).eval()
        if not outputs:
            sd = {k: torch.randn(v.shape, generator=g) * 0.3 + (1.0 if ("norm" in k or "ln_" in k)
                                                                and k.endswith("weight") else 0.0)
                  for k, v in enc.state_dict().items()}
            x = torch.rand(2, 3, 7, 5, generator=g)
        load_encoder_state(enc, sd, "igconv")
        with torch.no_grad(), backend_log() as used:
            outputs[backend] = enc(x)
        assert used == {"selective_scan": backend}
    assert rel(outputs["cpp"], outputs["reference"]) < 1e-5


def test_asking_for_mamba_ssm_on_the_cpu_is_one_line_naming_the_fix():
    args = (torch.rand(1, 4, 5), torch.rand(1, 4, 5), -torch.rand(4, 3), torch.rand(1, 1, 3, 5), torch.rand(1, 1, 3, 5),
            torch.rand(4), torch.rand(4))
    with pytest.raises(ab.UserError, match=r"'mamba_ssm' needs the mamba-ssm package .* use backend 'auto' or 'torch'"):
        selective_scan(*args, backend="mamba_ssm")
