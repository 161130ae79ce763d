"""MambaIR / MambaIR-light encoders: the official IGConv key tables load strictly through build_model, the selective
scan backends equal a per-step loop, and the encoder equals a slow re-derivation that walks the four pixel orders."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_igconv import key_table_file, tsv_state_dict

import asr_bench as ab
from asr_bench.encoders import build_encoder, load_encoder_state
from asr_bench.ops.selective_scan import selective_scan, selective_scan_chunked, selective_scan_reference

TINY = dict(embed_dim=30, depths=(1, 2), d_state=3, mlp_ratio=1.5)


@pytest.mark.parametrize("preset,table", [
    ("igconv.mambair-light", "igconv_keys_MambaIR_Light_IGConv_DIV2K.tsv"),
    ("igconv-plus.mambair-light", "igconv_keys_MambaIR_Light_IGConvPlus_DIV2K.tsv"),
    pytest.param("igconv.mambair", "igconv_keys_MambaIR_IGConv_DF2K.tsv", marks=pytest.mark.slow),
    ("igconv-plus.mambair", "igconv_keys_MambaIR_IGConvPlus_DF2K.tsv"),
    pytest.param("igconv-plus.mambair-s8", "igconv_keys_MambaIR_IGConvPlus_DFL_S8.tsv", marks=pytest.mark.slow),
])
def test_official_key_table_loads_strictly_through_build_model(preset, table):
    sd = tsv_state_dict(key_table_file(table))
    method, name = preset.split(".")
    model = ab.build_model(method, "mambair" if name.startswith("mambair-s8") else name, preset=preset,
                           checkpoint={"params": sd})
    assert model.weights_loaded and model.upsample.max_s == (8 if name == "mambair-s8" else 4)
    back = model.official_state_dict()
    assert list(back) == list(sd) and all(torch.equal(back[k], v) for k, v in sd.items())


def scan_inputs(b=2, groups=4, per_group=3, n=5, length=37, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    d = groups * per_group
    return dict(u=torch.randn(b, d, length, generator=g, dtype=dtype),
                delta=torch.randn(b, d, length, generator=g, dtype=dtype),
                A=-torch.rand(d, n, generator=g, dtype=dtype) * 4,
                B=torch.randn(b, groups, n, length, generator=g, dtype=dtype),
                C=torch.randn(b, groups, n, length, generator=g, dtype=dtype),
                D=torch.randn(d, generator=g, dtype=dtype),
                delta_bias=torch.randn(d, generator=g, dtype=dtype))


def scan_by_scalars(u, delta, A, B, C, D, delta_bias):
    """The recurrence with Python scalars: one channel, one state entry, one step at a time (float64)."""
    b, d, length = u.shape
    n, per_group = A.shape[1], d // B.shape[1]
    y = torch.zeros(b, d, length, dtype=torch.float64)
    for bi in range(b):
        for di in range(d):
            state = [0.0] * n
            for t in range(length):
                x = float(delta[bi, di, t] + delta_bias[di])
                dt = math.log1p(math.exp(x)) if x < 20 else x
                acc = 0.0
                for k in range(n):
                    state[k] = math.exp(dt * float(A[di, k])) * state[k] + dt * float(B[bi, di // per_group, k, t]) * float(u[bi, di, t])
                    acc += state[k] * float(C[bi, di // per_group, k, t])
                y[bi, di, t] = acc + float(D[di]) * float(u[bi, di, t])
    return y


def test_reference_scan_equals_the_scalar_recurrence():
    args = scan_inputs(b=1, groups=2, per_group=2, n=3, length=9)
    ref = selective_scan_reference(**{k: v.float() for k, v in args.items()})
    torch.testing.assert_close(ref.double(), scan_by_scalars(**args), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length", [1, 16, 37])
def test_chunked_scan_equals_the_reference(length):
    """Chunks of 16: a single step, exactly one chunk, and a ragged last chunk (state carried across)."""
    args = {k: v.float() for k, v in scan_inputs(length=length).items()}
    torch.testing.assert_close(selective_scan_chunked(**args), selective_scan_reference(**args), rtol=1e-5, atol=1e-5)
    assert torch.equal(selective_scan(**args, backend="reference"), selective_scan_reference(**args))
    with pytest.raises(ab.UserError, match="backend"):
        selective_scan(**args, backend="nope")


@pytest.mark.cuda
def test_mamba_ssm_kernel_equals_the_reference_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    pytest.importorskip("mamba_ssm", reason="needs the mamba-ssm package (its CUDA selective-scan kernel)")
    args = {k: v.float().cuda() for k, v in scan_inputs(length=300, per_group=8, n=16).items()}
    got = selective_scan(**args, backend="mamba_ssm")
    ref = selective_scan_reference(**args)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    assert torch.equal(selective_scan(**args), got)  # 'auto' picks the kernel on CUDA


def mambair_reference(x, sd, cfg):
    """MambaIR from its definition; the four scans walk explicit pixel orders and write back per pixel."""
    embed, n = cfg["embed_dim"], cfg["d_state"]
    inner, rank = int(cfg["mlp_ratio"] * embed), math.ceil(embed / 16)
    _, _, H, W = x.shape

    def ln(t, name):
        return F.layer_norm(t, (t.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], 1e-5)

    def conv(t, name, groups=1):
        w = sd[name + ".weight"]
        return F.conv2d(t, w, sd[name + ".bias"], padding=w.shape[-1] // 2, groups=groups)

    orders = [[(i, j) for i in range(H) for j in range(W)],      # row-major
              [(i, j) for j in range(W) for i in range(H)]]      # column-major
    orders += [o[::-1] for o in orders]                          # and both reversed
    first = conv(x, "conv_first")
    tok = ln(first[0].permute(1, 2, 0), "patch_embed.norm")       # (H, W, C)
    for gi, depth in enumerate(cfg["depths"]):
        group_in = tok
        for bi in range(depth):
            p = f"layers.{gi}.residual_group.blocks.{bi}."
            a = p + "self_attention."
            t = ln(tok, p + "ln_1")
            xz = t @ sd[a + "in_proj.weight"].T
            xs, z = xz[..., :inner], xz[..., inner:]
            xs = F.silu(conv(xs.permute(2, 0, 1)[None], a + "conv2d", groups=inner))[0]  # (inner, H, W)
            y = torch.zeros(H, W, inner, dtype=x.dtype)
            for k, order in enumerate(orders):
                state = torch.zeros(inner, n, dtype=x.dtype)
                A = -torch.exp(sd[a + "A_logs"][k * inner:(k + 1) * inner])
                for (i, j) in order:
                    u = xs[:, i, j]
                    proj = sd[a + "x_proj_weight"][k] @ u
                    dt = F.softplus(sd[a + "dt_projs_weight"][k] @ proj[:rank] + sd[a + "dt_projs_bias"][k])
                    Bv, Cv = proj[rank:rank + n], proj[rank + n:]
                    state = torch.exp(dt[:, None] * A) * state + dt[:, None] * Bv[None] * u[:, None]
                    y[i, j] += state @ Cv + sd[a + "Ds"][k * inner:(k + 1) * inner] * u
            attn = (ln(y, a + "out_norm") * F.silu(z)) @ sd[a + "out_proj.weight"].T
            tok = tok * sd[p + "skip_scale"] + attn
            c = ln(tok, p + "ln_2").permute(2, 0, 1)[None]
            c = conv(F.gelu(conv(c, p + "conv_blk.cab.0")), p + "conv_blk.cab.2")
            w = torch.sigmoid(conv(F.relu(conv(c.mean((2, 3), keepdim=True), p + "conv_blk.cab.3.attention.1")),
                                   p + "conv_blk.cab.3.attention.3"))
            tok = tok * sd[p + "skip_scale2"] + (c * w)[0].permute(1, 2, 0)
        tok = conv(tok.permute(2, 0, 1)[None], f"layers.{gi}.conv")[0].permute(1, 2, 0) + group_in
    feat = ln(tok, "norm").permute(2, 0, 1)[None]
    return conv(feat, "conv_after_body") + first


@pytest.mark.parametrize("size,backend", [((4, 5), "reference"), ((5, 3), "chunked"), ((6, 7), "auto"),
                                          ((3, 4), "torch")])
def test_output_equals_slow_definition(size, backend):
    enc = build_encoder("mambair", scan_backend=backend, **TINY).eval()
    g = torch.Generator().manual_seed(5)
    sd = {k: torch.randn(v.shape, generator=g) * 0.3 + (1.0 if ("norm" in k or "ln_" in k) and k.endswith("weight")
                                                         else 0.0) for k, v in enc.state_dict().items()}
    load_encoder_state(enc, sd, "igconv")
    x = torch.rand(2, 3, *size, generator=g, dtype=torch.float64)
    with torch.no_grad():
        ours = enc.double()(x)
    sd64 = {k: v.double() for k, v in sd.items()}
    for i in range(2):  # the scan state is float32 (as mamba_ssm): compare at float32 accuracy
        torch.testing.assert_close(ours[i:i + 1], mambair_reference(x[i:i + 1], sd64, TINY), rtol=1e-4, atol=1e-4)


def test_light_is_the_same_network_at_its_released_size():
    with torch.device("meta"):
        light = build_encoder("mambair-light")
    assert light.out_channels == 60 and len(light.layers) == 4
    assert light.layers[0].residual_group.blocks[0].self_attention.d_inner == 90
    with pytest.raises(ab.UserError, match="at least 30"):
        build_encoder("mambair", embed_dim=12)
