"""IGConv's building blocks: the kernel hyper-network, the IGConv head and the IGSample skip.

Written from docs/methods/igconv.md §1-§2. Parameter names equal the official ones (`freq`, `amplitude`,
`phase.*`, `query_kernel.<i>.*`, and `convs.*` inside the skip), so official state dicts load strictly.
Every float operation keeps the official order (the phase conv runs on an s x s map, the 8-orientation
ensemble of the head averages conv *outputs*, the skip's averages *kernels*), which makes our outputs
bit-identical to the official ones on CPU.

Unlike the official code, the generated kernel is cached per scale: it depends only on the weights and s,
so a benchmark that runs 100 images at x4 generates it once. The cache is keyed by every parameter's
version counter (any in-place change, including `load_state_dict`, invalidates it) and cleared on
`train()` and on device/dtype moves; in training mode nothing is cached.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def cell_centres(scale: int) -> torch.Tensor:
    """The s cell centres of [-1, 1]: -1 + 1/s + 2i/s, float32 as the official `make_coord` computes them."""
    r = 1.0 / scale
    return -1 + r + (2 * r) * torch.arange(scale).float()


def dihedral_kernels(weight: torch.Tensor) -> list[torch.Tensor]:
    """The 8 orientations of a conv kernel in the official order (only the spatial axes move)."""
    rot = torch.rot90(weight, -1, [2, 3])
    return [weight, weight.flip([3]), weight.flip([2]), weight.flip([2, 3]),
            rot, rot.flip([3]), rot.flip([2]), rot.flip([2, 3])]


def mean_of_orientations(weight: torch.Tensor) -> torch.Tensor:
    """(k0 + k1 + ... + k7) / 8, summed left to right as the official IGSample does."""
    kernels = dihedral_kernels(weight)
    total = kernels[0]
    for k in kernels[1:]:
        total = total + k
    return total / 8.0


class KernelField(nn.Module):
    """The hyper-network: a Fourier-feature MLP that maps (kernel element, sub-pixel offset, scale) to weights.

    One row per kernel element (c, kh, kw) of a `dim`-channel, `kernel_size`^2 conv; for scale s it returns
    a conv weight of shape [outputs * s^2, dim, k, k] whose output channel is q * s^2 + i * s + j (q = one
    of `outputs` values, (i, j) = sub-pixel row and column), ready for `pixel_shuffle(s)`.
    """

    def __init__(self, dim: int, kernel_size: int, width: int, latent_layers: int, outputs: int,
                 groups: int = 1, last_bias: bool = True, max_s: int = 4) -> None:
        super().__init__()
        if width % 2:
            raise ValueError(f"implicit width must be even, got {width}")
        self.dim, self.kernel_size, self.width, self.groups, self.max_s = dim, kernel_size, width, groups, max_s
        rows = dim * kernel_size ** 2
        self.phase = nn.Conv2d(1, width // 2, 1, 1)
        self.freq = nn.Parameter(torch.randn(rows, width, 1, 1) * 0.02)
        self.amplitude = nn.Parameter(torch.randn(rows, width, 1, 1) * 0.02)
        layers: list[nn.Module] = []
        for _ in range(latent_layers):
            layers += [nn.Conv2d(width, width, 1, 1, 0, groups=groups), nn.ReLU()]
        layers.append(nn.Conv2d(width, outputs, 1, 1, 0, groups=groups, bias=last_bias))
        self.query_kernel = nn.Sequential(*layers)
        self._cache: dict[tuple, torch.Tensor] = {}

    # -- kernel generation (docs/methods/igconv.md §1.2) ---------------------------------------------------
    def generate(self, scale: int) -> torch.Tensor:
        """The conv weight for integer `scale`, computed afresh (no cache)."""
        device, dtype = self.freq.device, self.freq.dtype
        s = int(scale)
        r = torch.ones(1, 1, s, s, device=device, dtype=dtype) / min(s, self.max_s) * 2  # "2 / r" as in LIIF/LTE
        centres = cell_centres(s).to(device, dtype)
        x = centres.view(1, 1, 1, s)  # channel 0 of the grid: varies along the width
        y = centres.view(1, 1, s, 1)  # channel 1: varies along the height
        f1, f2 = self.freq.chunk(2, dim=1)
        angle = f1 * x + f2 * y  # [rows, width/2, s, s]
        angle = angle + self.phase(r)  # the phase conv runs on the s x s map, as officially (exact rounding)
        z = torch.cat([torch.cos(math.pi * angle), torch.sin(math.pi * angle)], dim=1)
        if self.groups == 2:  # '(g d) -> (d g)': group 0 sees the even channels, group 1 the odd ones
            rows = z.shape[0]
            z = z.view(rows, self.width // 2, 2, s, s).transpose(1, 2).reshape(rows, self.width, s, s)
        values = self.query_kernel(z * self.amplitude)  # [rows, outputs, s, s]
        k = self.kernel_size
        outputs = values.shape[1]
        return (values.view(self.dim, k, k, outputs, s, s)
                .permute(3, 4, 5, 0, 1, 2)
                .reshape(outputs * s * s, self.dim, k, k))

    def prepared(self, scale: int) -> torch.Tensor:
        """`prepare(generate(scale))`, cached in eval mode until the weights change."""
        if self.training:
            return self.prepare(self.generate(scale))
        key = (int(scale), torch.is_grad_enabled(), *(p._version for p in self.parameters()))
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[1:] == key[1:]}  # drop stale weights
            self._cache[key] = self.prepare(self.generate(scale))
        return self._cache[key]

    def prepare(self, weight: torch.Tensor) -> torch.Tensor:
        """What forward convolves with (the subclasses fold in their orientation ensemble)."""
        return weight

    def clear_cache(self) -> None:
        self._cache = {}

    def train(self, mode: bool = True) -> KernelField:
        self.clear_cache()
        return super().train(mode)

    def _apply(self, fn, recurse=True):  # .to(), .cuda(), .half(): the cached tensors would be stale
        self.clear_cache()
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kernel_size={self.kernel_size}, width={self.width}, max_s={self.max_s}"


class IGConvHead(KernelField):
    """IGConv: generated sub-pixel conv + pixel shuffle, features [B,C,h,w] -> RGB [B,3,sh,sw].

    With `geo_ensemble` the official code convolves with all 8 kernel orientations and averages the 8
    outputs. `fold_ensemble=True` averages the kernels instead (one conv, 8x cheaper for this layer); it is
    equal in exact arithmetic and differs from the official output only by float rounding (~1e-6).
    """

    def __init__(self, dim: int, kernel_size: int = 3, implicit_dim: int = 256, latent_layers: int = 4,
                 geo_ensemble: bool = False, max_s: int = 4, fold_ensemble: bool = False) -> None:
        super().__init__(dim, kernel_size, implicit_dim, latent_layers, outputs=3, max_s=max_s)
        self.geo_ensemble = geo_ensemble
        self.fold_ensemble = fold_ensemble

    def prepare(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.geo_ensemble:
            return weight
        if self.fold_ensemble:
            return mean_of_orientations(weight)
        return torch.cat(dihedral_kernels(weight), dim=0)

    def forward(self, feat: torch.Tensor, scale: int) -> torch.Tensor:
        weight = self.prepared(scale)
        out = F.conv2d(feat, weight, bias=None, stride=1, padding=self.kernel_size // 2)
        if self.geo_ensemble and not self.fold_ensemble:
            out = out.reshape(out.shape[0], 8, -1, out.shape[-2], out.shape[-1]).mean(dim=1)
        return F.pixel_shuffle(out, scale)


class SampleKernel(KernelField):
    """IGSample's hyper-network (official `IGConvDSSepRGB`): 12 values per sub-pixel = 6 offsets + 6 scopes.

    Its width is twice the `implicit_dim` it is given, its MLP is grouped in 2 with no last bias, and the
    orientation ensemble averages the 8 kernels (one conv).
    """

    def __init__(self, dim: int, kernel_size: int = 3, implicit_dim: int = 128, latent_layers: int = 2,
                 geo_ensemble: bool = True, max_s: int = 4) -> None:
        super().__init__(dim, kernel_size, 2 * implicit_dim, latent_layers, outputs=12, groups=2,
                         last_bias=False, max_s=max_s)
        self.geo_ensemble = geo_ensemble

    def prepare(self, weight: torch.Tensor) -> torch.Tensor:
        return mean_of_orientations(weight) if self.geo_ensemble else weight

    def forward(self, feat: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = F.conv2d(feat, self.prepared(scale), bias=None, stride=1, padding=self.kernel_size // 2)
        offset, scope = out.chunk(2, dim=1)
        return offset, scope


def subpixel_positions(scale: int) -> torch.Tensor:
    """[1, 6 s^2, 1, 1]: the sub-pixel centre offsets in LR pixels, index comp*3s^2 + rgb*s^2 + i*s + j.

    comp 0 (x) is h_j and comp 1 (y) is h_i with h_t = ((1 - s)/2 + t) / s.
    """
    h = torch.arange((-scale + 1) / 2, (scale - 1) / 2 + 1) / scale
    x = h.view(1, scale).expand(scale, scale)
    y = h.view(scale, 1).expand(scale, scale)
    return torch.stack([x, y]).unsqueeze(1).expand(2, 3, scale, scale).reshape(1, -1, 1, 1)


class IGSampleSkip(nn.Module):
    """IGConv+'s skip: bilinear resampling of the raw LR image at learned, feature-dependent positions.

    Each RGB channel gets its own offsets; with zero offsets this is plain bilinear x s upsampling
    (align_corners=False). Keys: `convs.*` as officially.
    """

    def __init__(self, dim: int, kernel_size: int = 3, implicit_dim: int = 128, latent_layers: int = 2,
                 geo_ensemble: bool = True, max_s: int = 4) -> None:
        super().__init__()
        self.convs = SampleKernel(dim, kernel_size, implicit_dim, latent_layers, geo_ensemble, max_s)

    def forward(self, image: torch.Tensor, feat: torch.Tensor, scale: int) -> torch.Tensor:
        offset, scope = self.convs(feat, scale)
        offset = offset * scope.sigmoid() * 0.5 + subpixel_positions(scale).to(offset)
        b, _, h, w = offset.shape
        offset = offset.view(b, 2, -1, h, w)
        base = torch.stack([  # pixel centres in LR pixel units: x = w + 0.5, y = h + 0.5
            (torch.arange(w) + 0.5).view(1, w).expand(h, w),
            (torch.arange(h) + 0.5).view(h, 1).expand(h, w),
        ]).view(1, 2, 1, h, w).to(offset)
        size = torch.tensor([w, h], dtype=offset.dtype, device=offset.device).view(1, 2, 1, 1, 1)
        grid = 2 * (base + offset) / size - 1
        grid = (F.pixel_shuffle(grid.reshape(b, -1, h, w), scale)
                .view(b, 2, -1, scale * h, scale * w)
                .permute(0, 2, 3, 4, 1)
                .flatten(0, 1))
        out = F.grid_sample(image.reshape(b * 3, -1, h, w), grid, mode="bilinear",
                            align_corners=False, padding_mode="border")
        return out.view(b, -1, scale * h, scale * w)
