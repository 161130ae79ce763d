"""RT4KSR (Zamfir, Conde, Timofte, CVPRW 2023): the fixed-scale real-time reference, x2 and x3.

Training form (what the released checkpoints hold and what the README numbers come from) and the
re-parameterised form (each 1x1 -> 3x3 -> 1x1 residual block folded into one 3x3 conv, with the official fold's
float32 conv order, so the folded weights equal the official `reparameterize()`); `reparameterize=True` folds
after loading. Facts: research/rt4ksr.md.

One model serves the scales it has weights for: the checkpoint may be one official file (`rt4ksr_x2.pth` or
`rt4ksr_x3.pth`; its scale is read from the upsampler's shape), a folder holding both (then scales 2 and 3), or
omitted (random weights for both scales, for timing). The presets `x2` / `x3` restrict a model to one scale;
`rt4ksr` (the default) keeps every scale the weights provide. Other scales raise `UnsupportedScale`.

Behaviour kept from the official network: no normalisation (RGB in [0,1]), no global skip, no clamp; the unused
high-frequency branch (`gamma`, `hfb.*`: the released config discards it) is kept for strict loading but not
computed. The network needs an even LR size (PixelUnshuffle(2)); an odd side is reflect-padded by one pixel on the
bottom/right and the output cropped (the official benchmark instead crops the LR to even, protocol `rt4ksr`).
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from asr_bench.checkpoints import Checkpoint, as_state_dict, load_strict, pick, strip_prefix
from asr_bench.errors import MissingFile, UserError
from asr_bench.registry import MethodSpec, Preset
from asr_bench.upsampler import Upsampler

FEATS, BLOCKS, EXPAND = 24, 4, 2
FILE_NAMES = {2: "rt4ksr_x2.pth", 3: "rt4ksr_x3.pth"}


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
    """One ResBlock -> (3x3 weight, bias), with the official sequence of float32 convs (rt4ksr.md §1.1)."""
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


def _scale_of(sd: Mapping[str, torch.Tensor]) -> int:
    """The scale a state dict was trained for, from the upsampler conv: 3 * (2 s)^2 output channels."""
    weight = sd.get("upsample.0.weight")
    if weight is None:
        raise UserError("checkpoint has no 'upsample.0.weight' (nor 'module.upsample.0.weight'); "
                        "is it an RT4KSR checkpoint?")
    s = round((weight.shape[0] / 3) ** 0.5 / 2)
    if 3 * (2 * s) ** 2 != weight.shape[0] or s not in FILE_NAMES:
        raise UserError(f"RT4KSR upsampler has {weight.shape[0]} channels, which is not x2 (48) or x3 (108).")
    return s


def _net_state(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The network's own keys from an official {'state_dict': {'module.*'}} file or a bare state dict."""
    sd = pick(checkpoint, "state_dict", what="RT4KSR checkpoint") if "state_dict" in checkpoint else checkpoint
    return strip_prefix(sd, "module.")


def load_net(checkpoint: Checkpoint, reparameterize_after: bool) -> RT4KSRNet:
    """One scale's network, loaded strictly (training or re-parameterised form, detected from the keys)."""
    sd = _net_state(as_state_dict(checkpoint))
    rep_file = any(k.endswith("rep_conv.weight") for k in sd)
    net = RT4KSRNet(_scale_of(sd), rep=rep_file)
    load_strict(net, sd, f"RT4KSR checkpoint ({'re-parameterised' if rep_file else 'training'} form)")
    if rep_file and not reparameterize_after:
        raise UserError("this RT4KSR checkpoint is already re-parameterised; build with reparameterize=True.")
    return fold_network(net) if reparameterize_after else net


