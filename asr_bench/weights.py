"""Where a method's weights are: the one resolution that the run, `--dry-run`, `doctor`, `build_model` and
`asr-bench weights list` share, so that what one says is what the other does.

A preset declares its official files (`Preset.weights`). Each file is looked for, in this order, in
  1. the config's `checkpoint_dirs` / `--checkpoint-dir` (repeatable), in the order given,
  2. `$ASR_BENCH_WEIGHTS`,
  3. our cache, `~/.cache/asr_bench/weights` (where `asr-bench weights fetch` writes plain-URL files),
  4. the Hugging Face Hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`), for
     files hosted on the Hub: read through `huggingface_hub.try_to_load_from_cache`, which makes no request,
each folder in the layouts `<dir>/<preset>/<file>` and `<dir>/<file>` (a file of a preset with several releases,
GSASR's DIV2K/DF2K pairs, only as `<dir>/<preset>/<variant>/<file>`, since its name alone does not say which).
A file whose size or sha256 differs from the published one (or from the sha256 recorded when it was fetched)
is refused in one line; nothing is ever downloaded here (`asr_bench.zoo.fetch` does that, when asked).

A bare file name in a config's `checkpoint:` (`edsr-baseline-liif.pth`) is searched the same way after the
current folder.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import atomic
from .errors import MissingFile, UserError
from .hashing import file_sha256, sha256_of  # noqa: F401 - sha256_of: zoo's name for a part being fetched
from .weightfiles import WeightFile

ENV = "ASR_BENCH_WEIGHTS"
DEFAULT_CACHE = Path("~/.cache/asr_bench/weights")
HUB = "Hugging Face Hub cache"
HUB_URL = re.compile(r"^https://huggingface\.co/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$")
NONE = "none"   # `checkpoint: none`: random weights on purpose


def fetch_command(*presets: str) -> str:
    return "asr-bench weights fetch " + " ".join(presets)


# ------------------------------------------------------------------------------------------ folders


@dataclass(frozen=True)
class Folder:
    path: Path
    where: str          # how the user named it: 'checkpoint_dirs', '$ASR_BENCH_WEIGHTS', 'cache'


def search_folders(checkpoint_dirs: Iterable[str | Path] = ()) -> list[Folder]:
    """checkpoint_dirs (in order), $ASR_BENCH_WEIGHTS, our cache: each once."""
    named = [(d, "checkpoint_dirs") for d in (checkpoint_dirs or ()) if d]
    named += [(os.environ.get(ENV) or None, f"${ENV}"), (DEFAULT_CACHE, "cache")]
    out: list[Folder] = []
    for d, where in named:
        if d is not None and all(Path(d).expanduser() != f.path for f in out):
            out.append(Folder(Path(d).expanduser(), where))
    return out


def search_dirs(checkpoint_dirs: Iterable[str | Path] = ()) -> list[Path]:
    return [f.path for f in search_folders(checkpoint_dirs)]


def hub_cache_dir() -> Path:
    """The Hub's cache folder, read from the environment at call time (as huggingface_hub reads it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return Path(os.environ.get("HF_HOME") or "~/.cache/huggingface").expanduser() / "hub"


def variant_of(wf: WeightFile) -> str:
    """Which alternative release a file belongs to (GSASR enhanced: DIV2K- or DF2K-trained); '' for one release."""
    return wf.extra.get("variant") or wf.extra.get("train") or ""


def variants(files: Sequence[WeightFile]) -> list[str]:
    out: list[str] = []
    for wf in files:
        if variant_of(wf) not in out:
            out.append(variant_of(wf))
    return out


def local_path(root: Path, preset_name: str, wf: WeightFile) -> Path:
    """Where a file lives in a weights folder: <root>/<preset>[/<variant>]/<file>."""
    variant = variant_of(wf)
    return root / preset_name / variant / wf.filename if variant else root / preset_name / wf.filename


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    revision: str
    path: str           # inside the repository


def hub_file(wf: WeightFile) -> HubFile | None:
    """The Hub location of a file hosted there (its first huggingface.co/<repo>/resolve/<rev>/<path> URL);
    `extra['revision']` pins a commit where the URL names a branch."""
    for url in wf.urls:
        match = HUB_URL.match(url)
        if match:
            return HubFile(match["repo"], wf.extra.get("revision") or match["revision"], match["path"])
    return None


def in_hub_cache(wf: WeightFile) -> Path | None:
    """The file's copy in the Hub cache, or None; no request is made."""
    hub = hub_file(wf)
    if hub is None:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(hub.repo_id, hub.path, cache_dir=str(hub_cache_dir()), revision=hub.revision)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


