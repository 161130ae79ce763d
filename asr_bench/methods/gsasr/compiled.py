"""The GSASR decoder through `torch.compile`, its compiling booked as one-time setup (docs/methods/gsasr.md §11).

The option `compile` is True, False or "auto". "auto" compiles only where a measurement showed it beats eager,
listed in `COMPILE_WINS` by (device type, dtype). Measured on this project's CPU (AMD EPYC, one thread, thread
CPU time, eager and compiled interleaved in one process, medians of 5 rounds, torch 2.14.1 inductor), the whole
GSASR call, paper EDSR-baseline preset:

    48x48 x4, whole decoder compiled:     eager 2.137 s, compiled 2.132 s (1.002x); compile 277 s cold, 24 s warm
    48x48 x4, its 7 attention/MLP blocks: eager 2.182 s, compiled 2.210 s (0.987x); compile  55 s cold, 6.5 s warm
    48x48 x4, whole, inductor freezing:   eager 2.054 s, compiled 2.428 s (0.846x); compile 375 s cold
    96x96 x3, its 7 attention/MLP blocks: eager 9.661 s, compiled 10.112 s (0.955x); compile 362 s cold

No win: the eager decoder already runs its GEMMs through oneDNN with bias, ReLU and residual fused, and inductor
adds nothing, while its compile costs minutes per tile shape (dynamo unrolls the window-group and head-chunk
loops, so it grows with the tile). So "auto" is off everywhere (CUDA was not measured: it keeps its SDPA path,
uncompiled). `compile=True` still works where a user wants it.

torch.compile is lazy: it compiles on the first call with each new input shape. So the first call per shape
(and dtype, device and grad mode) runs the compiled decoder once inside `one_time_setup` and then again for the
result: the setup holds the compile and one decoder run, the timed call holds exactly one compiled run. Any error
while compiling falls back to the eager decoder with one warning; it never stops a run.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from asr_bench.errors import UserError
from asr_bench.stages import one_time_setup

CHOICES = ("auto", True, False)
COMPILE_WINS: frozenset[tuple[str, torch.dtype]] = frozenset()  # none measured: see the module docstring
SETUP = "compiling the GSASR decoder (torch.compile)"


def check_setting(value: Any) -> bool | str:
    """True, False or "auto"; anything else is a one-line UserError."""
    if isinstance(value, bool) or value == "auto":
        return value
    raise UserError(f"GSASR option compile={value!r} must be one of {', '.join(map(repr, CHOICES))}.")


class DecoderCompiler:
    """Runs a decoder eager or compiled, per the setting; holds the compiled function and the shapes it has seen.

    Not an nn.Module, so the model's state dict and `.to()` do not see it; a deep copy starts uncompiled.
    """

    def __init__(self, setting: bool | str = "auto") -> None:
        self.setting = check_setting(setting)
        self._compiled: Callable[..., torch.Tensor] | None = None
        self._seen: set[tuple] = set()
        self.failed = False

    def __deepcopy__(self, memo: dict[int, Any]) -> DecoderCompiler:
        return DecoderCompiler(self.setting)

    def wanted(self, feat: torch.Tensor) -> bool:
        if self.failed or self.setting is False:
            return False
        return self.setting is True or (feat.device.type, feat.dtype) in COMPILE_WINS

    def __call__(self, decoder: nn.Module, feat: torch.Tensor, scale: torch.Tensor,
                 keep: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """decoder(feat, scale, keep), eager or compiled. The compiled decoder computes every Gaussian (`keep` is
        a per-tile closure: dynamo would recompile for each tile's region), which the caller's own `keep` filter
        makes the same render."""
        if not self.wanted(feat):
            return decoder(feat, scale) if keep is None else decoder(feat, scale, keep)
        key = (tuple(feat.shape), feat.dtype, feat.device, tuple(scale.shape), torch.is_grad_enabled(),
               torch.is_inference_mode_enabled(), torch.is_autocast_enabled(feat.device.type))
        if key not in self._seen:
            with one_time_setup(SETUP), warnings.catch_warnings():
                # The cached roll index (decoder.roll_tokens) is a pure function of ints: tracing through its
                # cache gives the same constant, so dynamo's generic caution about lru_cache does not apply.
                warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
                try:
                    if self._compiled is None:
                        self._compiled = torch.compile(decoder, dynamic=False)
                    self._compiled(feat, scale)  # compiles for this shape; the result is computed again below
                except Exception as error:  # noqa: BLE001 - any compiler failure falls back to eager
                    self.fall_back(error)
            if self.failed:
                return decoder(feat, scale)
            self._seen.add(key)
        try:
            return self._compiled(feat, scale)
        except Exception as error:  # noqa: BLE001 - a later recompile (a guard that failed) may fail too
            self.fall_back(error)
            return decoder(feat, scale)

    def fall_back(self, error: Exception) -> None:
        """Eager from now on, said once in one line."""
        self.failed = True
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        warnings.warn(f"GSASR: torch.compile of the decoder failed ({type(error).__name__}: {reason}); "
                      "running it eager.", RuntimeWarning, stacklevel=3)
