"""Each encoder's capability flags are true: every listed dtype runs and stays close to a float64 run, and an
input that is not a multiple of `size_multiple` is padded inside to that multiple and cropped back."""
from __future__ import annotations

import pytest
import torch

from asr_bench.encoders import build_encoder, encoder_capabilities, list_encoders

# Tiny configurations of the encoders whose flags are not the defaults (same code paths as the full ones).
TINY = {
    "srformer": dict(img_size=8, window_size=4, embed_dim=16, depths=(2, 2), num_heads=(2, 4)),
    "atd": dict(window_size=4, embed_dim=12, depths=(2, 2), num_heads=(2, 3), category_size=16, num_tokens=5,
                reducted_dim=4),
    "mambair": dict(embed_dim=30, depths=(1, 1), d_state=3, mlp_ratio=1.5),
    "mambair-light": dict(embed_dim=30, depths=(1,), d_state=3),
    "hit-srf": dict(embed_dim=20, depths=(2, 2), num_heads=(2, 2), base_win_size=(4, 4), hier_win_ratios=(1, 2)),
}
# their flags are checked beside their other tests (test_encoder_hat.py, test_encoder_cnns.py)
TESTED_ELSEWHERE = {"hat", "rcan", "plksr", "smfanet"}
TOLERANCE = {"float64": 1e-12, "float32": 1e-5, "bfloat16": 5e-2, "float16": 1e-2}  # of max |float64 output|


def test_every_encoder_declares_capabilities_and_non_defaults_are_tested_here():
    for name in list_encoders():
        caps = encoder_capabilities(name)
        assert "float32" in caps.dtypes and caps.size_multiple >= 1
        if caps.dtypes != ("float32",) or caps.size_multiple != 1 or caps.tiling:
            assert name in TINY or name in TESTED_ELSEWHERE, f"{name} declares capabilities that no test checks"


@pytest.mark.parametrize("name", sorted(TINY))
def test_listed_dtypes_run_close_to_float64(name):
    torch.manual_seed(0)
    enc = build_encoder(name, **TINY[name]).eval()
    x = torch.rand(1, 3, 13, 10)
    with torch.no_grad():
        ref = enc.double()(x.double())
        for dtype_name in encoder_capabilities(name).dtypes:
            dtype = getattr(torch, dtype_name)
            out = enc.to(dtype)(x.to(dtype))
            assert out.dtype == dtype and out.shape == ref.shape
            err = ((out.double() - ref).abs().max() / ref.abs().max()).item()
            assert err < TOLERANCE[dtype_name], (dtype_name, err)


@pytest.mark.parametrize("name", sorted(TINY))
def test_size_multiple_is_the_inner_padding(name):
    with torch.device("meta"):  # the default (released) build, without allocating its weights
        assert build_encoder(name).size_multiple == encoder_capabilities(name).size_multiple
    enc = build_encoder(name, **TINY[name]).eval()
    m = enc.size_multiple
    x = torch.rand(1, 3, m + 3, 2 * m - 1) if m > 1 else torch.rand(1, 3, 5, 3)
    assert tuple(enc.pad(x).shape[-2:]) == ((2 * m, 2 * m) if m > 1 else (5, 3))
    assert enc.pad(torch.rand(1, 3, m, 2 * m)).shape[-2:] == (m, 2 * m)  # a multiple is left as it is
    with torch.no_grad():
        assert enc(x).shape[-2:] == x.shape[-2:]
