"""Run configuration: YAML -> a validated, frozen `Config`, from one schema (`FIELDS`).

Every key is declared once, in `FIELDS`: its type, its default, what is allowed and what it means. That one
table gives the parser its checks and defaults, the dataclasses below their defaults, `asr-bench run --help`
its list of keys and README.md its "Config reference" (`python -m asr_bench.config README.md` rewrites it;
tests/test_config_schema.py fails when the README differs). It also says which keys change a stored number
(`Field.result`), which `results_key` and the case provenance both read.

Every mistake names the offending key, what is allowed, and how to fix it (a `UserError`), so a typo in a
YAML file never surfaces as a traceback half-way through a long run. Names that need a registry (methods,
datasets, protocols, metrics) are checked by `check_names`, which the CLI calls before anything runs;
`load_config` itself only needs the YAML (no torch), so it stays cheap and testable.

`--set key=value` overrides any key (dotted keys such as `profiling.repeats=3` or `methods.0.checkpoint=x.pth`;
values are parsed as YAML, so `3` is an int and `[2, 4]` a list).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import MissingFile, UserError, closest
from .precision import CONFIG_PRECISIONS, Precision
from .sizes import Scale, as_pair

ALL = "all"
DEVICES = "auto, cpu, cuda, cuda:N, mps"
PRECISIONS = tuple(p.value for p in CONFIG_PRECISIONS)
METHOD_KEYS = ("method", "encoder", "checkpoint", "preset", "variant", "kwargs", "label")
DEFAULT_CACHE = ".cache/asr_bench"
DETECT = "detect"   # the method of a `- {checkpoint: path}` entry: read from the file when cases are resolved


@dataclass(frozen=True)
class MethodEntry:
    """One row of the results: a method on an encoder with (or without) a checkpoint."""

    method: str
    encoder: str | None = None
    checkpoint: str | None = None
    preset: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    variant: str | None = None      # which release of a preset that has several (GSASR enhanced: DIV2K, DF2K)

    def display(self) -> str:
        """The table row name: the given label, else '<method> (<encoder>)' once the encoder is known."""
        if self.label:
            return self.label
        return f"{self.method} ({self.encoder})" if self.encoder else self.method


@dataclass(frozen=True)
class ProtocolEntry:
    name: str = "gsasr"
    overrides: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- readers: one raw YAML value -> a typed one


def check_keys(mapping: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in mapping:
        if key not in allowed:
            hint = closest(str(key), allowed)
            prefix = "" if where == "config" else f"{where}."
            raise UserError(f"unknown config key '{prefix}{key}'; allowed in {where}: {', '.join(allowed)}."
                            + (f" Did you mean '{prefix}{hint}'?" if hint else ""))


def as_mapping(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"config key '{key}' must be a mapping (key: value lines), got {value!r}.")
    return value


def as_list(value: Any, key: str) -> list[Any]:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [value]  # `datasets: set5` means [set5]
    if not isinstance(value, list):
        raise UserError(f"config key '{key}' must be a list (e.g. `{key}: [a, b]`), got {value!r}.")
    return value


def as_text(value: Any, key: str, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or str(value).strip() == "":
        raise UserError(f"config key '{key}' must be a non-empty name, got {value!r}.")
    return str(value)


def as_run_name(value: Any, key: str) -> str:
    """A run name is one folder name under results/: `../x` or `a/b` would write outside (or deep inside) it."""
    name = as_text(value, key)
    if name in (".", "..") or any(c in name for c in "/\\\0") or name != name.strip():
        raise UserError(f"config key '{key}' is {name!r}: a run name is one folder name under results/ (no '/', "
                        "'\\', not '..', no surrounding spaces); to write elsewhere use --output PATH.")
    return name


def as_texts(value: Any, key: str) -> tuple[str, ...]:
    return tuple(as_text(item, f"{key}[{i}]") for i, item in enumerate(as_list(value, key)))


def as_path(value: Any, key: str) -> str | None:
    if value is None:
        return None
    return str(Path(as_text(value, key)).expanduser())


def as_int(value: Any, key: str, minimum: int, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or int(value) != value or value < minimum:
        raise UserError(f"config key '{key}' is {value!r}; it must be a whole number >= {minimum}"
                        + (" or null" if optional else "") + ".")
    return int(value)


def as_positive(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise UserError(f"config key '{key}' is {value!r}; it must be a number > 0.")
    return float(value)


def as_optional_positive(value: Any, key: str) -> float | None:
    return None if value is None else as_positive(value, key)


def as_bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"config key '{key}' is {value!r}; allowed: true, false.")
    return value


def finite_values(value: Any, key: str) -> Any:
    """Free-form values (kwargs, protocol overrides) must be JSON: run.json and the config hash store them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"config key '{key}' is {value}; only finite numbers can be stored with the results.")
    if isinstance(value, dict):
        return {k: finite_values(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [finite_values(v, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def parse_methods(value: Any, key: str = "methods") -> tuple[MethodEntry, ...] | str:
    if value is REQUIRED or value in (None, [], ""):
        raise UserError("config key 'methods' is missing or empty; give `methods: all` or a list such as "
                        "`methods: [bicubic, {method: liif, encoder: edsr-baseline, checkpoint: liif.pth}]`.")
    if isinstance(value, str) and value.strip().lower() == ALL:
        return ALL
    entries = []
    for i, item in enumerate(as_list(value, key)):
        where = f"{key}[{i}]"
        if isinstance(item, str):
            entries.append(preset_entry(item) if "." in item else MethodEntry(method=item))
            continue
        item = as_mapping(item, where)
        check_keys(item, METHOD_KEYS, where)
        preset = as_text(item.get("preset"), f"{where}.preset", optional=True)
        if not item.get("method") and not (preset and "." in preset) and not item.get("checkpoint"):
            raise UserError(f"config key '{where}' has no 'method' (nor a 'preset' such as gsasr.rdn-enhanced, nor a "
                            "'checkpoint' to detect it from); write e.g. `- {method: liif, encoder: edsr-baseline}`, "
                            "`- rt4ksr.x2` or `- {checkpoint: path}`.")
        entries.append(MethodEntry(
            method=as_text(item.get("method") or (preset.split(".", 1)[0] if preset and "." in preset else DETECT),
                           f"{where}.method"),
            encoder=as_text(item.get("encoder"), f"{where}.encoder", optional=True),
            checkpoint=as_path(item.get("checkpoint"), f"{where}.checkpoint"),
            preset=as_text(item.get("preset"), f"{where}.preset", optional=True),
            kwargs=finite_values(dict(as_mapping(item.get("kwargs"), f"{where}.kwargs")), f"{where}.kwargs"),
            label=as_text(item.get("label"), f"{where}.label", optional=True),
            variant=as_text(item.get("variant"), f"{where}.variant", optional=True),
        ))
    return tuple(entries)


def preset_entry(name: str) -> MethodEntry:
    """`- rt4ksr.x2`: a preset alone names its method (the part before the first dot) and its row label."""
    return MethodEntry(method=name.split(".", 1)[0], preset=name, label=name)


def parse_datasets(value: Any, key: str = "datasets") -> tuple[str, ...]:
    if value in (None, [], ""):
        raise UserError("config key 'datasets' is empty; give at least one catalogue name or folder, e.g. "
                        "`datasets: [set5]`, or remove the key to use the built-in `embedded` images.")
    return as_texts(value, key)


def parse_scales(value: Any, key: str = "scales") -> tuple[Scale, ...]:
    scales: list[Scale] = []
    for i, item in enumerate(as_list(value, key)):
        where = f"{key}[{i}]"
        item = _number(item)  # YAML 1.1 reads 1e9 (no dot) as a string
        if isinstance(item, bool) or not isinstance(item, (int, float, list, tuple)):
            raise UserError(f"config key '{where}' is {item!r}; a scale is a number > 1 (e.g. 4 or 3.5) "
                            "or an [sy, sx] pair such as [3.5, 2.25].")
        try:
            sy, sx = as_pair(item)
        except UserError as exc:
            raise UserError(f"config key '{where}': {exc}") from None
        scales.append(sy if sy == sx and not isinstance(item, (list, tuple)) else (sy, sx))
    if not scales:
        raise UserError("config key 'scales' is empty; give at least one scale, e.g. `scales: [2, 3, 4]`.")
    return tuple(scales)


def _number(value: Any) -> Any:
    """A string that reads as a number ('1e9') as that number; lists element-wise; anything else unchanged."""
    if isinstance(value, list):
        return [_number(v) for v in value]
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_protocol(value: Any, key: str = "protocol") -> ProtocolEntry:
    if isinstance(value, str):
        return ProtocolEntry(name=value)
    mapping = dict(as_mapping(value, key))
    if "name" not in mapping:
        raise UserError("config key 'protocol' needs a 'name' (e.g. `protocol: {name: gsasr, crop: 4}`).")
    name = as_text(mapping.pop("name"), "protocol.name")
    overrides = dict(as_mapping(mapping.pop("overrides", None), "protocol.overrides"))
    overrides.update(mapping)  # `{name: gsasr, crop: 4}` is shorthand for overrides
    return ProtocolEntry(name=name, overrides=finite_values(overrides, key))


def parse_metrics(value: Any, key: str = "metrics") -> tuple[str, ...]:
    return tuple(name.lower() for name in as_texts(value, key))


def parse_device(value: Any, key: str = "device") -> str:
    text = as_text(value, key).lower()
    if text in ("auto", "cpu", "cuda", "mps") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise UserError(f"config key '{key}' is '{value}'; allowed: {DEVICES}.")


def parse_precisions(value: Any, key: str = "precisions") -> tuple[Precision, ...]:
    return tuple(Precision.parse(p, f"{key}[{i}]") for i, p in enumerate(as_list(value, key)))


def parse_compile(value: Any, key: str = "compile") -> tuple[bool, ...]:
    """`compile: true` (compiled only), `false`, or `[false, true]` (both, as a case axis)."""
    items = value if isinstance(value, list) else [value]
    flags = tuple(as_bool(v, f"{key} (true, false, or [false, true])") for v in items)
    if not flags:
        raise UserError(f"config key '{key}' is an empty list; use false, true or [false, true].")
    return tuple(dict.fromkeys(flags))


def parse_flops(value: Any, key: str = "profiling.flops") -> bool | str:
    return value if value == "always" else as_bool(value, f"{key} (true, false or always)")


def parse_size(value: Any, key: str = "profiling.input") -> tuple[int, int] | None:
    if value is None:
        return None
    items = as_list(value, key)
    if len(items) != 2:
        raise UserError(f"config key '{key}' is {value!r}; give the LR size as [height, width], e.g. [180, 180].")
    return (as_int(items[0], f"{key}[0]", minimum=1), as_int(items[1], f"{key}[1]", minimum=1))


def parse_crop_at(value: Any, key: str = "visuals.crop_at") -> tuple[int, int] | None:
    """`visuals.crop_at: [top, left]` in HR pixels, or null (the crop goes where the HR has most detail)."""
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        raise UserError(f"{key} must be [top, left], two whole numbers >= 0 (HR pixels), got {value!r}; "
                        "e.g. `visuals: {crop: 96, crop_at: [120, 200]}`, or leave it out.")
    return (int(value[0]), int(value[1]))


# ---------------------------------------------------------------- the schema: every key, once


class _Marker:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __deepcopy__(self, memo: dict[int, Any]) -> _Marker:
        return self


REQUIRED = _Marker("(required)")            # `methods`: no default
FROM_FILE = _Marker("config file stem")     # `name`: the YAML file's stem (or `run`)

# How a key enters what a stored number depends on (`Field.result`):
RESULT_VALUE = "value"   # its value is part of every case's key (`results_key`)
RESULT_CASE = "case"     # it makes the cases (an axis, a folder, weights found): each case's key holds its own part


@dataclass(frozen=True)
class Kind:
    """A key's type: the words the reference shows and the reader that turns a raw YAML value into a typed one."""

    type: str                               # 'int', 'bool', 'list of str', 'str or mapping'
    read: Callable[[Any, str], Any]         # (raw value, dotted key) -> typed value; a UserError names the key
    allowed: str = ""                       # range or choices in words: '>= 1', '`fp32`, `fp16`, `bf16`'
    nullable: bool = False                  # null is allowed (and means what the key's help says)

    def type_text(self) -> str:
        """'int >= 1 or null', 'bool', 'str': the type with its range (choices are listed with the meaning)."""
        ranged = f"{self.type} {self.allowed}" if self.is_range() else self.type
        return ranged + (" or null" if self.nullable else "")

    def is_range(self) -> bool:
        return self.allowed.startswith((">", "<"))


def whole(minimum: int, optional: bool = False) -> Kind:
    return Kind("int", lambda v, k: as_int(v, k, minimum, optional), f">= {minimum}", nullable=optional)


def choice(values: tuple[str, ...], read: Callable[[Any, str], Any]) -> Kind:
    return Kind("str", read, ", ".join(f"`{v}`" for v in values))


BOOL = Kind("bool", as_bool)
POSITIVE = Kind("float", as_positive, "> 0")
TEXT = Kind("str", as_text)
PATH = Kind("str", as_path, nullable=True)
TEXTS = Kind("list of str", as_texts)


@dataclass(frozen=True)
class Field:
    """One config key: dotted name, type, default (the YAML value assumed when it is absent), meaning."""

    key: str
    kind: Kind
    default: Any
    help: str
    shown_default: str | None = None        # the reference's default column, where the value alone would mislead
    result: str = ""                        # RESULT_VALUE / RESULT_CASE: how it changes a stored number

    @property
    def section(self) -> str:
        return self.key.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.key.rpartition(".")[2]

    def read(self, value: Any) -> Any:
        return self.kind.read(value, self.key)

    def default_text(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        return yaml_text(self.default)


def yaml_text(value: Any) -> str:
    """A default as it would be written in YAML: null, true, 8, 0.05, `fp32`, `[psnr, ssim]`."""
    if isinstance(value, _Marker):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    return f"`{value}`" if isinstance(value, str) else str(value)


FIELDS: tuple[Field, ...] = (
    Field("name", Kind("str", as_run_name), FROM_FILE, "run name; the run folder is `results/<name>` unless `output` is set"),
    Field("methods", Kind("`all` or list", parse_methods), REQUIRED,
          "`all` = every registered method on its default encoder and preset, plus every other preset whose official "
          "weights are found; or a list of names, "
          "preset names (`- rt4ksr.x2`: method, preset and label at once) or mappings "
          "`{method, encoder, checkpoint, preset, variant, kwargs, label}` (`method` may be left out when `preset` is given: "
          "`- {preset: gsasr.rdn-enhanced, checkpoint: ...}`); `- {checkpoint: path}` alone detects method, encoder "
          "and preset from the file. A preset uses its official weights when found (see `checkpoint_dirs`), else it "
          "runs cost only; `checkpoint:` is a path or a bare file name searched like a preset's files; "
          "`checkpoint: none` = random weights on purpose", result=RESULT_CASE),
    Field("datasets", Kind("list of str", parse_datasets), ["embedded"],
          "catalogue names (`python run_bench.py list`) or folders of images", result=RESULT_CASE),
    Field("scales", Kind("list", parse_scales), [4], "numbers > 1 (2, 3.5, 12) or `[sy, sx]` pairs",
          result=RESULT_CASE),
    Field("protocol", Kind("str or mapping", parse_protocol), "gsasr",
          "a protocol name, or `{name: gsasr, crop: 4}` / `{name: gsasr, overrides: {crop: 4}}`", result=RESULT_VALUE),
    Field("metrics", Kind("list of str", parse_metrics), ["psnr", "ssim"],
          "`psnr ssim lpips dists` (perceptual ones read n/a without weights)", result=RESULT_VALUE),
    Field("device", Kind("str", parse_device, "`auto` (cuda if available), `cpu`, `cuda`, `cuda:N`, `mps` (Apple silicon)"),
          "auto", "where the models run", result=RESULT_VALUE),
    Field("precision", choice(PRECISIONS, Precision.parse), "fp32",
          "model and input cast; metrics always in float64", result=RESULT_CASE),
    Field("precisions", Kind("list", parse_precisions, ", ".join(f"`{p}`" for p in PRECISIONS)), [],
          "a case axis, e.g. `[fp32, bf16, fp16]`: each method in the dtypes its spec declares (others read "
          "`n/a (unsupported precision)`); case ids get a `bf16` suffix", shown_default="`[precision]`",
          result=RESULT_CASE),
    Field("compile", Kind("bool or list", parse_compile), False,
          "`true`: the model's forward through `torch.compile`; `[false, true]`: both, as a case axis (case ids get "
          "a `compiled` suffix)", result=RESULT_CASE),
    Field("tiling.tile", whole(1, optional=True), None, "LR tile size in pixels; null = whole image",
          result=RESULT_VALUE),
    Field("tiling.overlap", whole(0), 8, "LR pixels shared by neighbouring tiles (each keeps its half)",
          result=RESULT_VALUE),
    Field("profiling.warmup", whole(0), 2, "untimed calls before timing (the memory-measuring call counts as one)"),
    Field("profiling.repeats", whole(1), 5, "at least this many timed calls; median, min, max, IQR are stored"),
    Field("profiling.max_repeats", whole(1), 50,
          "more timed calls until the median's 95% interval is within `rel_ci` of it (at least `repeats`)",
          shown_default="50 (`repeats` if larger)"),
    Field("profiling.rel_ci", POSITIVE, 0.05, "relative half-width of the median's 95% interval that stops the repeats"),
    Field("profiling.max_seconds", POSITIVE, 30.0, "stop repeating once the timed calls have taken this long"),
    Field("profiling.memory", BOOL, True,
          "peak memory (CUDA allocator peak; on CPU the peak RSS increase in a fresh worker process per case)"),
    Field("profiling.flops", Kind("bool or `always`", parse_flops), True,
          "FLOPs of one call via `torch.utils.flop_counter`; `true` skips it (with a note) when one call takes over 5 s"),
    Field("profiling.input", Kind("`[h, w]`", parse_size, nullable=True), None,
          "profile on a seeded random LR of this size (default: the dataset's first image, whose timed output is "
          "then also its result)"),
    Field("profiling.frame_rates", BOOL, False,
          "frames per second of a synthetic 1280x720 -> 3840x2160 (x3) and 1920x1080 -> 3840x2160 (x2) frame, for "
          "every method that supports the scale (measured in its first case; tiled when `tiling.tile` is set)",
          result=RESULT_CASE),
    Field("profiling.case_timeout", Kind("float", as_optional_positive, "> 0", nullable=True), 3600.0,
          "seconds one case (every image, timing included) may take in its worker process; past it the worker is "
          "killed, the case is stored as an error 'timed out after N s' and the run goes on; null = no limit "
          "(the limit needs a worker: not enforced with isolation off)"),
    Field("visuals.crop", whole(0), 96,
          "side of the HR crop saved per method for the first image of each dataset and scale; 0 = none"),
    Field("visuals.crop_at", Kind("`[top, left]`", parse_crop_at, nullable=True), None,
          "the crop's top-left corner in HR pixels; null = where the HR has the most detail"),
    Field("save_images", BOOL, False,
          "write every SR output as PNG under `<run>/images/<dataset>/x<scale>/<label stem>/<image>.png`: the "
          "label's file-safe form and 6 hex digits of its hash (of `<label> [bf16]`, `<label> [compiled]` for the "
          "other precisions and compile settings)"),
    Field("output", PATH, None, "run folder; reruns resume there", shown_default="`results/<name>`"),
    Field("data_root", PATH, None, "where datasets live (then `$ASR_BENCH_DATA`, then `./datasets`)",
          result=RESULT_CASE),
    Field("cache_dir", Kind("str", lambda v, k: as_path(v, k) or DEFAULT_CACHE), DEFAULT_CACHE,
          "generated LR images"),
    Field("checkpoint_dirs", Kind("list of str", lambda v, k: tuple(as_path(x, f"{k}[{i}]") for i, x in
                                                                  enumerate(as_list(v, k)))), [],
          "folders holding method weights (`--checkpoint-dir`), searched before `$ASR_BENCH_WEIGHTS`, "
          "`~/.cache/asr_bench/weights` and the Hugging Face Hub cache, as `<dir>/<file>` or `<dir>/<preset>/<file>`",
          result=RESULT_CASE),
    Field("require_weights", BOOL, False,
          "`true` (`--require-weights`): a preset whose official weights are not found stops the run before any "
          "case, naming every missing preset and its `asr-bench weights fetch` command; `false`: it runs cost only"),
    Field("metric_weights_dir", PATH, None,
          "perceptual-metric weights (LPIPS/DISTS backbones); null = the metrics' default search (the old name "
          "`weights_dir` still works, with a note)", result=RESULT_CASE),
    Field("plugins", TEXTS, [],
          "extra method modules (import names or .py files) whose `METHODS` are registered", result=RESULT_CASE),
    Field("trust_checkpoints", BOOL, False,
          "allow checkpoints that only full pickle can read (`--trust-checkpoints`; they can run code); default: "
          "such files are refused"),
)

SCHEMA: dict[str, Field] = {f.key: f for f in FIELDS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(f.section for f in FIELDS if f.section))
TOP_KEYS: tuple[str, ...] = tuple(dict.fromkeys(f.section or f.key for f in FIELDS))
SECTION_KEYS: dict[str, tuple[str, ...]] = {s: tuple(f.name for f in FIELDS if f.section == s) for s in SECTIONS}
PROFILING_KEYS = SECTION_KEYS["profiling"]


def default(key: str) -> Any:
    """The typed default of a key (what `parse_config` gives when the key is absent): the dataclasses' defaults."""
    spec = SCHEMA[key]
    return spec.read(copy.deepcopy(spec.default))


# ---------------------------------------------------------------- the typed config (defaults from the schema)


@dataclass(frozen=True)
class Tiling:
    tile: int | None = default("tiling.tile")
    overlap: int = default("tiling.overlap")


@dataclass(frozen=True)
class Profiling:
    warmup: int = default("profiling.warmup")
    repeats: int = default("profiling.repeats")            # at least this many timed calls
    max_repeats: int = default("profiling.max_repeats")    # then more, until the median's 95% interval is within rel_ci ...
    rel_ci: float = default("profiling.rel_ci")
    max_seconds: float = default("profiling.max_seconds")  # ... or the timed calls have taken this long
    memory: bool = default("profiling.memory")
    flops: bool | str = default("profiling.flops")         # true: counted unless one call takes over FLOPS_MAX_CALL_S
    input: tuple[int, int] | None = default("profiling.input")
    frame_rates: bool = default("profiling.frame_rates")
    case_timeout: float | None = default("profiling.case_timeout")  # enforced by the supervising process


@dataclass(frozen=True)
class Visuals:
    crop: int = default("visuals.crop")
    crop_at: tuple[int, int] | None = default("visuals.crop_at")


@dataclass(frozen=True)
class Config:
    name: str
    methods: tuple[MethodEntry, ...] | str
    datasets: tuple[str, ...] = default("datasets")
    scales: tuple[Scale, ...] = default("scales")
    protocol: ProtocolEntry = default("protocol")
    metrics: tuple[str, ...] = default("metrics")
    device: str = default("device")
    precision: Precision = default("precision")
    precisions: tuple[Precision, ...] = default("precisions")   # a case axis (default: just `precision`)
    compile: tuple[bool, ...] = default("compile")              # a case axis: eager, and/or through torch.compile
    tiling: Tiling = Tiling()
    profiling: Profiling = Profiling()
    visuals: Visuals = Visuals()
    save_images: bool = default("save_images")
    output: str | None = default("output")
    data_root: str | None = default("data_root")
    cache_dir: str = default("cache_dir")
    checkpoint_dirs: tuple[str, ...] = default("checkpoint_dirs")
    require_weights: bool = default("require_weights")
    metric_weights_dir: str | None = default("metric_weights_dir")
    plugins: tuple[str, ...] = default("plugins")
    trust_checkpoints: bool = default("trust_checkpoints")   # plugins are code; checkpoints are data unless trusted

    @property
    def weights_dir(self) -> str | None:
        """The perceptual-metric weights folder (`metric_weights_dir`; `weights_dir` was its old name)."""
        return self.metric_weights_dir

    def run_dir(self) -> Path:
        """Stable per config, so a rerun finds (and resumes) its own results."""
        return Path(self.output) if self.output else Path("results") / self.name

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts): for run.json, the hash, and shipping to worker processes."""
        return json.loads(json.dumps(asdict(self), allow_nan=False))  # parse_config refuses non-finite values


SECTION_TYPES: dict[str, type] = {"tiling": Tiling, "profiling": Profiling, "visuals": Visuals}


# ---------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                data: dict[str, Any] | None = None) -> Config:
    """Read YAML (or take `data`), apply `--set` overrides, validate, and freeze."""
    raw: dict[str, Any] = copy.deepcopy(data) if data is not None else {}
    name = "run"
    if path is not None:
        path = find_config(path)
        raw = read_yaml(path)
        name = path.stem
    for item in overrides:
        apply_override(raw, item)
    return parse_config(raw, default_name=name)


SHIPPED = Path(__file__).resolve().parent / "configs"   # the configs installed with the package


def shipped_configs() -> list[str]:
    """Names of the configs that ship in the package: 'quick', 'x4', 'paper/liif_table1', ..."""
    return sorted(p.relative_to(SHIPPED).with_suffix("").as_posix() for p in SHIPPED.rglob("*.yml"))


def find_config(path: str | Path) -> Path:
    """A config file: the path as given, else a shipped config by name (`quick`, `paper/liif_table1`, with or
    without `.yml`, or `configs/quick.yml` as the README once wrote it), from any folder."""
    given = Path(path).expanduser()
    if given.is_file():
        return given
    text = given.as_posix().removeprefix("configs/")
    for candidate in (SHIPPED / text, SHIPPED / f"{text}.yml"):
        if candidate.is_file():
            return candidate
    return given


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MissingFile("config file", path, "Give a YAML file's path or the name of a shipped config: "
                                               f"{', '.join(shipped_configs())} (e.g. `--config quick`).")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except UnicodeDecodeError as exc:
        raise UserError(f"config {path} is not UTF-8 text (byte {exc.start} is 0x{exc.object[exc.start]:02x}); "
                        "save it as UTF-8.") from None
    except DuplicateKey as exc:
        raise UserError(f"config {path}: {exc.problem}, or the second silently replaces the first.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"config {path} is not valid YAML{where}: {problem}. Fix the syntax "
                        "(indentation, a missing ':' or an unclosed bracket).") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"config {path} must be a YAML mapping of keys ({', '.join(TOP_KEYS)}), "
                        f"not a {type(raw).__name__}.")
    return raw


class DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping names one key twice."""


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error (PyYAML keeps the last one
    silently, so `scales: [2]` ... `scales: [3]` would run x3 only, without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise DuplicateKey(
                    None, None, f"key '{key}' is given twice (lines {first} and {key_node.start_mark.line + 1}); "
                    "keep one", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """`a.b.c=value` (value parsed as YAML) into the raw mapping; list items by index (`methods.0.label=x`)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set expects key=value (e.g. --set profiling.repeats=3), got '{item}'.")
    try:
        value = yaml.load(text, Loader=UniqueKeyLoader) if text.strip() else None  # noqa: S506
    except yaml.YAMLError:
        value = text
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[:depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"--set {key}: '{where}' indexes a list of {len(node)} items; "
                                f"use an index 0..{len(node) - 1}.")
            index = int(part)
            if last:
                node[index] = value
            else:
                if isinstance(node[index], str) and parts[depth + 1] in METHOD_KEYS:
                    node[index] = {"method": node[index]}  # `methods.0.checkpoint=` on a bare name
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if not isinstance(node.get(part), (dict, list)):
                    node[part] = {}
                node = node[part]
        else:
            raise UserError(f"--set {key}: '{'.'.join(parts[:depth])}' is a single value, not a mapping; "
                            f"set it directly (--set {'.'.join(parts[:depth])}=...).")


# ---------------------------------------------------------------- validation


def parse_config(raw: dict[str, Any], default_name: str = "run") -> Config:
    """Check every key against the schema, read each value with its field's reader, then the rules that tie keys."""
    raw = renamed_keys(raw)
    check_keys(raw, TOP_KEYS, where="config")
    sections = {name: as_mapping(raw.get(name), name) for name in SECTIONS}
    for name, mapping in sections.items():
        check_keys(mapping, SECTION_KEYS[name], name)
    values: dict[str, dict[str, Any]] = {"": {}, **{name: {} for name in SECTIONS}}
    for spec in FIELDS:
        source = sections[spec.section] if spec.section else raw
        value = source.get(spec.name, copy.deepcopy(spec.default))
        values[spec.section][spec.name] = default_name if value is FROM_FILE else spec.read(value)
    check_together(values, sections)
    return Config(**values[""], **{name: SECTION_TYPES[name](**values[name]) for name in SECTIONS})


RENAMED = {"weights_dir": "metric_weights_dir"}   # old key -> new key: still read, with a one-line note


def renamed_keys(raw: dict[str, Any]) -> dict[str, Any]:
    """Old key names read as their new ones (a note on stderr); both given is an error."""
    for old, new in RENAMED.items():
        if old in raw:
            if new in raw:
                raise UserError(f"config keys '{old}' and '{new}' are both given; '{old}' is the old name of "
                                f"'{new}': keep only '{new}'.")
            print(f"note: config key '{old}' is now '{new}' (the old name still works); rename it.", file=sys.stderr)
            raw = {(new if k == old else k): v for k, v in raw.items()}
    return raw


def check_together(values: dict[str, dict[str, Any]], given: dict[str, dict[str, Any]]) -> None:
    """Rules that tie keys to each other (after each key's own check); may fill a default that depends on another."""
    profiling = values["profiling"]
    repeats = profiling["repeats"]
    if "max_repeats" not in given["profiling"]:
        profiling["max_repeats"] = max(profiling["max_repeats"], repeats)
    tiling = values["tiling"]
    if tiling["tile"] is not None and tiling["overlap"] >= tiling["tile"]:
        raise UserError(f"config key 'tiling.overlap' is {tiling['overlap']} but tiling.tile is {tiling['tile']}; "
                        "neighbouring tiles cannot share a whole tile: use an overlap smaller than the tile "
                        "(e.g. tile/4).")
    if profiling["max_repeats"] < repeats:
        raise UserError(f"config key 'profiling.max_repeats' is {profiling['max_repeats']} but profiling.repeats is "
                        f"{repeats}; max_repeats must be >= repeats.")


# ---------------------------------------------------------------- identity


def config_hash(config: Config) -> str:
    """sha256 of the resolved config (minus where it is written): two runs with equal hashes are comparable."""
    data = config.to_dict()
    data.pop("output", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, allow_nan=False).encode()).hexdigest()[:16]


def results_key(config: Config, device_type: str | None = None) -> dict[str, Any]:
    """The config values every stored number depends on (the schema's `result=RESULT_VALUE` keys), by dotted key.

    A case's provenance key is this plus the case's own part (method, checkpoint, dataset, scale, precision,
    compile, frame rates, metric weights found: the `RESULT_CASE` keys, `engine.provenance.case_part`);
    `device_type` replaces `auto` by the device the run resolved."""
    data = config.to_dict()
    key: dict[str, Any] = {}
    for spec in FIELDS:
        if spec.result == RESULT_VALUE:
            key[spec.key] = data[spec.section][spec.name] if spec.section else data[spec.key]
    if device_type is not None:
        key["device"] = device_type
    return key


# ---------------------------------------------------------------- the reference (README table, CLI help)

README_BEGIN = "<!-- config reference: generated from asr_bench/config.py FIELDS; `python -m asr_bench.config README.md` -->"
README_END = "<!-- end of config reference -->"


def reference_table() -> str:
    """The README's "Config reference" table, from FIELDS (one row per key)."""
    rows = ["| key | type | default | allowed / meaning |", "|---|---|---|---|"]
    for spec in FIELDS:
        kind = spec.kind
        meaning = f"{kind.allowed}: {spec.help}" if kind.allowed and not kind.is_range() else spec.help
        rows.append(f"| `{spec.key}` | {kind.type_text()} | {spec.default_text()} | {meaning} |")
    return "\n".join(rows)


def help_lines(width: int = 100) -> list[str]:
    """`asr-bench run --help`'s list of config keys: key, type, default and meaning, wrapped."""
    import textwrap

    lines = []
    for spec in FIELDS:
        kind = spec.kind
        allowed = f", one of {kind.allowed}" if kind.allowed and not kind.is_range() else ""
        head = f"{spec.key} ({kind.type_text()}{allowed}; default {spec.default_text()})".replace("`", "")
        lines.append(f"  {head}")
        lines += textwrap.wrap(spec.help.replace("`", ""), width, initial_indent="      ", subsequent_indent="      ")
    return lines


def with_reference(readme: str) -> str:
    """README text with the part between README_BEGIN and README_END replaced by the generated table."""
    start, end = readme.find(README_BEGIN), readme.find(README_END)
    if start < 0 or end < start:
        raise UserError(f"README has no generated config reference (the lines '{README_BEGIN}' ... '{README_END}').")
    return readme[:start] + README_BEGIN + "\n" + reference_table() + "\n" + readme[end:]


if __name__ == "__main__":  # `python -m asr_bench.config README.md`: rewrite the README's config reference
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    target.write_text(with_reference(target.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote the config reference into {target}")
