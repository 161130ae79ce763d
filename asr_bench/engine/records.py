"""The record types live in `asr_bench.results.schema` (the contract the report reads); re-exported for the engine."""
from ..results.schema import (ERROR, NO_WEIGHTS, OK, SCHEMA_VERSION, UNSUPPORTED, CaseRecord,  # noqa: F401
                              ImageRecord, slug)
