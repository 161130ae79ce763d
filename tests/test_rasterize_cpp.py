"""The C++/OpenMP rasterizer against the torch reference: values, gradients, determinism, the exact cut."""
from __future__ import annotations

import math
import platform
import warnings

import pytest
import torch

from asr_bench.ops import rasterize
from asr_bench.ops import backends, build
from asr_bench.ops.build import ExtensionUnavailable


@pytest.fixture(scope="module")
def cpp():
    try:
        return build.load_extension("rasterize", "cpp")
    except ExtensionUnavailable as error:
        pytest.skip(f"cpp backend unavailable: {error}")


def gsasr_gaussians(lr_h: int, lr_w: int, scale: float, dtype=torch.float32, seed: int = 0, rho_spread=1.0,
                    offset_spread=1.0):
    """Kernel inputs laid out as GSASR makes them: 16 Gaussians per LR pixel (a 4x4 sub-grid), offsets of about
    a cell, sigmas from 0.99999 sigmoid + 1e-6 converted to NDC (docs/methods/gsasr.md §3.2 step 9, §3.5, §4.1)."""
    g = torch.Generator().manual_seed(seed)
    hg, wg = 4 * lr_h, 4 * lr_w
    height, width = math.floor(scale * lr_h), math.floor(scale * lr_w)
    n = hg * wg
    iy, ix = torch.meshgrid(torch.arange(hg), torch.arange(wg), indexing="ij")
    u = ((ix.reshape(-1) + 0.5) + torch.randn(n, generator=g) * offset_spread) / wg
    v = ((iy.reshape(-1) + 0.5) + torch.randn(n, generator=g) * offset_spread) / hg
    x, y = u * 2 - 1, v * 2 - 1  # align_corners=False NDC, then the official remap to align_corners=True
    x = (x + 1 - 1 / width) * width / (width - 1) - 1
    y = (y + 1 - 1 / height) * height / (height - 1) - 1
    step = 1.2 / scale
    sigma_vertical = 0.99999 * torch.sigmoid(torch.randn(n, generator=g)) + 1e-6
    sigma_horizontal = 0.99999 * torch.sigmoid(torch.randn(n, generator=g)) + 1e-6
    sx = sigma_horizontal / step * 2 / (width - 1)
    sy = sigma_vertical / step * 2 / (height - 1)
    rho = 0.999999 * torch.tanh(torch.randn(n, generator=g) * rho_spread)
    colours = torch.rand(n, 3, generator=g) * torch.rand(n, 1, generator=g)
    params = [t.to(dtype) for t in (sx, sy, rho, torch.stack([x, y], 1), colours)]
    return params, height, width


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


CASES = [  # (lr_h, lr_w, scale, dmax): scales 2, 4, 12, 30, non-square, every dmax
    (10, 7, 2, 0.1),
    (6, 9, 4, 0.1),
    (5, 8, 4, 0.05),
    (4, 3, 12, 0.5),
    (3, 4, 30, 0.1),
    (7, 5, 3.5, 0.05),
    (6, 6, 4, 0.5),
]


@pytest.mark.parametrize("lr_h,lr_w,scale,dmax", CASES)
def test_forward_matches_reference(cpp, lr_h, lr_w, scale, dmax):
    params, height, width = gsasr_gaussians(lr_h, lr_w, scale, seed=lr_h * 31 + lr_w)
    ref = rasterize(*params, height, width, dmax, backend="torch")
    ours = rasterize(*params, height, width, dmax, backend="cpp")
    assert ref.abs().max() > 0.5
    assert relative_error(ours, ref) < 1e-5


def test_forward_border_extreme_rho_and_tiny_sigmas(cpp):
    # Centres on and beyond the border, |rho| up to 0.999999 (where the ellipse cut is off), sigmas near 1e-6.
    params, height, width = gsasr_gaussians(6, 8, 4, seed=7, rho_spread=4.0, offset_spread=3.0)
    params[3] = params[3] * 1.15
    params[0][::7] = 1e-6
    params[1][::5] = 1e-6
    for dmax in (0.05, 0.1, 0.5):
        ref = rasterize(*params, height, width, dmax, backend="torch")
        assert relative_error(rasterize(*params, height, width, dmax, backend="cpp"), ref) < 1e-5


