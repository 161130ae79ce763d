"""detect_checkpoint: every official key table (../shared/research/*_keys_*.tsv) and every real file in
../shared/data/weights names its method, encoder and preset; the families we do not implement say so; and a
detected file builds and loads strictly through build_model(checkpoint=...) and a `{checkpoint: path}` config entry.

State dicts are built from the tables (keys and shapes as the official classes save them; meta tensors where only
shapes are read) and from the dossiers' key lists (liif.md §4, metasr.md §1.2 and §2.1) for files without a table.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import research_key_table
import torch

import asr_bench as ab
from asr_bench.config import load_config
from asr_bench.detect import UnsupportedFamily
from asr_bench.engine.cases import resolve_methods
from asr_bench.errors import UserError


RESEARCH = Path(__file__).resolve().parent.parent.parent / "shared" / "research"

# every key table -> (method, encoder, preset) or the unsupported family it must be named as
EXPECTED = {
    "gsasr_keys_paper_edsr.tsv": ("gsasr", "edsr-baseline", "gsasr.edsr-baseline-paper"),
    "gsasr_keys_paper_rdn.tsv": ("gsasr", "rdn", "gsasr.rdn-paper"),
    "gsasr_keys_paper_swinir.tsv": ("gsasr", "swinir", "gsasr.swinir-paper"),
    "gsasr_keys_enhanced_edsr.tsv": ("gsasr", "edsr-baseline", "gsasr.edsr-baseline-enhanced"),
    "gsasr_keys_enhanced_rdn.tsv": ("gsasr", "rdn", "gsasr.rdn-enhanced"),
    "gsasr_keys_enhanced_swin.tsv": ("gsasr", "swinir", "gsasr.swinir-enhanced"),
    "gsasr_keys_ultra_hatl.tsv": "HAT-L",
    "igconv_keys_EDSR_IGConv_DIV2K.tsv": ("igconv", "edsr", "igconv.edsr"),
    "igconv_keys_EDSR_IGConvPlus_DIV2K.tsv": ("igconv-plus", "edsr", "igconv-plus.edsr"),
    "igconv_keys_EDSRbaseline_IGConv_classdefaults_NOTRELEASED.tsv": ("igconv", "edsr-baseline", "igconv.edsr-baseline"),
    "igconv_keys_EDSRbaseline_IGConvPlus_classdefaults_NOTRELEASED.tsv":
        ("igconv-plus", "edsr-baseline", "igconv-plus.edsr-baseline"),
    "igconv_keys_RDN_IGConv_classdefaults_NOTRELEASED.tsv": ("igconv", "rdn", "igconv.rdn"),
    "igconv_keys_RDN_IGConvPlus_DIV2K.tsv": ("igconv-plus", "rdn", "igconv-plus.rdn"),
    "igconv_keys_SwinIR_IGConv_derived_NOTRELEASED.tsv": ("igconv", "swinir", "igconv.swinir"),
    "igconv_keys_SwinIR_IGConvPlus_DIV2K.tsv": ("igconv-plus", "swinir", "igconv-plus.swinir"),
    "igconv_keys_ATD_IGPlus.tsv": "ATD",
    "igconv_keys_HAT_IGPlus.tsv": "HAT",
    "igconv_keys_HiT_SRF_IGConv_DIV2K.tsv": "HiT-SRF",
    "igconv_keys_HiT_SRF_IGConvPlus_DIV2K.tsv": "HiT-SRF",
    "igconv_keys_MambaIR_IGConv_DF2K.tsv": "MambaIR",
    "igconv_keys_MambaIR_IGConvPlus_DF2K.tsv": "MambaIR",
    "igconv_keys_MambaIR_IGConvPlus_DFL_S8.tsv": "MambaIR",
    "igconv_keys_MambaIR_Light_IGConv_DIV2K.tsv": "MambaIR-Light",
    "igconv_keys_MambaIR_Light_IGConvPlus_DIV2K.tsv": "MambaIR-Light",
    "igconv_keys_PLKSR_IGConvPlus_DF2K.tsv": "PLKSR",
    "igconv_keys_RCAN_IGConvPlus_DIV2K_S2348.tsv": "RCAN",
    "igconv_keys_SMFANet_IGConv_DF2K.tsv": "SMFANet",
    "igconv_keys_SMFANet_IGConvPlus_DF2K.tsv": "SMFANet",
    "igconv_keys_SRFormer_IGConv_DF2K.tsv": "SRFormer",
    "igconv_keys_SRFormer_IGConvPlus_DF2K.tsv": "SRFormer",
}


def table_rows(name: str) -> list[tuple[str, str, tuple[int, ...], str]]:
    """(part, key, shape, dtype) of a research table; part is '' for single-file (IGConv) tables."""
    return research_key_table(name)


def tensor(shape, dtype="float32", device="meta", gen=None):
    if dtype == "int64":
        return torch.zeros(shape, dtype=torch.int64, device=device)
    if device == "meta":
        return torch.empty(shape, device="meta")
    return torch.randn(shape, generator=gen) * 0.01


def official_container(name: str, device: str = "meta") -> dict:
    """The table as its official file holds it: GSASR {'encoder': {'params_ema'}, 'decoder': ...}, IGConv {'params'}."""
    gen = torch.Generator().manual_seed(0)
    parts: dict[str, dict] = {}
    for part, key, shape, dtype in table_rows(name):
        parts.setdefault(part, {})[key] = tensor(shape, dtype, device, gen)
    if "" in parts:
        return {"params": parts[""]}
    return {part: {"params_ema": sd} for part, sd in parts.items()}


def test_every_key_table_is_covered():
    if not RESEARCH.is_dir():
        pytest.skip(f"needs {RESEARCH}")
    assert sorted(p.name for p in RESEARCH.glob("*_keys_*.tsv")) == sorted(EXPECTED)


@pytest.mark.parametrize("table", sorted(n for n, v in EXPECTED.items() if isinstance(v, tuple)))
def test_supported_key_tables_name_their_preset(table):
    found = ab.detect_checkpoint(official_container(table))
    assert (found.method, found.encoder, found.preset) == EXPECTED[table]
    assert found.reason


@pytest.mark.parametrize("table", sorted(n for n, v in EXPECTED.items() if isinstance(v, str)))
def test_families_we_do_not_implement_are_named_not_guessed(table):
    with pytest.raises(UnsupportedFamily, match=rf"unsupported family {re.escape(EXPECTED[table])} "):
        ab.detect_checkpoint(official_container(table))


def test_hyperparameters_come_from_the_shapes():
    swin = ab.detect_checkpoint(official_container("igconv_keys_SwinIR_IGConvPlus_DIV2K.tsv")).hyperparameters
    assert swin["embed_dim"] == 180 and swin["depths"] == (6,) * 6 and swin["num_heads"] == (6,) * 6
    assert swin["window_size"] == 8 and swin["mlp_ratio"] == 2.0 and swin["out_features"] is None
    rdn = ab.detect_checkpoint(official_container("igconv_keys_RDN_IGConvPlus_DIV2K.tsv")).hyperparameters
    assert (rdn["D"], rdn["C"], rdn["G"], rdn["config"]) == (16, 8, 64, "B")
    edsr = ab.detect_checkpoint(official_container("igconv_keys_EDSR_IGConv_DIV2K.tsv")).hyperparameters
    assert (edsr["n_feats"], edsr["n_blocks"]) == (256, 32)
    gsasr = ab.detect_checkpoint(official_container("gsasr_keys_enhanced_swin.tsv")).hyperparameters
    assert gsasr["out_features"] == 64
    assert gsasr["decoder"] == {"channel": 192, "window_size": 16, "rope": True, "num_crossattn_blocks": 2,
                                "num_crossattn_layers": 4, "num_selfattn_blocks": 6}


# ---------------------------------------------------------------- files without a table (from the dossiers)


def liif_edsr_baseline_encoder() -> dict:
    """liif.md §4 / shared/data README: the EDSR-baseline keys in LIIF's naming, under 'encoder.'."""
    sd = {"encoder.sub_mean.weight": (3, 3, 1, 1), "encoder.sub_mean.bias": (3,),
          "encoder.add_mean.weight": (3, 3, 1, 1), "encoder.add_mean.bias": (3,),
          "encoder.head.0.weight": (64, 3, 3, 3), "encoder.head.0.bias": (64,)}
    for i in range(16):
        for j in (0, 2):
            sd[f"encoder.body.{i}.body.{j}.weight"] = (64, 64, 3, 3)
            sd[f"encoder.body.{i}.body.{j}.bias"] = (64,)
    sd["encoder.body.16.weight"], sd["encoder.body.16.bias"] = (64, 64, 3, 3), (64,)
    return sd