@dataclass(frozen=True)
class Found:
    path: Path
    where: str


def locate(preset_name: str, wf: WeightFile, folders: Sequence[Folder]) -> Found | None:
    """The first copy of a declared file: the folders in order (both layouts), then the Hub cache."""
    for folder in folders:
        candidates = [local_path(folder.path, preset_name, wf)] + ([] if variant_of(wf) else [folder.path / wf.filename])
        for candidate in candidates:
            if candidate.is_file():
                return Found(candidate, folder.where)
    cached = in_hub_cache(wf)
    return Found(cached, HUB) if cached is not None else None


# ------------------------------------------------------------------------------------------ hashes

RECORD = "sha256.json"


def record_root() -> Path:
    """The folder whose `sha256.json` remembers hashes: the cache ($ASR_BENCH_WEIGHTS or the default), never a
    user's own weights folder, so `list` and `doctor` write nowhere else."""
    return Path(os.environ.get(ENV) or DEFAULT_CACHE).expanduser()


def read_records() -> dict[str, dict[str, Any]]:
    path = record_root() / RECORD
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}   # a damaged record only costs a re-hash
    return data if isinstance(data, dict) else {}


def write_records(records: dict[str, dict[str, Any]]) -> None:
    """Temp file + rename: a crash never leaves a half-written record. The temp file is this writer's own, so two
    processes recording at once cannot mix their texts (the later rename wins; a lost entry is only re-hashed)."""
    atomic.write_text(record_root() / RECORD, json.dumps(records, indent=1, sort_keys=True))


def record_key(path: Path) -> str:
    """A file's key in the record: relative inside the cache (which may move), absolute elsewhere."""
    resolved, base = path.resolve(), record_root().resolve()
    return str(resolved.relative_to(base)) if resolved.is_relative_to(base) else str(resolved)


def cached_sha256(path: Path) -> str:
    """sha256 of a file through the package's one content-hash index (kept in the cache folder): a 256 MB
    checkpoint is hashed once, not on every `list` or run. `sha256.json` keeps only what fetching recorded."""
    return file_sha256(path, index_dir=record_root())


def recorded_sha256(path: Path) -> str | None:
    """The sha256 fetch recorded for a file whose source publishes none."""
    return read_records().get(record_key(path), {}).get("fetched_sha256")


# ------------------------------------------------------------------------------------------ checks


def problem(preset_name: str, wf: WeightFile, path: Path) -> str | None:
    """Why a found file is not the official one (size, published sha256, or the sha256 recorded at fetch), or None."""
    size = path.stat().st_size
    if wf.size is not None and size != wf.size:
        return (f"{path} is not the official {preset_name} {wf.filename}: {size} bytes, published {wf.size}; "
                f"delete it and run `{fetch_command(preset_name)}`.")
    digest = cached_sha256(path)
    expected = (wf.sha256 or "").lower() or recorded_sha256(path)
    if expected and digest != expected:
        what = "published" if wf.sha256 else "recorded when it was fetched"
        return (f"{path} is not the official {preset_name} {wf.filename}: sha256 {digest[:16]}..., {what} "
                f"{expected[:16]}...; delete it and run `{fetch_command(preset_name)}`.")
    return None


class WeightsMismatch(UserError):
    """A file in a weights folder has the name of an official file but not its contents."""


# ------------------------------------------------------------------------------------------ presets


@dataclass(frozen=True)
class PresetWeights:
    """What was found for one preset: the checkpoint to load (a file, or the folder of a multi-file preset)."""

    preset: str
    declared: bool
    checkpoint: str | None = None
    files: tuple[tuple[str, str, str], ...] = ()    # (file name, path, where found)
    missing: tuple[str, ...] = ()
    looked_in: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return self.checkpoint is not None

    @property
    def fetch(self) -> str:
        return fetch_command(self.preset)

    def where(self) -> str:
        return ", ".join(dict.fromkeys(w for _, _, w in self.files))

    def describe(self) -> str:
        """'official liif.edsr-baseline: /w/edsr-baseline-liif.pth ($ASR_BENCH_WEIGHTS)' or the missing line."""
        if self.found:
            return f"official {self.preset}: {self.checkpoint} ({self.where()})"
        if not self.declared:
            return f"cost only (random weights): {self.preset} has no official weights"
        return f"cost only (random weights): run `{self.fetch}`"

    def provenance(self) -> dict[str, Any]:
        return {"preset": self.preset, "found": self.found, "checkpoint": self.checkpoint,
                "files": [{"file": f, "path": p, "where": w} for f, p, w in self.files],
                "missing": list(self.missing), "fetch": None if self.found or not self.declared else self.fetch}


