"""Run configuration: YAML -> a validated, frozen `Config`.

Every mistake names the offending key, what is allowed, and how to fix it (a `UserError`), so a typo in a
YAML file never surfaces as a traceback half-way through a long run. Names that need a registry (methods,
datasets, protocols, metrics) are checked by `check_names`, which the CLI calls before anything runs;
`load_config` itself only needs the YAML, so it stays cheap and testable.

Config reference (every key; all optional except `methods`):

| key | type | default | allowed / meaning |
|---|---|---|---|
| `name` | str | config file stem | run name; the run folder is `results/<name>` unless `output` is set |
| `methods` | `all` or list | (required) | `all` = every registered method on its default encoder and preset, random weights; or a list of names, preset names (`rt4ksr.x2`: method, preset and label at once) or mappings `{method, encoder, checkpoint, preset, kwargs, label}` (`method` may be left out when `preset` is given); `{checkpoint: path}` alone detects method, encoder and preset from the file |
| `datasets` | list of str | `[embedded]` | catalogue names (`python run_bench.py list`) or folders of images |
| `scales` | list | `[4]` | numbers > 1 (2, 3.5, 12) or `[sy, sx]` pairs |
| `protocol` | str or mapping | `gsasr` | a protocol name, or `{name: gsasr, crop: 4}` / `{name: gsasr, overrides: {crop: 4}}` |
| `metrics` | list of str | `[psnr, ssim]` | `psnr ssim lpips dists` (perceptual ones read n/a without weights) |
| `device` | str | `auto` | `auto` (cuda if available), `cpu`, `cuda`, `cuda:N`, `mps` (Apple silicon) |
| `precision` | str | `fp32` | `fp32`, `fp16`, `bf16` (model and input cast; metrics always in float64) |
| `precisions` | list | `[precision]` | a case axis, e.g. `[fp32, bf16, fp16]`: each method in the dtypes its spec declares (others read `n/a (unsupported precision)`); case ids get a `bf16` suffix |
| `compile` | bool or list | false | `true`: the model's forward through `torch.compile`; `[false, true]`: both, as a case axis (case ids get a `compiled` suffix) |
| `tiling.tile` | int or null | null | LR tile size in pixels; null = whole image |
| `tiling.overlap` | int | 8 | LR pixels shared by neighbouring tiles (each keeps its half) |
| `profiling.warmup` | int >= 0 | 2 | untimed calls before timing (the memory-measuring call counts as one) |
| `profiling.repeats` | int >= 1 | 5 | at least this many timed calls; median, min, max, IQR are stored |
| `profiling.max_repeats` | int | 50 | more timed calls until the median's 95% interval is within `rel_ci` of it |
| `profiling.rel_ci` | float | 0.05 | relative half-width of the median's 95% interval that stops the repeats |
| `profiling.max_seconds` | float | 30 | stop repeating once the timed calls have taken this long |
| `profiling.input` | `[h, w]` or null | null | profile on a seeded random LR of this size (default: the dataset's first image, whose timed output is then also its result) |
| `profiling.memory` | bool | true | peak memory (CUDA allocator peak; on CPU the peak RSS increase in a fresh worker process per case) |
| `profiling.frame_rates` | bool | false | frames per second of a synthetic 1280x720 -> 3840x2160 (x3) and 1920x1080 -> 3840x2160 (x2) frame, for every method that supports the scale (measured in its first case; tiled when `tiling.tile` is set) |
| `profiling.flops` | bool or `always` | true | FLOPs of one call via torch.utils.flop_counter; `true` skips it (with a note) when one call takes over 5 s |
| `visuals.crop` | int | 96 | side of the HR crop saved per method for the first image of each dataset and scale; 0 = none |
| `visuals.crop_at` | `[top, left]` or null | null | the crop's top-left corner in HR pixels; null = where the HR has the most detail |
| `save_images` | bool | false | write every SR output as PNG under `<run>/images/<dataset>/x<scale>/<label>/<image>.png` (`<label> [bf16]`, `<label> [compiled]` for the other precisions and compile settings) |
| `output` | str or null | `results/<name>` | run folder; reruns resume there |
| `data_root` | str or null | null | where datasets live (then `$ASR_BENCH_DATA`, then `./datasets`) |
| `cache_dir` | str | `.cache/asr_bench` | generated LR images |
| `weights_dir` | str or null | null | perceptual-metric weights (LPIPS/DISTS); null = the metrics' default search |
| `plugins` | list of str | `[]` | extra method modules (import names or .py files) whose `METHODS` are registered |
| `trust_checkpoints` | bool | false | allow checkpoints that only full pickle can read (they can run code); default: such files are refused |

`--set key=value` overrides any key (dotted keys such as `profiling.repeats=3` or `methods.0.checkpoint=x.pth`;
values are parsed as YAML, so `3` is an int and `[2, 4]` a list).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import MissingFile, UserError, closest
from .sizes import Scale, as_pair

ALL = "all"
DEVICES = "auto, cpu, cuda, cuda:N, mps"
PRECISIONS = ("fp32", "fp16", "bf16")
TOP_KEYS = ("name", "methods", "datasets", "scales", "protocol", "metrics", "device", "precision", "precisions",
            "compile", "tiling",
            "profiling", "visuals", "output", "data_root", "cache_dir", "weights_dir", "plugins", "trust_checkpoints",
            "save_images")
METHOD_KEYS = ("method", "encoder", "checkpoint", "preset", "kwargs", "label")
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

    def display(self) -> str:
        """The table row name: the given label, else '<method> (<encoder>)' once the encoder is known."""
        if self.label:
            return self.label
        return f"{self.method} ({self.encoder})" if self.encoder else self.method


@dataclass(frozen=True)
class ProtocolEntry:
    name: str = "gsasr"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tiling:
    tile: int | None = None
    overlap: int = 8


@dataclass(frozen=True)
class Profiling:
    warmup: int = 2
    repeats: int = 5                 # at least this many timed calls
    max_repeats: int = 50            # then more, until the median's 95% interval is within rel_ci ...
    rel_ci: float = 0.05
    max_seconds: float = 30.0        # ... or the timed calls have taken this long
    memory: bool = True
    flops: bool | str = True         # true: counted unless one call takes over FLOPS_MAX_CALL_S; "always"; false
    input: tuple[int, int] | None = None   # profile on a seeded random LR of this size instead of the first image
    frame_rates: bool = False        # fps of 720p->4K (x3) and 1080p->4K (x2) frames, once per method


@dataclass(frozen=True)
class Visuals:
    crop: int = 96
    crop_at: tuple[int, int] | None = None


@dataclass(frozen=True)
class Config:
    name: str
    methods: tuple[MethodEntry, ...] | str
    datasets: tuple[str, ...] = ("embedded",)
    scales: tuple[Scale, ...] = (4.0,)
    protocol: ProtocolEntry = ProtocolEntry()
    metrics: tuple[str, ...] = ("psnr", "ssim")
    device: str = "auto"
    precision: str = "fp32"
    precisions: tuple[str, ...] = ()      # a case axis: fp32, bf16, fp16 (default: just `precision`)
    compile: tuple[bool, ...] = (False,)  # a case axis: eager, and/or through torch.compile
    tiling: Tiling = Tiling()
    profiling: Profiling = Profiling()
    visuals: Visuals = Visuals()
    output: str | None = None
    data_root: str | None = None
    cache_dir: str = DEFAULT_CACHE
    weights_dir: str | None = None
    plugins: tuple[str, ...] = ()
    trust_checkpoints: bool = False  # plugins are code and run as such; checkpoints are data unless trusted
    save_images: bool = False

    def run_dir(self) -> Path:
        """Stable per config, so a rerun finds (and resumes) its own results."""
        return Path(self.output) if self.output else Path("results") / self.name

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts): for run.json, the hash, and shipping to worker processes."""
        return json.loads(json.dumps(asdict(self), allow_nan=False))  # parse_config refuses non-finite values


