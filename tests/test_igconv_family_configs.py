"""The IGConv paper configs of the HAT / RCAN / PLKSR / SMFANet families name only registered things, and their
published numbers are in asr_bench/published/igconv.csv as printed (SMFANet+ checked against docs/methods/igconv.md §7.4).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from asr_bench.config import load_config
from asr_bench.data.catalogue import list_datasets
from asr_bench.registry import get_method
from asr_bench.report.published import read_published_csv

REPO = Path(__file__).resolve().parent.parent
FAMILIES = {"hat": True, "rcan": False, "plksr": False, "smfanet": True}  # family -> has published numbers


def published():
    return read_published_csv(REPO / "asr_bench" / "published" / "igconv.csv")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_config_names_only_known_things_and_has_its_published_rows(family):
    config = load_config(REPO / "configs" / "paper" / f"igconv_{family}.yml")
    assert config.protocol.name == "gsasr" and set(config.datasets) <= set(list_datasets())
    rows = published()
    for entry in config.methods:
        spec = get_method(entry.method)
        assert entry.encoder == family and entry.encoder in spec.encoders
        assert spec.preset_for(entry.encoder, entry.preset).name == f"{entry.method}.{family}"
        have = {(r.dataset, float(r.scale), r.metric) for r in rows
                if r.method == entry.method and r.encoder == family}
        want = {(d, s, m) for d in config.datasets for s in config.scales for m in ("psnr", "ssim")}
        assert have == (want if FAMILIES[family] else set())


def test_smfanet_rows_equal_the_dossier_table():
    table = (REPO / "docs" / "methods" / "igconv.md").read_text().split("### 7.4")[1].split("\n\n")[0]
    expected = {}
    for line in table.splitlines():
        m = re.match(r"\| SMFANet\+ \| ×(\d) \| (.*) \| (.*) \|", line)
        if not m:
            continue
        for method, cells in (("igconv", m.group(2)), ("igconv-plus", m.group(3))):
            for dataset, cell in zip(("set5", "set14", "b100", "urban100", "manga109"), cells.split(", ")):
                psnr, ssim = cell.split("/")
                expected[(method, dataset, m.group(1), "psnr")] = float(psnr)
                expected[(method, dataset, m.group(1), "ssim")] = float("0" + ssim if ssim.startswith(".") else ssim)
    got = {(r.method, r.dataset, str(int(float(r.scale))), r.metric): r.value for r in published()
           if r.encoder == "smfanet"}
    assert len(expected) == 60 and got == expected
