"""Published numbers: read `asr_bench/published/*.csv` and match them to our cases.

A row matches a case when method, encoder, dataset, scale and metric agree after normalisation (case,
spaces, "x4" / "4.0" / "4", dataset aliases); the protocol is compared separately so a number published
under another protocol is still shown, flagged as such, rather than silently compared or hidden.
The format is documented in asr_bench/published/README.md.
"""
from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..results.schema import CaseRecord
from ..errors import MissingFile, UserError

COLUMNS = ("method", "encoder", "dataset", "scale", "protocol", "metric", "value", "source")
KINDS = ("published", "reference")  # optional column `kind`
_DATASET_ALIASES = {"div2k": "div2k-val", "bsd100": "b100", "bsds100": "b100", "lsdir": "lsdir-val"}
_NO_ENCODER = {"", "-", "none", "n/a"}


def norm_name(text: str) -> str:
    """Case-, space- and underscore-insensitive form: 'EDSR_baseline' == 'edsr-baseline', 'IGConv+' == 'igconv-plus'."""
    name = re.sub(r"[\s_]+", "-", str(text).strip().lower())
    return re.sub(r"-?\+$", "-plus", name)


def norm_encoder(text: str) -> str:
    name = norm_name(text)
    return "" if name in _NO_ENCODER else name


def norm_dataset(text: str) -> str:
    name = norm_name(text)
    return _DATASET_ALIASES.get(name, name)


def norm_scale(text: str) -> str:
    """'x4', '4.0', '×4' -> '4'; '3x2.5' -> '3x2.5'; '4x4' -> '4' (as sizes.format_scale writes them)."""
    raw = str(text).strip().lower().replace("×", "x").lstrip("x")
    try:
        parts = [float(p) for p in raw.split("x")]
    except ValueError:
        return raw
    if len(parts) == 2 and parts[0] == parts[1]:
        parts = parts[:1]
    return "x".join(f"{p:g}" for p in parts)


def norm_protocol(text: str) -> str:
    return re.sub(r"\s+", " ", str(text).strip().lower())


@dataclass(frozen=True)
class PublishedRow:
    method: str
    encoder: str
    dataset: str
    scale: str
    protocol: str
    metric: str
    value: float
    source: str
    where: str = ""  # "file.csv:line", for messages
    places: int | None = None  # decimals as printed ("38.21" -> 2): deltas are shown to places + 2
    kind: str = "published"    # "published" (a paper's table) or "reference" (measured with the official code)

    def key(self) -> tuple[str, str, str, str, str]:
        return (norm_name(self.method), norm_encoder(self.encoder), norm_dataset(self.dataset),
                norm_scale(self.scale), norm_name(self.metric))


@dataclass(frozen=True)
class PublishedMatch:
    """A published number next to ours. `delta` = ours - published."""

    row: PublishedRow
    ours: float
    same_protocol: bool

    @property
    def delta(self) -> float:
        return self.ours - self.row.value


def printed_places(text: str) -> int:
    """Decimals of a number as written: '38.21' -> 2, '32.2375' -> 4, '38' -> 0."""
    raw = str(text).strip().lower()
    mantissa = raw.split("e")[0]
    return len(mantissa.split(".", 1)[1]) if "." in mantissa else 0


def read_published_csv(path: Path) -> list[PublishedRow]:
    """Rows of one CSV; a malformed file is a UserError naming the file, line and fix."""
    with open(path, newline="", encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(lines)
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(
            f"{path}: missing column(s) {', '.join(missing)}; a published-numbers CSV needs the header "
            f"{','.join(COLUMNS)} (see asr_bench/published/README.md)."
        )
    rows = []
    for number, record in enumerate(reader, start=2):
        where = f"{path.name}:{number}"
        try:
            value = float(record["value"])
        except (TypeError, ValueError):
            raise UserError(
                f"{path}:{number}: value {record['value']!r} is not a number; write it as a plain decimal "
                "such as 32.50 (leave the row out if the paper gives none)."
            ) from None
        if not math.isfinite(value):
            raise UserError(f"{path}:{number}: value {record['value']!r} is not finite; write a plain decimal.")
        blank = [c for c in ("method", "dataset", "scale", "metric") if not (record[c] or "").strip()]
        if blank:
            raise UserError(f"{path}:{number}: empty {', '.join(blank)}; every row names method, dataset, scale and metric.")
        kind = (record.get("kind") or "published").strip().lower() or "published"
        if kind not in KINDS:
            raise UserError(f"{path}:{number}: kind {kind!r} is not one of {', '.join(KINDS)}; "
                            "'reference' = measured with the official code, 'published' = printed in a paper.")
        rows.append(PublishedRow(**{c: (record[c] or "").strip() for c in COLUMNS if c != "value"},
                                 value=value, where=where, places=printed_places(record["value"]), kind=kind))
    return rows


def load_published(directory: Path | None) -> list[PublishedRow]:
    """Every row of every `*.csv` in `directory` (sorted by file name); [] when directory is None."""
    if directory is None:
        return []
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingFile("published-numbers folder", directory,
                          "Point --published at a folder of CSVs such as asr_bench/published, or leave it out.")
    return [row for path in sorted(directory.glob("*.csv")) for row in read_published_csv(path)]


def match_published(case: CaseRecord, metric: str, ours: float, rows: Sequence[PublishedRow]) -> list[PublishedMatch]:
    """Published rows for this case and metric; those under the case's own protocol first."""
    key = (norm_name(case.method), norm_encoder(case.encoder), norm_dataset(case.dataset),
           norm_scale(case.scale), norm_name(metric))
    protocol = norm_protocol(case.protocol)
    matches = [PublishedMatch(row, float(ours), norm_protocol(row.protocol) == protocol)
               for row in rows if row.key() == key]
    return sorted(matches, key=lambda m: not m.same_protocol)
