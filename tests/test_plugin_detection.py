"""An entry-point plugin is detected like a built-in: a temporary installed package (a folder on sys.path with a
`.dist-info` whose entry_points.txt adds a toy encoder to `asr_bench.encoders` and a toy method to
`asr_bench.methods`) makes a saved state dict name its preset, loads strictly through `build_model`, and touches
no file of asr_bench/.

The toy lives in the temporary package only: its encoder declares a `ShapeReader` (width and depth from the
shapes), its method a `Detector` (an `encoder.*` body under a `toyhead`), and two presets differ in the encoder's
width and depth, so naming the preset needs the shapes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

TOY = '''
"""A toy encoder and a toy method, declared as a plugin declares them."""
import torch
import torch.nn.functional as F
from torch import nn

from asr_bench.detection import Detector, choose
from asr_bench.encoders import EncoderRead, EncoderSpec, ShapeReader, build_encoder, read_encoder
from asr_bench.encoders.spec import official_names
from asr_bench.methods.spec import MethodSpec, Preset
from asr_bench.shapes import count, dim, has_prefix, inside_prefix
from asr_bench.upsampler import Upsampler


class ToyNet(nn.Module):
    def __init__(self, width: int = 4, blocks: int = 2) -> None:
        super().__init__()
        self.toy_in = nn.Conv2d(3, width, 3, padding=1)
        self.toy_blocks = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(blocks))
        self.out_channels = width

    def forward(self, x):
        x = self.toy_in(x)
        for block in self.toy_blocks:
            x = x + torch.relu(block(x))
        return x


def read(sd):
    hyper = {"width": dim(sd, "toy_in.weight"), "blocks": count(sd, r"toy_blocks\\.(\\d+)\\.weight$")}
    return EncoderRead("toy", hyper, f"Toy {hyper['width']} ch x {hyper['blocks']} blocks")


ENCODERS = [EncoderSpec("toy", ToyNet, "a toy encoder", network=ToyNet, schemes=official_names("toy"),
                        reader=ShapeReader("Toy", lambda keys: "toy_in.weight" in keys, read, "Toy (toy_in)"))]


class ToySR(Upsampler):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.toyhead = nn.Conv2d(encoder.out_channels, 3, 1)

    def forward_size(self, lr, size, scale):
        return F.interpolate(self.toyhead(self.encoder(lr)), size=size, mode="bilinear", align_corners=False)


def build(encoder, preset, weights, **options):
    return ToySR(build_encoder(preset.encoder, **preset.encoder_kwargs))


def state(spec, sd, facts, where, container):
    if "toyhead.weight" not in sd or not has_prefix(sd, "encoder."):
        return None
    enc = read_encoder(inside_prefix(sd, "encoder."), where)
    return choose(spec, enc, where, f"{container}: toy head, {enc.text}")


PRESETS = (Preset("toy.narrow", "toy", {"width": 4, "blocks": 2}),
           Preset("toy.wide", "toy", {"width": 8, "blocks": 3}))
METHODS = [MethodSpec(name="toy", builder=build, encoders=("toy",), presets=PRESETS,
                      detector=Detector("encoder.* + toyhead", state=state))]
'''

CHECK = '''
import json, sys
import torch
import asr_bench as ab
from asr_bench.encoders import list_encoders
from asr_bench.errors import UserError

out = {"asr_bench": ab.__file__, "encoders": "toy" in list_encoders(), "methods": ab.list_methods()}
saved = ab.build_model("toy", preset="toy.wide").state_dict()
torch.save(saved, sys.argv[1])
found = ab.detect_checkpoint(sys.argv[1])
out["detected"] = [found.method, found.encoder, found.preset, found.reason, dict(found.hyperparameters)]
model = ab.build_model(checkpoint=sys.argv[1])
out["loaded"] = model.weights_loaded and all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
out["narrow"] = ab.detect_checkpoint(ab.build_model("toy", preset="toy.narrow").state_dict()).preset
bad = {k: v for k, v in saved.items() if k != "encoder.toy_blocks.2.weight"}
try:
    ab.build_model("toy", preset="toy.wide", checkpoint=bad)
    out["strict"] = "loaded"
except UserError as exc:
    out["strict"] = str(exc)
print(json.dumps(out))
'''


def source_files() -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file under asr_bench/ but compiled caches."""
    return {str(p.relative_to(REPO)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in (REPO / "asr_bench").rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def install_toy(site: Path) -> None:
    """What `pip install` of a package with these entry points leaves on sys.path: the module and a dist-info."""
    info = site / "toy_asr-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "toy_asr.py").write_text(textwrap.dedent(TOY))
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-asr\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[asr_bench.encoders]\ntoy = toy_asr\n\n[asr_bench.methods]\ntoy = toy_asr\n")


def test_an_entry_point_plugin_is_detected_and_loaded_like_a_builtin(tmp_path):
    site = tmp_path / "site"
    install_toy(site)
    before = source_files()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(site)]), "PYTHONDONTWRITEBYTECODE": "1",
           "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", CHECK, str(tmp_path / "toy.pth")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(out["asr_bench"]).resolve().parent == REPO / "asr_bench"
    assert out["encoders"] and "toy" in out["methods"] and "liif" in out["methods"]
    method, encoder, preset, reason, hyper = out["detected"]
    assert (method, encoder, preset) == ("toy", "toy", "toy.wide")
    assert hyper == {"width": 8, "blocks": 3} and "Toy 8 ch x 3 blocks" in reason
    assert out["narrow"] == "toy.narrow"
    assert out["loaded"] is True
    assert "encoder.toy_blocks.2.weight" in out["strict"] and "\n" not in out["strict"]
    assert source_files() == before                     # the plugin needed no file of asr_bench/ (mtime, size)


@pytest.mark.parametrize("group", ["asr_bench.encoders", "asr_bench.methods"])
def test_a_broken_plugin_is_reported_not_fatal(tmp_path, group):
    """A plugin that fails to import is named with its error; the built-ins still load."""
    site = tmp_path / "site"
    info = site / "broken_asr-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "broken_asr.py").write_text("raise ImportError('missing dependency xyz')\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-asr\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\nbroken = broken_asr\n")
    code = ("import json, warnings; warnings.simplefilter('ignore'); import asr_bench as ab; "
            "from asr_bench.encoders import broken_encoder_plugins, list_encoders; "
            "from asr_bench.registry import broken_plugins; "
            "print(json.dumps([list_encoders(), ab.list_methods(), {**broken_encoder_plugins(), **broken_plugins()}]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(site)]), "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    encoders, methods, broken = json.loads(run.stdout.strip().splitlines()[-1])
    assert "edsr-baseline" in encoders and "liif" in methods
    assert "missing dependency xyz" in broken["broken"]
