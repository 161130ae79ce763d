"""detect_checkpoint: every official key table (tests/data/keys/*_keys_*.tsv) and every real file in
../shared/data/weights names its method, encoder and preset; the families we do not implement say so; and a
detected file builds and loads strictly through build_model(checkpoint=...) and a `{checkpoint: path}` config entry.

State dicts are built from the tables (keys and shapes as the official classes save them; meta tensors where only
shapes are read) and from the key lists of docs/methods/liif.md §4 and docs/methods/metasr.md §1.2, §2.1 for files
without a table.
"""
from __future__ import annotations

import re

import pytest
from conftest import KEY_TABLES, key_table
import torch

import asr_bench as ab
from asr_bench.config import load_config
from asr_bench.detect import UnsupportedFamily
from asr_bench.engine.cases import resolve_methods
from asr_bench.errors import UserError


# every key table -> (method, encoder, preset)
EXPECTED = {
    "gsasr_keys_paper_edsr.tsv": ("gsasr", "edsr-baseline", "gsasr.edsr-baseline-paper"),
    "gsasr_keys_paper_rdn.tsv": ("gsasr", "rdn", "gsasr.rdn-paper"),
    "gsasr_keys_paper_swinir.tsv": ("gsasr", "swinir", "gsasr.swinir-paper"),
    "gsasr_keys_enhanced_edsr.tsv": ("gsasr", "edsr-baseline", "gsasr.edsr-baseline-enhanced"),
    "gsasr_keys_enhanced_rdn.tsv": ("gsasr", "rdn", "gsasr.rdn-enhanced"),
    "gsasr_keys_enhanced_swin.tsv": ("gsasr", "swinir", "gsasr.swinir-enhanced"),
    "gsasr_keys_ultra_hatl.tsv": ("gsasr", "hat", "gsasr.hatl-ultra"),
    "igconv_keys_EDSR_IGConv_DIV2K.tsv": ("igconv", "edsr", "igconv.edsr"),
    "igconv_keys_EDSR_IGConvPlus_DIV2K.tsv": ("igconv-plus", "edsr", "igconv-plus.edsr"),
    "igconv_keys_EDSRbaseline_IGConv_classdefaults_NOTRELEASED.tsv": ("igconv", "edsr-baseline", "igconv.edsr-baseline"),
    "igconv_keys_EDSRbaseline_IGConvPlus_classdefaults_NOTRELEASED.tsv":
        ("igconv-plus", "edsr-baseline", "igconv-plus.edsr-baseline"),
    "igconv_keys_RDN_IGConv_classdefaults_NOTRELEASED.tsv": ("igconv", "rdn", "igconv.rdn"),
    "igconv_keys_RDN_IGConvPlus_DIV2K.tsv": ("igconv-plus", "rdn", "igconv-plus.rdn"),
    "igconv_keys_SwinIR_IGConv_derived_NOTRELEASED.tsv": ("igconv", "swinir", "igconv.swinir"),
    "igconv_keys_SwinIR_IGConvPlus_DIV2K.tsv": ("igconv-plus", "swinir", "igconv-plus.swinir"),
    "igconv_keys_ATD_IGPlus.tsv": ("igconv-plus", "atd", "igconv-plus.atd"),
    "igconv_keys_HAT_IGPlus.tsv": ("igconv-plus", "hat", "igconv-plus.hat"),
    "igconv_keys_HiT_SRF_IGConv_DIV2K.tsv": ("igconv", "hit-srf", "igconv.hit-srf"),
    "igconv_keys_HiT_SRF_IGConvPlus_DIV2K.tsv": ("igconv-plus", "hit-srf", "igconv-plus.hit-srf"),
    "igconv_keys_MambaIR_IGConv_DF2K.tsv": ("igconv", "mambair", "igconv.mambair"),
    "igconv_keys_MambaIR_IGConvPlus_DF2K.tsv": ("igconv-plus", "mambair", "igconv-plus.mambair"),
    # the S8 file has the DF2K file's keys and shapes (max_s shows in no tensor): the default, see test_mambair_s8_*
    "igconv_keys_MambaIR_IGConvPlus_DFL_S8.tsv": ("igconv-plus", "mambair", "igconv-plus.mambair"),
    "igconv_keys_MambaIR_Light_IGConv_DIV2K.tsv": ("igconv", "mambair-light", "igconv.mambair-light"),
    "igconv_keys_MambaIR_Light_IGConvPlus_DIV2K.tsv":
        ("igconv-plus", "mambair-light", "igconv-plus.mambair-light"),
    "igconv_keys_PLKSR_IGConvPlus_DF2K.tsv": ("igconv-plus", "plksr", "igconv-plus.plksr"),
    "igconv_keys_RCAN_IGConvPlus_DIV2K_S2348.tsv": ("igconv-plus", "rcan", "igconv-plus.rcan"),
    "igconv_keys_SMFANet_IGConv_DF2K.tsv": ("igconv", "smfanet", "igconv.smfanet"),
    "igconv_keys_SMFANet_IGConvPlus_DF2K.tsv": ("igconv-plus", "smfanet", "igconv-plus.smfanet"),
    "igconv_keys_SRFormer_IGConv_DF2K.tsv": ("igconv", "srformer", "igconv.srformer"),
    "igconv_keys_SRFormer_IGConvPlus_DF2K.tsv": ("igconv-plus", "srformer", "igconv-plus.srformer"),
}


