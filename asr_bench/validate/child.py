"""One validation step in its own process: `python -m asr_bench.validate.child MODULE:FUNCTION PARAMS_JSON RESULT`.

The function gets the parameters (a dict) and returns {"status", "summary", "tables", "details"}; an exception
is the step's failure (its one-line text is the summary, the traceback goes to the step's log). The result is
written atomically, so the supervisor never reads half of one.
"""
from __future__ import annotations

import importlib
import json
import sys
import traceback
from pathlib import Path

from .. import atomic


def main(argv: list[str]) -> int:
    target, params, answer = argv[0], json.loads(argv[1]), Path(argv[2])
    module_name, _, function_name = target.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        result = dict(function(params))
        code = 0
    except Exception as error:  # noqa: BLE001 - a failing step is data: recorded, the next step runs
        traceback.print_exc()
        text = str(error).strip().splitlines()
        result = {"status": "FAIL", "summary": f"{type(error).__name__}: {text[0][:300] if text else ''}".rstrip(": ")}
        code = 1
    atomic.write_text(answer, json.dumps(result, default=str))
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