def _checkpoints(checkpoint: Checkpoint) -> list[Checkpoint]:
    """A file or loaded dict -> [it]; a folder -> its official per-scale files."""
    if isinstance(checkpoint, (str, Path)) and Path(checkpoint).expanduser().is_dir():
        folder = Path(checkpoint).expanduser()
        found = [folder / name for name in FILE_NAMES.values() if (folder / name).is_file()]
        if not found:
            raise MissingFile("RT4KSR checkpoint", folder / "rt4ksr_x{2,3}.pth",
                              "Put the official rt4ksr_x2.pth / rt4ksr_x3.pth there or name one file.")
        return found
    return [checkpoint]


class RT4KSR(Upsampler):
    """Fixed-scale RT4KSR; holds one network per scale it has weights for."""

    method = "rt4ksr"

    def __init__(self, nets: Sequence[RT4KSRNet]) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({f"x{net.scale}": net for net in nets})
        self.scales = tuple(sorted(net.scale for net in nets))

    def _net_for(self, lr_hw: tuple[int, int], size: tuple[int, int]) -> RT4KSRNet:
        return self.nets[f"x{size[0] // lr_hw[0]}"]

    def parameters_for_size(self, lr_hw: tuple[int, int], size: tuple[int, int]) -> Any:
        """Only the network that serves this scale: a folder holds two, and each call runs one of them."""
        return self._net_for(lr_hw, size).parameters()

    def forward_size(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = lr.shape[-2:]
        net = self._net_for((h, w), size)
        ph, pw = h % 2, w % 2
        if ph or pw:
            lr = F.pad(lr, (0, pw, 0, ph), mode="reflect")
        return net(lr)[:, :, : size[0], : size[1]]


def build_rt4ksr(encoder: str = "none", checkpoint: Checkpoint = None, preset: Preset | None = None,
                 scales: Sequence[int] | None = None, reparameterize: bool = False, **kwargs: Any) -> RT4KSR:
    """The registry builder. `scales` (or the preset's) restricts the model; the checkpoint decides which exist."""
    if kwargs:
        raise UserError(f"rt4ksr got unknown options {sorted(kwargs)}; it takes scales= and reparameterize=.")
    if encoder != "none":
        raise UserError(f"rt4ksr has no separate encoder (got '{encoder}'); use encoder 'none'.")
    wanted = tuple(scales) if scales is not None else tuple((preset.method_kwargs if preset else {}).get(
        "scales", tuple(FILE_NAMES)))
    bad = [s for s in wanted if s not in FILE_NAMES]
    if bad:
        raise UserError(f"rt4ksr exists only for scales 2 and 3 (asked for {bad}); use scales=(2,) or (3,).")
    if checkpoint is None:
        nets = [RT4KSRNet(s) for s in wanted]
        nets = [fold_network(n) for n in nets] if reparameterize else nets
        model = RT4KSR(nets)
        model.weights_loaded = False
        return model
    nets = [load_net(c, reparameterize) for c in _checkpoints(checkpoint)]
    nets = [n for n in nets if n.scale in wanted]
    if not nets:
        raise UserError(f"the RT4KSR checkpoint {checkpoint} has no weights for scale(s) {list(wanted)}; "
                        "pick the matching preset (x2 / x3) or file.")
    model = RT4KSR(nets)
    model.weights_loaded = True
    return model


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


METHODS = [
    MethodSpec(
        name="rt4ksr",
        builder=build_rt4ksr,
        encoders=("none",),
        scales=(2, 3),
        presets={
            "rt4ksr": Preset("rt4ksr", "none", method_kwargs={"scales": (2, 3)},
                             description="every scale the weights provide (a folder with rt4ksr_x2/x3.pth)"),
            "x2": Preset("x2", "none", method_kwargs={"scales": (2,)}, description="rt4ksr_x2.pth, 1080p->4K"),
            "x3": Preset("x3", "none", method_kwargs={"scales": (3,)}, description="rt4ksr_x3.pth, 720p->4K"),
        },
        description="RT4KSR: real-time fixed-scale SR (x2, x3), 24 ch, 4 re-parameterisable blocks",
        citation="Zamfir, Conde, Timofte. Towards Real-Time 4K Image Super-Resolution. CVPRW 2023.",
    )
]