# ---------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                data: dict[str, Any] | None = None) -> Config:
    """Read YAML (or take `data`), apply `--set` overrides, validate, and freeze."""
    raw: dict[str, Any] = copy.deepcopy(data) if data is not None else {}
    name = "run"
    if path is not None:
        path = Path(path)
        raw = read_yaml(path)
        name = path.stem
    for item in overrides:
        apply_override(raw, item)
    return parse_config(raw, default_name=name)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MissingFile("config file", path, "Check the path; the shipped configs are in configs/ (e.g. configs/quick.yml).")
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
    check_keys(raw, TOP_KEYS, where="config")
    if "methods" not in raw or raw["methods"] in (None, [], ""):
        raise UserError("config key 'methods' is missing or empty; give `methods: all` or a list such as "
                        "`methods: [bicubic, {method: liif, encoder: edsr-baseline, checkpoint: liif.pth}]`.")
    if raw.get("datasets", ["embedded"]) in (None, [], ""):
        raise UserError("config key 'datasets' is empty; give at least one catalogue name or folder, e.g. "
                        "`datasets: [set5]`, or remove the key to use the built-in `embedded` images.")
    tiling = as_mapping(raw.get("tiling"), "tiling")
    profiling = as_mapping(raw.get("profiling"), "profiling")
    visuals = as_mapping(raw.get("visuals"), "visuals")
    check_keys(tiling, ("tile", "overlap"), "tiling")
    check_keys(profiling, PROFILING_KEYS, "profiling")
    check_keys(visuals, ("crop", "crop_at"), "visuals")
    return Config(
        name=as_text(raw.get("name", default_name), "name"),
        methods=parse_methods(raw["methods"]),
        datasets=tuple(as_text(d, f"datasets[{i}]") for i, d in enumerate(as_list(raw.get("datasets", ["embedded"]), "datasets"))),
        scales=parse_scales(raw.get("scales", [4])),
        protocol=parse_protocol(raw.get("protocol", "gsasr")),
        metrics=tuple(as_text(m, f"metrics[{i}]").lower() for i, m in enumerate(as_list(raw.get("metrics", ["psnr", "ssim"]), "metrics"))),
        device=parse_device(raw.get("device", "auto")),
        precision=parse_choice(raw.get("precision", "fp32"), "precision", PRECISIONS),
        precisions=tuple(parse_choice(p, f"precisions[{i}]", PRECISIONS)
                         for i, p in enumerate(as_list(raw.get("precisions", []), "precisions"))),
        compile=parse_compile(raw.get("compile", False)),
        tiling=Tiling(tile=as_int(tiling.get("tile"), "tiling.tile", minimum=1, optional=True),
                      overlap=as_int(tiling.get("overlap", 8), "tiling.overlap", minimum=0)),
        profiling=parse_profiling(profiling),
        visuals=Visuals(crop=as_int(visuals.get("crop", 96), "visuals.crop", minimum=0),
                        crop_at=parse_crop_at(visuals.get("crop_at"))),
        output=as_path(raw.get("output"), "output"),
        data_root=as_path(raw.get("data_root"), "data_root"),
        cache_dir=as_path(raw.get("cache_dir"), "cache_dir") or DEFAULT_CACHE,
        weights_dir=as_path(raw.get("weights_dir"), "weights_dir"),
        plugins=tuple(as_text(p, f"plugins[{i}]") for i, p in enumerate(as_list(raw.get("plugins", []), "plugins"))),
        trust_checkpoints=as_bool(raw.get("trust_checkpoints", False), "trust_checkpoints"),
        save_images=as_bool(raw.get("save_images", False), "save_images"),
    )