def declared_files(preset: Any) -> tuple[WeightFile, ...]:
    return tuple(getattr(preset, "weights", ()) or ())


def resolve_preset(preset_name: str, preset: Any, checkpoint_dirs: Iterable[str | Path] = (),
                   verify: bool = True, variant: str | None = None) -> PresetWeights:
    """Find a preset's official files (the first release all of whose files are found, or the named `variant`);
    a damaged file is a `WeightsMismatch`. Several files (GSASR's encoder.pth + decoder.pth, RT4KSR's x2 + x3)
    resolve to the folder holding just them (a folder of links in our cache where they lie among others)."""
    folders = search_folders(checkpoint_dirs)
    looked = tuple(str(f.path) for f in folders) + ((HUB,) if any(hub_file(w) for w in declared_files(preset)) else ())
    files = declared_files(preset)
    if not files:
        return PresetWeights(preset_name, False, looked_in=looked)
    first_missing: tuple[str, ...] = ()
    if variant is not None and variant not in variants(files):
        raise UserError(f"preset {preset_name} has no release '{variant}'; its releases: "
                        f"{', '.join(v for v in variants(files) if v) or '(one)'}.")
    for release in [variant] if variant is not None else variants(files):
        wanted = [wf for wf in files if variant_of(wf) == release]
        found = [(wf, locate(preset_name, wf, folders)) for wf in wanted]
        missing = tuple(wf.filename for wf, f in found if f is None)
        if missing:
            first_missing = first_missing or missing
            continue
        if verify:
            for wf, f in found:
                why = problem(preset_name, wf, f.path)  # type: ignore[union-attr]
                if why:
                    raise WeightsMismatch(why)
        paths = [f.path for _, f in found]  # type: ignore[union-attr]
        checkpoint = str(paths[0]) if len(paths) == 1 else str(folder_of(preset_name, release, paths))
        return PresetWeights(preset_name, True, checkpoint,
                             tuple((wf.filename, str(f.path), f.where) for wf, f in found),  # type: ignore[union-attr]
                             (), looked)
    return PresetWeights(preset_name, True, None, (), first_missing, looked)


def folder_of(preset_name: str, release: str, paths: Sequence[Path]) -> Path:
    """A folder holding exactly `paths` (what a multi-file checkpoint is loaded from): their own folder when they
    are alone in it, else a folder of links in our cache."""
    from .checkpoints import CHECKPOINT_SUFFIXES

    parent = paths[0].parent
    siblings = {p for p in parent.iterdir() if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES}
    if all(p.parent == parent for p in paths) and siblings == set(paths):
        return parent
    links = Path(os.environ.get(ENV) or DEFAULT_CACHE).expanduser() / ".linked" / preset_name / (release or "")
    try:
        links.mkdir(parents=True, exist_ok=True)
        for old in links.iterdir():
            old.unlink()
        for p in paths:
            (links / p.name).symlink_to(p.resolve())
    except OSError as exc:
        raise UserError(f"the files of {preset_name} ({', '.join(str(p) for p in paths)}) share their folder with "
                        f"other checkpoints, and a folder of links could not be made at {links} ({exc.strerror}); "
                        f"put them in <dir>/{preset_name}/ of a weights folder.") from None
    return links


def resolve_named_preset(name: str, checkpoint_dirs: Iterable[str | Path] = (), verify: bool = True) -> PresetWeights:
    from .registry import get_preset

    return resolve_preset(name, get_preset(name), checkpoint_dirs, verify)


def resolve_checkpoint(text: str, checkpoint_dirs: Iterable[str | Path] = (), what: str = "checkpoint") -> Found:
    """A config's `checkpoint:`: the path as written when it exists; a bare file name is also searched in the
    weights folders (both layouts) and, for a declared file, the Hub cache, and checked like a preset's file."""
    path = Path(text).expanduser()
    if path.exists():
        return Found(path, "as given")
    folders = search_folders(checkpoint_dirs)
    if len(path.parts) == 1:
        declared = [(p.name, wf) for _, p in _presets() for wf in declared_files(p) if wf.filename == path.name]
        for folder in folders:
            for candidate in [folder.path / path.name, *sorted(folder.path.glob(f"*/{path.name}"))]:
                if candidate.is_file():
                    _check_named(candidate, declared)
                    return Found(candidate, folder.where)
        for name, wf in declared:
            cached = in_hub_cache(wf)
            if cached is not None:
                _check_named(cached, declared)
                return Found(cached, HUB)
    looked = ", ".join(str(f.path) for f in folders)
    raise MissingFile(what, text, f"Checked the current folder{' and ' + looked if len(path.parts) == 1 else ''}; "
                                  "put the file in a weights folder (config checkpoint_dirs, --checkpoint-dir, "
                                  f"${ENV}), give its full path, or write `checkpoint: none` for random weights.")


