"""The torch reference of the rasterizer against an independent per-pixel loop of gs.cu's formula."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from asr_bench.ops import rasterize


def loop_render(sx, sy, rho, coords, colours, height, width, dmax) -> np.ndarray:
    """gs.cu's forward, one pixel and one Gaussian at a time, with its float32/double roundings (numpy scalars)."""
    f32 = np.float32
    image = np.zeros((3, height, width), dtype=np.float64)
    limit = f32(dmax)
    for n in range(len(colours)):
        a, b, r = f32(sx[n]), f32(sy[n]), f32(rho[n])
        nh = f32(-0.5 / float(f32(1) - r * r))
        a2 = f32(1.0 / float(a) / float(a))
        b2 = f32(1.0 / float(b) / float(b))
        ab = f32(f32(2) * r) / a / b
        for h in range(height):
            dy = f32(2.0 * h / (height - 1) - 1.0) - f32(coords[n][1])
            if dy > limit or dy < -limit:
                continue
            for w in range(width):
                dx = f32(2.0 * w / (width - 1) - 1.0) - f32(coords[n][0])
                if dx > limit or dx < -limit:
                    continue
                v = a2 * dx * dx
                v = v - ab * dx * dy
                v = v + b2 * dy * dy
                v = v * nh
                value = math.exp(float(v))
                for c in range(3):
                    image[c, h, w] += float(f32(value) * f32(colours[n][c]))
    return image


def random_gaussians(n: int, seed: int, spread: float = 1.3, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(n, generator=g) * 0.12 + 0.01
    sy = torch.rand(n, generator=g) * 0.12 + 0.01
    rho = (torch.rand(n, generator=g) * 2 - 1) * 0.95
    coords = (torch.rand(n, 2, generator=g) * 2 - 1) * spread
    colours = torch.rand(n, 3, generator=g)
    return [t.to(dtype) for t in (sx, sy, rho, coords, colours)]


@pytest.mark.parametrize("height,width,dmax", [(9, 13, 0.3), (12, 7, 0.05), (5, 5, 2.5)])
def test_reference_equals_per_pixel_loop(height, width, dmax):
    params = random_gaussians(14, seed=height * width)
    ours = rasterize(*params, height, width, dmax, backend="torch").double().numpy()
    loop = loop_render(*[p.numpy() for p in params], height, width, dmax)
    assert loop.max() > 0.1  # something was rendered
    np.testing.assert_allclose(ours, loop, rtol=1e-5, atol=1e-6 * loop.max())


def test_box_is_inclusive_and_in_float32():
    # W = 11: pixel 6 sits at float(0.2); a Gaussian at x = 0 with dmax = 0.2 reaches it exactly (dx == dmax).
    one = torch.ones(1)
    image = rasterize(one * 10, one * 10, one * 0, torch.zeros(1, 2), torch.ones(1, 3), 11, 11, 0.2, "torch")
    row = image[0, 5]
    assert row[4] > 0 and row[6] > 0 and row[3] == 0 and row[7] == 0
    assert image[0, 4, 5] > 0 and image[0, 3, 5] == 0  # the same along y


def test_unnormalised_peak_and_additive_sum():
    # A Gaussian centred on a pixel contributes exactly its colour there (peak 1); two of them add.
    coords = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    colours = torch.tensor([[0.25, 0.5, 1.0], [0.5, 0.25, 0.0]])
    sigma = torch.full((2,), 0.05)
    image = rasterize(sigma, sigma, torch.zeros(2), coords, colours, 21, 21, 0.1, "torch")
    assert torch.equal(image[:, 10, 10], colours.sum(0))


def test_axes_sigma_x_is_width():
    # A Gaussian wide along x (sigma_x large) spreads along the rows' width axis, not down the columns.
    image = rasterize(torch.tensor([0.5]), torch.tensor([0.01]), torch.zeros(1), torch.zeros(1, 2),
                      torch.ones(1, 3), 21, 31, 1.0, "torch")
    assert image[0, 10, 20] > 0.5 and image[0, 12, 15] < 1e-6


def test_reference_gradcheck_float64():
    params = [p.requires_grad_() for p in random_gaussians(4, seed=3, spread=0.6, dtype=torch.float64)]
    # dmax covers the whole image, so no pixel crosses a box edge under finite differences.
    assert torch.autograd.gradcheck(lambda *p: rasterize(*p, 6, 7, 3.0, backend="torch"), params)


def test_checkpointed_chunks_give_the_same_gradients(monkeypatch):
    from asr_bench.ops.rasterize import reference as ref  # `asr_bench.ops.rasterize` is the front function

    params = random_gaussians(40, seed=5)

    def grads():
        leaves = [p.clone().requires_grad_() for p in params]
        image = rasterize(*leaves, 16, 19, 0.4, backend="torch")
        (image * torch.linspace(-1, 1, image.numel()).view_as(image)).sum().backward()
        return [leaf.grad for leaf in leaves]

    whole = grads()
    monkeypatch.setattr(ref, "_CHUNK_ELEMENTS", 1000)  # many small checkpointed chunks
    for a, b in zip(whole, grads()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_bad_inputs_are_reported():
    params = random_gaussians(3, seed=0)
    with pytest.raises(ValueError, match="coords"):
        rasterize(*params[:3], params[3][:, :1], params[4], 8, 8, 0.1)
    with pytest.raises(ValueError, match="at least 2x2"):
        rasterize(*params, 1, 8, 0.1)
    from asr_bench.errors import UserError

    with pytest.raises(UserError, match="unknown backend"):
        rasterize(*params, 8, 8, 0.1, backend="gpu")
