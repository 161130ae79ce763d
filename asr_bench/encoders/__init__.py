"""The shared feature encoders: one implementation each, used by every method.

```python
from asr_bench.encoders import build_encoder, list_encoders, load_encoder_state, encoder_keys
enc = build_encoder("edsr-baseline", global_skip=False)   # GSASR's EDSRNOUP
load_encoder_state(enc, sd, scheme="gsasr")              # strict, official key names
feat = enc(x)                                            # (B, enc.out_channels, h, w), LR resolution
```

Names: `edsr-baseline` (64 ch, 16 blocks), `edsr` (256 ch, 32 blocks, res_scale 0.1), `rdn` (config B: D16 C8
G64; `config="A"`), `swinir` (classical: 180 dims, 6x6 blocks, window 8; `out_features=64` for GSASR's head),
`hat` (HAT, window 16; `large=True` HAT-L; `rope=True` GSASR's RoPE variant), `rcan`, `plksr`, `smfanet`.
Each spec carries `Capabilities` (dtypes, size multiple, receptive radius, tile overlap) that its test proves.
`srformer` (180 dims, 6x6 permuted-attention blocks, window 22), `atd` (210 dims, 6x6 layers, window 16),
`mambair` (180 dims, 6x6 state-space blocks), `mambair-light` (60 dims, 4x6) and `hit-srf` (60 dims, 4x6
hierarchical-window blocks). `encoder_capabilities(name)` gives the dtypes,
padding multiple and tiling advice that tests/test_encoder_capabilities.py checks.
Design: each module uses one canonical naming (BasicSR's for EDSR, the shared RDN names, the official SwinIR
names) and `keymaps.py` maps it to each checkpoint naming ("scheme"): see `schemes_for(encoder)`.
No encoder normalises its input: normalisation belongs to the method's preset.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import UnknownName, UserError
from .atd import ATD
from .atd import atd as _atd
from .capabilities import DEFAULT, Capabilities
from .edsr import EDSR
from .edsr import edsr as _edsr
from .edsr import edsr_baseline as _edsr_baseline
from .hat import HAT
from .hat import hat as _hat
from .hit_srf import HiTSRF
from .hit_srf import hit_srf as _hit_srf
from .keymaps import (encoder_keys, encoder_state_from_official, export_encoder_state, load_encoder_state,
                      model_state_from_official, schemes_for, split_encoder_state)
from .plksr import PLKSR
from .plksr import plksr as _plksr
from .rcan import RCAN
from .rcan import rcan as _rcan
from .mambair import MambaIR
from .mambair import mambair as _mambair
from .mambair import mambair_light as _mambair_light
from .rdn import RDN
from .rdn import rdn as _rdn
from .srformer import SRFormer
from .srformer import srformer as _srformer
from .swinir import SwinIR
from .smfanet import SMFANet
from .smfanet import smfanet as _smfanet
from .swinir import swinir as _swinir


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    capabilities: Capabilities = DEFAULT


ATD_TILING = ("category attention mixes tokens across the whole input (groups of 256 after a global sort), so "
              "tiles change the output; its memory is linear in the pixels, tile only beyond ~512x512 LR, by "
              "multiples of 16")
MAMBA_TILING = ("the scans run over the whole image, so tiles change the output; the official test cuts images "
                "of 200+ pixels per side into pieces with a 10% overlap; the scan state is float32 whatever the dtype")
HIT_SRF_TILING = ("windows are anchored at the top-left and reach 64x64 LR pixels (with the 48-pixel ones, the window "
                  "grids line up only every 192 pixels), and the channel correlation mixes each whole window, so "
                  "tiles change the output; the official test cuts LR images of 200+ pixels per side into pieces "
                  "with a 10% overlap")
_ENCODERS = {
    spec.name: spec
    for spec in (
        EncoderSpec("edsr-baseline", _edsr_baseline, "EDSR-baseline, 64 ch, 16 res blocks (1.2 M params)"),
        EncoderSpec("edsr", _edsr, "EDSR, 256 ch, 32 res blocks, res_scale 0.1 (38 M params)"),
        EncoderSpec("rdn", _rdn, "RDN config B (D16 C8 G64, 22 M params); config='A' for D20 C6 G32"),
        EncoderSpec("swinir", _swinir, "SwinIR classical body, 180 dims, 6x6 Swin blocks, window 8 (11.5 M)"),
        EncoderSpec("hat", _hat, "HAT, 180 dims, 6 groups x 6 blocks + OCAB, window 16 (20.6 M); large=True for "
                    "HAT-L (12 groups), rope=True for GSASR's RoPE variant",
                    Capabilities(dtypes=("float32", "bfloat16"), size_multiple=16, tile_overlap=16)),
        EncoderSpec("rcan", _rcan, "RCAN, 64 ch, 10 residual groups x 20 channel-attention blocks (15.3 M)",
                    Capabilities(dtypes=("float32", "bfloat16"), tile_overlap=16)),
        EncoderSpec("plksr", _plksr, "PLKSR, 64 ch, 28 partial-large-kernel (17x17) blocks, DCCM, EA (7.4 M)",
                    Capabilities(dtypes=("float32", "bfloat16"), receptive_radius=309, tile_overlap=309)),
        EncoderSpec("smfanet", _smfanet, "SMFANet+, 48 ch, 12 self-modulation feature aggregation blocks (0.5 M)",
                    Capabilities(dtypes=("float32", "bfloat16"), tile_overlap=16)),
        EncoderSpec("srformer", _srformer, "SRFormer, 180 dims, 6x6 permuted-attention blocks, window 22 (10.1 M)",
                    Capabilities(("float32", "float64", "float16", "bfloat16"), 22,
                                 "attention memory grows with the window (22x22 queries x 11x11 keys per head); "
                                 "tile by multiples of 22 LR pixels with a 22-pixel overlap")),
        EncoderSpec("atd", _atd, "ATD, 210 dims, 6x6 layers (window 16 + token-dictionary + category attention, "
                    "19.8 M)", Capabilities(("float32", "float64"), 16, ATD_TILING)),
        EncoderSpec("mambair", _mambair, "MambaIR, 180 dims, 6x6 state-space blocks, d_state 16 (20.2 M)",
                    Capabilities(("float32", "float64", "bfloat16"), 1, MAMBA_TILING)),
        EncoderSpec("mambair-light", _mambair_light, "MambaIR-light, 60 dims, 4x6 state-space blocks (1.6 M)",
                    Capabilities(("float32", "float64", "bfloat16"), 1, MAMBA_TILING)),
        EncoderSpec("hit-srf", _hit_srf, "HiT-SRF, 60 dims, 4x6 spatial-channel correlation blocks on hierarchical "
                    "windows 4..64 (0.8 M)", Capabilities(("float32", "float64", "bfloat16"), 1, HIT_SRF_TILING)),
    )
}


def list_encoders() -> list[str]:
    """The registered encoder names."""
    return sorted(_ENCODERS)


def encoder_description(name: str) -> str:
    return _spec(name).description


def _spec(name: str) -> EncoderSpec:
    if name not in _ENCODERS:
        raise UnknownName("encoder", name, _ENCODERS)
    return _ENCODERS[name]


def encoder_capabilities(name: str) -> Capabilities:
    """The capability flags of an encoder's default configuration (see `Capabilities`)."""
    return _spec(name).capabilities


def build_encoder(name: str, **kwargs: Any) -> nn.Module:
    """A freshly initialised encoder; the module has `.out_channels` and returns LR-resolution features."""
    spec = _spec(name)
    try:
        return spec.builder(**kwargs)
    except TypeError as exc:  # an option this encoder does not have
        raise UserError(f"encoder '{name}' got an unknown option ({exc}); "
                        f"see asr_bench.encoders.{spec.builder.__name__} for its options.") from exc


__all__ = [
    "ATD", "EDSR", "HAT", "HiTSRF", "MambaIR", "PLKSR", "RCAN", "RDN", "SMFANet", "SRFormer", "SwinIR", "build_encoder",
    "list_encoders", "encoder_description", "load_encoder_state", "model_state_from_official", "encoder_keys",
    "encoder_state_from_official", "export_encoder_state", "schemes_for", "split_encoder_state", "Capabilities",
    "encoder_capabilities",
]