def table_rows(name: str) -> list[tuple[str, str, tuple[int, ...], str]]:
    """(part, key, shape, dtype) of an official key table; part is '' for single-file (IGConv) tables."""
    return key_table(name)


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
    assert sorted(p.name for p in KEY_TABLES.glob("*_keys_*.tsv")) == sorted(EXPECTED)


@pytest.mark.parametrize("table", sorted(EXPECTED))
def test_supported_key_tables_name_their_preset(table):
    found = ab.detect_checkpoint(official_container(table))
    assert (found.method, found.encoder, found.preset) == EXPECTED[table]
    assert found.reason


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


def test_the_new_families_hyperparameters_come_from_the_shapes():
    """Numbers from docs/methods/igconv.md §3, docs/methods/gsasr.md and the encoders' docs, not from the presets."""
    def hyper(table):
        return ab.detect_checkpoint(official_container(table)).hyperparameters

    ultra = hyper("gsasr_keys_ultra_hatl.tsv")
    assert (ultra["embed_dim"], ultra["depths"], ultra["squeeze_factor"], ultra["rope"]) == (192, (6,) * 12, 32, True)
    assert (ultra["window_size"], ultra["overlap_ratio"], ultra["out_features"]) == (16, 0.5, 64)
    hat = hyper("igconv_keys_HAT_IGPlus.tsv")
    assert (hat["embed_dim"], hat["depths"], hat["num_heads"], hat["squeeze_factor"], hat["compress_ratio"]) == \
        (180, (6,) * 6, (6,) * 6, 30, 3)
    assert (hat["window_size"], hat["rope"], hat["out_features"]) == (16, False, None)
    atd = hyper("igconv_keys_ATD_IGPlus.tsv")
    assert (atd["embed_dim"], atd["window_size"], atd["num_tokens"], atd["reducted_dim"], atd["convffn_kernel_size"]) \
        == (210, 16, 128, 20, 5)
    assert hyper("igconv_keys_SRFormer_IGConv_DF2K.tsv")["window_size"] == 22
    light = hyper("igconv_keys_MambaIR_Light_IGConv_DIV2K.tsv")
    assert (light["embed_dim"], light["depths"], light["mlp_ratio"], light["d_state"]) == (60, (6,) * 4, 1.5, 16)
    full = hyper("igconv_keys_MambaIR_IGConv_DF2K.tsv")
    assert (full["embed_dim"], full["depths"], full["mlp_ratio"]) == (180, (6,) * 6, 2.0)
    rcan = hyper("igconv_keys_RCAN_IGConvPlus_DIV2K_S2348.tsv")
    assert (rcan["n_feats"], rcan["n_resgroups"], rcan["n_resblocks"], rcan["reduction"]) == (64, 10, 20, 16)
    plksr = hyper("igconv_keys_PLKSR_IGConvPlus_DF2K.tsv")
    assert (plksr["dim"], plksr["n_blocks"], plksr["kernel_size"], plksr["split_ratio"], plksr["ccm_type"]) == \
        (64, 28, 17, 0.25, "DCCM")
    smfa = hyper("igconv_keys_SMFANet_IGConv_DF2K.tsv")
    assert (smfa["dim"], smfa["n_blocks"], smfa["ffn_scale"]) == (48, 12, 2.0)