def test_float64_matches_reference_to_rounding(cpp):
    params, height, width = gsasr_gaussians(5, 7, 4, dtype=torch.float64, seed=3)
    for dmax in (0.1, 0.5):
        ref = rasterize(*params, height, width, dmax, backend="torch")
        assert relative_error(rasterize(*params, height, width, dmax, backend="cpp"), ref) < 1e-13


def test_cut_skips_only_pixels_where_exp_is_zero(cpp):
    # One Gaussian per render: no summation order, so a pixel the cut skipped shows as ours == 0 while the
    # reference is non-zero. Allowed only where the reference is below fp32's smallest normal (cut or flushed).
    g = torch.Generator().manual_seed(11)
    for trial in range(40):
        sx, sy = (torch.rand(2, generator=g) * 0.08 + 0.002).tolist()
        rho = float(torch.rand(1, generator=g) * 1.98 - 0.99)
        params = [torch.tensor([sx]), torch.tensor([sy]), torch.tensor([rho]),
                  torch.rand(1, 2, generator=g) * 2 - 1, torch.ones(1, 3)]
        ref = rasterize(*params, 41, 57, 0.5, backend="torch")
        ours = rasterize(*params, 41, 57, 0.5, backend="cpp")
        skipped = (ours == 0) & (ref != 0)
        worst = ref[skipped].max().item() if skipped.any() else 0.0
        assert worst < 1e-37, trial
        assert relative_error(ours, ref) < 1e-6


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the flush uses x86's MXCSR")
def test_float32_forward_flushes_only_subnormal_terms(cpp):
    # One Gaussian, colour 1: each pixel holds one term. The float64 reference keeps every term; the float32
    # forward gives 0 exactly where the term is subnormal in float32 and the term itself (to rounding) elsewhere.
    params = [torch.tensor([0.03]), torch.tensor([0.05]), torch.tensor([0.3]), torch.tensor([[0.1, -0.2]]),
              torch.ones(1, 3)]
    ref = rasterize(*[p.double() for p in params], 61, 67, 0.5, backend="torch")
    ours = rasterize(*params, 61, 67, 0.5, backend="cpp")
    smallest_normal = torch.finfo(torch.float32).tiny
    subnormal = (ref > 0) & (ref < smallest_normal / 2)
    normal = ref >= 2 * smallest_normal
    assert subnormal.sum() > 20 and normal.sum() > 100
    assert (ours[subnormal] == 0).all()
    # float32 rounds the power (up to ~100) to a few eps of itself, so exp(power) carries |power| * 4e-7 of it.
    tolerance = (ref[normal].log().abs() + 1) * 4e-7 * ref[normal]
    assert ((ours[normal].double() - ref[normal]).abs() <= tolerance).all()
    assert math.exp(-100.0) > 0 and float(torch.tensor(math.exp(-100.0))) > 0  # float32 itself keeps subnormals


def test_exp_approx_accuracy(cpp):
    for x in torch.linspace(-87.0, 0.0, 2001).tolist() + [-1e-7, -0.5, -20.25]:
        expected = math.exp(float(torch.tensor(x)))
        assert abs(cpp.exp_approx(x) - expected) <= 2.5e-7 * expected, x
    assert cpp.exp_approx(-104.01) == 0.0 and cpp.exp_approx(-500.0) == 0.0
    assert 0 < cpp.exp_approx(-100.0) < 1e-43  # subnormal results are kept


