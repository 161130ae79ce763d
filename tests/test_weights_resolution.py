"""One weight resolution for the run, --dry-run, build_model and `weights list`: the official LIIF file
(../shared/data) put in a weights folder as <dir>/<file>, as <dir>/<preset>/<file>, or in a Hugging Face Hub
cache, is what a `methods: [liif.edsr-baseline]` run loads and scores (Set5 x4 = the official code's 32.2375 dB)
and what `build_model(..., pretrained=True)` loads; a file with another sha256 is refused in one line;
`checkpoint: none` is random on purpose; `--require-weights` stops before any case, naming `weights fetch`."""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest
import torch

from asr_bench import weights
from asr_bench.cli import run_cli
from asr_bench.config import load_config, parse_config
from asr_bench.engine.cases import plan_cases
from asr_bench.models import build_model
from asr_bench.registry import get_method
from asr_bench.weightfiles import WeightFile

PRESET = "liif.edsr-baseline"
FILE = "edsr-baseline-liif.pth"
OFFICIAL_SHA = "1cf77e16f33ee17bd04049f497eaea1e06f25585dbb1919e4c7cd1d9d4d23d57"   # ../shared/data/README.md
COMMIT = "feedfacefeedfacefeedfacefeedfacefeedface"
REPO = "someone/liif-mirror"


