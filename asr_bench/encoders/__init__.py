"""The shared feature encoders: one implementation each, used by every method.

```python
from asr_bench.encoders import build_encoder, list_encoders, load_encoder_state, encoder_keys
enc = build_encoder("edsr-baseline", global_skip=False)   # GSASR's EDSRNOUP
load_encoder_state(enc, sd, scheme="gsasr")              # strict, official key names
feat = enc(x)                                            # (B, enc.out_channels, h, w), LR resolution
```

Names: `edsr-baseline` (64 ch, 16 blocks), `edsr` (256 ch, 32 blocks, res_scale 0.1), `rdn` (config B: D16 C8
G64; `config="A"`), `swinir` (classical: 180 dims, 6x6 blocks, window 8; `out_features=64` for GSASR's head),
`hat` (HAT, window 16; `large=True` HAT-L; `rope=True` GSASR's RoPE variant), `rcan`, `plksr`, `smfanet`,
`srformer` (180 dims, 6x6 permuted-attention blocks, window 22), `atd` (210 dims, 6x6 layers, window 16),
`mambair` (180 dims, 6x6 state-space blocks), `mambair-light` (60 dims, 4x6) and `hit-srf` (60 dims, 4x6
hierarchical-window blocks). Each spec carries `Capabilities` (dtypes, size multiple, receptive radius, tile
overlap) that its test proves: `encoder_capabilities(name)`, checked by tests/test_encoder_capabilities.py.
Design: each encoder module ends with its `ENCODERS` (an `EncoderSpec` each: builder, capabilities, checkpoint
namings, the shape reader detection uses); `catalogue.py` gathers them with those of entry-point plugins (group
`asr_bench.encoders`). Each module uses one canonical naming (BasicSR's for EDSR, the shared RDN names, the
official SwinIR names) and its spec's schemes map it to each checkpoint naming: see `schemes_for(encoder)`.
No encoder normalises its input: normalisation belongs to the method's preset.
"""
from __future__ import annotations

from .atd import ATD
from .capabilities import DEFAULT, Capabilities
from .catalogue import (broken_encoder_plugins, build_encoder, encoder_arguments, encoder_capabilities,
                        encoder_description, encoder_matches, encoder_spec, encoder_specs, list_encoders,
                        read_encoder)
from .edsr import EDSR
from .hat import HAT
from .hit_srf import HiTSRF
from .keymaps import (encoder_keys, encoder_state_from_official, export_encoder_state, load_encoder_state,
                      model_state_from_official, schemes_for, split_encoder_state)
from .mambair import MambaIR
from .plksr import PLKSR
from .rcan import RCAN
from .rdn import RDN
from .smfanet import SMFANet
from .spec import EncoderRead, EncoderSpec, ShapeReader, UnsupportedFamily
from .srformer import SRFormer
from .swinir import SwinIR

__all__ = [
    "ATD", "EDSR", "HAT", "HiTSRF", "MambaIR", "PLKSR", "RCAN", "RDN", "SMFANet", "SRFormer", "SwinIR", "build_encoder",
    "list_encoders", "encoder_description", "load_encoder_state", "model_state_from_official", "encoder_keys",
    "encoder_state_from_official", "export_encoder_state", "schemes_for", "split_encoder_state", "Capabilities",
    "encoder_capabilities", "DEFAULT", "EncoderSpec", "ShapeReader", "EncoderRead", "UnsupportedFamily", "encoder_spec",
    "encoder_specs", "read_encoder", "encoder_matches", "encoder_arguments", "broken_encoder_plugins",
]
