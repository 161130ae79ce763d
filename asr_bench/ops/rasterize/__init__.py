"""GSASR's Gaussian rasterizer: one front, an autograd Function, and the choice of backend.

Contract (the arguments are exactly what the official CUDA wrapper receives, docs/methods/gsasr.md §4.1-§4.2)::

    from asr_bench.ops import rasterize
    image = rasterize(sigma_x, sigma_y, rho, coords, colours, height, width, dmax, backend="auto")

    sigma_x  (N,)   std of each Gaussian along the image WIDTH (x), in align_corners=True NDC units, i.e. the
                    official wrapper's sigmas[:, 0] = sigma_y_head / step * 2 / (W - 1). (The official head's
                    channel 0 is vertical: §9.10. This front names axes by the image, not by the head.)
    sigma_y  (N,)   std along the image HEIGHT (y), NDC: sigmas[:, 1] = sigma_x_head / step * 2 / (H - 1).
    rho      (N,)   correlation, |rho| < 1 (sigmas[:, 2] = 0.999999 tanh(raw)).
    coords   (N, 2) centres (x, y) in align_corners=True NDC: pixel w sits at 2w/(W-1) - 1, so x = -1 is the
                    centre of the first column. This is the remapped coords of §4.1, x' = (x+1-1/W) W/(W-1) - 1.
    colours  (N, 3) RGB already multiplied by opacity.
    height, width   output size in pixels (both >= 2).
    dmax     float  half-width of each Gaussian's box in NDC (0.1 in GSASR inference); inclusive.
    backend  "auto" (cuda > cpp > torch among the live ones for the tensors' device), "torch", "cpp", "cuda".
    returns  (3, H, W) image, same dtype and device as the inputs (the official HWC output permuted to CHW):
             image[c, h, w] = sum_n colours[n, c] * exp(-(dx^2/a^2 - 2 rho dx dy/(a b) + dy^2/b^2) / (2(1-rho^2)))
             over the Gaussians with |dx| <= dmax and |dy| <= dmax, dx = X_w - x, dy = Y_h - y, a = sigma_x,
             b = sigma_y. Unnormalised (peak 1), additive, no background.

Gradients flow to sigma_x, sigma_y, rho, coords and colours (as in the official backward; the box edges are
not differentiated). dtype: float32 everywhere (the official kernel is float32); float64 on "torch" and "cpp"
(for gradcheck). Inputs need not be contiguous. Non-finite parameters are not supported.

The "torch" backend is the specification (reference.py); "cpp" (csrc/rasterize/cpu.cpp) bins the
Gaussians into row bands, is deterministic whatever the thread count, and skips pixels only where fp32 expf is
exactly 0 (csrc/rasterize/binning.h explains the cut). The op's self-test cases, benchmark workloads and FLOP
count are in cases.py; `SPEC` below hands them to the self-test and `bench-ops`.
"""
from __future__ import annotations

from types import ModuleType

import torch
from torch.autograd.function import once_differentiable

from ..spec import ElementRate, Gradients, OpSpec
from ..usage import op_flops, record
from . import cases
from .reference import rasterize_reference, rasterize_reference_unchunked

OP_NAME = "rasterize"


class _RasterizeCompiled(torch.autograd.Function):
    """Autograd around a compiled backend's forward/backward (same ABI for cpp and cuda, see binning.h)."""

    @staticmethod
    def forward(ctx, sigma_x, sigma_y, rho, coords, colours, height, width, dmax, module):  # type: ignore[override]
        ctx.save_for_backward(sigma_x, sigma_y, rho, coords, colours)
        ctx.size, ctx.dmax, ctx.module = (height, width), dmax, module
        return module.forward(sigma_x, sigma_y, rho, coords, colours, height, width, dmax)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_image):  # type: ignore[override]
        sigma_x, sigma_y, rho, coords, colours = ctx.saved_tensors
        grads = ctx.module.backward(
            sigma_x, sigma_y, rho, coords, colours, grad_image.contiguous(), *ctx.size, ctx.dmax
        )
        wanted = ctx.needs_input_grad[:5]
        return (*[g if w else None for g, w in zip(grads, wanted)], None, None, None, None)