def rdn_encoder(prefix: str) -> dict:
    """The official RDN-B names (the same in LIIF, Meta-RDN, IGConv): the IGConv RDN table's encoder rows."""
    return {prefix + key: shape for _, key, shape, _ in table_rows("igconv_keys_RDN_IGConvPlus_DIV2K.tsv")
            if key.split(".")[0] in ("SFENet1", "SFENet2", "RDBs", "GFF")}


def meta(shapes: dict) -> dict:
    return {k: torch.empty(v, device="meta") for k, v in shapes.items()}


LIIF_MLP = {"imnet.layers.0.weight": (256, 580), "imnet.layers.0.bias": (256,),
            **{f"imnet.layers.{i}.{p}": (256, 256) if p == "weight" else (256,) for i in (2, 4, 6) for p in ("weight", "bias")},
            "imnet.layers.8.weight": (3, 256), "imnet.layers.8.bias": (3,)}
METASR_MLP = {"imnet.layers.0.weight": (256, 3), "imnet.layers.0.bias": (256,),
              "imnet.layers.2.weight": (1728, 256), "imnet.layers.2.bias": (1728,)}


def liif_file(name: str, encoder_name: str, sd: dict) -> dict:
    return {"model": {"name": name, "args": {"encoder_spec": {"name": encoder_name, "args": {"no_upsampling": True}}},
                      "sd": meta(sd)}, "epoch": 1000}


