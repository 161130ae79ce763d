"""Reading hyperparameters from a state dict's key names and tensor shapes: the kit every shape reader uses.

Encoders' shape readers (`asr_bench.encoders.*`'s `ShapeReader`) and methods' detectors (`MethodSpec.detector`)
read only names and shapes, so they work on meta tensors and memory-mapped files and never build a model
(spandrel's `util` plays this role there).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch

StateDict = Mapping[str, torch.Tensor]


def count(keys: Iterable[str], pattern: str) -> int:
    """How many distinct indices `pattern` (a regex with one group, matched at the key's start) finds."""
    regex = re.compile(pattern)
    return len({m.group(1) for k in keys if (m := regex.match(k))})


def dim(sd: StateDict, key: str, axis: int = 0) -> int | None:
    """One size of one tensor, None where the key is absent."""
    return int(sd[key].shape[axis]) if key in sd else None


def has_fragment(keys: Iterable[str], fragment: str) -> bool:
    """Whether any key contains `fragment` (a module name that only one family uses)."""
    return any(fragment in k for k in keys)


def has_prefix(keys: Iterable[str], *prefixes: str) -> bool:
    """Whether any key starts with one of `prefixes`."""
    return any(k.startswith(prefixes) for k in keys)


def without_prefixes(sd: StateDict, *prefixes: str) -> dict[str, torch.Tensor]:
    """The state dict less every key under one of `prefixes` (a method's own head, learned mean shifts)."""
    return {k: v for k, v in sd.items() if not k.startswith(prefixes)}


def inside_prefix(sd: StateDict, prefix: str) -> dict[str, torch.Tensor]:
    """The keys under `prefix`, with the prefix taken off."""
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def window_side(sd: StateDict, index: str, table: str) -> int | None:
    """A window side from a relative-position index (side^2 rows) or else its bias table ((2 side - 1)^2 rows)."""
    if index in sd:
        return math.isqrt(int(sd[index].shape[0]))
    return (math.isqrt(int(sd[table].shape[0])) + 1) // 2 if table in sd else None


def residual_groups(sd: StateDict, blocks: str = "blocks") -> tuple[int, tuple[int, ...]]:
    """(width, blocks per group) of the SwinIR-style body the transformer and Mamba encoders share: conv_first,
    then `layers.N.residual_group.<blocks>.M`."""
    keys = set(sd)
    n = count(keys, r"layers\.(\d+)\.residual_group\.")
    depths = tuple(count(keys, rf"layers\.{i}\.residual_group\.{blocks}\.(\d+)\.") for i in range(n))
    return int(sd["conv_first.weight"].shape[0]), depths


def heads_per_group(sd: StateDict, groups: int, *tables: str) -> tuple[int | None, ...]:
    """Attention heads per group: dim 1 of the first block's bias table (or RoPE frequencies) in each group."""
    return tuple(next((dim(sd, f"layers.{i}.residual_group.{t}", 1) for t in tables
                       if f"layers.{i}.residual_group.{t}" in sd), None) for i in range(groups))


def size_text(family: str, embed: int, depths: tuple[int, ...], unit: str = "blocks") -> str:
    """'HAT 180 dims, 6 groups x 6 blocks': the reason line's words for a grouped body."""
    return f"{family} {embed} dims, {len(depths)} groups x {depths[0] if depths else 0} {unit}"


def same(a: Any, b: Any) -> bool:
    """Whether a read hyperparameter equals a declared one: sequences by value, floats within 1e-6."""
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return a is not None and b is not None and tuple(a) == tuple(b)
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(float(a) - float(b)) < 1e-6
    return a == b