def _checked(
    sigma_x: torch.Tensor,
    sigma_y: torch.Tensor,
    rho: torch.Tensor,
    coords: torch.Tensor,
    colours: torch.Tensor,
    height: int,
    width: int,
) -> list[torch.Tensor]:
    n = colours.shape[0]
    expected = {"sigma_x": (n,), "sigma_y": (n,), "rho": (n,), "coords": (n, 2), "colours": (n, 3)}
    tensors = {"sigma_x": sigma_x, "sigma_y": sigma_y, "rho": rho, "coords": coords, "colours": colours}
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != expected[name]:
            raise ValueError(f"rasterize: {name} has shape {tuple(tensor.shape)}, expected {expected[name]}")
        if tensor.dtype != colours.dtype or tensor.device != colours.device:
            raise ValueError("rasterize: all inputs must share one dtype and device")
    if not colours.is_floating_point():
        raise ValueError(f"rasterize: inputs must be floating point, got {colours.dtype}")
    if int(height) < 2 or int(width) < 2:
        raise ValueError(f"rasterize: output size must be at least 2x2, got {height}x{width}")
    return [t.contiguous() for t in tensors.values()]


def rasterize(
    sigma_x: torch.Tensor,
    sigma_y: torch.Tensor,
    rho: torch.Tensor,
    coords: torch.Tensor,
    colours: torch.Tensor,
    height: int,
    width: int,
    dmax: float,
    backend: str = "auto",
) -> torch.Tensor:
    """Render N 2-D Gaussians into a (3, H, W) image the way GSASR's CUDA op does (contract: module docstring)."""
    from ..backends import (
        resolve_backend,  # here: `asr_bench.ops` imports this front, and `python -m
    )
    # asr_bench.ops.build` (or .backends) must find those modules not yet imported

    inputs = _checked(sigma_x, sigma_y, rho, coords, colours, height, width)
    name, module = resolve_backend(OP_NAME, backend, colours.device)
    if name != "torch" and colours.dtype not in _compiled_dtypes(name):
        if backend != "auto":
            raise ValueError(f"rasterize: backend '{name}' supports {_compiled_dtypes(name)}, got {colours.dtype}")
        name, module = "torch", None
    record(OP_NAME, name)
    with op_flops(OP_NAME, lambda: cases.flops(*inputs, int(height), int(width), float(dmax))):
        if module is None:
            return rasterize_reference(*inputs, int(height), int(width), float(dmax))
        return _RasterizeCompiled.apply(*inputs, int(height), int(width), float(dmax), module)


def _compiled_dtypes(backend: str) -> tuple[torch.dtype, ...]:
    return (torch.float32, torch.float64) if backend == "cpp" else (torch.float32,)


def compiled_module(backend: str) -> ModuleType | None:
    """The compiled module for a backend name (None for 'torch'); for tests and benchmarks."""
    from ..backends import resolve_backend

    return resolve_backend(OP_NAME, backend, torch.device("cuda" if backend == "cuda" else "cpu"))[1]


def _bench_backends(device: torch.device) -> list[str]:
    from ..backends import loadable

    return ["torch", *loadable(OP_NAME, device)]


SPEC = OpSpec(
    name=OP_NAME,
    front=rasterize,
    reference=rasterize_reference_unchunked,
    selftest=cases.SELFTEST_CASES,
    gradients=Gradients((0, 1, 2, 3, 4), ("sigma_x", "sigma_y", "rho", "coords", "colours"), cases.backward_call),
    workloads=cases.WORKLOADS,
    bench_backends=_bench_backends,
    flops=cases.flops,
    element_rate=ElementRate("pairs", cases.kernel_pairs, "exp"),
    doc="GSASR's Gaussian rasterizer",
)
