"""The result store's record types: the one contract between the engine (writer) and the report (reader).

They live outside `engine/` so the report (and any user tool) can read a run without importing the engine.
`SCHEMA_VERSION` is stored with every run; a reader refuses a newer major version instead of misreading it.

Records are flat, JSON-serialisable dataclasses. Per-image rows go to `images.jsonl` / `images.csv`,
per-case rows to `cases.jsonl` / `cases.csv`, the environment to `run.json`. A metric value is a float,
or None with the reason in `notes[metric]` (e.g. "n/a (weights missing: alexnet-owt-7be5be79.pth)").
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 2

# Case status values; the report turns them into the cell text.
OK = "ok"
ERROR = "error"                # the case raised; `error` holds the one-line message
UNSUPPORTED = "unsupported"    # the method does not support this scale -> "n/a (unsupported scale)"
NO_WEIGHTS = "no-weights"      # random weights: accuracy n/a, cost still measured -> "n/a (no weights)"
# The notes of an UNSUPPORTED case's metrics: the engine writes them, the report reads which one it is.
UNSUPPORTED_SCALE_NOTE = "n/a (unsupported scale)"
UNSUPPORTED_PRECISION_NOTE = "n/a (unsupported precision)"   # the method has no dtype for it, or its encoder


@dataclass
class ImageRecord:
    case_id: str
    image: str                 # image id within the dataset (file stem)
    metrics: dict[str, float | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    lr_size: tuple[int, int] = (0, 0)
    sr_size: tuple[int, int] = (0, 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImageRecord":
        return _from_dict(cls, data)


@dataclass
class CaseRecord:
    case_id: str               # stable hash-free key: "<label>|<dataset>|<scale>"
    label: str                 # the row name in tables (config `label`, default "<method> (<encoder>)")
    method: str
    encoder: str
    dataset: str
    scale: str                 # sizes.format_scale: "4", "3.5", "3x2.5"
    protocol: str              # protocol label with overrides, e.g. "gsasr (crop=4)"
    status: str = OK
    error: str = ""
    n_images: int = 0
    metrics: dict[str, float | None] = field(default_factory=dict)   # mean over images
    notes: dict[str, str] = field(default_factory=dict)              # metric -> why it is n/a
    time_ms: float | None = None        # median model-call time per image (first image's size)
    time_repeats: int = 0               # timed calls behind the median (adaptive: see engine.timing)
    time_warmup: int = 0
    time_min_ms: float | None = None
    time_max_ms: float | None = None
    time_iqr_ms: float | None = None
    time_samples_ms: list[float] = field(default_factory=list)  # every timed call (ms); empty: stored before kept
    time_setup_ms: float | None = None  # one-time setup taken out of the timed calls; None: stored before it was
    memory_mb: float | None = None
    memory_kind: str = ""               # "cuda max_memory_allocated" or "cpu peak RSS increase"
    params: int | None = None
    flops: float | None = None          # per image (first image), from torch.utils.flop_counter
    output_mpix: float | None = None    # megapixels of the measured output
    fps_720p_4k: float | None = None    # frames/s, 1280x720 -> 3840x2160 (x3), synthetic frame (profiling.frame_rates)
    fps_1080p_4k: float | None = None   # frames/s, 1920x1080 -> 3840x2160 (x2)
    profile_input: list[int] = field(default_factory=list)   # LR [h, w] the cost was measured on
    cost_notes: dict[str, str] = field(default_factory=dict)  # why a cost figure is missing (e.g. FLOPs skipped)
    stages: dict[str, float] = field(default_factory=dict)    # stage name -> median ms (methods that declare stages)
    device: str = "cpu"
    precision: str = "fp32"
    compiled: bool = False              # the forward ran through torch.compile
    case_key: str = ""                  # hash of everything that can change the numbers (resume compares it)
    provenance: dict[str, Any] = field(default_factory=dict)  # checkpoint sha256, dataset fingerprint, versions
    backends: dict[str, str] = field(default_factory=dict)    # custom op -> backend that ran ("cpp", "torch", ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CaseRecord":
        return _from_dict(cls, data)


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Tolerate extra keys written by newer versions: read only the fields this version knows."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


SLUG_MAX = 64  # characters of a slug: with a hash, a suffix and a few folder levels far below NAME_MAX (255 bytes)


def slug(text: str) -> str:
    """A file-name-safe form of a label: 'LIIF (edsr-baseline)' -> 'liif_edsr-baseline'. Bounded: a longer one is
    cut and ends in 8 hex digits of the text's sha1, so a 10,000-character label still names a file (and two long
    labels that share their start do not share it)."""
    import hashlib
    import re

    name = re.sub(r"[^a-z0-9.+-]+", "_", text.lower()).strip("_") or "unnamed"
    if name in (".", ".."):
        name = name.replace(".", "_")
    if len(name) <= SLUG_MAX:
        return name
    return f"{name[:SLUG_MAX - 9]}-{hashlib.sha1(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def label_stem(label: str) -> str:
    """The file stem of a method's crop: slug + 6 hex digits of the label's sha1. Labels that slug alike
    ('A b' and 'a_b'), or a method labelled 'GT' or 'bicubic', would otherwise overwrite each other's file."""
    import hashlib

    return f"{slug(label)}-{hashlib.sha1(label.encode('utf-8', 'surrogatepass')).hexdigest()[:6]}"


def variant(case: Any) -> str:
    """How a case (a CaseRecord or the engine's Case) differs from fp32 eager, the reference the others are compared
    with: '' (it is fp32 eager), 'bf16', 'compiled', 'fp16 compiled'."""
    parts = [] if case.precision == "fp32" else [case.precision]
    return " ".join(parts + (["compiled"] if case.compiled else []))


def variant_label(case: Any) -> str:
    """'LIIF (edsr-baseline) [bf16]'; the plain label for fp32 eager. The engine names a case's crop by it, so the
    fp32 and bf16 crops of one method do not overwrite each other."""
    text = variant(case)
    return f"{case.label} [{text}]" if text else case.label
