"""RT4KSR (Zamfir, Conde, Timofte, CVPRW 2023): the fixed-scale real-time reference, x2 and x3.

Training form (what the released checkpoints hold and what the README numbers come from) and the
re-parameterised form (each 1x1 -> 3x3 -> 1x1 residual block folded into one 3x3 conv, with the official fold's
float32 conv order, so the folded weights equal the official `reparameterize()`); `reparameterize=True` folds
after loading. Facts: docs/methods/rt4ksr.md.

One model serves the scales it has weights for: the checkpoint may be one official file (`rt4ksr_x2.pth` or
`rt4ksr_x3.pth`; its scale is read from the upsampler's shape), a folder holding both (then scales 2 and 3), or
omitted (random weights for both scales, for timing). The presets `rt4ksr.x2` / `rt4ksr.x3` restrict a model to one
scale; `rt4ksr.all` (the default) keeps every scale the weights provide. Other scales raise `UnsupportedScale`.

Behaviour kept from the official network: no normalisation (RGB in [0,1]), no global skip, no clamp; the unused
high-frequency branch (`gamma`, `hfb.*`: the released config discards it) is kept for strict loading but not
computed. The network needs an even LR size (PixelUnshuffle(2)); an odd side is reflect-padded by one pixel on the
bottom/right and the output cropped (the official benchmark instead crops the LR to even, protocol `rt4ksr`).
The spec, presets and checkpoint handling are in `__init__.py`.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from asr_bench.blocks import pad_to_multiple
from asr_bench.errors import UserError
from asr_bench.upsampler import Upsampler

FEATS, BLOCKS, EXPAND = 24, 4, 2
SCALES = (2, 3)


class LayerNorm2d(nn.Module):
    """Per-pixel LayerNorm over channels: biased variance, eps 1e-6, the official op order."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / (var + self.eps).sqrt()
        return self.weight.view(1, -1, 1, 1) * y + self.bias.view(1, -1, 1, 1)


