"""The config schema is the one place a key is declared: the parser, the dataclasses, `run --help` and README.md
all follow it, so none of them can drift from the others."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from asr_bench.cli import run_cli
from asr_bench.config import (FIELDS, README_BEGIN, README_END, SCHEMA, SECTION_TYPES, Config, parse_config,
                              reference_table)
from asr_bench.errors import UserError

REPO = Path(__file__).resolve().parent.parent

# one value per key that its reader must refuse (wrong type or out of range), so each key is proven to be checked
BAD_VALUES = {
    "name": [], "methods": [], "datasets": [], "scales": [0.5], "protocol": 3.5, "metrics": {"a": 1},
    "device": "gpu", "precision": "fp64", "precisions": ["half"], "compile": "yes", "tiling.tile": 0,
    "tiling.overlap": -1, "profiling.warmup": -1, "profiling.repeats": 0, "profiling.max_repeats": 0,
    "profiling.rel_ci": 0, "profiling.max_seconds": -2.0, "profiling.memory": "yes", "profiling.flops": "sometimes",
    "profiling.input": [1, 2, 3], "profiling.frame_rates": 1, "profiling.case_timeout": 0, "visuals.crop": 2.5, "visuals.crop_at": [1],
    "save_images": "no", "output": {}, "data_root": [], "cache_dir": True, "metric_weights_dir": {}, "plugins": {"x": 1},
    "checkpoint_dirs": {"a": 1}, "require_weights": "yes",
    "trust_checkpoints": "true",
}


def nested(key: str, value: object) -> dict[str, object]:
    section, _, name = key.rpartition(".")
    return {section: {name: value}} if section else {key: value}


def test_every_schema_key_is_checked_by_its_reader_and_named_in_the_error():
    assert set(BAD_VALUES) == set(SCHEMA), "add a refused value for the new key to BAD_VALUES"
    for key, bad in BAD_VALUES.items():
        raw = {"methods": "all", **nested(key, bad)}
        if key.startswith("profiling."):
            raw["profiling"] = {**raw.get("profiling", {}), **nested(key, bad)["profiling"]}
        with pytest.raises(UserError) as info:
            parse_config(raw)
        assert key.rpartition(".")[2] in str(info.value) and "\n" not in str(info.value), (key, str(info.value))


def test_a_key_outside_the_schema_is_refused_with_the_schema_keys():
    with pytest.raises(UserError, match="allowed in profiling: warmup, repeats"):
        parse_config({"methods": "all", "profiling": {"repeat": 3}})


def test_the_dataclasses_hold_exactly_the_schema_keys():
    declared = {f.name for f in dataclasses.fields(Config) if f.name not in SECTION_TYPES}
    for section, kind in SECTION_TYPES.items():
        declared |= {f"{section}.{f.name}" for f in dataclasses.fields(kind)}
    assert declared == set(SCHEMA)


def test_dataclass_defaults_equal_what_the_parser_gives_for_an_absent_key():
    assert parse_config({"methods": "all"}) == Config(name="run", methods="all")


def test_documented_defaults_are_the_parsed_defaults():
    """The reference's default column, read back as YAML, parses to what an absent key gives (where the column
    shows a value; a few say in words what the default depends on)."""
    config = parse_config({"methods": "all"})
    checked = 0
    for spec in FIELDS:
        if spec.shown_default is not None or spec.key in ("name", "methods"):
            continue
        documented = spec.read(yaml.safe_load(spec.default_text().strip("`")))
        got = getattr(getattr(config, spec.section), spec.name) if spec.section else getattr(config, spec.key)
        assert documented == got, spec.key
        checked += 1
    assert checked >= 20


def test_readme_config_reference_is_the_generated_table():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start, end = readme.find(README_BEGIN), readme.find(README_END)
    assert 0 <= start < end, "README.md lost its config reference markers"
    stored = readme[start + len(README_BEGIN):end].strip()
    assert stored == reference_table(), (
        "README.md's config reference differs from the schema in asr_bench/config.py; regenerate it with "
        "`python -m asr_bench.config README.md`")


@pytest.mark.parametrize("key", ["compile", "precisions", "profiling.frame_rates", "tiling.overlap"])
def test_keys_the_readme_once_lacked_are_documented(key):
    assert f"| `{key}` |" in (REPO / "README.md").read_text(encoding="utf-8")


def test_the_readme_names_the_mps_device():
    row = next(line for line in reference_table().splitlines() if line.startswith("| `device` |"))
    assert "`mps`" in row and "`cuda:N`" in row
    assert parse_config({"methods": "all", "device": "mps"}).device == "mps"


def test_run_help_lists_every_config_key(capsys):
    with pytest.raises(SystemExit):
        run_cli(["run", "--help"])
    out = capsys.readouterr().out
    for spec in FIELDS:
        assert f"\n  {spec.key} (" in out, spec.key