def _check_named(path: Path, declared: list[tuple[str, WeightFile]]) -> None:
    """A file found by its bare name that a preset declares: the same size/sha256 check as a preset's file."""
    if len(declared) == 1:
        why = problem(declared[0][0], declared[0][1], path)
        if why:
            raise WeightsMismatch(why)


def _presets() -> list[tuple[Any, Any]]:
    from .registry import all_presets

    return list(all_presets())


def missing_line(missing: Sequence[PresetWeights]) -> str:
    """One line naming every missing preset with its fetch command (`require_weights`, `reproduce`)."""
    items = "; ".join(f"{m.preset} (`{m.fetch}`)" for m in missing)
    looked = ", ".join(missing[0].looked_in) if missing else ""
    return (f"official weights missing for {items}; looked in {looked}. Fetch them, point --checkpoint-dir / "
            "checkpoint_dirs at a folder holding them, or drop require_weights / --require-weights.")


@dataclass(frozen=True)
class WeightsChoice:
    """Which weights a case loads, as the run, `--dry-run` and the provenance say it.

    state: official (a preset's files, found), file (a `checkpoint:` the config names), random (`checkpoint:
    none`: on purpose), missing (a preset's files, not found: cost only), undeclared (no official files: cost
    only), not-needed (the method has no weights)."""

    state: str
    checkpoint: str | None = None
    where: str = ""
    preset: str | None = None
    found: PresetWeights | None = None

    @property
    def loads(self) -> bool:
        return self.checkpoint is not None

    def text(self) -> str:
        if self.state == "official":
            return f"official {self.preset} weights: {self.checkpoint} (found in {self.where})"
        if self.state == "file":
            return f"{self.checkpoint}" + ("" if self.where == "as given" else f" (found in {self.where})")
        if self.state == "random":
            return "random weights (checkpoint: none)"
        if self.state == "missing":
            return f"cost only (random weights): `{fetch_command(self.preset or '')}` fetches the official ones"
        if self.state == "not-needed":
            return "not needed"
        return "cost only (random weights)" + (f": {self.preset} has no official weights" if self.preset else "")

    def provenance(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "checkpoint": self.checkpoint, "where": self.where or None,
                               "preset": self.preset}
        if self.found is not None:
            out["files"] = [{"file": f, "path": p, "where": w} for f, p, w in self.found.files]
            if self.state == "missing":
                out["missing"] = list(self.found.missing)
                out["fetch"] = self.found.fetch
        return out


SMALL_OFFICIAL = ("liif.edsr-baseline", "rt4ksr.x2", "rt4ksr.x3")   # small files that make a first run a comparison


def run_notes(cases: Sequence[Any]) -> list[str]:
    """Lines under a run's summary: the fetch command of every preset that ran cost only for want of its files;
    and, when no case had real weights at all, which small official files would turn the accuracy table and plots
    into a comparison."""
    states = [(c, (getattr(c, "provenance", None) or {}).get("weights") or {}) for c in cases]
    missing: dict[str, str] = {}
    for case, state in states:
        if state.get("state") == "missing" and state.get("fetch"):
            missing.setdefault(state["fetch"], case.label)
    lines = []
    if missing:
        lines.append("cost only, official weights not found: "
                     + "; ".join(f"{label}: `{fetch}`" for fetch, label in missing.items()))
    real = any(state.get("state") in ("official", "file") for _, state in states)
    if not real and any(c.status == "no-weights" for c in cases):
        lines.append(f"no official weights were found, so accuracy reads n/a: `{fetch_command(*SMALL_OFFICIAL)}` "
                     f"({_small_size()}) turns the accuracy table and plots into a comparison of real models "
                     "(or point --checkpoint-dir at a folder holding them).")
    return lines


def _small_size() -> str:
    from .registry import get_preset

    try:
        total = sum(wf.size or 0 for name in SMALL_OFFICIAL for wf in declared_files(get_preset(name)))
    except UserError:
        return "a few MB"
    return f"{total / 1e6:.0f} MB in all"
