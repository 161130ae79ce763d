"""Cases = methods x datasets x scales, in a fixed order, with stable ids.

The case id "<label>|<dataset>|<scale>" is the key the store resumes by, so it depends only on what the
user wrote (label, dataset name, scale), never on a hash or on the order of the config.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import ALL, DETECT, Config, MethodEntry
from ..errors import MissingFile, UnknownName, UserError
from ..sizes import Scale, format_scale
from ..weights import NONE, WeightsChoice, missing_line, resolve_checkpoint, resolve_preset


@dataclass(frozen=True)
class Case:
    entry: MethodEntry          # resolved: encoder and label filled in
    dataset: str                # the dataset's name in tables and ids (a folder's own name)
    scale: Scale
    source: str = ""            # what the config named: catalogue name or folder path (default: `dataset`)
    precision: str = "fp32"
    compiled: bool = False
    frame_rates: bool = False   # this case also measures the method's 720p/1080p -> 4K frame rates
    weights: WeightsChoice | None = None   # which weights the case loads and where they were found (provenance)

    @property
    def dataset_ref(self) -> str:
        return self.source or self.dataset

    @property
    def label(self) -> str:
        return self.entry.display()

    @property
    def scale_label(self) -> str:
        return format_scale(self.scale)

    @property
    def case_id(self) -> str:
        axes = ("" if self.precision == "fp32" else f"|{self.precision}") + ("|compiled" if self.compiled else "")
        return f"{self.label}|{self.dataset}|{self.scale_label}{axes}"


def load_plugins(plugins: tuple[str, ...] | list[str]) -> None:
    """Register the `METHODS` of extra modules (import names or .py files) named in the config."""
    from ..registry import plugin_methods, register

    for plugin in plugins:
        path = Path(plugin)
        if plugin.endswith(".py"):
            if not path.is_file():
                raise MissingFile("plugin file", path, "Check the `plugins:` entry in the config.")
            name = f"asr_bench_plugin_{path.stem}"
            module = sys.modules.get(name)
            if module is None:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
                try:
                    spec.loader.exec_module(module)  # type: ignore[union-attr]
                except Exception as exc:  # noqa: BLE001 - the user's file: say which and why, in one line
                    raise UserError(f"plugin file {path} failed to import ({type(exc).__name__}: {exc}); "
                                    "fix it or remove it from `plugins:`.") from exc
                sys.modules[name] = module
        else:
            try:
                module = importlib.import_module(plugin)
            except Exception as exc:  # noqa: BLE001
                raise UserError(f"plugin module '{plugin}' could not be imported ({type(exc).__name__}: {exc}); "
                                "install or fix it, or give the path of a .py file in `plugins:`.") from exc
        for spec_ in plugin_methods(module, str(plugin)):
            register(spec_)


def resolve_methods(config: Config) -> list[MethodEntry]:
    """Expand `methods: all`, fill in default encoders, labels and found weights, and check names."""
    return [entry for entry, _ in resolve_entries(config)]


def resolve_entries(config: Config) -> list[tuple[MethodEntry, WeightsChoice]]:
    """Each method entry resolved (encoder, preset, label; `checkpoint` = the file its weights come from) with the
    weights it will use: a preset's official files where found (`asr_bench.weights`), a `checkpoint:` path or bare
    file name, `checkpoint: none` (random on purpose), or cost only. `methods: all` adds a row for every other
    preset whose official weights are found. `require_weights` turns missing weights into one error here."""
    from ..registry import choose_preset, get_method, method_specs

    load_plugins(config.plugins)
    if config.methods == ALL:
        entries = [MethodEntry(method=spec.name) for spec in method_specs()]
    else:
        entries = list(config.methods)  # type: ignore[arg-type]
    resolved: list[tuple[MethodEntry, WeightsChoice]] = []
    for i, entry in enumerate(entries):
        if entry.method == DETECT:
            entry = detected_entry(entry, i, config)
        spec = get_method(entry.method)
        try:
            encoder, preset = choose_preset(spec, entry.encoder, entry.preset)  # old preset names: a warning
        except UserError as exc:
            exc.args = (f"methods[{i}]: {exc}",)    # same error type, with the config entry it came from
            raise
        checkpoint, choice = entry_weights(entry, spec, preset, config, i)
        label = entry.label or (spec.name if encoder == "none" else f"{spec.name} ({encoder})")
        resolved.append((replace(entry, encoder=encoder, label=label, preset=preset.name if preset else None,
                                 checkpoint=checkpoint), choice))
        if config.methods == ALL:
            resolved += found_presets(spec, preset, config)
    labels = [e.label for e, _ in resolved]
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise UserError(f"two methods share the label '{duplicates[0]}'; give each a distinct `label:` in the config.")
    if config.require_weights:
        missing = [c.found for _, c in resolved if c.state == "missing" and c.found is not None]
        if missing:
            raise UserError(missing_line(list({m.preset: m for m in missing}.values())))
    return resolved


def entry_weights(entry: MethodEntry, spec: Any, preset: Any, config: Config,
                  index: int) -> tuple[str | None, WeightsChoice]:
    """(checkpoint to load, what it is) of one entry."""
    name = preset.name if preset is not None else None
    text = entry.checkpoint
    if text is not None and text.strip().lower() == NONE:
        return None, WeightsChoice("random", preset=name)
    if text is not None:
        found = resolve_checkpoint(text, config.checkpoint_dirs, what=f"checkpoint of methods[{index}] ({entry.method})")
        return str(found.path), WeightsChoice("file", str(found.path), found.where, name)
    if not spec.needs_weights:
        return None, WeightsChoice("not-needed", preset=name)
    if preset is None:
        return None, WeightsChoice("undeclared")
    found_preset = resolve_preset(preset.name, preset, config.checkpoint_dirs, variant=entry.variant)
    if found_preset.found:
        return found_preset.checkpoint, WeightsChoice("official", found_preset.checkpoint, found_preset.where(),
                                                      name, found_preset)
    return None, WeightsChoice("missing" if found_preset.declared else "undeclared", preset=name, found=found_preset)


def found_presets(spec: Any, default: Any, config: Config) -> list[tuple[MethodEntry, WeightsChoice]]:
    """`methods: all`: a row per preset of `spec` (other than its default one) whose official weights are found."""
    rows = []
    for preset in spec.presets.values():
        if preset is default or not getattr(preset, "weights", ()):
            continue
        found = resolve_preset(preset.name, preset, config.checkpoint_dirs)
        if found.found:
            rows.append((MethodEntry(method=spec.name, encoder=preset.encoder, preset=preset.name, label=preset.name,
                                     checkpoint=found.checkpoint),
                         WeightsChoice("official", found.checkpoint, found.where(), preset.name, found)))
    return rows


def detected_entry(entry: MethodEntry, index: int, config: Config | None = None) -> MethodEntry:
    """A `- {checkpoint: path}` entry with the method, encoder and preset its file says it is."""
    from ..detect import detect_checkpoint, preset_key
    from ..registry import get_method

    path = resolve_checkpoint(str(entry.checkpoint), config.checkpoint_dirs if config else (),
                              what=f"checkpoint of methods[{index}]").path
    entry = replace(entry, checkpoint=str(path))
    found = detect_checkpoint(entry.checkpoint)
    spec = get_method(found.method)
    # Labelled by the preset found (as a `- rt4ksr.x2` entry is), so two detected files of one method stay distinct.
    return replace(entry, method=found.method, encoder=entry.encoder or found.encoder,
                   preset=entry.preset or preset_key(spec, found.preset), kwargs={**found.options, **entry.kwargs},
                   label=entry.label or found.preset)


def plan_cases(config: Config, dataset_names: dict[str, str] | None = None) -> list[Case]:
    """Every (method, dataset, scale), methods outermost; `dataset_names` maps config entries to table names."""
    entries = resolve_entries(config)
    names = dataset_names or {}
    precisions = config.precisions or (config.precision,)
    cases = [Case(entry, names.get(dataset, dataset), scale, source=dataset, precision=precision, compiled=compiled,
                  weights=choice)
             for entry, choice in entries for dataset in config.datasets for scale in config.scales
             for precision in precisions for compiled in config.compile]
    if config.profiling.frame_rates:  # once per method row (label, precision, compiled): its first case that runs
        seen: set[tuple[str, str, bool]] = set()
        for i, case in enumerate(cases):
            row = (case.label, case.precision, case.compiled)
            if row not in seen and case_supported(case):
                seen.add(row)
                cases[i] = replace(case, frame_rates=True)
    return cases


PRECISION_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def encoder_refuses(case: Case) -> str | None:
    """Why the case's encoder cannot run its precision, or None. Only encoders whose dtypes a test has checked
    (a capability list other than the float32-only default) refuse: HiT-SRF overflows in fp16, for one, and a
    NaN output must read n/a, not a number."""
    from ..encoders import encoder_capabilities, list_encoders
    from ..encoders.capabilities import DEFAULT

    name = case.entry.encoder
    if name not in list_encoders():
        return None
    caps = encoder_capabilities(name)
    if caps == DEFAULT or PRECISION_DTYPES[case.precision] in caps.dtypes:
        return None
    return f"encoder '{name}' is checked in {', '.join(caps.dtypes)} only, not {PRECISION_DTYPES[case.precision]}"


def case_supported(case: Case) -> bool:
    """Whether the method declares the case's scale and precision and its encoder runs that precision (else it is
    stored as unsupported, no worker)."""
    from ..registry import get_method
    from ..upsampler import supports

    spec = get_method(case.entry.method)
    return supports(spec.scales, case.scale) and case.precision in spec.dtypes and encoder_refuses(case) is None


def check_names(config: Config) -> dict[str, str]:
    """Fail before the first case on any unknown dataset, protocol or metric (methods: `resolve_methods`).

    Returns each dataset entry's name for tables: the catalogue name, or a folder's own name."""
    from ..data.catalogue import resolve_dataset
    from ..metrics import list_metrics
    from ..protocols import get_protocol

    get_protocol(config.protocol.name, **config.protocol.overrides)
    known = list_metrics()
    for metric in config.metrics:
        if metric not in known:
            raise UnknownName("metric (config key 'metrics')", metric, known)
    names = {entry: resolve_dataset(entry, data_root=config.data_root).name for entry in config.datasets}
    clash = sorted(n for n in set(names.values()) if list(names.values()).count(n) > 1)
    if clash:
        raise UserError(f"two datasets in the config are both named '{clash[0]}'; rename one of the folders.")
    return names
