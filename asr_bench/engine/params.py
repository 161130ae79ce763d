"""Parameters of the network that ran: a model holding one network per scale (RT4KSR from a folder) counts
only the one that served this output size, via its optional `parameters_for_size(lr_hw, size)`."""
from __future__ import annotations

from typing import Any


def params_that_ran(model: Any, lr_hw: tuple[int, int], size: tuple[int, int]) -> int:
    chooser = getattr(model, "parameters_for_size", None)
    params = chooser(lr_hw, size) if callable(chooser) else model.parameters()
    return sum(p.numel() for p in params)
