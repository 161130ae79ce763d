"""Checkpoints that say what they are: method, encoder and preset read from a file's keys and shapes.

A user holding an official file should not have to know which method, encoder and preset it belongs to.
As spandrel does, we read the architecture from the state dict: the key names say the family (LIIF's
`encoder.*` + `imnet.*`, Meta-RDN's `P2W.meta_block`, IGConv's hyper-network head under each encoder's name,
RT4KSR's `hfb`, GSASR's `gs_embedding`; HAT's OCAB, ATD's token dictionary, MambaIR's `A_logs`, ...), the shapes
give the hyperparameters (widths, depths, heads, windows, expansions, RoPE, GSASR paper vs enhanced) and those
are matched against the registered presets' encoder arguments. Containers are taken off by
`checkpoints.unwrap`, the one unwrapping (with a memory-mapping reader here).

What no tensor shows (IGConv's `max_s`) cannot be detected: presets that differ only there are told apart by the
official file name, else the default is taken and `reason` says so. Only shapes are read, so detection works on
meta tensors and never builds a model; `build_model` (and `asr-bench weights verify`) then load the file
strictly, which checks every key.
"""
from __future__ import annotations

import inspect
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoints import CHECKPOINT_SUFFIXES, read_checkpoint, unwrap
from .errors import UserError

RT4KSR_CHANNELS = {48: 2, 108: 3}                      # 3 * (2 s)^2 output channels of the upsampler conv
IGCONV_HEADS = ("upsample", "UPNet", "tail", "to_rgb", "to_img")  # where each IGConv encoder names its head


@dataclass(frozen=True)
class Detection:
    """What a checkpoint is. `preset` is in the `method.tag` scheme (None: the method's default, e.g. an
    RT4KSR folder holding both scales); `options` are builder kwargs the file itself requires."""

    method: str
    encoder: str
    preset: str | None
    reason: str
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


class UnsupportedFamily(UserError):
    """A real architecture we recognise but do not implement yet (e.g. a LIIF-repo container of LTE)."""


# ---------------------------------------------------------------------------------------------- entry


def detect_checkpoint(checkpoint: Any) -> Detection:
    """Method, encoder and preset of a file, a folder, a loaded dict or GSASR's {'encoder', 'decoder'} pair.

    Raises a one-line `UserError` naming the candidates and what was missing when the file is ambiguous
    or unknown, and `UnsupportedFamily` for a recognised architecture we do not implement.
    """
    parts, meta, source = read_parts(checkpoint)
    return detect_parts(parts, meta, source)


def detect_parts(parts: Mapping[str, Mapping[str, torch.Tensor]], meta: Mapping[str, Any], source: str) -> Detection:
    """Detection on unwrapped state dicts: {"model": sd} for one file, {"encoder", "decoder"} for GSASR, one part
    per file stem for a folder (the layout of `checkpoints.unwrap`'s `Weights`)."""
    if {"encoder", "decoder"} <= set(parts):
        return _detect_gsasr(parts["encoder"], parts["decoder"], source)
    if len(parts) == 1:
        return _detect_state(next(iter(parts.values())), meta, source)
    found = []
    for name, sd in sorted(parts.items()):
        try:
            found.append((name, _detect_state(sd, {}, f"{source}/{name}")))
        except UserError as exc:
            found.append((name, exc))
    detections = [d for _, d in found if isinstance(d, Detection)]
    if len(detections) == len(found) and all(d.method == "rt4ksr" for d in detections):
        scales = sorted(d.hyperparameters["scale"] for d in detections)
        if len(set(scales)) == len(scales):
            return Detection("rt4ksr", "none", None, f"{source}: RT4KSR files for scales {scales}",
                             {"scales": tuple(scales)}, dict(detections[0].options))
    listing = "; ".join(f"{name} = {d.preset or d.method}" if isinstance(d, Detection) else f"{name} = unknown"
                        for name, d in found)
    raise UserError(f"{source} holds {len(found)} checkpoints ({listing}); name one file instead.")


def read_parts(checkpoint: Any) -> tuple[Mapping[str, Mapping[str, torch.Tensor]], Mapping[str, Any], str]:
    """(parts, container facts, source) of a path, folder, pair or loaded dict (`checkpoints.unwrap`, the one
    unwrapping, with files memory-mapped)."""
    weights = unwrap(checkpoint, read=read_shapes)
    return weights.parts, weights.meta, weights.source


