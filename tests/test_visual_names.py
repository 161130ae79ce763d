"""Crop files are named so that no two labels share one (issue 9 list 8: 'A b' and 'a_b' both slug to 'a_b',
and a method labelled 'GT' or 'bicubic' would overwrite the reference crops)."""
import numpy as np
import torch

from asr_bench.data import read_image, to_uint8
from asr_bench.engine.visuals import save_crops
from asr_bench.report.visuals import visual_rows
from asr_bench.results.schema import CaseRecord, ImageRecord, label_stem, slug

LABELS = ["A b", "a_b", "GT", "bicubic", "a b!"]


def test_labels_that_slug_alike_get_distinct_stems():
    assert len({slug(label) for label in LABELS}) < len(LABELS)  # the collision this guards against
    stems = [label_stem(label) for label in LABELS]
    assert len(set(stems)) == len(LABELS) and not {"GT", "bicubic"} & set(stems)
    assert all(stem.startswith(slug(label) + "-") for stem, label in zip(stems, LABELS))


def test_every_label_keeps_its_own_crop_and_the_report_names_each(tmp_path):
    folder = tmp_path / "visuals" / "d" / "2" / "img"
    hr = torch.rand(1, 3, 16, 16)
    lr = torch.rand(1, 3, 8, 8)
    outputs = {label: torch.full((1, 3, 16, 16), i / 10) for i, label in enumerate(LABELS)}
    for label, sr in outputs.items():
        save_crops(folder, label, sr, hr, lr, 8)
    import json

    top, left, bottom, right = json.loads((folder / "box.json").read_text())["box"]  # where the first case put it
    for label, sr in outputs.items():  # each file holds its own method's pixels
        assert np.array_equal(read_image(folder / f"{label_stem(label)}.png"), to_uint8(sr[..., top:bottom, left:right]))
    assert np.array_equal(read_image(folder / "GT.png"), to_uint8(hr[..., top:bottom, left:right]))
    cases = [CaseRecord(case_id=f"{label}|d|2", label=label, method="m", encoder="", dataset="d", scale="2",
                        protocol="gsasr") for label in LABELS]
    images = [ImageRecord(case_id=c.case_id, image="img", metrics={"psnr": 20.0 + i}) for i, c in enumerate(cases)]
    (row,) = visual_rows(tmp_path, cases, images)
    names = [t.name for t in row.tiles]
    assert names[2:] == LABELS  # GT and bicubic first, then every method once, in run order
    captions = {t.name: t.caption for t in row.tiles[2:]}
    assert all(f"{20.0 + i:.2f}" in captions[label] for i, label in enumerate(LABELS))


def test_crops_of_runs_written_before_label_stem_still_show_under_their_label(tmp_path):
    folder = tmp_path / "visuals" / "d" / "2" / "img"
    save_crops(folder, "GT-less", torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), torch.rand(1, 3, 8, 8), 8)
    (folder / f"{label_stem('GT-less')}.png").rename(folder / f"{slug('My Net')}.png")  # the old naming
    case = CaseRecord(case_id="My Net|d|2", label="My Net", method="m", encoder="", dataset="d", scale="2",
                      protocol="gsasr")
    (row,) = visual_rows(tmp_path, [case], [])
    assert [t.name for t in row.tiles][2:] == ["My Net"]
