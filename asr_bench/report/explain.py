"""What the report says about how a run was made: the protocol's fields, the machine, per-case provenance.

The protocol is described from `asr_bench.protocols` (protocols are data: name + overrides from run.json);
a protocol this version does not know is shown by its label only.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..results.schema import CaseRecord
from .model import dataset_title, ordered_unique, scale_title

_LR = {"basicsr-float": "BasicSR float imresize of the HR (MATLAB bicubic), rounded to uint8",
       "matlab-uint8": "MATLAB imresize on uint8 (as the benchmark LR_bicubic files were made)",
       "liif": "x2–x4 MATLAB (= the premade files); other scales PIL bicubic (LIIF's resize_fn)"}
_CROP = {"int-cap8": "int(s) pixels, at most 8 (BasicSR crop_border)", "scale": "s pixels (shave = scale; DIV2K: s + 6)",
         "ceil": "ceil(s) pixels (Meta-SR)", "zero": "none", "four": "4 pixels"}
_PSNR = {"basicsr": "BasicSR calculate_psnr: Y of BT.601 studio range (rgb2ycbcr y_only), float64, peak 255",
         "shave256": "EDSR/LIIF: Y as Σ diff · (65.738, 129.057, 25.064) / 256, peak 1"}


def _protocol_config(run: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    config = run.get("config") if isinstance(run.get("config"), dict) else None
    entry = config.get("protocol") if config else None
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and entry.get("name"):
        return str(entry["name"]), dict(entry.get("overrides") or {})
    return None


def protocol_fields(run: dict[str, Any], labels: Sequence[str]) -> list[tuple[str, str]]:
    """(field, value) rows defining the run's protocol; [] when run.json does not name one."""
    named = _protocol_config(run)
    if named is None:
        return [("protocol", ", ".join(labels))] if labels else []
    name, overrides = named
    try:
        from ..protocols import get_protocol

        protocol = get_protocol(name, **overrides)
    except Exception:  # noqa: BLE001 - a protocol from another version: say its name, do not fail the report
        return [("protocol", ", ".join(labels) or name), ("fields", "not known to this version of asr-bench")]
    crop = f"{protocol.crop} pixels (override)" if protocol.crop is not None else _CROP.get(protocol.crop_rule, protocol.crop_rule)
    colour = "Y (BT.601)" if protocol.y_channel else "RGB"
    if getattr(protocol, "div2k_rgb_extra", None) is not None and protocol.y_channel:
        colour += "; DIV2K on RGB"
    rows = [
        ("protocol", protocol.label),
        ("definition", protocol.description),
        ("LR source", "the dataset's premade LR files where they exist; otherwise " + _LR.get(protocol.lr_recipe, protocol.lr_recipe)
         + ("; LR cropped to even size" if protocol.even_lr else "")),
        ("colour space (PSNR, SSIM)", colour),
        ("border crop", crop),
        ("output rounding", "clamp to [0, 1], ×255, round to uint8 levels" if protocol.quantize
         else "clamp to [0, 1], kept float (no rounding)"),
        ("PSNR", _PSNR.get(protocol.psnr_style, protocol.psnr_style)),
        ("SSIM", "BasicSR calculate_ssim: 11×11 Gaussian σ 1.5, valid, float64, on the colour space above"),
        ("LPIPS / DISTS", "lpips alex v0.1 / DISTS-pytorch, RGB in [0, 1], same border, SR first"),
    ]
    return rows


def machine(run: dict[str, Any]) -> list[tuple[str, str]]:
    """Date, CPU and GPU model, torch / CUDA versions: the first lines of the run section."""
    env = run.get("environment") if isinstance(run.get("environment"), dict) else {}
    pairs = [("date", env.get("date")), ("device", env.get("device")), ("CPU", env.get("cpu_model") or env.get("cpu")),
             ("GPU", env.get("gpu")), ("torch", env.get("torch")), ("CUDA", env.get("torch_cuda") or env.get("cuda")),
             ("asr-bench", env.get("asr_bench")), ("git commit", env.get("git_commit"))]
    return [(k, str(v)) for k, v in pairs if v not in (None, "")]


def provenance_rows(cases: Sequence[CaseRecord]) -> list[dict[str, str]]:
    """One row per case that carries provenance (checkpoint sha256, dataset fingerprint); [] when none does."""
    rows = []
    for case in cases:
        prov = getattr(case, "provenance", None) or {}
        if not isinstance(prov, dict) or not prov:
            continue
        versions = prov.get("versions")
        rows.append({
            "label": case.label, "dataset": dataset_title(case.dataset), "scale": scale_title(case.scale),
            "checkpoint": str(prov.get("checkpoint_sha256") or "random weights / none"),
            "dataset_fingerprint": str(prov.get("dataset_fingerprint") or "–"),
            "versions": ", ".join(f"{k} {v}" for k, v in versions.items()) if isinstance(versions, dict) else str(versions or ""),
        })
    return rows


def status_words(cases: Sequence[CaseRecord]) -> list[str]:
    """'12 scored', '5 random weights (cost only)', ... for the page header."""
    words = {"ok": "scored", "no-weights": "random weights (cost only)", "unsupported": "unsupported scale (not run)",
             "error": "failed"}
    counts = {s: sum(c.status == s for c in cases) for s in ordered_unique(c.status for c in cases)}
    return [f"{n} {words.get(s, s)}" for s, n in counts.items()]
