"""Visual comparisons: the same HR-space crop from GT, bicubic and every method, side by side.

The engine writes `<run>/visuals/<dataset>/<scale>/<image_id>/{GT,bicubic,<label_stem(label)>}.png` (plus
`thumb.png` and `box.json`: the whole HR image, small, and where the crop is). Each folder becomes one row,
like a paper figure: a thumbnail with the crop's box, then the crops zoomed by nearest neighbour (pixels stay
visible, no smoothing hides artefacts), labelled with the method name and that image's stored PSNR/SSIM, and
under each an error map |method − GT| (mean over RGB, ×ERROR_GAIN, so a quarter-range error is white).
"""
from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..results.schema import CaseRecord, ImageRecord, label_stem, slug
from .model import dataset_title, decimals, metric_title, ordered_unique, scale_key, scale_title

DISPLAY_PX = 200  # crops are zoomed to about this size (integer factor)
ERROR_GAIN = 4    # error maps: |difference| x 4, so small errors are visible and 64 levels saturate
_FIXED = ("GT", "bicubic")


@dataclass
class Tile:
    name: str            # what the tile is labelled with
    png: bytes           # the zoomed crop
    size: tuple[int, int]  # (w, h) of the original crop
    zoom: int
    caption: str = ""    # e.g. "PSNR 32.51 / SSIM 0.8912"
    error_png: bytes = b""  # the zoomed error map against GT (none for GT itself)

    @property
    def data_uri(self) -> str:
        return _uri(self.png)

    @property
    def error_uri(self) -> str:
        return _uri(self.error_png) if self.error_png else ""


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass
class VisualRow:
    dataset: str
    scale: str
    image: str
    tiles: list[Tile] = field(default_factory=list)
    thumb_png: bytes = b""   # the whole HR image with the crop's box drawn on it
    box_text: str = ""       # "crop 96x96 at (120, 200) of 512x512, where the HR has the most detail"

    @property
    def thumb_uri(self) -> str:
        return _uri(self.thumb_png) if self.thumb_png else ""

    @property
    def title(self) -> str:
        return f"{dataset_title(self.dataset)} {scale_title(self.scale)} — {self.image}"


def zoom_factor(size: tuple[int, int], display: int = DISPLAY_PX) -> int:
    """The integer factor that brings the crop's longer side closest to `display` without exceeding it (>= 1)."""
    return max(1, math.floor(display / max(size)))


