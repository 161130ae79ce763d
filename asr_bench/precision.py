"""The one vocabulary for numeric precision: `fp32`, `fp16`, `bf16` (and `fp64` for checks), and its torch dtypes.

A config, a method spec, an encoder's capabilities, a case id and a run's records all name a precision with these
words; the torch dtype of each is written here only. `Precision` is a `StrEnum`, so a member equals its word
(`Precision.BF16 == "bf16"`), prints as it, and is stored in JSON as it. Importing this module does not import
torch (the config and the CLI stay cheap); `torch_dtype` imports it when asked.
"""
from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from .errors import UserError, closest

if TYPE_CHECKING:
    import torch


class Precision(enum.StrEnum):
    """A numeric precision in the config's words; `torch_dtype` is the dtype a model and its input are cast to."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP64 = "fp64"   # a dtype that encoder checks run in (reference maths); not a benchmark precision

    @property
    def torch_name(self) -> str:
        """The torch attribute: 'float32', 'float16', 'bfloat16', 'float64'."""
        return _TORCH_NAMES[self]

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.torch_name)

    @classmethod
    def of(cls, value: Any) -> Precision:
        """A Precision from its word, its torch name ('bfloat16') or a torch dtype; anything else is a bug."""
        if isinstance(value, cls):
            return value
        text = str(value).removeprefix("torch.")
        for member in cls:
            if text in (member.value, member.torch_name):
                return member
        raise ValueError(f"not a precision: {value!r}; known: {', '.join(m.value for m in cls)}")

    @classmethod
    def parse(cls, value: Any, key: str) -> Precision:
        """A config value -> a benchmark precision; a one-line UserError naming `key` and the choices otherwise."""
        text = str(value).strip().lower() if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
        if text in CONFIG_PRECISIONS:
            return cls(text)
        hint = closest(text, CONFIG_PRECISIONS) if text else None
        raise UserError(f"config key '{key}' is '{value}'; allowed: {', '.join(CONFIG_PRECISIONS)}."
                        + (f" Did you mean '{hint}'?" if hint else ""))


_TORCH_NAMES = {Precision.FP32: "float32", Precision.FP16: "float16", Precision.BF16: "bfloat16",
                Precision.FP64: "float64"}

# what a config, a method spec and a case may name (fp32 first: the reference every other precision is compared to)
CONFIG_PRECISIONS: tuple[Precision, ...] = (Precision.FP32, Precision.FP16, Precision.BF16)
