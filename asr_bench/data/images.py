"""Reading and writing images as HxWx3 uint8 RGB, and the float tensor form the models take.

Greyscale files (Set14 `bridge`, some Urban100/Manga109 copies) are expanded to 3 equal channels, which is
what the official scripts get: BasicSR/GSASR read with `cv2.imread(..., IMREAD_COLOR)` and LIIF with
`PIL.Image.open(f).convert('RGB')`; both replicate the grey value. An alpha channel is dropped, as both do.

Images with more than 8 bits per channel (16-bit RGB or grey, float TIFF) are refused with one line, both
kinds alike: every protocol (and every published number) is defined on 8-bit images, and the official
readers would cut 16 bits to 8 without a word (cv2 IMREAD_COLOR, Pillow's RGB decoder), so a silent cut
here would hide that the file is not what the benchmark measures. Convert such files to 8-bit first.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .. import atomic
from ..errors import MissingFile, UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_image(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 RGB; a missing or unreadable file is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile("image file", path, "Check the dataset folder (see `python run_bench.py list`).")
    try:
        with Image.open(path) as image:
            deep = _more_than_8_bits(image)  # before load(): PIL reads 16-bit RGB as 8-bit RGB and forgets
            image.load()
            if deep or image.mode in ("I;16", "I;16L", "I;16B", "I", "F"):
                raise UserError(f"image {path} has more than 8 bits per channel ({deep or image.mode}); every "
                                "protocol here scores 8-bit images (as the benchmark files are), so convert it to "
                                "8-bit PNG first (e.g. ImageMagick: convert in.png -depth 8 out.png).")
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise UserError(f"cannot read image {path} ({type(exc).__name__}: {exc}); replace the file with a valid "
                        "PNG/JPEG/BMP/TIFF.") from None
    return np.asarray(rgb, dtype=np.uint8).copy()


def _more_than_8_bits(image: Image.Image) -> str:
    """The raw mode (e.g. 'RGB;16B') when the file stores more than 8 bits per channel, else ''.

    Pillow decodes 16-bit RGB(A) PNG/TIFF into 8-bit RGB (it keeps the high bytes), while 16-bit grey stays
    I;16; only the decoder's raw mode, before load(), still tells the two apart."""
    for tile in getattr(image, "tile", None) or []:
        args = tile[3] if not hasattr(tile, "args") else tile.args
        raw = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw, str) and any(f";{bits}" in raw for bits in ("16", "32", "F")):
            return raw
    return ""


def write_image(path: str | Path, array: np.ndarray) -> None:
    """Write HxWx3 (or HxW) uint8 as PNG (or the suffix's format), creating the folder; atomic rename."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise UserError(f"write_image needs an HxWx3 uint8 array, got {array.dtype} {array.shape}; use to_uint8().")
    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise UserError(f"cannot write {path}: unknown image suffix {path.suffix!r}; use .png.")
    with atomic.open_atomic(path) as handle:  # this writer's own temp file: two runs writing GT.png cannot clash
        Image.fromarray(array).save(handle, format=image_format)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> (1,3,H,W) float32 in [0,1] (= uint8 / 255, as ToTensor and BasicSR do)."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 3:
        raise UserError(f"to_tensor needs an HxWx3 uint8 array, got {array.dtype} {array.shape}.")
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].float().div_(255)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """(1,3,H,W) or (3,H,W) float in [0,1] -> HxWx3 uint8: clamp, x255, round (BasicSR's tensor2img)."""
    if tensor.ndim == 4:
        if tensor.shape[0] != 1:
            raise UserError(f"to_uint8 takes one image, got a batch of {tensor.shape[0]}.")
        tensor = tensor[0]
    levels = (tensor.detach().float().clamp(0, 1) * 255.0).round()
    return levels.to(torch.uint8).permute(1, 2, 0).cpu().numpy().copy()


def quantize(tensor: torch.Tensor) -> torch.Tensor:
    """Float [0,1] -> the nearest of the 256 uint8 levels, kept as float (what saving a PNG does)."""
    return (tensor.clamp(0, 1) * 255.0).round() / 255.0