def read_shapes(path: Path) -> Any:
    """The checkpoint, memory-mapped where the format allows: detection reads shapes, so a 256 MB file costs
    no 256 MB read (the methods' loader reads it properly afterwards)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - legacy (non-zip) files and pickled optimiser objects: the full reader
        return read_checkpoint(path)


# ------------------------------------------------------------------------------------------- encoders


@dataclass(frozen=True)
class EncoderRead:
    name: str                       # our encoder name
    hyper: dict[str, Any]           # what the shapes say: constructor arguments (EDSR/RDN: their own sizes)
    text: str                       # for the reason line


# Families we recognise but do not implement: a key fragment only they have -> the name the error gives.
UNSUPPORTED: tuple[tuple[str, str], ...] = ()   # (key fragment, family) of recognised families not built yet


def _count(keys: Iterable[str], pattern: str) -> int:
    """How many distinct indices `pattern` (a regex with one group) matches."""
    regex = re.compile(pattern)
    return len({m.group(1) for k in keys if (m := regex.match(k))})


def _dim(sd: Mapping[str, torch.Tensor], key: str, axis: int = 0) -> int | None:
    """One size of one tensor, None where the key is absent."""
    return int(sd[key].shape[axis]) if key in sd else None


def _side(sd: Mapping[str, torch.Tensor], index: str, table: str) -> int | None:
    """A window side from a relative-position index (side^2 rows) or else its bias table ((2 side - 1)^2 rows)."""
    if index in sd:
        return math.isqrt(int(sd[index].shape[0]))
    return (math.isqrt(int(sd[table].shape[0])) + 1) // 2 if table in sd else None


def _body(sd: Mapping[str, torch.Tensor], blocks: str = "blocks") -> tuple[int, tuple[int, ...]]:
    """(width, blocks per group) of the SwinIR-style body the transformer and Mamba encoders share: conv_first,
    then `layers.N.residual_group.<blocks>.M`."""
    keys = set(sd)
    n = _count(keys, r"layers\.(\d+)\.residual_group\.")
    depths = tuple(_count(keys, rf"layers\.{i}\.residual_group\.{blocks}\.(\d+)\.") for i in range(n))
    return int(sd["conv_first.weight"].shape[0]), depths


def _size(family: str, embed: int, depths: tuple[int, ...], unit: str = "blocks") -> str:
    return f"{family} {embed} dims, {len(depths)} groups x {depths[0] if depths else 0} {unit}"


def _heads(sd: Mapping[str, torch.Tensor], groups: int, *tables: str) -> tuple[int, ...]:
    """Attention heads per group: dim 1 of the first block's bias table (or RoPE frequencies) in each group."""
    return tuple(next((_dim(sd, f"layers.{i}.residual_group.{t}", 1) for t in tables
                       if f"layers.{i}.residual_group.{t}" in sd), None) for i in range(groups))


def read_encoder(sd: Mapping[str, torch.Tensor], what: str) -> EncoderRead:
    """Which of our encoders these (prefix-free) keys are, with the hyperparameters their shapes give."""
    from .encoders import list_encoders

    keys = set(sd)

    def has(fragment: str) -> bool:
        return any(fragment in k for k in keys)

    for fragment, family in UNSUPPORTED:
        if has(fragment):
            raise UnsupportedFamily(f"{what}: unsupported family {family} (recognised from its keys, not implemented "
                                    f"yet); supported encoders: {', '.join(list_encoders())}.")
    families = (("HAT", "relative_position_index_OCA" in keys or has(".overlap_attn."), _read_hat),
                ("ATD", has(".attn_atd."), _read_atd),
                ("MambaIR", has(".self_attention.A_logs"), _read_mambair),
                ("SRFormer", has(".attn.aligned_relative_position_index"), _read_srformer),
                ("HiT-SRF", has(".correlation.spatial_linear."), _read_hit_srf),
                ("PLKSR", has(".channe_mixer."), _read_plksr),
                ("SMFANet", "to_feat.weight" in keys and has(".smfa."), _read_smfanet),
                ("RCAN", "head.0.weight" in keys and "body.0.body.0.body.0.weight" in keys, _read_rcan))
    for family, present, reader in families:
        if present:
            try:
                return reader(sd)
            except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError):
                raise UserError(f"{what} has {family} keys but lacks the tensors its sizes are read from (first "
                                f"layers, conv_first/head); is the file complete?") from None
    if "SFENet1.weight" in keys:
        return _read_rdn(sd)
    if "conv_first.weight" in keys and "body.0.conv1.weight" in keys:
        return _read_edsr(sd, sd["conv_first.weight"].shape[0], _count(keys, r"body\.(\d+)\.conv1\.weight$"), "BasicSR")
    if "head.0.weight" in keys and "body.0.body.0.weight" in keys:
        return _read_edsr(sd, sd["head.0.weight"].shape[0], _count(keys, r"body\.(\d+)\.body\.0\.weight$"), "LIIF")
    if "conv_first.weight" in keys and "patch_embed.norm.weight" in keys \
            and "layers.0.residual_group.blocks.0.attn.qkv.weight" in keys:
        return _read_swinir(sd)
    top = sorted({k.split(".")[0] for k in keys})
    raise UserError(f"{what}: no known encoder in its keys (top-level names: {', '.join(top[:10])}); expected EDSR "
                    "(conv_first/body.N.conv1 or head.0/body.N.body.0), RDN (SFENet1, RDBs), SwinIR/HAT/SRFormer/ATD/"
                    "MambaIR (conv_first, patch_embed, layers.N.residual_group), RCAN (head.0, body.N.body.M.body), "
                    "PLKSR (feats.N.channe_mixer) or SMFANet (to_feat, feats.N.smfa).")