@pytest.mark.parametrize("container,expected", [
    (lambda: liif_file("liif", "rdn", {**rdn_encoder("encoder."), **LIIF_MLP}), ("liif", "rdn", "liif.rdn")),
    (lambda: liif_file("metasr", "edsr-baseline", {**liif_edsr_baseline_encoder(), **METASR_MLP}),
     ("metasr", "edsr-baseline", "metasr.edsr-baseline")),
    (lambda: liif_file("metasr", "rdn", {**rdn_encoder("encoder."), **METASR_MLP}), ("metasr", "rdn", "metasr.rdn")),
    (lambda: meta({**liif_edsr_baseline_encoder(), **LIIF_MLP}), ("liif", "edsr-baseline", "liif.edsr-baseline")),
    (lambda: meta({"sub_mean.weight": (3, 3, 1, 1), "sub_mean.bias": (3,), "add_mean.weight": (3, 3, 1, 1),
                   "add_mean.bias": (3,), **rdn_encoder(""), "P2W.meta_block.0.weight": (256, 3),
                   "P2W.meta_block.0.bias": (256,), "P2W.meta_block.2.weight": (1728, 256),
                   "P2W.meta_block.2.bias": (1728,)}), ("metasr", "rdn", "metasr.meta-rdn")),
], ids=["rdn-liif", "edsr-baseline-metasr", "rdn-metasr", "bare-liif-sd", "meta-rdn"])
def test_liif_repo_and_meta_rdn_files_from_the_dossiers(container, expected):
    found = ab.detect_checkpoint(container())
    assert (found.method, found.encoder, found.preset) == expected


# ---------------------------------------------------------------- the real files


