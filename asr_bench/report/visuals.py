"""Visual comparisons: the same HR-space crop from GT, bicubic and every method, side by side.

The engine writes `<run>/visuals/<dataset>/<scale>/<image_id>/{GT,bicubic,<label_stem(label)>}.png`. Each
folder becomes one row, like a paper figure: crops zoomed by nearest neighbour (pixels stay visible,
no smoothing hides artefacts), labelled with the method name and that image's stored PSNR/SSIM.
"""
from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..results.schema import CaseRecord, ImageRecord, label_stem, slug
from .model import dataset_title, decimals, metric_title, ordered_unique, scale_key, scale_title

DISPLAY_PX = 200  # crops are zoomed to about this size (integer factor)
_FIXED = ("GT", "bicubic")


@dataclass
class Tile:
    name: str            # what the tile is labelled with
    png: bytes           # the zoomed crop
    size: tuple[int, int]  # (w, h) of the original crop
    zoom: int
    caption: str = ""    # e.g. "PSNR 32.51 / SSIM 0.8912"

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class VisualRow:
    dataset: str
    scale: str
    image: str
    tiles: list[Tile] = field(default_factory=list)

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
    folders = sorted((p for p in root.glob("*/*/*") if p.is_dir()),
                     key=lambda p: (datasets.index(p.parts[-3]) if p.parts[-3] in datasets else len(datasets),
                                    p.parts[-3], scale_key(p.parts[-2]), p.parts[-1]))
    rows = []
    for folder in folders:
        dataset, scale, image = folder.parts[-3:]
        row = VisualRow(dataset_names.get(dataset, dataset), scale, image)
        stems = [p.stem for p in folder.glob("*.png")]
        for stem in _order(stems, label_slugs):
            png, size, factor = zoomed_png(folder / f"{stem}.png", display)
            record = by_image.get((case_ids.get((dataset, scale, stem)), image))
            row.tiles.append(Tile(names.get(stem, stem), png, size, factor, _caption(record)))
        if row.tiles:
            rows.append(row)
    return rows


def figure_png(row: VisualRow, gap: int = 8, font_size: int = 14) -> bytes:
    """The row as one labelled PNG (crops side by side, name and scores below): a figure to paste into a paper."""
    font = ImageFont.load_default(size=font_size)
    small = ImageFont.load_default(size=font_size - 2)
    tiles = [Image.open(io.BytesIO(t.png)).convert("RGB") for t in row.tiles]
    text_h = 2 * (font_size + 4) + 4
    width = sum(t.width for t in tiles) + gap * (len(tiles) + 1)
    height = max(t.height for t in tiles) + text_h + 2 * gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    x = gap
    for tile, image in zip(row.tiles, tiles):
        canvas.paste(image, (x, gap))
        centre, y = x + image.width / 2, gap + image.height + 4
        draw.text((centre, y), tile.name, fill="black", font=font, anchor="ma")
        if tile.caption:
            draw.text((centre, y + font_size + 4), tile.caption, fill=(90, 90, 90), font=small, anchor="ma")
        x += image.width + gap
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