def _read_edsr(sd: Mapping[str, torch.Tensor], feats: int, blocks: int, naming: str) -> EncoderRead:
    names = {(64, 16): "edsr-baseline", (256, 32): "edsr"}
    if (feats, blocks) not in names:
        raise UserError(f"EDSR with {feats} channels x {blocks} blocks matches no encoder "
                        "(edsr-baseline is 64 x 16, edsr 256 x 32).")
    return EncoderRead(names[feats, blocks], {"n_feats": feats, "n_blocks": blocks},
                       f"EDSR {feats} ch x {blocks} blocks ({naming} naming)")


def _read_rdn(sd: Mapping[str, torch.Tensor]) -> EncoderRead:
    from .encoders.rdn import CONFIGS

    keys = set(sd)
    d = _count(keys, r"RDBs\.(\d+)\.LFF\.weight$")
    c = _count(keys, r"RDBs\.0\.convs\.(\d+)\.conv\.0\.weight$")
    g = sd["RDBs.0.convs.0.conv.0.weight"].shape[0] if "RDBs.0.convs.0.conv.0.weight" in sd else 0
    config = next((name for name, dcg in CONFIGS.items() if dcg == (d, c, g)), None)
    if config is None:
        raise UserError(f"RDN with D={d} C={c} G={g} matches no configuration "
                        f"({', '.join(f'{n}: D={x} C={y} G={z}' for n, (x, y, z) in CONFIGS.items())}).")
    return EncoderRead("rdn", {"D": d, "C": c, "G": g, "G0": sd["SFENet1.weight"].shape[0], "config": config},
                       f"RDN config {config} (D{d} C{c} G{g})")


def _read_swinir(sd: Mapping[str, torch.Tensor]) -> EncoderRead:
    embed, depths = _body(sd)
    hyper: dict[str, Any] = {
        "embed_dim": embed, "depths": depths,
        "num_heads": _heads(sd, len(depths), "blocks.0.attn.relative_position_bias_table"),
        "window_size": _side(sd, "", "layers.0.residual_group.blocks.0.attn.relative_position_bias_table"),
        "mlp_ratio": sd["layers.0.residual_group.blocks.0.mlp.fc1.weight"].shape[0] / embed,
        "out_features": _dim(sd, "conv_before_upsample.0.weight"),
    }
    return EncoderRead("swinir", hyper, f"SwinIR {embed} dims, depths {list(depths)}, window {hyper['window_size']}")