def test_real_liif_file_detects_and_builds(liif_checkpoint):
    found = ab.detect_checkpoint(liif_checkpoint)
    assert (found.method, found.encoder, found.preset) == ("liif", "edsr-baseline", "liif.edsr-baseline")
    model = ab.build_model(checkpoint=liif_checkpoint)
    assert model.method == "liif" and model.weights_loaded
    assert sum(p.numel() for p in model.parameters()) == 1_567_323 - 24   # the README's count minus the unused mean-shift convs


@pytest.mark.parametrize("name,scale", [("rt4ksr_x2.pth", 2), ("rt4ksr_x3.pth", 3)])
def test_real_rt4ksr_files_detect_their_scale_and_build(rt4ksr_weights, name, scale):
    found = ab.detect_checkpoint(rt4ksr_weights / name)
    assert (found.method, found.encoder, found.preset) == ("rt4ksr", "none", f"rt4ksr.x{scale}")
    model = ab.build_model(checkpoint=rt4ksr_weights / name)
    assert model.scales == (scale,) and model.weights_loaded
    assert sum(p.numel() for p in model.parameters()) == {2: 152_233, 3: 165_253}[scale]   # the README's counts


def test_real_rt4ksr_folder_is_both_scales(rt4ksr_weights):
    found = ab.detect_checkpoint(rt4ksr_weights)
    assert (found.method, found.preset, found.hyperparameters["scales"]) == ("rt4ksr", None, (2, 3))
    assert ab.build_model(checkpoint=rt4ksr_weights).scales == (2, 3)


def test_a_loaded_dict_is_detected_like_its_file(rt4ksr_weights):
    loaded = torch.load(rt4ksr_weights / "rt4ksr_x2.pth", map_location="cpu", weights_only=False)
    assert ab.detect_checkpoint(loaded).preset == "rt4ksr.x2"


# ---------------------------------------------------------------- detection -> strict load


def test_detected_table_builds_and_loads_strictly():
    sd = official_container("igconv_keys_EDSRbaseline_IGConvPlus_classdefaults_NOTRELEASED.tsv", device="cpu")
    model = ab.build_model(checkpoint=sd)
    assert model.method == "igconv-plus" and model.weights_loaded
    assert torch.equal(model.encoder.conv_first.weight, sd["params"]["conv_first.weight"])


@pytest.fixture
def gsasr_folder(tmp_path):
    for part, data in official_container("gsasr_keys_paper_edsr.tsv", device="cpu").items():
        torch.save(data, tmp_path / f"{part}.pth")
    return tmp_path


def test_gsasr_folder_and_pair_of_paths_are_detected(gsasr_folder):
    assert ab.detect_checkpoint(gsasr_folder).preset == "gsasr.edsr-baseline-paper"
    paths = {"encoder": str(gsasr_folder / "encoder.pth"), "decoder": str(gsasr_folder / "decoder.pth")}
    assert ab.detect_checkpoint(paths).preset == "gsasr.edsr-baseline-paper"


@pytest.mark.slow
def test_gsasr_folder_builds_and_loads_strictly(gsasr_folder):
    model = ab.build_model(checkpoint=gsasr_folder)
    assert model.method == "gsasr" and model.weights_loaded and not model.decoder.rope


def test_config_entry_may_be_a_checkpoint_alone(rt4ksr_weights, tmp_path):
    config = load_config(data={"methods": [{"checkpoint": str(rt4ksr_weights / "rt4ksr_x3.pth")},
                                           {"checkpoint": str(rt4ksr_weights / "rt4ksr_x2.pth")}]})
    entry, other = resolve_methods(config)
    assert (entry.method, entry.encoder, entry.label, other.label) == ("rt4ksr", "none", "rt4ksr.x3", "rt4ksr.x2")
    model = ab.build_model(entry.method, entry.encoder, entry.checkpoint, preset=entry.preset, **entry.kwargs)
    assert model.scales == (3,)


# ---------------------------------------------------------------- ambiguous and unknown: one line each


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def test_gsasr_decoder_alone_says_to_pass_both():
    decoder = official_container("gsasr_keys_paper_edsr.tsv")["decoder"]
    with pytest.raises(UserError) as info:
        ab.detect_checkpoint(decoder)
    assert "encoder.pth and decoder.pth" in one_line(info)


