"""Official key names of each encoder in each checkpoint naming ("scheme"), and the strict loader.

Our modules use one canonical naming (BasicSR's for EDSR, the common RDN names, the official SwinIR names).
Each encoder's spec (`EncoderSpec.schemes`, beside its network) lists its schemes; a scheme maps every canonical key to its official name, and may add *extra* official keys that the official
model registers but never uses (LIIF's EDSR `sub_mean`/`add_mean` MeanShift convs): a strict load in that scheme
requires them with the right shapes and then drops them; `export_encoder_state` writes them with the official
constant values so that a state dict round-trips.

Schemes:
- EDSR: `liif` (head.0, body.i.body.0/2, body.<n>, sub_mean/add_mean) and `basicsr` = `igconv` = `gsasr`
  (conv_first, body.i.conv1/2, conv_after_body).
- RDN: `liif` = `metasr` = `basicsr` = `igconv` = `gsasr` (SFENet1/2, RDBs.d.convs.c.conv.0, LFF, GFF.0/1). For
  Meta-RDN the `sub_mean`/`add_mean` convs (learned, applied at 0..255) are input/output normalisation, so they
  belong to the Meta-SR method, not to the encoder.
- SwinIR: `swinir` = `basicsr` = `igconv` = `gsasr` (official names, including the persistent
  `relative_position_index` and `attn_mask` buffers; `conv_before_upsample.0` when built with `out_features`).
- HAT: `hat` = `basicsr` = `igconv` = `gsasr` (official names, including the persistent
  `relative_position_index_SA` / `_OCA` buffers and, with RoPE, `rope_t_x` / `rope_t_y`).
- RCAN, PLKSR, SMFANet: their own official names = `igconv` (RCAN's `sub_mean` / `add_mean` belong to the method).
- SRFormer: `srformer` = `igconv` (official names, with the `aligned_relative_position_index` and `attn_mask`
  buffers).
- ATD: `atd` = `igconv` (official names; the one buffer is the top-level `relative_position_index_SA`).
- MambaIR (and MambaIR-light): `mambair` = `igconv` (official names, no buffers).
- HiT-SRF: `hit-srf` = `igconv` (official names, no buffers).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..checkpoints import add_prefix, check_keys_and_shapes, load_strict, split_prefix
from ..errors import UnknownName, UserError
from .catalogue import spec_of
from .spec import Scheme


def schemes_for(encoder: nn.Module) -> list[str]:
    """The checkpoint namings this encoder can load."""
    return sorted(spec_of(encoder).schemes)


def _scheme(encoder: nn.Module, scheme: str) -> Scheme:
    table = spec_of(encoder).schemes
    if scheme not in table:
        raise UnknownName(f"checkpoint naming for {type(encoder).__name__}", scheme, table)
    return table[scheme]


def encoder_keys(encoder: nn.Module, scheme: str) -> list[str]:
    """Every official key (parameters, buffers and unused extras) of this encoder in `scheme`, in file order."""
    names, extras, extras_first = _scheme(encoder, scheme)
    own = list(names(encoder).values())
    extra = list(extras(encoder))
    return extra + own if extras_first else own + extra


def export_encoder_state(encoder: nn.Module, scheme: str) -> dict[str, torch.Tensor]:
    """The encoder's state dict under its official names in `scheme` (what the official code would save)."""
    names, extras, extras_first = _scheme(encoder, scheme)
    own_sd = encoder.state_dict()
    own = {official: own_sd[canonical].detach().clone() for canonical, official in names(encoder).items()}
    extra = extras(encoder)
    return {**extra, **own} if extras_first else {**own, **extra}


def encoder_state_from_official(encoder: nn.Module, state_dict: Mapping[str, torch.Tensor],
                                scheme: str) -> dict[str, torch.Tensor]:
    """An official encoder state dict in our canonical names, after checking it fits exactly.

    Every official key must be present with its shape (the unused extras of the scheme included, then dropped);
    otherwise a one-line `UserError` names the missing, unexpected and misshaped keys.
    """
    names, extras, _ = _scheme(encoder, scheme)
    mapping = names(encoder)
    wanted = {official: tuple(t.shape) for official, t in _official_tensors(encoder, mapping, extras(encoder)).items()}
    check_keys_and_shapes(wanted, state_dict, f"{type(encoder).__name__} state dict ({scheme} naming)",
                          "Check the encoder name, its options (e.g. config, out_features) and the scheme.")
    return {canonical: state_dict[official] for canonical, official in mapping.items()}


def load_encoder_state(encoder: nn.Module, state_dict: Mapping[str, torch.Tensor], scheme: str) -> None:
    """Load an official encoder state dict strictly: every official key consumed, every parameter filled."""
    load_strict(encoder, encoder_state_from_official(encoder, state_dict, scheme),
                f"{type(encoder).__name__} state dict ({scheme} naming)")


def _official_tensors(encoder: nn.Module, mapping: Mapping[str, str],
                  extras: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    own_sd = encoder.state_dict()
    return {**{official: own_sd[canonical] for canonical, official in mapping.items()}, **extras}


def model_state_from_official(model: nn.Module, sd: Mapping[str, torch.Tensor], scheme: str,
                              parts: Mapping[str, str], encoder_prefix: str = "encoder.",
                              what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A whole model's state dict (our names) from an official one.

    Each official prefix in `parts` is renamed to ours (e.g. {'P2W.meta_block.': 'imnet.layers.'}); what is left
    under `encoder_prefix` ('' = everything left) is mapped through `model.encoder`'s `scheme`. Any other key is
    an error: the strict load that follows checks the rest.
    """
    out: dict[str, torch.Tensor] = {}
    rest = dict(sd)
    for official, ours in parts.items():
        inside, rest = split_prefix(rest, official)
        out.update(add_prefix(inside, ours))
    encoder_sd, rest = split_prefix(rest, encoder_prefix) if encoder_prefix else (rest, {})
    if not encoder_sd:
        raise UserError(f"{what} has no encoder keys{f' ({encoder_prefix!r}*)' if encoder_prefix else ''} "
                        f"(it has e.g. {sorted(sd)[:3]}); is it a checkpoint of this method?")
    if rest:
        raise UserError(f"{what} has {len(rest)} unexpected keys (e.g. {', '.join(sorted(rest)[:3])}); "
                        "check the method and encoder match the checkpoint.")
    out.update(add_prefix(encoder_state_from_official(model.encoder, encoder_sd, scheme), "encoder."))
    return out


split_encoder_state = split_prefix  # the name encoder users know; the code lives in asr_bench.checkpoints