def _read_hat(sd: Mapping[str, torch.Tensor]) -> EncoderRead:
    """HAT / HAT-L / GSASR's RoPE HAT: the window from the self-attention index, the overlap window from the OCA
    index, channel-attention ratios from the CAB convs, RoPE from `rope_freqs`."""
    embed, depths = _body(sd)
    block = "layers.0.residual_group.blocks.0."
    rope = any(k.endswith("rope_freqs") for k in sd)
    window = _side(sd, "relative_position_index_SA", block + "attn.relative_position_bias_table")
    oca_table = "layers.0.residual_group.overlap_attn.relative_position_bias_table"   # (window + overlap - 1)^2 rows
    overlap = (math.isqrt(_dim(sd, "relative_position_index_OCA", 1)) if "relative_position_index_OCA" in sd
               else math.isqrt(_dim(sd, oca_table)) - window + 1 if oca_table in sd else None)
    heads = _heads(sd, len(depths), "blocks.0.attn.relative_position_bias_table", "blocks.0.attn.rope_freqs")
    hyper = {
        "embed_dim": embed, "depths": depths, "num_heads": heads, "window_size": window,
        "compress_ratio": embed // _dim(sd, block + "conv_block.cab.0.weight"),
        "squeeze_factor": embed // _dim(sd, block + "conv_block.cab.3.attention.1.weight"),
        "overlap_ratio": None if overlap is None else (overlap - window) / window,
        "mlp_ratio": _dim(sd, block + "mlp.fc1.weight") / embed,
        "rope": rope, "out_features": _dim(sd, "conv_before_upsample.0.weight"),
    }
    return EncoderRead("hat", hyper, _size("HAT", embed, depths) + f", window {window}"
                       + (", RoPE" if rope else "") + (f", {hyper['out_features']}-ch head" if hyper["out_features"]
                                                       else ""))


def _read_atd(sd: Mapping[str, torch.Tensor]) -> EncoderRead:
    embed, depths = _body(sd, "layers")
    layer = "layers.0.residual_group.layers.0."
    hyper = {
        "embed_dim": embed, "depths": depths,
        "num_heads": _heads(sd, len(depths), "layers.0.attn_win.relative_position_bias_table"),
        "window_size": _side(sd, "relative_position_index_SA", layer + "attn_win.relative_position_bias_table"),
        "num_tokens": _dim(sd, "layers.0.residual_group.td"),
        "reducted_dim": _dim(sd, layer + "attn_atd.wq.weight"),
        "convffn_kernel_size": _dim(sd, layer + "convffn.dwconv.depthwise_conv.0.weight", -1),
        "mlp_ratio": _dim(sd, layer + "convffn.fc1.weight") / embed,
    }
    return EncoderRead("atd", hyper, _size("ATD", embed, depths, "layers")
                       + f", window {hyper['window_size']}, {hyper['num_tokens']} tokens")


def _read_srformer(sd: Mapping[str, torch.Tensor]) -> EncoderRead:
    embed, depths = _body(sd)
    block = "layers.0.residual_group.blocks.0."
    hyper = {
        "embed_dim": embed, "depths": depths,
        "num_heads": _heads(sd, len(depths), "blocks.0.attn.relative_position_bias_table"),
        "window_size": math.isqrt(_dim(sd, block + "attn.aligned_relative_position_index")),
        "mlp_ratio": _dim(sd, block + "mlp.fc1.weight") / embed,
    }
    return EncoderRead("srformer", hyper, _size("SRFormer", embed, depths)
                       + f", window {hyper['window_size']}")


def _read_hit_srf(sd: Mapping[str, torch.Tensor]) -> EncoderRead:
    """Heads are the rows of each group's position-bias MLP output; the window hierarchy shows only as the
    spatial_linear widths (cells per base window), which every preset's hier_win_ratios must reproduce."""
    embed, depths = _body(sd)
    hyper = {"embed_dim": embed, "depths": depths,
             "num_heads": tuple(_dim(sd, f"layers.{i}.residual_group.blocks.0.correlation.pos.pos3.2.weight")
                                for i in range(len(depths))),
             "mlp_ratio": _dim(sd, "layers.0.residual_group.blocks.0.mlp.fc1.weight") / embed}
    return EncoderRead("hit-srf", hyper, _size("HiT-SRF", embed, depths))


def _read_mambair(sd: Mapping[str, torch.Tensor]) -> EncoderRead:
    """MambaIR or MambaIR-light: the same network, told apart by size (width, depths, expansion)."""
    embed, depths = _body(sd)
    ssm = "layers.0.residual_group.blocks.0.self_attention."
    hyper = {"embed_dim": embed, "depths": depths, "d_state": _dim(sd, ssm + "A_logs", 1),
             "mlp_ratio": _dim(sd, ssm + "in_proj.weight") / (2 * embed)}   # in_proj makes x and z, expand x dim each
    name = next((n for n in ("mambair", "mambair-light")
                 if all(_same(encoder_arguments(n, {}).get(k), v) for k, v in hyper.items())), "mambair")
    return EncoderRead(name, hyper, _size("MambaIR", embed, depths)
                       + f", expansion {hyper['mlp_ratio']:g}")