PROFILING_KEYS = ("warmup", "repeats", "max_repeats", "rel_ci", "max_seconds", "memory", "flops", "input",
                  "frame_rates")


def parse_compile(value: Any) -> tuple[bool, ...]:
    """`compile: true` (compiled only), `false`, or `[false, true]` (both, as a case axis)."""
    items = value if isinstance(value, list) else [value]
    flags = tuple(as_bool(v, "compile (true, false, or [false, true])") for v in items)
    if not flags:
        raise UserError("config key 'compile' is an empty list; use false, true or [false, true].")
    return tuple(dict.fromkeys(flags))


def parse_profiling(raw: dict[str, Any]) -> Profiling:
    repeats = as_int(raw.get("repeats", 5), "profiling.repeats", minimum=1)
    max_repeats = as_int(raw.get("max_repeats", max(50, repeats)), "profiling.max_repeats", minimum=1)
    if max_repeats < repeats:
        raise UserError(f"config key 'profiling.max_repeats' is {max_repeats} but profiling.repeats is {repeats}; "
                        "max_repeats must be >= repeats.")
    flops = raw.get("flops", True)
    if flops != "always":
        flops = as_bool(flops, "profiling.flops (true, false or always)")
    size = raw.get("input")
    if size is not None:
        items = as_list(size, "profiling.input")
        if len(items) != 2:
            raise UserError(f"config key 'profiling.input' is {size!r}; give the LR size as [height, width], e.g. [180, 180].")
        size = (as_int(items[0], "profiling.input[0]", minimum=1), as_int(items[1], "profiling.input[1]", minimum=1))
    return Profiling(warmup=as_int(raw.get("warmup", 2), "profiling.warmup", minimum=0), repeats=repeats,
                     max_repeats=max_repeats, rel_ci=as_positive(raw.get("rel_ci", 0.05), "profiling.rel_ci"),
                     max_seconds=as_positive(raw.get("max_seconds", 30.0), "profiling.max_seconds"),
                     memory=as_bool(raw.get("memory", True), "profiling.memory"), flops=flops, input=size,
                     frame_rates=as_bool(raw.get("frame_rates", False), "profiling.frame_rates"))