def gradients(params, height, width, dmax, backend, weight, dtype=None):
    leaves = [(p.to(dtype) if dtype else p).clone().requires_grad_() for p in params]
    image = rasterize(*leaves, height, width, dmax, backend=backend)
    (image * weight.to(image.dtype)).sum().backward()
    return [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("dmax", [0.1, 0.5])
def test_backward_equals_reference_autograd(cpp, dmax):
    params, height, width = gsasr_gaussians(4, 6, 4, dtype=torch.float64, seed=5)
    weight = torch.randn(3, height, width, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = gradients(params, height, width, dmax, "torch", weight)
    ours = gradients(params, height, width, dmax, "cpp", weight)
    for name, a, b in zip(("sigma_x", "sigma_y", "rho", "coords", "colours"), ours, ref):
        assert relative_error(a, b) < 1e-10, name
    # float32 C++ gradients against the float64 reference.
    ours32 = gradients(params, height, width, dmax, "cpp", weight, dtype=torch.float32)
    for name, a, b in zip(("sigma_x", "sigma_y", "rho", "coords", "colours"), ours32, ref):
        assert relative_error(a, b) < 5e-5, name


def test_gradcheck_float64(cpp):
    params, height, width = gsasr_gaussians(1, 2, 4, dtype=torch.float64, seed=9)
    leaves = [p.clone().requires_grad_() for p in params]
    # dmax beyond the image: no pixel crosses a box edge under the finite differences.
    assert torch.autograd.gradcheck(lambda *p: rasterize(*p, height, width, 3.0, backend="cpp"), leaves)


def test_only_requested_gradients_are_returned(cpp):
    params, height, width = gsasr_gaussians(2, 2, 4, seed=2)
    colours = params[4].clone().requires_grad_()
    rasterize(*params[:4], colours, height, width, 0.1, backend="cpp").sum().backward()
    assert colours.grad is not None and colours.grad.abs().sum() > 0


def test_deterministic_across_runs_and_thread_counts(cpp):
    params, height, width = gsasr_gaussians(12, 10, 4, seed=4)
    weight = torch.randn(3, height, width, generator=torch.Generator().manual_seed(2))
    threads = torch.get_num_threads()
    try:
        results = []
        for n_threads in (threads, threads, 1, 3):
            torch.set_num_threads(n_threads)
            results.append((rasterize(*params, height, width, 0.1, backend="cpp"),
                            gradients(params, height, width, 0.1, "cpp", weight)))
    finally:
        torch.set_num_threads(threads)
    first_image, first_grads = results[0]
    for image, grads in results[1:]:
        assert torch.equal(image, first_image)
        assert all(torch.equal(a, b) for a, b in zip(grads, first_grads))


def test_passes_over_index_ranges_change_nothing(cpp):
    # Large renders are split into passes of consecutive Gaussians; each pixel still sums in index order.
    params, height, width = gsasr_gaussians(8, 6, 4, seed=8)
    whole = rasterize(*params, height, width, 0.1, backend="cpp")
    try:
        cpp.set_max_pairs_per_pass(50)
        split = rasterize(*params, height, width, 0.1, backend="cpp")
    finally:
        cpp.set_max_pairs_per_pass(1 << 25)
    assert torch.equal(whole, split)


def test_auto_prefers_cpp_on_cpu(cpp, monkeypatch):
    calls = []
    original = cpp.forward
    params, height, width = gsasr_gaussians(2, 3, 4, seed=1)
    rasterize(*params, height, width, 0.1, backend="cpp")  # the build's self-test verdict, before the spy counts
    monkeypatch.setattr(build, "_loaded", {**build._loaded, ("rasterize", "cpp"): _Spy(cpp, calls)})
    rasterize(*params, height, width, 0.1)
    assert calls == ["forward"] and original is cpp.forward


def test_auto_falls_back_to_torch_with_one_warning(monkeypatch):
    monkeypatch.setattr(build, "_loaded", {})
    monkeypatch.setattr(build, "_failed", {("rasterize", "cpp"): "no C++ compiler found"})
    monkeypatch.setattr(backends, "_warned", set())
    params, height, width = gsasr_gaussians(2, 3, 4, seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = rasterize(*params, height, width, 0.1)
        rasterize(*params, height, width, 0.1)
    assert len([w for w in caught if "cpp backend is unavailable" in str(w.message)]) == 1
    assert torch.equal(first, rasterize(*params, height, width, 0.1, backend="torch"))
    with pytest.raises(ExtensionUnavailable, match="no C\\+\\+ compiler"):
        rasterize(*params, height, width, 0.1, backend="cpp")


class _Spy:
    def __init__(self, module, calls):
        self.module, self.calls = module, calls
        self.__name__ = module.__name__  # the same build, so its self-test verdict applies

    def forward(self, *args):
        self.calls.append("forward")
        return self.module.forward(*args)

    def backward(self, *args):
        return self.module.backward(*args)


@pytest.mark.parametrize("dmax", [0.1, 0.5])
def test_vector_rows_equal_the_scalar_rows_bit_for_bit(cpp, dmax):
    """The vector row kernel (AVX-512 or AVX2) does the scalar code's operations in its order (no FMA): identical
    images, with rows of every length mod 16 and mod 8 (the masked remainders), at one and two threads."""
    if not cpp.has_vector_rows():
        pytest.skip("this CPU build has no vector row kernel (the scalar rows run)")
    params, height, width = gsasr_gaussians(9, 13, 3.7, seed=11)
    threads = torch.get_num_threads()
    try:
        cpp.set_vector_rows(False)
        scalar = cpp.forward(*params, height, width, dmax)
        cpp.set_vector_rows(True)
        for n_threads in (1, 2):
            torch.set_num_threads(n_threads)
            assert torch.equal(cpp.forward(*params, height, width, dmax), scalar)
    finally:
        cpp.set_vector_rows(True)
        torch.set_num_threads(threads)
    assert scalar.abs().sum() > 0


@pytest.mark.parametrize("width", [2, 5, 7, 8, 9, 15, 17, 23])
def test_vector_rows_on_narrow_images_and_short_spans(cpp, width):
    """Images narrower than one vector block or not a multiple of its width, and Gaussians from a fraction of a
    pixel to several pixels wide (spans of 1 column up to the whole row, many ending at the row's last column):
    the vector rows equal the scalar rows bit for bit, at one and two threads, and the torch reference to
    float rounding."""
    if not cpp.has_vector_rows():
        pytest.skip("this CPU build has no vector row kernel (the scalar rows run)")
    g = torch.Generator().manual_seed(width)
    n, height = 400, 19
    pixel_x, pixel_y = 2 / (width - 1), 2 / (height - 1)  # NDC between pixel centres
    sx = pixel_x * (0.1 + 3 * torch.rand(n, generator=g) ** 2)
    sy = pixel_y * (0.1 + 3 * torch.rand(n, generator=g) ** 2)
    rho = torch.rand(n, generator=g) * 1.8 - 0.9
    coords = torch.rand(n, 2, generator=g) * 2.4 - 1.2
    colours = torch.rand(n, 3, generator=g)
    params = [sx, sy, rho, coords, colours]
    threads = torch.get_num_threads()
    for dmax in (0.1, 0.5, 3.0):
        try:
            cpp.set_vector_rows(False)
            scalar = cpp.forward(*params, height, width, dmax)
            cpp.set_vector_rows(True)
            for n_threads in (1, 2):
                torch.set_num_threads(n_threads)
                assert torch.equal(cpp.forward(*params, height, width, dmax), scalar), (dmax, n_threads)
        finally:
            cpp.set_vector_rows(True)
            torch.set_num_threads(threads)
        ref = rasterize(*params, height, width, dmax, backend="torch")
        assert ref.abs().max() > 0.5
        assert relative_error(scalar, ref) < 1e-5, dmax


def test_evaluated_pairs_stay_inside_the_box_widened_by_the_one_pixel_slack(cpp):
    """The kernel's row spans (box and ellipse cut, one pixel of slack per side, box test per pixel) never exceed
    each Gaussian's dmax box widened by one pixel on every side, counted independently here."""
    from asr_bench.ops.rasterize.cases import _pixels_in_box

    params, height, width = gsasr_gaussians(6, 5, 4, seed=3)
    for dmax in (0.05, 0.5):
        coords = params[3]
        columns = (_pixels_in_box(coords[:, 0], dmax, width) + 2).clamp(max=width)
        rows = (_pixels_in_box(coords[:, 1], dmax, height) + 2).clamp(max=height)
        widened = int((columns * rows).sum())
        assert 0 < cpp.evaluated_pairs(*params, height, width, dmax) <= widened
