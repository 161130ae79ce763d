"""JSON as other tools read it: no NaN/Infinity tokens (they are not JSON; strict parsers such as jq and
JavaScript's JSON.parse reject the whole file). A non-finite number is written as null, and the writer says
why in a note next to it."""
from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """`value` with every non-finite float (nan, inf, -inf) replaced by None, containers rebuilt."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps with non-finite floats as null and allow_nan=False (so nothing slips through)."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
