"""The config contract: YAML -> frozen Config, every mistake a one-line UserError naming the key."""
from pathlib import Path

import pytest

from asr_bench.config import ALL, Config, apply_override, config_hash, load_config, parse_config
from asr_bench.errors import MissingFile, UserError

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path, text):
    path = tmp_path / "bench.yml"
    path.write_text(text)
    return path


def test_full_config_parses_to_frozen_typed_values(tmp_path):
    config = load_config(write(tmp_path, """
methods:
  - bicubic
  - {method: liif, encoder: edsr-baseline, checkpoint: null, preset: null, kwargs: {local_ensemble: false}, label: LIIF}
datasets: [set5, embedded]
scales: [2, 3.5, [3, 2.5], 12]
protocol: {name: gsasr, crop: 4}
metrics: [PSNR, ssim]
device: cpu
precision: bf16
tiling: {tile: 48, overlap: 6}
profiling: {warmup: 0, repeats: 1, memory: false, flops: false}
visuals: {crop: 0}
output: out/here
"""))
    assert isinstance(config, Config)
    assert config.name == "bench" and config.run_dir() == Path("out/here")
    assert [m.method for m in config.methods] == ["bicubic", "liif"]
    assert config.methods[1].kwargs == {"local_ensemble": False} and config.methods[1].label == "LIIF"
    assert config.scales == (2.0, 3.5, (3.0, 2.5), 12.0)
    assert config.protocol.name == "gsasr" and config.protocol.overrides == {"crop": 4}
    assert config.metrics == ("psnr", "ssim")
    assert (config.tiling.tile, config.tiling.overlap) == (48, 6)
    assert (config.profiling.warmup, config.profiling.repeats, config.profiling.memory) == (0, 1, False)
    with pytest.raises(AttributeError):
        config.device = "cuda"  # frozen


def test_defaults_and_methods_all():
    config = parse_config({"methods": "all"}, default_name="quick")
    assert config.methods == ALL and config.datasets == ("embedded",) and config.scales == (4.0,)
    assert config.protocol.name == "gsasr" and config.device == "auto" and config.precision == "fp32"
    assert config.run_dir() == Path("results/quick")


def test_protocol_overrides_long_form_equals_shorthand():
    long = parse_config({"methods": "all", "protocol": {"name": "gsasr", "overrides": {"crop": 4}}})
    short = parse_config({"methods": "all", "protocol": {"name": "gsasr", "crop": 4}})
    assert long.protocol == short.protocol


@pytest.mark.parametrize("raw,key_in_message", [
    ({"methods": "all", "scale": [2]}, "scales"),                      # typo: did-you-mean names the right key
    ({"methods": "all", "scales": [1]}, "scales[0]"),
    ({"methods": "all", "scales": [0.5]}, "scales[0]"),
    ({"methods": "all", "scales": ["x4"]}, "scales[0]"),
    ({"methods": "all", "precision": "fp64"}, "fp32, fp16, bf16"),
    ({"methods": "all", "device": "gpu"}, "cuda:N"),
    ({"methods": "all", "profiling": {"repeats": 0}}, "profiling.repeats"),
    ({"methods": "all", "profiling": {"memory": "yes"}}, "profiling.memory"),
    ({"methods": "all", "tiling": {"tile": 2.5}}, "tiling.tile"),
    ({"methods": "all", "tiling": {"size": 48}}, "tiling.size"),
    ({"methods": [{"encoder": "edsr"}]}, "methods[0]"),
    ({"methods": [{"method": "liif", "checkpiont": "x"}]}, "checkpoint"),
    ({"methods": "all", "protocol": {"crop": 4}}, "protocol"),
    ({}, "methods"),
])
def test_mistakes_name_the_key_and_what_is_allowed(raw, key_in_message):
    with pytest.raises(UserError) as info:
        parse_config(raw)
    message = str(info.value)
    assert key_in_message in message and "\n" not in message


def test_malformed_yaml_names_the_line(tmp_path):
    with pytest.raises(UserError, match=r"not valid YAML at line 3"):
        load_config(write(tmp_path, "methods: all\nscales: [2, 3\ndatasets: [set5]\n"))


def test_missing_config_file():
    with pytest.raises(MissingFile, match="paper/liif_table1"):
        load_config("no/such.yml")


def test_set_overrides_are_dotted_and_yaml_typed(tmp_path):
    path = write(tmp_path, "methods: [bicubic, liif]\nprofiling: {repeats: 5}\n")
    config = load_config(path, ["profiling.repeats=2", "scales=[2, 6.5]", "methods.1.checkpoint=w.pth",
                                "protocol.name=liif", "tiling.tile=64"])
    assert config.profiling.repeats == 2 and config.scales == (2.0, 6.5)
    assert config.methods[1].checkpoint == "w.pth" and config.methods[1].method == "liif"
    assert config.protocol.name == "liif" and config.tiling.tile == 64


@pytest.mark.parametrize("item", ["noequals", "methods.5.label=x", "=3"])
def test_bad_set_overrides(item):
    with pytest.raises(UserError):
        apply_override({"methods": ["a"]}, item)


def test_hash_ignores_output_but_not_protocol():
    a = parse_config({"methods": "all", "output": "a"})
    assert config_hash(a) == config_hash(parse_config({"methods": "all", "output": "b"}))
    assert config_hash(a) != config_hash(parse_config({"methods": "all", "protocol": "liif"}))


@pytest.mark.parametrize("name", ["quick.yml", "x4.yml"])
def test_shipped_configs_parse(name):
    config = load_config(REPO / "configs" / name)
    assert config.protocol.name == "gsasr"


def test_a_preset_alone_is_a_method_entry():
    """`- rt4ksr.x2` and `- {preset: gsasr.rdn-enhanced, checkpoint: ...}` name their method themselves."""
    from asr_bench.engine.cases import resolve_methods

    config = parse_config({"methods": ["rt4ksr.x2", {"preset": "gsasr.rdn-enhanced", "label": "g"},
                                       {"method": "gsasr", "preset": "rdn-paper"}]})
    short, mapping, old = config.methods
    assert (short.method, short.preset, short.label) == ("rt4ksr", "rt4ksr.x2", "rt4ksr.x2")
    assert (mapping.method, mapping.preset) == ("gsasr", "gsasr.rdn-enhanced")
    with pytest.warns(DeprecationWarning, match="gsasr.rdn-paper"):
        resolved = resolve_methods(config)
    assert [(e.method, e.encoder, e.preset) for e in resolved] == [
        ("rt4ksr", "none", "rt4ksr.x2"), ("gsasr", "rdn", "gsasr.rdn-enhanced"), ("gsasr", "rdn", "gsasr.rdn-paper")]


@pytest.mark.parametrize("entry, message", [
    ({"preset": "gsasr.rdn-enhanced", "method": "liif"}, "not a preset of liif"),
    ({"preset": "gsasr.rdn-enhanced", "encoder": "swinir"}, "is for encoder 'rdn'"),
    ({"preset": "gsasr.rdn-enhancd"}, "Did you mean 'gsasr.rdn-enhanced'"),
    ({"label": "x"}, "no 'method'"),
])
def test_preset_entry_mistakes(entry, message):
    from asr_bench.engine.cases import resolve_methods

    with pytest.raises(UserError, match=message):
        resolve_methods(parse_config({"methods": [entry]}))