def _read_rcan(sd: Mapping[str, torch.Tensor]) -> EncoderRead:
    keys = set(sd)
    feats = _dim(sd, "head.0.weight")
    hyper = {"n_feats": feats, "n_resgroups": _count(keys, r"body\.(\d+)\.body\.0\.body\.0\.weight$"),
             "n_resblocks": _count(keys, r"body\.0\.body\.(\d+)\.body\.0\.weight$"),
             "reduction": feats // _dim(sd, "body.0.body.0.body.3.conv_du.0.weight")}
    return EncoderRead("rcan", hyper, f"RCAN {feats} ch, {hyper['n_resgroups']} groups x {hyper['n_resblocks']} blocks")


def _read_plksr(sd: Mapping[str, torch.Tensor]) -> EncoderRead:
    from .encoders.plksr import CCM_KERNELS

    keys = set(sd)
    dim = _dim(sd, "feats.0.weight")
    kernels = (_dim(sd, "feats.1.channe_mixer.0.weight", -1), _dim(sd, "feats.1.channe_mixer.2.weight", -1))
    hyper = {"dim": dim, "n_blocks": _count(keys, r"feats\.(\d+)\.lk\.conv\.weight$"),
             "kernel_size": _dim(sd, "feats.1.lk.conv.weight", -1),
             "split_ratio": _dim(sd, "feats.1.lk.conv.weight") / dim,
             "ccm_type": next((k for k, v in CCM_KERNELS.items() if v == kernels), f"unknown {kernels}"),
             "use_ea": "feats.1.attn.f.0.weight" in keys}
    return EncoderRead("plksr", hyper, f"PLKSR {dim} ch, {hyper['n_blocks']} blocks, {hyper['kernel_size']}x"
                       f"{hyper['kernel_size']} kernel, {hyper['ccm_type']}")


def _read_smfanet(sd: Mapping[str, torch.Tensor]) -> EncoderRead:
    dim = _dim(sd, "to_feat.weight")
    hyper = {"dim": dim, "n_blocks": _count(sd, r"feats\.(\d+)\.smfa\.alpha$"),
             "ffn_scale": _dim(sd, "feats.0.pcfn.conv_0.weight") / dim}
    return EncoderRead("smfanet", hyper, f"SMFANet {dim} ch, {hyper['n_blocks']} blocks")


def encoder_arguments(name: str, declared: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments a preset's encoder is built with: the class defaults, under the named builder's
    own (HAT-L's depths, MambaIR-light's sizes), under the preset's."""
    from . import encoders as enc
    from .encoders.hat import hat_kwargs
    from .encoders.mambair import LIGHT

    classes = {"swinir": enc.SwinIR, "hat": enc.HAT, "atd": enc.ATD, "srformer": enc.SRFormer, "rcan": enc.RCAN,
               "plksr": enc.PLKSR, "smfanet": enc.SMFANet, "mambair": enc.MambaIR, "mambair-light": enc.MambaIR,
               "hit-srf": enc.HiTSRF}
    given = (hat_kwargs(**declared) if name == "hat" else {**LIGHT, **declared} if name == "mambair-light"
             else dict(declared))
    params = inspect.signature(classes[name]).parameters
    return {**{n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}, **given}


def encoder_matches(read: EncoderRead, preset: Any) -> bool:
    """Whether a preset builds exactly this encoder (its declared args over the encoder's defaults)."""
    if preset.encoder != read.name:
        return False
    declared = dict(getattr(preset, "encoder_kwargs", {}) or {})
    if read.name == "rdn":
        return declared.get("config", "B") == read.hyper["config"]
    if read.name in ("edsr", "edsr-baseline"):       # the name is the size
        return True
    wanted = encoder_arguments(read.name, declared)
    return all(_same(wanted.get(k), v) for k, v in read.hyper.items())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return a is not None and b is not None and tuple(a) == tuple(b)
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(float(a) - float(b)) < 1e-6
    return a == b


# ----------------------------------------------------------------------------------------- methods


def _detect_state(sd: Mapping[str, torch.Tensor], facts: Mapping[str, Any], where: str) -> Detection:
    keys = set(sd)
    container = facts.get("container", "a bare state dict") + (" with 'module.' prefixes" if "prefix" in facts else "")
    if "gs_embedding" in keys:
        raise UserError(f"{where} is a GSASR decoder alone; GSASR ships two files: pass the folder holding "
                        "encoder.pth and decoder.pth, or checkpoint={'encoder': ..., 'decoder': ...}.")
    if "P2W.meta_block.0.weight" in keys:
        enc = read_encoder({k: v for k, v in sd.items() if not k.startswith(("P2W.", "sub_mean.", "add_mean."))},
                           where)
        return _choose("metasr", enc, where, f"{container}: Meta-RDN (P2W.meta_block + learned mean shift), {enc.text}",
                       lambda p: (p.method_kwargs or {}).get("variant") == "official")
    if any(k.startswith("encoder.") for k in keys) and any(k.startswith("imnet.") for k in keys):
        return _detect_liif_repo(sd, facts, where, container)
    if {"gamma", "head.0.weight", "upsample.0.weight"} <= keys and any(k.startswith("hfb.") for k in keys):
        return _detect_rt4ksr(sd, where, container)
    head = next((h for h in IGCONV_HEADS if f"{h}.query_kernel.0.weight" in keys), None)
    if head is not None:
        return _detect_igconv(sd, head, where, container)
    try:
        enc = read_encoder(sd, where)
    except UnsupportedFamily:
        raise
    except UserError:
        top = sorted({k.split(".")[0] for k in keys})
        raise UserError(f"{where}: not a checkpoint of a supported method (top-level names: {', '.join(top[:10])}); "
                        "candidates: liif, metasr (encoder.* + imnet.*), igconv/igconv-plus (a query_kernel head: "
                        f"{'/'.join(IGCONV_HEADS)}), "
                        "rt4ksr (hfb.*, upsample.0), gsasr (an encoder.pth + decoder.pth pair).") from None
    raise UserError(f"{where} has {enc.text} encoder keys but no upsampler of a supported method (LIIF/Meta-SR "
                    "imnet.*, IGConv query_kernel, RT4KSR hfb.*); if it is a GSASR encoder.pth, pass the folder "
                    "holding encoder.pth and decoder.pth, or {'encoder': ..., 'decoder': ...}.")


def _detect_liif_repo(sd: Mapping[str, torch.Tensor], facts: Mapping[str, Any], where: str, container: str) -> Detection:
    inner = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
    enc = read_encoder({k: v for k, v in inner.items() if not k.startswith(("sub_mean.", "add_mean."))}, where)
    first = sd.get("imnet.layers.0.weight")
    linear = _count(sd, r"imnet\.layers\.(\d+)\.weight$")
    by_keys = "metasr" if first is not None and first.shape[1] == 3 and linear == 2 else "liif"
    method = facts.get("name") or by_keys
    if method not in ("liif", "metasr"):
        raise UnsupportedFamily(f"{where}: unsupported family {method} (a LIIF-repo container of a '{method}' model); "
                                "supported from the LIIF repo: liif, metasr.")
    if method != by_keys:
        raise UserError(f"{where} says it is a '{method}' model but its MLP ({linear} layers, input "
                        f"{None if first is None else first.shape[1]}) is {by_keys}'s; the file is inconsistent.")
    named = (facts.get("args") or {}).get("encoder_spec", {}).get("name")
    if named is not None and named != enc.name:
        raise UserError(f"{where} names encoder '{named}' but its encoder.* keys are {enc.text}; the file is inconsistent.")
    mlp = f"MLP {first.shape[1] if first is not None else '?'} in, {linear} layers"
    return _choose(method, enc, where, f"{container}: LIIF-repo {method}, encoder.* = {enc.text}, {mlp}",
                   lambda p: (p.method_kwargs or {}).get("variant", "liif") == "liif")


def _detect_rt4ksr(sd: Mapping[str, torch.Tensor], where: str, container: str) -> Detection:
    channels = sd["upsample.0.weight"].shape[0]
    if channels not in RT4KSR_CHANNELS:
        raise UserError(f"{where}: RT4KSR upsampler has {channels} channels, which is neither x2 (48) nor x3 (108).")
    scale = RT4KSR_CHANNELS[channels]
    rep = any(k.endswith("rep_conv.weight") for k in sd)
    options = {"reparameterize": True} if rep else {}
    form = "re-parameterised" if rep else "training"
    detection = _choose("rt4ksr", EncoderRead("none", {}, ""), where,
                        f"{container}: RT4KSR ({form} form), upsampler {channels} ch = x{scale}",
                        lambda p: tuple((p.method_kwargs or {}).get("scales", ())) == (scale,))
    return Detection(detection.method, "none", detection.preset, detection.reason, {"scale": scale}, options)


def _head_key(preset: Any) -> str:
    return (preset.method_kwargs or {}).get("head_key", "upsample")


def _detect_igconv(sd: Mapping[str, torch.Tensor], head: str, where: str, container: str) -> Detection:
    plus = any(k.startswith("skip.") for k in sd)
    method = "igconv-plus" if plus else "igconv"
    mean = any(k.startswith(("sub_mean.", "add_mean.")) for k in sd)      # RCAN's learnable mean shifts
    rest = {k: v for k, v in sd.items() if not k.startswith((f"{head}.", "skip.", "sub_mean.", "add_mean."))}
    enc = read_encoder(rest, f"{where} ({method} head '{head}.*')")
    heads = sorted({_head_key(p) for _, p in method_presets(method) if encoder_matches(enc, p)})
    if heads and head not in heads:
        raise UserError(f"{where}: an {method} head named '{head}.*' on {enc.text}; the official {enc.name} models "
                        f"name it '{heads[0]}.*', so this file matches no preset.")
    reason = (f"{container}: {method} ({'with' if plus else 'no'} IGSample skip, head '{head}.*'), {enc.text}"
              + (", learnable mean shifts" if mean else ""))
    return _choose(method, enc, where, reason,
                   lambda p: _head_key(p) == head and bool((p.method_kwargs or {}).get("mean_convs")) == mean)


def _detect_gsasr(enc_sd: Mapping[str, torch.Tensor], dec_sd: Mapping[str, torch.Tensor], where: str) -> Detection:
    if "gs_embedding" not in dec_sd:
        raise UserError(f"{where}: the decoder part has no 'gs_embedding'; it is not a GSASR Fea2GS decoder.")
    enc = read_encoder(enc_sd, f"{where} (encoder part)")
    seeds, channel = dec_sd["gs_embedding"].shape
    dec = {
        "channel": channel, "window_size": round(seeds ** 0.5),
        "rope": any(k.endswith("rope_freqs") for k in dec_sd),
        "num_crossattn_blocks": _count(dec_sd, r"window_crossattn_blocks\.(\d+)\."),
        "num_crossattn_layers": _count(dec_sd, r"window_crossattn_blocks\.0\.blocks\.(\d+)\."),
        "num_selfattn_blocks": _count(dec_sd, r"gs_selfattn_blocks\.(\d+)\."),
    }
    family = "enhanced" if dec["rope"] else "paper"

    def decoder_matches(preset: Any) -> bool:
        declared = (preset.method_kwargs or {}).get("decoder", {})
        return all(dec[k] == v for k, v in declared.items() if k in dec)

    found = _choose("gsasr", enc, where, f"{where}: GSASR {family} decoder ({channel} ch, window "
                    f"{dec['window_size']}, {dec['num_crossattn_blocks']} cross-attention blocks), {enc.text}",
                    decoder_matches)
    return Detection(found.method, found.encoder, found.preset, found.reason, {**enc.hyper, "decoder": dec})


# --------------------------------------------------------------------------------------- preset choice


# Method arguments that change no tensor shape, so no file shows them: what each one changes.
SHAPELESS = {"max_s": "the hyper-network's largest scale code; r = 2 / min(s, max_s), so outputs differ only "
                      "above x4"}


def _choose(method: str, enc: EncoderRead, where: str, reason: str, extra=lambda preset: True) -> Detection:
    """The one registered preset of `method` that builds this encoder and passes `extra`; presets that differ only
    in `SHAPELESS` arguments are told apart by the official file name, else the default one is taken and the
    reason says so."""
    presets = method_presets(method)
    fits = [(name, p) for name, p in presets if (enc.name == "none" or encoder_matches(enc, p)) and extra(p)]
    if len(fits) > 1 and _shape_twins([p for _, p in fits]):
        name, note = _pick_twin(fits, where, reason)
        return Detection(method, enc.name, name, f"{reason}; {note}", dict(enc.hyper))
    if len(fits) == 1:
        name, preset = fits[0]
        fixed = [f"{k} {v}" for k, v in (preset.method_kwargs or {}).items() if k in SHAPELESS]
        note = f"; {', '.join(fixed)} from the preset (no tensor shows it)" if fixed else ""
        return Detection(method, enc.name, name, reason + note, dict(enc.hyper))
    known = ", ".join(name for name, _ in presets) or "(none)"
    if not fits:
        raise UserError(f"{where} is {reason}, but no {method} preset builds it (presets: {known}); "
                        "the file may be a variant we do not ship.")
    raise UserError(f"{where} is {reason} and fits several presets ({', '.join(n for n, _ in fits)}); "
                    "pass preset= to choose.")


def _shape_twins(presets: list[Any]) -> bool:
    """Whether these presets build the same tensors: same encoder and arguments, method arguments equal but for
    `SHAPELESS` ones."""
    def shape(p: Any) -> tuple:
        rest = {k: v for k, v in (p.method_kwargs or {}).items() if k not in SHAPELESS}
        return p.encoder, repr(sorted(dict(p.encoder_kwargs or {}).items())), repr(sorted(rest.items()))

    return len({shape(p) for p in presets}) == 1


def _pick_twin(fits: list[tuple[str, Any]], where: str, reason: str) -> tuple[str, str]:
    """(preset, note) among presets whose files have the same keys and shapes: the one whose official file has this
    file's name, else the one without a SHAPELESS override; one line naming both otherwise."""
    def differs(p: Any) -> str:
        return ", ".join(f"{k} {v}" for k, v in (p.method_kwargs or {}).items() if k in SHAPELESS) or "defaults"

    what = "; ".join(f"{k}: {text}" for k, text in SHAPELESS.items())
    file = Path(where).name
    named = [n for n, p in fits if any(wf.filename == file for wf in p.weights)]
    if len(named) == 1:
        others = ", ".join(f"{n} ({differs(p)})" for n, p in fits if n != named[0])
        return named[0], (f"the keys and shapes are also those of {others}, which no tensor tells apart ({what}); "
                          f"the file name {file} is the official file of {named[0]}")
    defaults = [n for n, p in fits if not SHAPELESS.keys() & set(p.method_kwargs or {})]
    if len(defaults) != 1:
        raise UserError(f"{where} is {reason} and fits {', '.join(f'{n} ({differs(p)})' for n, p in fits)} equally: "
                        f"they differ only where no tensor shows ({what}); pass preset: to choose.")
    default = defaults[0]
    others = [(n, p) for n, p in fits if n != default]
    use = " or ".join(f"preset: {n}" + (f" for {p.weights[0].filename}" if p.weights else "") for n, p in others)
    return default, (f"the same keys and shapes fit {', '.join(f'{n} ({differs(p)})' for n, p in others)}, which no "
                     f"tensor tells apart ({what}); taken as the default {default}: pass {use}")


def method_presets(method: str) -> list[tuple[str, Any]]:
    """(`method.tag` name, preset) of a registered method: the new-scheme names whatever the registry's keys."""
    from .registry import get_method

    spec = get_method(method)
    return [(preset_name(spec.name, key, p), p) for key, p in spec.presets.items()]


def preset_name(method: str, key: str, preset: Any) -> str:
    """`method.tag`: presets named `x2` or `rdn-paper` (the old schemes) get the method in front."""
    name = getattr(preset, "name", key) or key
    return name if name.startswith(f"{method}.") else f"{method}.{name}"


def preset_key(spec: Any, name: str | None) -> str | None:
    """The key under which `spec.presets` holds the preset called `name` in the `method.tag` scheme."""
    if name is None or name in spec.presets:
        return name
    for key, preset in spec.presets.items():
        if preset_name(spec.name, key, preset) == name:
            return key
    return name


def resolve(checkpoint: Any, encoder: str | None, preset: str | None, kwargs: Mapping[str, Any]
            ) -> tuple[str, str | None, str | None, dict[str, Any]]:
    """build_model's hook when no method is given: (method, encoder, preset key, kwargs) from the file."""
    from .registry import get_method

    if checkpoint is None:
        raise UserError("build_model needs a method name or a checkpoint to detect it from; "
                        "e.g. build_model('liif', 'edsr-baseline') or build_model(checkpoint='file.pth').")
    found = detect_checkpoint(checkpoint)
    spec = get_method(found.method)
    return (found.method, encoder or (found.encoder if found.encoder in spec.encoders else None),
            preset or preset_key(spec, found.preset), {**found.options, **kwargs})