def as_positive(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise UserError(f"config key '{key}' is {value!r}; it must be a number > 0.")
    return float(value)


def parse_crop_at(value: Any) -> tuple[int, int] | None:
    """`visuals.crop_at: [top, left]` in HR pixels, or null (the crop goes where the HR has most detail)."""
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        raise UserError(f"visuals.crop_at must be [top, left], two whole numbers >= 0 (HR pixels), got {value!r}; "
                        "e.g. `visuals: {crop: 96, crop_at: [120, 200]}`, or leave it out.")
    return (int(value[0]), int(value[1]))


def parse_methods(value: Any) -> tuple[MethodEntry, ...] | str:
    if isinstance(value, str) and value.strip().lower() == ALL:
        return ALL
    entries = []
    for i, item in enumerate(as_list(value, "methods")):
        where = f"methods[{i}]"
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
        ))
    return tuple(entries)


def preset_entry(name: str) -> MethodEntry:
    """`- rt4ksr.x2`: a preset alone names its method (the part before the first dot) and its row label."""
    return MethodEntry(method=name.split(".", 1)[0], preset=name, label=name)


def parse_scales(value: Any) -> tuple[Scale, ...]:
    scales: list[Scale] = []
    for i, item in enumerate(as_list(value, "scales")):
        where = f"scales[{i}]"
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


def parse_protocol(value: Any) -> ProtocolEntry:
    if isinstance(value, str):
        return ProtocolEntry(name=value)
    mapping = dict(as_mapping(value, "protocol"))
    if "name" not in mapping:
        raise UserError("config key 'protocol' needs a 'name' (e.g. `protocol: {name: gsasr, crop: 4}`).")
    name = as_text(mapping.pop("name"), "protocol.name")
    overrides = dict(as_mapping(mapping.pop("overrides", None), "protocol.overrides"))
    overrides.update(mapping)  # `{name: gsasr, crop: 4}` is shorthand for overrides
    return ProtocolEntry(name=name, overrides=finite_values(overrides, "protocol"))


def parse_device(value: Any) -> str:
    text = as_text(value, "device").lower()
    if text in ("auto", "cpu", "cuda", "mps") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise UserError(f"config key 'device' is '{value}'; allowed: {DEVICES}.")


def parse_choice(value: Any, key: str, allowed: tuple[str, ...]) -> str:
    text = as_text(value, key).lower()
    if text not in allowed:
        hint = closest(text, allowed)
        raise UserError(f"config key '{key}' is '{value}'; allowed: {', '.join(allowed)}."
                        + (f" Did you mean '{hint}'?" if hint else ""))
    return text


# ---------------------------------------------------------------- small typed readers


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


def finite_values(value: Any, key: str) -> Any:
    """Free-form values (kwargs, protocol overrides) must be JSON: run.json and the config hash store them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"config key '{key}' is {value}; only finite numbers can be stored with the results.")
    if isinstance(value, dict):
        return {k: finite_values(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [finite_values(v, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def as_bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"config key '{key}' is {value!r}; allowed: true, false.")
    return value


# ---------------------------------------------------------------- identity


def config_hash(config: Config) -> str:
    """sha256 of the resolved config (minus where it is written): two runs with equal hashes are comparable."""
    data = config.to_dict()
    data.pop("output", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, allow_nan=False).encode()).hexdigest()[:16]


def results_key(config: Config) -> dict[str, Any]:
    """What changes a stored number: a resumed run must agree on these with the results it finds."""
    data = config.to_dict()
    return {k: data[k] for k in ("protocol", "metrics", "precision", "tiling", "device")}
