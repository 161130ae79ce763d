"""GSASR's paper configs validate against the config schema and the registries; its published CSV parses and
holds the README table as printed (spot values checked against docs/methods/gsasr.md §8.1)."""
from __future__ import annotations

from pathlib import Path

import pytest

from asr_bench.config import load_config
from asr_bench.data.catalogue import list_datasets
from asr_bench.registry import get_method
from asr_bench.report.published import read_published_csv

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["gsasr_x4", "gsasr_cost", "gsasr_ultra"])
def test_paper_configs_name_only_known_things(name):
    config = load_config(REPO / "configs" / "paper" / f"{name}.yml")
    assert config.protocol.name == "gsasr"
    assert set(config.datasets) <= set(list_datasets())
    for entry in config.methods:
        spec = get_method(entry.method)
        assert entry.encoder in spec.encoders
        if entry.preset:
            assert spec.preset_for(entry.encoder, entry.preset).encoder == entry.encoder


def test_x4_config_covers_every_released_family():
    config = load_config(REPO / "configs" / "paper" / "gsasr_x4.yml")
    assert config.scales == (4.0,) and config.datasets == ("div2k-val", "lsdir-val", "urban100")
    ultra = load_config(REPO / "configs" / "paper" / "gsasr_ultra.yml")
    assert ultra.scales == (4.0,) and ultra.datasets == config.datasets
    assert {e.preset for e in config.methods + ultra.methods} == set(get_method("gsasr").presets)


def test_cost_config_scales():
    config = load_config(REPO / "configs" / "paper" / "gsasr_cost.yml")
    assert config.scales == (2.0, 3.0, 4.0, 6.0, 8.0, 12.0) and config.datasets == ("div2k-720",)


def test_published_csv_has_the_readme_table():
    rows = read_published_csv(REPO / "asr_bench" / "published" / "gsasr.csv")
    def value(method, encoder, dataset, metric, text):
        return [r.value for r in rows if r.method == method and r.encoder == encoder and r.dataset == dataset
                and r.metric == metric and text in r.source]
    # dossier §8.1 rows: EDSR paper, SWIN enhanced DF2K, HATL ultra
    assert value("gsasr", "edsr-baseline", "div2k-val", "psnr", "Paper Reported") == [30.89]
    assert value("gsasr", "swinir", "urban100", "ssim", "Enhanced, trained on DF2K") == [0.8343]
    assert value("gsasr", "hat", "lsdir-val", "dists", "Ultra") == [0.1470]
    assert value("liif", "rdn", "div2k-val", "lpips", "LIIF Paper") == [0.2566]
    assert len(rows) == 17 * 3 * 4 and all(r.scale in (4, 4.0, "4") or float(r.scale) == 4 for r in rows)
