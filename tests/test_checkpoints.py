"""Checkpoints are data: read without running code unless the user trusts them.

A pickle with a `__reduce__` payload (here: it creates a marker file when unpickled) must be refused with
one line naming the opt-in, and must never run, both when read directly and through `run`; with the
opt-in it loads, with a warning.
"""
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asr_bench.checkpoints import (UntrustedCheckpoint, checkpoints_trusted, read_checkpoint,
                                   trusting_checkpoints)
from asr_bench.cli import run_cli
from asr_bench.errors import UserError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


class Payload:
    """Unpickling this calls open(marker, 'w'): the marker's existence proves the code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def payload_checkpoint(tmp_path, name="evil.pth"):
    marker = tmp_path / "payload-ran"
    path = tmp_path / name
    torch.save({"params": {"w": torch.arange(4.0)}, "extra": Payload(marker)}, path)
    assert not marker.exists()
    return path, marker


def test_plain_state_dict_loads_without_trust(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save({"params": {"w": torch.arange(3.0)}}, path)
    assert torch.equal(read_checkpoint(path)["params"]["w"], torch.arange(3.0))


def test_safetensors_file_is_read_with_safetensors(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(6.0).view(2, 3)}, str(path))
    assert torch.equal(read_checkpoint(path)["a"], torch.arange(6.0).view(2, 3))


def test_a_broken_safetensors_file_is_one_line(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(UserError, match="could not be read") as info:
        read_checkpoint(path)
    assert "\n" not in str(info.value)


def test_a_payload_is_refused_and_never_runs(tmp_path):
    path, marker = payload_checkpoint(tmp_path)
    assert not checkpoints_trusted()
    with pytest.raises(UntrustedCheckpoint) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "--trust-checkpoints" in message and "trust_checkpoints: true" in message and "\n" not in message
    assert "open" in message  # names what the file references
    assert not marker.exists()


def test_a_payload_runs_only_when_trusted_with_a_warning(tmp_path):
    path, marker = payload_checkpoint(tmp_path)
    with trusting_checkpoints(), pytest.warns(UserWarning, match="full pickle"):
        data = read_checkpoint(path)
    assert marker.exists() and torch.equal(data["params"]["w"], torch.arange(4.0))
    assert not checkpoints_trusted()  # the block ends the trust
    marker.unlink()
    with pytest.raises(UntrustedCheckpoint):
        read_checkpoint(path)
    assert not marker.exists()


def test_a_file_that_is_not_a_checkpoint_is_one_line_not_a_trust_question(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UserError, match="could not be read") as info:
        read_checkpoint(path)
    assert not isinstance(info.value, UntrustedCheckpoint) and "\n" not in str(info.value)


@pytest.mark.skipif(not (SHARED / "weights" / "liif" / "edsr-baseline-liif.pth").is_file(),
                    reason="official LIIF weights not in ../shared/data")
def test_official_liif_file_with_a_payload_added_is_refused_by_the_liif_loader(tmp_path):
    from asr_bench import build_model

    official = torch.load(SHARED / "weights" / "liif" / "edsr-baseline-liif.pth", map_location="cpu",
                          weights_only=True)
    marker = tmp_path / "payload-ran"
    official["extra"] = Payload(marker)
    torch.save(official, tmp_path / "liif.pth")
    with pytest.raises(UntrustedCheckpoint):
        build_model("liif", "edsr-baseline", checkpoint=tmp_path / "liif.pth", device="cpu")
    assert not marker.exists()


PLUGIN = '''
import torch
import torch.nn.functional as F
from asr_bench.registry import MethodSpec
from asr_bench.upsampler import Upsampler


class Loaded(Upsampler):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(4))  # what the checkpoint's params hold

    def forward_size(self, lr, size, scale):
        return F.interpolate(lr, size=size, mode="bilinear", align_corners=False)


def build(encoder="none", preset=None, weights=None, **kwargs):
    return Loaded()  # the registry read the checkpoint before this (and strict-loads it after)


METHODS = [MethodSpec("t-reads-checkpoint", build, ("none",), needs_weights=False)]
'''


@pytest.mark.parametrize("memory", [False, True], ids=["in-process", "worker-process"])
def test_run_refuses_the_payload_unless_trusted(tmp_path, capsys, memory):
    path, marker = payload_checkpoint(tmp_path)
    plugin = tmp_path / "reads_checkpoint.py"
    plugin.write_text(PLUGIN)
    images = tmp_path / "imgs"
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(images / "a.png")
    config = tmp_path / "c.yml"
    config.write_text(f"""