@pytest.fixture(autouse=True)
def no_user_weights(tmp_path, monkeypatch):
    """No weights from this machine's own folders: an empty $ASR_BENCH_WEIGHTS and Hub cache."""
    monkeypatch.setenv(weights.ENV, str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf"))


def flat(tmp_path: Path, source: Path) -> Path:
    folder = tmp_path / "flat"
    folder.mkdir()
    (folder / FILE).symlink_to(source)
    return folder


def nested(tmp_path: Path, source: Path) -> Path:
    folder = tmp_path / "nested"
    (folder / PRESET).mkdir(parents=True)
    (folder / PRESET / FILE).symlink_to(source)
    return folder


def hub_cache(tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The LIIF preset's file declared as hosted on the Hub (a mirror), and put in the Hub cache's own layout."""
    spec = get_method("liif")
    preset = spec.presets[PRESET]
    wf = preset.weights[0]
    mirrored = dataclasses.replace(wf, urls=(*wf.urls, f"https://huggingface.co/{REPO}/resolve/main/{FILE}"))
    monkeypatch.setitem(spec.presets, PRESET, dataclasses.replace(preset, weights=(mirrored,)))
    root = tmp_path / "hf"
    repo = root / f"models--{REPO.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / OFFICIAL_SHA).symlink_to(source)
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "snapshots" / COMMIT / FILE).symlink_to(os.path.relpath(repo / "blobs" / OFFICIAL_SHA,
                                                                      repo / "snapshots" / COMMIT))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    return root


LAYOUTS = {
    "flat --checkpoint-dir": lambda tmp, src, mp: (["--checkpoint-dir", str(flat(tmp, src))], "checkpoint_dirs"),
    "<dir>/<preset>/<file> in $ASR_BENCH_WEIGHTS": lambda tmp, src, mp: (
        mp.setenv(weights.ENV, str(nested(tmp, src))) or [], f"${weights.ENV}"),
    "Hugging Face Hub cache": lambda tmp, src, mp: (hub_cache(tmp, src, mp) and [], weights.HUB),
}


def config_for(tmp_path: Path, set5: Path, extra: dict | None = None) -> dict:
    return {"methods": [PRESET], "datasets": ["set5"], "scales": [4], "protocol": "liif", "metrics": ["psnr"],
            "device": "cpu", "data_root": str(set5.parent.parent), "output": str(tmp_path / "run"),
            "cache_dir": str(tmp_path / "lr"), "profiling": {"warmup": 0, "repeats": 1, "max_repeats": 1,
                                                            "memory": False, "flops": False},
            "visuals": {"crop": 0}, **(extra or {})}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_official_file_is_found_in_each_layout_and_dry_run_says_where(layout, tmp_path, monkeypatch, capsys,
                                                                          liif_checkpoint, set5):
    args, where = LAYOUTS[layout](tmp_path, liif_checkpoint, monkeypatch)
    found = weights.resolve_preset(PRESET, get_method("liif").presets[PRESET],
                                   [args[1]] if args else ())
    assert found.found and found.where() == where
    assert Path(found.checkpoint).resolve() == liif_checkpoint.resolve()
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"methods: [{PRESET}]\ndatasets: [set5]\nscales: [4]\nprotocol: liif\nmetrics: [psnr]\n")
    assert run_cli(["--config", str(cfg), "--dry-run", "--data-root", str(set5.parent.parent), *args]) == 0
    out = capsys.readouterr().out
    assert f"weights: official {PRESET} weights: " in out and f"(found in {where})" in out
    assert "random" not in out
    model = build_model(preset=PRESET, pretrained=True, checkpoint_dirs=[args[1]] if args else ())
    assert model.weights_loaded and "weights_loaded=True" in repr(model)
    official = torch.load(liif_checkpoint, map_location="cpu", weights_only=True)["model"]["sd"]
    assert torch.equal(model.state_dict()["imnet.layers.0.weight"], official["imnet.layers.0.weight"])


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_run_of_the_preset_loads_the_found_file_and_scores_the_reference(layout, tmp_path, monkeypatch,
                                                                          liif_checkpoint, set5):
    """docs/methods/liif.md §6.5: the official code gives 32.2375 dB on Set5 x4 (liif protocol)."""
    from asr_bench.engine.runner import run_benchmark

    args, where = LAYOUTS[layout](tmp_path, liif_checkpoint, monkeypatch)
    config = parse_config(config_for(tmp_path, set5, {"checkpoint_dirs": [args[1]]} if args else {}))
    result = run_benchmark(config, progress=False, render=False, isolate=False)
    case, = result.cases
    assert case.status == "ok" and case.n_images == 5
    assert case.metrics["psnr"] == pytest.approx(32.2375, abs=5e-4)
    assert case.provenance["weights"]["state"] == "official" and case.provenance["weights"]["where"] == where
    assert case.provenance["checkpoint_sha256"] == OFFICIAL_SHA


def test_a_bare_file_name_in_checkpoint_is_searched_like_a_preset_file(tmp_path, liif_checkpoint, set5):
    folder = flat(tmp_path, liif_checkpoint)
    config = parse_config(config_for(tmp_path, set5, {
        "methods": [{"method": "liif", "encoder": "edsr-baseline", "checkpoint": FILE}],
        "checkpoint_dirs": [str(folder)]}))
    case, = plan_cases(config)
    assert case.entry.checkpoint == str(folder / FILE)
    assert case.weights.state == "file" and case.weights.where == "checkpoint_dirs"


def test_a_file_whose_sha256_differs_is_refused_in_one_line(tmp_path, capsys, liif_checkpoint, set5):
    folder = tmp_path / "bad"
    folder.mkdir()
    data = bytearray(liif_checkpoint.read_bytes())
    data[-100] ^= 0xFF                                             # same size, other contents
    (folder / FILE).write_bytes(bytes(data))
    assert hashlib.sha256(bytes(data)).hexdigest() != OFFICIAL_SHA
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"methods: [{PRESET}]\ndatasets: [set5]\nscales: [4]\nprotocol: liif\nmetrics: [psnr]\n")
    code = run_cli(["--config", str(cfg), "--dry-run", "--data-root", str(set5.parent.parent),
                    "--checkpoint-dir", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "sha256" in err and str(folder / FILE) in err and f"asr-bench weights fetch {PRESET}" in err
    with pytest.raises(weights.WeightsMismatch):
        build_model(preset=PRESET, pretrained=True, checkpoint_dirs=[folder])


def test_checkpoint_none_is_random_on_purpose_even_with_the_file_present(tmp_path, liif_checkpoint, set5, capsys):
    folder = flat(tmp_path, liif_checkpoint)
    config = parse_config(config_for(tmp_path, set5, {
        "methods": [{"preset": PRESET, "checkpoint": "none", "label": "random LIIF"}],
        "checkpoint_dirs": [str(folder)], "require_weights": True}))
    case, = plan_cases(config)
    assert case.entry.checkpoint is None and case.weights.state == "random"
    assert case.weights.text() == "random weights (checkpoint: none)" and "fetch" not in case.weights.text()
    model = build_model(preset=PRESET)                                # pretrained defaults to False: random
    assert model.weights_loaded is False and "weights_loaded=False" in repr(model)
    assert "random" in model.weights_source


def test_missing_weights_run_cost_only_naming_the_fetch_command(tmp_path, set5):
    case, = plan_cases(parse_config(config_for(tmp_path, set5)))
    assert case.entry.checkpoint is None and case.weights.state == "missing"
    assert f"`asr-bench weights fetch {PRESET}`" in case.weights.text()
    with pytest.raises(Exception, match=f"asr-bench weights fetch {PRESET}") as info:
        build_model(preset=PRESET, pretrained=True)
    assert "\n" not in str(info.value)


def test_require_weights_stops_before_any_case_runs_naming_every_missing_preset(tmp_path, capsys, set5):
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"methods: [{PRESET}, rt4ksr.x2, bicubic]\ndatasets: [set5]\nscales: [2]\nprotocol: liif\n"
                   "metrics: [psnr]\n")
    out = tmp_path / "run"
    code = run_cli(["--config", str(cfg), "--data-root", str(set5.parent.parent), "-o", str(out),
                    "--require-weights", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"asr-bench weights fetch {PRESET}" in err and "asr-bench weights fetch rt4ksr.x2" in err
    assert not out.exists()                                        # nothing ran, nothing written


def test_the_old_weights_dir_key_still_works_with_a_one_line_note(tmp_path, capsys):
    config = parse_config({"methods": ["bicubic"], "weights_dir": str(tmp_path)})
    assert config.metric_weights_dir == str(tmp_path) and config.weights_dir == str(tmp_path)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metric_weights_dir" in err


def test_shipped_configs_name_no_path_and_resolve_by_name_from_any_folder(tmp_path, monkeypatch):
    from asr_bench.config import SHIPPED, shipped_configs

    monkeypatch.chdir(tmp_path)
    assert {"quick", "x4", "set5_liif", "paper/liif_table1"} <= set(shipped_configs())
    assert load_config("quick").name == "quick" and load_config("paper/liif_table1").name == "liif_table1"
    for path in SHIPPED.rglob("*.yml"):
        for line in path.read_text().splitlines():
            code = line.split("#", 1)[0]
            assert "checkpoint:" not in code or "none" in code, f"{path.name}: {line}"
            assert "/work/" not in code and "shared/" not in code, f"{path.name}: {line}"


def test_weights_list_is_one_line_per_preset_and_json(tmp_path, capsys, liif_checkpoint):
    import json

    folder = flat(tmp_path, liif_checkpoint)
    assert run_cli(["weights", "list", "--checkpoint-dir", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    from asr_bench.zoo import named_presets

    assert len(lines) == len(named_presets()) + 2                 # where it looked, one per preset, a count
    liif = next(line for line in lines if line.startswith(PRESET + " "))
    assert " here " in liif and "18.9 MB" in liif and "checkpoint_dirs" in liif
    assert run_cli(["weights", "list", "--json", PRESET, "rt4ksr.x2"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["preset"] for r in records] == [PRESET, "rt4ksr.x2"]
    assert records[0]["files"][0]["sha256"] == OFFICIAL_SHA and records[0]["files"][0]["sha256_known"]
    assert records[1]["state"] == "missing" and records[1]["fetch"] == "asr-bench weights fetch rt4ksr.x2"


def test_methods_all_adds_every_preset_whose_weights_are_found(tmp_path, rt4ksr_weights):
    config = parse_config({"methods": "all", "checkpoint_dirs": [str(rt4ksr_weights)]})
    labels = {c.label: c.weights.state for c in plan_cases(config)}
    assert labels["rt4ksr.x2"] == "official" and labels["rt4ksr.x3"] == "official"
    assert all(state != "official" for label, state in labels.items() if not label.startswith("rt4ksr"))


def test_the_declared_weight_files_say_where_hub_files_live():
    wf = WeightFile("encoder.pth", ("https://huggingface.co/mutou0308/GSASR/resolve/main/GSASR_paper/EDSR/encoder.pth",))
    assert weights.hub_file(wf) == weights.HubFile("mutou0308/GSASR", "main", "GSASR_paper/EDSR/encoder.pth")


def test_doctor_finds_the_preset_where_the_run_does(tmp_path, liif_checkpoint):
    from asr_bench.engine.doctor import _method_weights_lines

    lines = _method_weights_lines([str(flat(tmp_path, liif_checkpoint))])
    assert f"  {PRESET}: present" in lines and "  rt4ksr.x2: missing" in lines


def test_run_notes_name_fetch_commands_and_the_small_official_files():
    from types import SimpleNamespace

    from asr_bench.weights import run_notes

    def record(label, status, state):
        fetch = f"asr-bench weights fetch {label}" if state == "missing" else None
        return SimpleNamespace(label=label, status=status, provenance={"weights": {"state": state, "fetch": fetch}})

    cost_only = [record("liif.edsr-baseline", "no-weights", "missing"), record("bicubic", "ok", "not-needed")]
    missing, first_run = run_notes(cost_only)
    assert "liif.edsr-baseline: `asr-bench weights fetch liif.edsr-baseline`" in missing
    assert "`asr-bench weights fetch liif.edsr-baseline rt4ksr.x2 rt4ksr.x3` (22 MB in all)" in first_run
    scored = [record("rt4ksr.x2", "ok", "official"), *cost_only]
    assert len(run_notes(scored)) == 1                               # a real comparison already: no first-run hint


def test_a_two_file_preset_among_other_files_loads_from_a_folder_of_just_its_files(tmp_path, liif_checkpoint,
                                                                                  rt4ksr_weights):
    folder = flat(tmp_path, liif_checkpoint)                      # the LIIF file beside RT4KSR's two
    for name in ("rt4ksr_x2.pth", "rt4ksr_x3.pth"):
        (folder / name).symlink_to(rt4ksr_weights / name)
    found = weights.resolve_named_preset("rt4ksr.all", [folder])
    assert sorted(p.name for p in Path(found.checkpoint).iterdir()) == ["rt4ksr_x2.pth", "rt4ksr_x3.pth"]
    model = build_model(preset="rt4ksr.all", pretrained=True, checkpoint_dirs=[folder])
    assert model.weights_loaded and sorted(map(float, model.scales)) == [2.0, 3.0]


def test_checkpoint_dir_on_the_command_line_is_searched_before_the_configs_folders_not_instead(
        tmp_path, capsys, liif_checkpoint, set5):
    """`--checkpoint-dir` says "here first": the config's own `checkpoint_dirs` stay searched after it."""
    in_config = flat(tmp_path, liif_checkpoint)
    on_command_line = tmp_path / "cli"
    on_command_line.mkdir()
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"methods: [{PRESET}]\ndatasets: [set5]\nscales: [4]\nprotocol: liif\nmetrics: [psnr]\n"
                   f"checkpoint_dirs: [{str(in_config)!r}]\n")
    base = ["--config", str(cfg), "--dry-run", "--data-root", str(set5.parent.parent)]
    assert run_cli([*base, "--checkpoint-dir", str(on_command_line)]) == 0
    out = capsys.readouterr().out
    assert str(in_config / FILE) in out and "random weights" not in out   # the config's folder still counts
    (on_command_line / FILE).symlink_to(liif_checkpoint)
    assert run_cli([*base, "--checkpoint-dir", str(on_command_line)]) == 0
    out = capsys.readouterr().out
    assert str(on_command_line / FILE) in out and str(in_config / FILE) not in out   # and comes after it


def test_a_weight_file_is_hashed_once_through_the_one_content_hash_index(tmp_path, monkeypatch):
    """Weights and dataset images share asr_bench.hashing: a later process reads a checkpoint's hash from the index
    in the cache folder; a changed file is hashed again."""
    from asr_bench import hashing

    cache = tmp_path / "cache"
    monkeypatch.setenv(weights.ENV, str(cache))
    path = tmp_path / "w.pth"
    path.write_bytes(b"weights" * 1000)
    truth = hashlib.sha256(path.read_bytes()).hexdigest()
    assert weights.cached_sha256(path) == truth and (cache / hashing.INDEX_NAME).is_file()
    monkeypatch.setattr(hashing, "_MEMO", {})  # a new process: only the index remembers
    monkeypatch.setattr(hashing, "sha256_of", lambda p: pytest.fail("hashed again"))
    assert weights.cached_sha256(path) == truth
    monkeypatch.undo()
    monkeypatch.setenv(weights.ENV, str(cache))
    path.write_bytes(b"other" * 1000)
    assert weights.cached_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest() != truth