class ResBlock(nn.Module):
    """Training form: 1x1 expand -> 3x3 (valid, on the expanded map padded with the expand bias) + inner skip
    -> 1x1 reduce + outer skip. Padding with the bias is what makes the fold exact at the borders."""

    def __init__(self, n: int = FEATS, ratio: int = EXPAND) -> None:
        super().__init__()
        self.expand_conv = nn.Conv2d(n, ratio * n, 1)
        self.fea_conv = nn.Conv2d(ratio * n, ratio * n, 3)
        self.reduce_conv = nn.Conv2d(ratio * n, n, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.expand_conv(x)
        padded = F.pad(u, (1, 1, 1, 1))
        b0 = self.expand_conv.bias.view(1, -1, 1, 1)
        padded[:, :, :1, :] = b0
        padded[:, :, -1:, :] = b0
        padded[:, :, :, :1] = b0
        padded[:, :, :, -1:] = b0
        return self.reduce_conv(self.fea_conv(padded) + u) + x


class RepResBlock(nn.Module):
    """Re-parameterised form: one 3x3 conv (zero padding 1)."""

    def __init__(self, n: int = FEATS) -> None:
        super().__init__()
        self.rep_conv = nn.Conv2d(n, n, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rep_conv(x)


class NAFBlock(nn.Module):
    """The released 'simplified NAF' block: GELU(conv1(LayerNorm2d(x))); no ECA, no block residual."""

    def __init__(self, conv1: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.conv1 = conv1
        self.norm = LayerNorm2d(FEATS)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv1(self.norm(x)))


class RT4KSRNet(nn.Module):
    """PixelUnshuffle(2) -> head 3x3 -> 4 blocks -> LayerNorm2d + block -> 3x3 conv -> PixelShuffle(2 s)."""

    def __init__(self, scale: int, rep: bool = False) -> None:
        super().__init__()
        block = RepResBlock if rep else ResBlock
        act = nn.GELU()  # one shared, parameter-free instance, as the official model
        self.scale, self.rep = scale, rep
        self.gamma = nn.Parameter(torch.zeros(1))
        self.head = nn.Sequential(nn.Conv2d(3 * 4, FEATS, 3, padding=1))
        self.hfb = nn.Sequential(block(), act)  # the discarded high-frequency branch (strict loading only)
        self.body = nn.Sequential(*(NAFBlock(block(), act) for _ in range(BLOCKS)))
        self.tail = nn.Sequential(LayerNorm2d(FEATS), block())
        self.upsample = nn.Sequential(nn.Conv2d(FEATS, 3 * (2 * scale) ** 2, 3, padding=1),
                                      nn.PixelShuffle(2 * scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.head(F.pixel_unshuffle(x, 2))
        return self.upsample(self.tail(self.body(feats)))


def fold_block(expand_w, expand_b, fea_w, fea_b, reduce_w, reduce_b) -> tuple[torch.Tensor, torch.Tensor]:
    """One ResBlock -> (3x3 weight, bias), with the official float32 conv order (docs/methods/rt4ksr.md §1.1)."""
    mid, n = expand_w.shape[:2]
    w1 = fea_w.detach().clone()
    w1[torch.arange(mid), torch.arange(mid), 1, 1] += 1.0                    # inner identity
    k01 = F.conv2d(w1, expand_w.detach().permute(1, 0, 2, 3))               # 1x1 then 3x3
    b_map = expand_b.detach().view(1, -1, 1, 1) * torch.ones(1, mid, 3, 3, dtype=w1.dtype, device=w1.device)
    b01 = F.conv2d(b_map, w1, fea_b.detach())
    k = F.conv2d(k01.permute(1, 0, 2, 3), reduce_w.detach()).permute(1, 0, 2, 3)  # then the last 1x1
    b = F.conv2d(b01, reduce_w.detach(), reduce_b.detach()).view(-1)
    k = k.clone()
    k[torch.arange(n), torch.arange(n), 1, 1] += 1.0                         # outer identity
    return k, b


def fold_network(net: RT4KSRNet) -> RT4KSRNet:
    """A new re-parameterised network equal to `net` (training form) up to float rounding; `net` is untouched."""
    if net.rep:
        return net
    rep = RT4KSRNet(net.scale, rep=True).to(next(net.parameters()).device)
    src = net.state_dict()
    out = {}
    for key in rep.state_dict():
        if key.endswith("rep_conv.weight"):
            base = key[: -len("rep_conv.weight")]
            parts = [src[f"{base}{name}_conv.{p}"] for name in ("expand", "fea", "reduce") for p in ("weight", "bias")]
            out[key], out[base + "rep_conv.bias"] = fold_block(*parts)
        elif not key.endswith("rep_conv.bias"):
            out[key] = src[key]
    rep.load_state_dict(out, strict=True)
    return rep


class RT4KSR(Upsampler):
    """Fixed-scale RT4KSR; holds one network per scale it has weights for (`scales` narrows the spec's to those)."""

    def __init__(self, nets: Sequence[RT4KSRNet], reparameterize: bool = False) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({f"x{net.scale}": net for net in nets})
        self.scales = tuple(sorted(net.scale for net in nets))
        self.reparameterize = reparameterize

    def parameters_for_size(self, lr_hw: tuple[int, int], size: tuple[int, int]) -> Any:
        """Only the network that serves this scale: a folder holds two, and each call runs one of them."""
        return self.nets[f"x{size[0] // lr_hw[0]}"].parameters()

    def forward_size(self, lr: torch.Tensor, size: tuple[int, int], scale: tuple[float, float]) -> torch.Tensor:
        net = self.nets[f"x{int(scale[0])}"]
        return net(pad_to_multiple(lr, self.pad_multiple))[:, :, : size[0], : size[1]]

    def fold(self) -> None:
        """Replace every training-form network by its re-parameterised equal."""
        for key, net in self.nets.items():
            self.nets[key] = fold_network(net)

    def on_weights_loaded(self) -> None:
        if self.reparameterize:
            self.fold()


def scale_of_state(sd: Mapping[str, torch.Tensor]) -> int:
    """The scale a state dict was trained for, from the upsampler conv: 3 * (2 s)^2 output channels."""
    weight = sd.get("upsample.0.weight")
    if weight is None:
        raise UserError("checkpoint has no 'upsample.0.weight' (nor 'module.upsample.0.weight'); "
                        "is it an RT4KSR checkpoint?")
    s = round((weight.shape[0] / 3) ** 0.5 / 2)
    if 3 * (2 * s) ** 2 != weight.shape[0] or s not in SCALES:
        raise UserError(f"RT4KSR upsampler has {weight.shape[0]} channels, which is not x2 (48) or x3 (108).")
    return s


def is_reparameterised(sd: Mapping[str, torch.Tensor]) -> bool:
    return any(k.endswith("rep_conv.weight") for k in sd)


def frame_rate_workloads() -> list[tuple[str, tuple[int, int], int]]:
    """The real-time SR workloads: (name, LR (h, w), scale), both ending at 3840x2160."""
    return [("1080p->4K x2", (1080, 1920), 2), ("720p->4K x3", (720, 1280), 3)]


@torch.no_grad()
def measure_frame_rates(model: Upsampler, workloads: Sequence[tuple[str, tuple[int, int], int]] | None = None,
                        repeats: int = 1, warmup: int = 1, device: str | torch.device | None = None,
                        dtype: torch.dtype = torch.float32) -> list[dict[str, Any]]:
    """Frames per second of `model.upscale` on each workload it supports (median of `repeats`, after `warmup`).

    Rows: {workload, lr_size, scale, seconds, fps, repeats, warmup, device, dtype} or {..., error} when the
    model does not support the scale (recorded as data, never raised).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    rows = []
    for name, (h, w), scale in workloads or frame_rate_workloads():
        row: dict[str, Any] = {"workload": name, "lr_size": (h, w), "scale": scale, "repeats": repeats,
                               "warmup": warmup, "device": str(device), "dtype": str(dtype).replace("torch.", "")}
        lr = torch.rand(1, 3, h, w, device=device, dtype=dtype)
        try:
            for _ in range(warmup):
                model.upscale(lr, scale=scale)
            times = []
            for _ in range(repeats):
                _sync(device)
                start = time.perf_counter()
                model.upscale(lr, scale=scale)
                _sync(device)
                times.append(time.perf_counter() - start)
        except UserError as exc:
            rows.append({**row, "error": str(exc)})
            continue
        seconds = sorted(times)[len(times) // 2]
        rows.append({**row, "seconds": seconds, "fps": 1.0 / seconds})
    return rows


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
