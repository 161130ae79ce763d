"""The IGConv encoder families' paper configs name only registered things, and asr_bench/published/igconv.csv
holds each family's table exactly as docs/methods/igconv.md §7 prints it."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from test_igconv import IGCONV_DOC, PUBLISHED

from asr_bench.config import load_config
from asr_bench.data.catalogue import list_datasets
from asr_bench.registry import get_method

REPO = Path(__file__).resolve().parent.parent
DATASETS = ["set5", "set14", "b100", "urban100", "manga109"]
# family -> (paper config, encoder in the CSV, dossier section, row label in that section)
FAMILIES = {
    "srformer": ("igconv_srformer", "srformer", "### 7.4", "SRFormer"),
    "atd": ("igconv_atd", "atd", None, None),
    "mambair": ("igconv_mambair", "mambair", "### 7.4", "MambaIR"),
    "mambair-light": ("igconv_mambair_light", "mambair-light", "### 7.3", None),
    "hit-srf": ("igconv_hit_srf", "hit-srf", "### 7.2", None),
}
# Not in the dossier's tables: transcribed here from the README image figs/Quantitative_PT.png (paper Table 4),
# the ATD-IGConv+ (DF2K) rows; the dossier quotes x4 Urban100 28.43/0.8444 from it.
ATD_TABLE4 = {
    "2": "38.68/0.9631 35.00/0.9280 32.69/0.9059 34.94/0.9491 40.29/0.9804",
    "3": "35.17/0.9334 31.22/0.8564 29.61/0.8183 30.76/0.8946 35.84/0.9565",
    "4": "33.13/0.9061 29.36/0.7994 28.07/0.7536 28.43/0.8444 32.92/0.9319",
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_paper_config_names_only_known_things(family):
    config = load_config(REPO / "configs" / "paper" / f"{FAMILIES[family][0]}.yml")
    assert config.protocol.name == "gsasr" and set(config.datasets) <= set(list_datasets())
    assert {e.method for e in config.methods} == ({"igconv-plus"} if family == "atd" else {"igconv", "igconv-plus"})
    for entry in config.methods:
        spec = get_method(entry.method)
        assert entry.encoder in spec.encoders
        assert spec.preset_for(entry.encoder, entry.preset).encoder == entry.encoder


def _dossier_rows(section: str, label: str) -> dict:
    """(method, dataset, scale, metric) -> value from a §7 table with IGConv and IGConv+ cells per scale."""
    text = IGCONV_DOC.read_text().split(section)[1].split("\n### ")[0]
    expected = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if section == "### 7.4":  # | enc | ×s | IGConv | IGConv+ |
            if len(cells) != 4 or cells[0] != label:
                continue
            cells = cells[1:]
        m = re.fullmatch(r"×(\d)", cells[0]) if cells else None
        if not m or len(cells) != 3:
            continue
        for method, cell in zip(("igconv", "igconv-plus"), cells[1:]):
            for ds, pair in zip(DATASETS, cell.split(",")):
                psnr, ssim = pair.strip().split("/")
                expected[(method, ds, m.group(1), "psnr")] = float(psnr)
                expected[(method, ds, m.group(1), "ssim")] = float(ssim)
    return expected


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_published_rows_equal_the_dossier_table(family):
    _, encoder, section, label = FAMILIES[family]
    if section is None:
        expected = {("igconv-plus", ds, scale, metric): float(value)
                    for scale, cells in ATD_TABLE4.items()
                    for ds, cell in zip(DATASETS, cells.split())
                    for metric, value in zip(("psnr", "ssim"), cell.split("/"))}
        assert "28.43/0.8444" in IGCONV_DOC.read_text()
    else:
        expected = _dossier_rows(section, label)
    assert len(expected) == (30 if section is None else 60)
    with PUBLISHED.open() as f:
        got = {(r["method"], r["dataset"], r["scale"], r["metric"]): float(r["value"])
               for r in csv.DictReader(line for line in f if not line.startswith("#")) if r["encoder"] == encoder}
    assert got == expected


# Per released test YAML (dslisleedh/IGConv options/test/*): preset -> (geo_ensemble, LR pad multiple of the test
# model, first checkpoint key tried, max_s).
OFFICIAL_OPTIONS = {
    "igconv.srformer": (False, 22, "params", 4),
    "igconv-plus.srformer": (True, 22, "params", 4),
    "igconv-plus.atd": (True, 16, "params_ema", 4),
    "igconv.mambair": (False, 1, "params", 4),
    "igconv-plus.mambair": (True, 1, "params", 4),
    "igconv-plus.mambair-s8": (True, 1, "params", 8),
    "igconv.mambair-light": (False, 1, "params", 4),
    "igconv-plus.mambair-light": (True, 1, "params", 4),
    "igconv.hit-srf": (False, 1, "params", 4),
    "igconv-plus.hit-srf": (True, 1, "params", 4),
}


@pytest.mark.parametrize("preset", sorted(OFFICIAL_OPTIONS))
def test_presets_carry_the_official_test_options(preset):
    method = preset.split(".")[0]
    geo, pad, key, max_s = OFFICIAL_OPTIONS[preset]
    spec = get_method(method)
    chosen = spec.presets[preset]
    kwargs = chosen.method_kwargs
    assert kwargs["geo_ensemble"] is geo and spec.size_multiple(chosen) == pad
    assert chosen.checkpoint_keys[0] == key and kwargs.get("max_s", 4) == max_s
    assert chosen.normalisation.mean == (0.4488, 0.4371, 0.4040)  # DIV2K mean subtracted, img_range 1