methods: [{{method: t-reads-checkpoint, checkpoint: {path}}}]
datasets: [{images}]
scales: [2]
metrics: [psnr]
device: cpu
plugins: [{plugin}]
profiling: {{warmup: 0, repeats: 1, memory: {str(memory).lower()}, flops: false}}
visuals: {{crop: 0}}
cache_dir: {tmp_path / 'cache'}
""")
    argv = ["--config", str(config), "--no-progress"]
    assert run_cli([*argv, "--output", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--trust-checkpoints" in err
    assert not marker.exists()

    with warnings.catch_warnings(record=True) as caught:  # in-process: Python's warning; a worker's: on stderr
        warnings.simplefilter("always")
        assert run_cli([*argv, "--output", str(tmp_path / "trusted"), "--trust-checkpoints"]) == 0
    shown = capsys.readouterr().err + "".join(str(w.message) for w in caught)
    assert marker.exists() and "full pickle" in shown


# ---------------------------------------------------------------- one unwrapping for loading and detection


def shapes(*names):
    return {n: torch.empty(2, 3, device="meta") for n in names}


@pytest.mark.parametrize("container,keys,facts", [
    (lambda sd: sd, ("params_ema", "params"), {}),
    (lambda sd: {"params": sd, "params_ema": {}}, ("params", "params_ema"), {"container": "{'params': ...}"}),
    (lambda sd: {"params_ema": sd, "params": shapes("other")}, ("params_ema", "params"),
     {"container": "{'params_ema': ...}"}),
    (lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, ("params_ema",),
     {"container": "{'state_dict': ...}", "prefix": "module."}),
    (lambda sd: {"model": sd, "optimizer": {"lr": 1e-4}}, ("params_ema",), {"container": "{'model': ...}"}),
    (lambda sd: {"model": {"name": "liif", "args": None, "sd": sd}, "epoch": 1000}, ("params_ema",),
     {"container": "{'model': {'name', 'args', 'sd'}}", "name": "liif", "args": {}}),
], ids=["bare", "params-first", "params_ema-first", "state_dict-module", "model-sd", "liif-repo"])
def test_unwrap_takes_off_every_container_and_says_which(container, keys, facts):
    from asr_bench.checkpoints import unwrap

    sd = shapes("conv.weight", "conv.bias")                    # shape-only tensors: what detection reads
    weights = unwrap(container(sd), keys)
    assert list(weights.parts) == ["model"] and set(weights.single()) == set(sd)
    assert all(weights.single()[k] is sd[k] for k in sd)       # the file's own tensors, not copies
    assert dict(weights.meta) == facts


def test_unwrap_a_folder_by_stem_and_a_pair_of_paths(tmp_path):
    from asr_bench.checkpoints import unwrap

    torch.save({"params_ema": {"a": torch.zeros(2)}}, tmp_path / "encoder.pth")
    torch.save({"b": torch.ones(3)}, tmp_path / "decoder.pth")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    folder = unwrap(tmp_path)
    assert {k: set(v) for k, v in folder.parts.items()} == {"encoder": {"a"}, "decoder": {"b"}}
    pair = unwrap({"encoder": tmp_path / "encoder.pth", "decoder": str(tmp_path / "decoder.pth")})
    assert torch.equal(pair.part("decoder", "")["b"], torch.ones(3))
    with pytest.raises(UserError, match="holds no tensors"):
        unwrap({"epoch": 3})
    with pytest.raises(UserError, match=r"^checkpoint file not found: .*missing\.pth"):
        unwrap(tmp_path / "missing.pth")
    with pytest.raises(UserError, match="a checkpoint is a path, a folder or a loaded dict, not int"):
        unwrap(5)


def test_a_missing_checkpoint_path_is_one_line_and_exit_2(tmp_path, capsys):
    config = tmp_path / "c.yml"
    config.write_text(f"methods: [{{method: liif, encoder: edsr-baseline, checkpoint: {tmp_path / 'nope.pth'}}}]\n"
                      f"datasets: [embedded]\nscales: [2]\noutput: {tmp_path / 'out'}\n")
    assert run_cli(["--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "nope.pth" in err and "Traceback" not in err


def test_detection_reads_files_as_data_too(tmp_path):
    """Detection memory-maps files, but a file that needs full pickle still goes through the trust check."""
    from asr_bench.detect import detect_checkpoint

    path, marker = payload_checkpoint(tmp_path)
    with pytest.raises(UntrustedCheckpoint):
        detect_checkpoint(path)
    assert not marker.exists()
