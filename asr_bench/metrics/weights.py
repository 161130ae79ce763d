"""Finding the pretrained files LPIPS and DISTS need, without downloading anything.

Backbones (torchvision layout): `alexnet-owt-7be5be79.pth` (LPIPS) and `vgg16-397923af.pth` (DISTS), looked up
in `weights_dir`, then `$TORCH_HOME/hub/checkpoints` (default `~/.cache/torch/hub/checkpoints`), where
torchvision itself caches them.

Heads (small calibrated weights that ship inside the PyPI wheels as data files):
- LPIPS: `lpips/weights/v0.1/alex.pth` of the `lpips` wheel (keys `lin{0..4}.model.1.weight`);
- DISTS: `DISTS_pytorch/weights.pt` of the `dists-pytorch` wheel (`alpha`, `beta`, (1,1475,1,1)).
Each is looked up in `weights_dir` and the torch hub folder (under that relative path or its flat name, e.g.
`weights_dir/alex.pth`), then in the installed distribution's files (`pip install lpips dists-pytorch
--no-deps` is enough: the packages are never imported, since they need torchvision).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..errors import MissingFile

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
VGG16_FILE = "vgg16-397923af.pth"


@dataclass(frozen=True)
class HeadFile:
    distribution: str   # the PyPI distribution that ships it
    relpath: str        # its path inside the wheel

    @property
    def filename(self) -> str:
        return Path(self.relpath).name


LPIPS_ALEX_HEAD = HeadFile("lpips", "lpips/weights/v0.1/alex.pth")
DISTS_HEAD = HeadFile("DISTS_pytorch", "DISTS_pytorch/weights.pt")


class WeightsMissing(MissingFile):
    """A metric's pretrained file is absent: the runner reports the metric as n/a, naming the file."""

    def __init__(self, filename: str, looked: list[str] | None = None) -> None:
        self.filename = filename
        where = ", ".join(looked) if looked else "weights_dir and $TORCH_HOME/hub/checkpoints"
        super().__init__("metric weights", filename,
                         f"Looked in: {where}. Put the file there (torchvision's download cache) "
                         "or pass --weights-dir.")


def torch_hub_checkpoints() -> Path:
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def _folders(weights_dir: str | Path | None) -> list[Path]:
    return ([Path(weights_dir).expanduser()] if weights_dir else []) + [torch_hub_checkpoints()]


def find_weights(filename: str, weights_dir: str | Path | None = None) -> Path | None:
    """`weights_dir/filename`, else `$TORCH_HOME/hub/checkpoints/filename`, else None."""
    for folder in _folders(weights_dir):
        if (folder / filename).is_file():
            return folder / filename
    return None


def find_head(head: HeadFile, weights_dir: str | Path | None = None) -> Path | None:
    """A head file from weights_dir / torch hub (relative path or flat name), else the installed wheel's copy."""
    for folder in _folders(weights_dir):
        for candidate in (folder / head.relpath, folder / head.filename):
            if candidate.is_file():
                return candidate
    try:
        located = Path(str(metadata.distribution(head.distribution).locate_file(head.relpath)))
    except metadata.PackageNotFoundError:
        return None
    return located if located.is_file() else None


def require(path: Path | None, filename: str, weights_dir: str | Path | None) -> Path:
    if path is None:
        raise WeightsMissing(filename, [str(f) for f in _folders(weights_dir)])
    return path