def test_encoder_alone_lists_the_candidates():
    encoder = official_container("gsasr_keys_paper_rdn.tsv")["encoder"]
    with pytest.raises(UserError) as info:
        ab.detect_checkpoint(encoder)
    assert "RDN config B" in one_line(info) and "no upsampler" in one_line(info) and "encoder.pth" in one_line(info)


def test_unknown_keys_list_what_was_expected():
    with pytest.raises(UserError) as info:
        ab.detect_checkpoint({"net.conv.weight": torch.zeros(3, 3)})
    text = one_line(info)
    assert "net" in text and "liif" in text and "igconv" in text and "rt4ksr" in text


def test_an_edsr_of_another_size_is_not_forced_onto_a_preset():
    sd = {"params": {"conv_first.weight": torch.empty(128, 3, 3, 3, device="meta"),
                     **{f"body.{i}.conv1.weight": torch.empty(128, 128, 3, 3, device="meta") for i in range(8)},
                     "upsample.query_kernel.0.weight": torch.empty(1, device="meta")}}
    with pytest.raises(UserError) as info:
        ab.detect_checkpoint(sd)
    assert "128 channels x 8 blocks" in one_line(info)


def test_a_file_that_contradicts_itself_is_refused():
    bad = liif_file("metasr", "edsr-baseline", {**liif_edsr_baseline_encoder(), **LIIF_MLP})
    with pytest.raises(UserError) as info:
        ab.detect_checkpoint(bad)
    assert "inconsistent" in one_line(info)


def test_folder_of_unrelated_checkpoints_is_ambiguous(tmp_path, rt4ksr_weights, liif_checkpoint):
    torch.save(torch.load(rt4ksr_weights / "rt4ksr_x2.pth", map_location="cpu", weights_only=False), tmp_path / "a.pth")
    torch.save(torch.load(liif_checkpoint, map_location="cpu", weights_only=False), tmp_path / "b.pth")
    with pytest.raises(UserError) as info:
        ab.detect_checkpoint(tmp_path)
    text = one_line(info)
    assert "a = rt4ksr.x2" in text and "b = liif.edsr-baseline" in text


def test_missing_path_and_no_method_no_checkpoint(tmp_path):
    with pytest.raises(UserError, match="not found"):
        ab.detect_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(UserError, match="method"):
        ab.build_model()


def test_a_reparameterised_rt4ksr_state_asks_for_the_folded_build(rt4ksr_weights):
    folded = ab.build_model("rt4ksr", checkpoint=rt4ksr_weights / "rt4ksr_x2.pth", reparameterize=True)
    rep_sd = folded.nets["x2"].state_dict()
    found = ab.detect_checkpoint(rep_sd)
    assert found.preset == "rt4ksr.x2" and found.options == {"reparameterize": True}
    rebuilt = ab.build_model(checkpoint=rep_sd)
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.nets["x2"].state_dict().values(), rep_sd.values()))


def test_a_liif_repo_container_of_another_model_is_named():
    other = liif_file("lte", "edsr-baseline", {**liif_edsr_baseline_encoder(), **LIIF_MLP})
    with pytest.raises(UnsupportedFamily, match="unsupported family lte"):
        ab.detect_checkpoint(other)


@pytest.mark.slow
def test_a_checkpoint_entry_runs_through_the_cli(rt4ksr_weights, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from asr_bench.cli import run_cli

    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8)).save(images / "a.png")
    config = tmp_path / "c.yml"
    config.write_text(f"""
methods: [{{checkpoint: {rt4ksr_weights / 'rt4ksr_x2.pth'}}}]
datasets: [{images}]
scales: [2]
metrics: [psnr]
profiling: {{warmup: 0, repeats: 1, memory: false, flops: false}}
visuals: {{crop: 0}}
cache_dir: {tmp_path / 'cache'}
""")
    assert run_cli(["--config", str(config), "--output", str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "rt4ksr" in line)
    assert "n/a" not in row, out                 # scored: the detected weights were loaded
