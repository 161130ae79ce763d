"""The report reads runs through `asr_bench.results` (kept importable here for older callers)."""
from ..results.reading import RunData, read_run  # noqa: F401