def zoomed_png(path: Path, display: int = DISPLAY_PX) -> tuple[bytes, tuple[int, int], int]:
    """(PNG bytes of the nearest-neighbour zoom, original (w, h), zoom factor)."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        factor = zoom_factor(image.size, display)
        big = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        big.save(buffer, format="PNG", optimize=True)
        return buffer.getvalue(), image.size, factor


def error_map_png(method: Path, gt: Path, factor: int) -> bytes:
    """|method − GT| averaged over RGB, × ERROR_GAIN, grey (black = equal), zoomed like the crops."""
    import numpy as np

    with Image.open(method) as a, Image.open(gt) as b:
        x = np.asarray(a.convert("RGB"), dtype=np.int16)
        y = np.asarray(b.convert("RGB"), dtype=np.int16)
    h, w = min(x.shape[0], y.shape[0]), min(x.shape[1], y.shape[1])
    diff = np.abs(x[:h, :w] - y[:h, :w]).mean(axis=2) * ERROR_GAIN
    image = Image.fromarray(np.clip(np.rint(diff), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    image = image.resize((w * factor, h * factor), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def thumbnail_with_box(folder: Path) -> tuple[bytes, str]:
    """(PNG of thumb.png with the crop's box in red, a sentence saying where the crop is); (b'', '') without one."""
    thumb, box_file = folder / "thumb.png", folder / "box.json"
    if not (thumb.exists() and box_file.exists()):
        return b"", ""
    info = json.loads(box_file.read_text())
    top, left, bottom, right = info["box"]
    hr_h, hr_w = info["hr_size"]
    with Image.open(thumb) as image:
        image = image.convert("RGB")
        sx, sy = image.width / hr_w, image.height / hr_h
        draw = ImageDraw.Draw(image)
        for inset, colour in ((0, (230, 0, 0)), (1, (255, 255, 255))):
            draw.rectangle([left * sx - 1 - inset, top * sy - 1 - inset, right * sx + inset, bottom * sy + inset],
                           outline=colour, width=1 if inset else 2)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
    why = {"crop_at": "placed by visuals.crop_at", "most detail": "where the HR has the most detail"}.get(
        info.get("chosen", ""), "")
    text = f"crop {right - left}×{bottom - top} at (top {top}, left {left}) of {hr_w}×{hr_h}" + (f", {why}" if why else "")
    return buffer.getvalue(), text


def _order(stems: list[str], label_slugs: list[str]) -> list[str]:
    """GT, bicubic, then methods in run order, then anything else by name."""
    fixed = [s for s in _FIXED if s in stems]
    known = [s for s in label_slugs if s in stems and s not in fixed]
    rest = sorted(s for s in stems if s not in fixed and s not in known)
    return fixed + known + rest


def _caption(record: ImageRecord | None) -> str:
    if record is None:
        return ""
    parts = [f"{metric_title(m)} {v:.{decimals(m)}f}" for m, v in record.metrics.items()
             if v is not None and m.lower() in ("psnr", "ssim")]
    return " / ".join(parts)


def visual_rows(run_dir: Path, cases: Sequence[CaseRecord], images: Sequence[ImageRecord] = (),
                display: int = DISPLAY_PX) -> list[VisualRow]:
    """One row per visuals/<dataset>/<scale>/<image>/ folder, datasets in run order, scales numerically."""
    root = Path(run_dir) / "visuals"
    if not root.is_dir():
        return []
    # folder names are slugs (engine.visuals.visual_dir): map them back to the stored names
    datasets = ordered_unique(slug(c.dataset) for c in cases)
    dataset_names = {slug(c.dataset): c.dataset for c in cases}
    # crops are <label_stem>.png; runs written before label_stem existed used the bare slug
    names = {**{slug(c.label): c.label for c in cases}, **{label_stem(c.label): c.label for c in cases}}
    label_slugs = ordered_unique(s for c in cases for s in (label_stem(c.label), slug(c.label)))
    case_ids = {**{(slug(c.dataset), c.scale, slug(c.label)): c.case_id for c in cases},
                **{(slug(c.dataset), c.scale, label_stem(c.label)): c.case_id for c in cases}}
    by_image = {(i.case_id, slug(i.image)): i for i in images}
    bicubic_stems = {label_stem(c.label) for c in cases if c.method == "bicubic"}
    folders = sorted((p for p in root.glob("*/*/*") if p.is_dir()),
                     key=lambda p: (datasets.index(p.parts[-3]) if p.parts[-3] in datasets else len(datasets),
                                    p.parts[-3], scale_key(p.parts[-2]), p.parts[-1]))
    rows = []
    for folder in folders:
        dataset, scale, image = folder.parts[-3:]
        row = VisualRow(dataset_names.get(dataset, dataset), scale, image)
        row.thumb_png, row.box_text = thumbnail_with_box(folder)
        # a hidden .png is write_image's temp file (a write in progress or cut short by a kill), not a method's crop
        stems = [p.stem for p in folder.glob("*.png") if p.stem != "thumb" and not p.name.startswith(".")]
        if any(stem in stems for stem in bicubic_stems):  # the run's bicubic method has its own, labelled crop
            stems = [stem for stem in stems if stem != "bicubic"]
        for stem in _order(stems, label_slugs):
            png, size, factor = zoomed_png(folder / f"{stem}.png", display)
            record = by_image.get((case_ids.get((dataset, scale, stem)), image))
            error = error_map_png(folder / f"{stem}.png", folder / "GT.png", factor) \
                if stem != "GT" and (folder / "GT.png").exists() else b""
            row.tiles.append(Tile(names.get(stem, stem), png, size, factor, _caption(record), error))
        if row.tiles:
            rows.append(row)
    return rows


def figure_png(row: VisualRow, gap: int = 8, font_size: int = 14) -> bytes:
    """The row as one labelled PNG, like a paper figure: thumbnail with the box, crops side by side with name and
    scores below, and the error maps in a second row under their crops."""
    font = ImageFont.load_default(size=font_size)
    small = ImageFont.load_default(size=font_size - 2)
    tiles = [Image.open(io.BytesIO(t.png)).convert("RGB") for t in row.tiles]
    errors = [Image.open(io.BytesIO(t.error_png)).convert("RGB") if t.error_png else None for t in row.tiles]
    thumb = Image.open(io.BytesIO(row.thumb_png)).convert("RGB") if row.thumb_png else None
    text_h = 2 * (font_size + 4) + 4
    tile_h = max(t.height for t in tiles)
    has_errors = any(e is not None for e in errors)
    height = tile_h + text_h + 2 * gap + ((tile_h + font_size + 8 + gap) if has_errors else 0)
    left_w = (thumb.width + gap) if thumb is not None else 0
    if thumb is not None:
        height = max(height, thumb.height + 2 * gap + font_size + 8)
    width = left_w + sum(t.width for t in tiles) + gap * (len(tiles) + 1)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    if thumb is not None:
        canvas.paste(thumb, (gap, gap))
        draw.text((gap + thumb.width / 2, gap + thumb.height + 4), row.image, fill="black", font=font, anchor="ma")
    x = gap + left_w
    for tile, image, error in zip(row.tiles, tiles, errors):
        canvas.paste(image, (x, gap))
        centre, y = x + image.width / 2, gap + image.height + 4
        draw.text((centre, y), tile.name, fill="black", font=font, anchor="ma")
        if tile.caption:
            draw.text((centre, y + font_size + 4), tile.caption, fill=(90, 90, 90), font=small, anchor="ma")
        if error is not None:
            top = gap + tile_h + text_h + gap
            canvas.paste(error, (x, top))
            draw.text((centre, top + error.height + 4), f"|error| x{ERROR_GAIN}", fill=(90, 90, 90), font=small,
                      anchor="ma")
        x += image.width + gap
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