def test_a_hat_of_another_size_is_not_forced_onto_a_preset():
    """HAT-L without RoPE (12 groups, 180 dims) is a real HAT model, but no preset builds it."""
    sd = official_container("igconv_keys_HAT_IGPlus.tsv")["params"]
    big = dict(sd)
    for key, value in sd.items():
        if key.startswith("layers.0."):
            for i in range(6, 12):
                big[f"layers.{i}." + key[len("layers.0."):]] = value
    with pytest.raises(UserError) as info:
        ab.detect_checkpoint({"params": big})
    assert "12 groups" in one_line(info) and "no igconv-plus preset builds it" in one_line(info)


# ---------------------------------------------------------------- IGConv+ MambaIR: DF2K vs DFL S8


def test_mambair_s8_and_df2k_files_have_the_same_keys_and_shapes():
    """The premise of what follows: max_s changes no tensor, so the two official files cannot be told apart."""
    assert table_rows("igconv_keys_MambaIR_IGConvPlus_DFL_S8.tsv") == table_rows("igconv_keys_MambaIR_IGConvPlus_DF2K.tsv")


def test_mambair_s8_dict_takes_the_default_and_says_how_to_choose():
    found = ab.detect_checkpoint(official_container("igconv_keys_MambaIR_IGConvPlus_DFL_S8.tsv"))
    assert found.preset == "igconv-plus.mambair"
    assert "\n" not in found.reason and "no tensor" in found.reason
    assert "preset: igconv-plus.mambair-s8 for MambaIR_IGConvPlus_DFL_S8.pth" in found.reason


@pytest.mark.parametrize("name,preset", [("MambaIR_IGConvPlus_DFL_S8.pth", "igconv-plus.mambair-s8"),
                                         ("MambaIR_IGConvPlus_DF2K.pth", "igconv-plus.mambair"),
                                         ("mine.pth", "igconv-plus.mambair")])
def test_mambair_official_file_name_decides_between_twins(tmp_path, name, preset):
    torch.save(official_container("igconv_keys_MambaIR_IGConvPlus_DFL_S8.tsv"), tmp_path / name)   # meta: shapes only
    found = ab.detect_checkpoint(tmp_path / name)
    assert found.preset == preset
    other = "igconv-plus.mambair" if preset.endswith("s8") else "igconv-plus.mambair-s8"
    assert other in found.reason


@pytest.mark.slow
def test_mambair_s8_file_builds_with_max_s_8(tmp_path):
    path = tmp_path / "MambaIR_IGConvPlus_DFL_S8.pth"
    torch.save(official_container("igconv_keys_MambaIR_IGConvPlus_DFL_S8.tsv", device="cpu"), path)
    assert ab.build_model(checkpoint=path).upsample.max_s == 8
    assert ab.build_model(checkpoint=dict(torch.load(path))).upsample.max_s == 4     # no name: the default, as said


def test_rcan_detection_says_max_s_comes_from_the_preset():
    found = ab.detect_checkpoint(official_container("igconv_keys_RCAN_IGConvPlus_DIV2K_S2348.tsv"))
    assert "max_s 8 from the preset" in found.reason and "learnable mean shifts" in found.reason


def test_an_igconv_head_under_another_encoders_name_is_refused():
    sd = official_container("igconv_keys_SMFANet_IGConv_DF2K.tsv")["params"]
    renamed = {("upsample." + k[len("to_img."):] if k.startswith("to_img.") else k): v for k, v in sd.items()}
    with pytest.raises(UserError) as info:
        ab.detect_checkpoint({"params": renamed})
    assert "name it 'to_img.*'" in one_line(info)


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


def fingerprints(tensors) -> list[tuple]:
    """Name-free summary of float tensors: (shape, sum) sorted; random file values make each one distinct."""
    return sorted((tuple(t.shape), round(float(t.double().sum()), 4)) for t in tensors if t.is_floating_point())


@pytest.mark.parametrize("table", sorted(EXPECTED))
def test_every_detected_table_loads_strictly_with_and_without_the_method_named(table):
    """The path that uses detection (no method) and the named path build the same thing and load the file's values."""
    method, encoder, preset = EXPECTED[table]
    container = official_container(table, device="cpu")
    parts = [container["params"]] if "params" in container else [part["params_ema"] for part in container.values()]
    file_values = fingerprints(t for sd in parts for t in sd.values())
    detected = ab.build_model(checkpoint=container)
    named = ab.build_model(method, encoder, container, preset=preset)
    for model in (detected, named):
        assert model.method == method and model.weights_loaded
        assert fingerprints(model.state_dict().values()) == file_values
    del detected, named


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
