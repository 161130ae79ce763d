"""The weights zoo: each preset's official files, whether they are here and intact, and fetching them.

Presets carry their sources as data (`Preset.weights`, a tuple of `WeightFile`); the zoo only reads them. Where a
file is looked for is `asr_bench.weights` (the one resolution the run, `--dry-run`, `doctor` and `build_model`
share): `--checkpoint-dir`, `$ASR_BENCH_WEIGHTS`, `~/.cache/asr_bench/weights`, then the Hugging Face Hub cache.

`fetch` is the only code in asr-bench that touches the network, and only when the user asks for it: a run never
downloads. Files hosted on the Hugging Face Hub (GSASR, IGConv) are fetched with `huggingface_hub` itself (its
cache, its resume, a pinned revision where the preset names one), so they land where GSASR's official code also
looks, and a file already in that cache costs no request. The small downloader below is kept only for plain URLs
that no maintained client serves (GitHub raw files, Dropbox links): it writes `<file>.part` beside the target,
resumes with an HTTP Range request after a cut connection, checks size and sha256 and renames into place only
when complete and intact. Either way the sha256 of every fetched file is recorded (`sha256.json` in the cache),
so a file whose source publishes none is still checked on every later use.
"""
from __future__ import annotations

import http.client
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import MissingFile, UnknownName, UserError
from .weightfiles import WeightFile
from .weights import DEFAULT_CACHE, ENV  # noqa: F401 - zoo's names (tests and callers set zoo.ENV)
from .weights import (HUB, Folder, HubFile, fetch_command, hub_cache_dir, hub_file, in_hub_cache, local_path,
                      search_folders, variant_of)
from .weights import locate as _locate
from .weights import (RECORD, cached_sha256, read_records, record_key, record_root,  # noqa: F401 - zoo's names
                      recorded_sha256, sha256_of, write_records)
from .weights import variants as _variants

CHUNK = 1 << 16
ATTEMPTS = 4                     # per URL: the first request and three resumes after a cut connection
MANUAL_HOSTS = ("drive.google.com", "pan.baidu.com")   # need a browser (confirmation pages, logins)
PAGE_PATHS = ("/releases/tag/", "/tree/", "/blob/")     # GitHub pages that list files rather than serve one


# ------------------------------------------------------------------------------------------ presets


def all_presets() -> list[tuple[Any, Any]]:
    """(MethodSpec, Preset) of every registered preset; the registry's own list once it has one."""
    from . import registry

    if hasattr(registry, "all_presets"):
        return list(registry.all_presets())
    return [(spec, preset) for spec in registry.method_specs() for preset in spec.presets.values()]


def named_presets() -> dict[str, tuple[Any, Any]]:
    """`method.tag` -> (MethodSpec, Preset)."""
    from .detect import preset_name

    return {preset_name(spec.name, preset.name, preset): (spec, preset) for spec, preset in all_presets()}


def find_preset(name: str) -> tuple[Any, Any]:
    presets = named_presets()
    if name not in presets:
        raise UnknownName("preset", name, presets, hint="See `asr-bench weights list`.")
    return presets[name]


def weight_files(preset: Any) -> tuple[WeightFile, ...]:
    return tuple(getattr(preset, "weights", ()) or ())


# ------------------------------------------------------------------------------------------ where


def search_dirs(weights_dir: str | Path | None = None) -> list[Path]:
    """--checkpoint-dir, $ASR_BENCH_WEIGHTS, ~/.cache/asr_bench/weights: in this order, each once."""
    return [f.path for f in search_folders([weights_dir] if weights_dir else [])]


def cache_dir(weights_dir: str | Path | None = None) -> Path:
    """Where fetch writes plain-URL files: the first of the search folders."""
    return search_dirs(weights_dir)[0]


def variants(preset: Any) -> list[str]:
    """The preset's alternative releases in declaration order (the first is the default); [''] for one."""
    return _variants(weight_files(preset))


def locate(preset_name: str, wf: WeightFile, dirs: Iterable[Path]) -> Path | None:
    """The first copy found (folders in order, both layouts, then the Hub cache)."""
    found = _locate(preset_name, wf, [Folder(Path(d), str(d)) for d in dirs])
    return None if found is None else found.path


# ------------------------------------------------------------------------------------------ hashes


# ------------------------------------------------------------------------------------------ status


@dataclass(frozen=True)
class FileStatus:
    preset: str
    file: WeightFile
    path: Path | None
    state: str            # missing | verified | mismatch | recorded | changed | unverified
    sha256: str | None    # of the local file, when there is one
    where: str = ""       # which search place it was found in

    @property
    def present(self) -> bool:
        return self.path is not None

    @property
    def ok(self) -> bool:
        return self.state in ("verified", "recorded", "unverified")

    @property
    def known_sha256(self) -> str | None:
        """The sha256 this file is checked against: published, else recorded when it was fetched."""
        return (self.file.sha256 or "").lower() or (recorded_sha256(self.path) if self.path else None)


def file_status(preset_name: str, wf: WeightFile, dirs: list[Path] | list[Folder]) -> FileStatus:
    folders = [d if isinstance(d, Folder) else Folder(Path(d), str(d)) for d in dirs]
    found = _locate(preset_name, wf, folders)
    if found is None:
        return FileStatus(preset_name, wf, None, "missing", None)
    path = found.path
    digest = cached_sha256(path)
    if wf.sha256:
        state = "verified" if digest == wf.sha256.lower() else "mismatch"
    else:
        fetched = recorded_sha256(path)
        state = "unverified" if fetched is None else ("recorded" if fetched == digest else "changed")
    if wf.size is not None and path.stat().st_size != wf.size:
        state = "mismatch"
    return FileStatus(preset_name, wf, path, state, digest, found.where)


def preset_state(preset_name: str, preset: Any, dirs: list[Path] | list[Folder]) -> str:
    """One word per preset for `list` and `doctor`: present, missing, partial, damaged, or none declared."""
    files = weight_files(preset)
    if not files:
        return "no weights declared"
    states = [file_status(preset_name, wf, dirs) for wf in files]
    if any(s.present and not s.ok for s in states):
        return "damaged (run `asr-bench weights list --files`)"
    complete = [v for v in variants(preset)
                if all(s.present for s in states if variant_of(s.file) == v)]
    if complete:
        return "present" + (f" ({', '.join(complete)})" if complete != [""] else "")
    found = sum(s.present for s in states)
    return "missing" if found == 0 else f"partial ({found}/{len(states)} files)"


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n} B"


def _wanted(names: Iterable[str]) -> list[str]:
    presets = named_presets()
    wanted = list(names) or sorted(presets)
    for name in wanted:
        find_preset(name)
    return wanted


def list_records(weights_dir: str | Path | None = None, names: Iterable[str] = ()) -> list[dict[str, Any]]:
    """`weights list --json`: per preset, its state and per file the source, size, sha256 (and whether it is
    known: published, or recorded at fetch), license, where it was found."""
    folders = search_folders([weights_dir] if weights_dir else [])
    presets = named_presets()
    out = []
    for name in _wanted(names):
        spec, preset = presets[name]
        files = []
        for wf in weight_files(preset):
            status = file_status(name, wf, folders)
            hub = hub_file(wf)
            files.append({"file": wf.filename, "variant": variant_of(wf) or None, "size": wf.size,
                          "sha256": status.known_sha256, "sha256_known": bool(status.known_sha256),
                          "sha256_source": "published" if wf.sha256 else ("recorded" if status.known_sha256 else None),
                          "license": wf.license or None, "urls": list(wf.urls),
                          "hub": None if hub is None else {"repo": hub.repo_id, "revision": hub.revision,
                                                           "path": hub.path},
                          "manual": wf.manual or None, "state": status.state,
                          "path": None if status.path is None else str(status.path), "where": status.where or None,
                          "local_sha256": status.sha256})
        out.append({"preset": name, "method": spec.name, "encoder": getattr(preset, "encoder", "") or None,
                    "state": preset_state(name, preset, folders), "fetch": fetch_command(name) if files else None,
                    "files": files})
    return out


def list_lines(weights_dir: str | Path | None = None, names: Iterable[str] = (), files: bool = False) -> list[str]:
    """`weights list`: one line per preset (here / missing, size, where); `files=True` adds every file's
    source, size, sha256 (known or unknown), license and local state."""
    folders = search_folders([weights_dir] if weights_dir else [])
    lines = [f"weights looked for in: {', '.join(f'{f.path} ({f.where})' for f in folders)}, {hub_cache_dir()} "
             "(Hugging Face Hub cache); as <dir>/<preset>/<file> or <dir>/<file>"]
    records = list_records(weights_dir, names)
    width = max((len(r["preset"]) for r in records), default=0)
    for record in records:
        sizes = [f["size"] for f in record["files"]]
        size = "" if not sizes else (_size(sum(sizes)) if all(s is not None for s in sizes) else "size unknown")
        state = record["state"]
        here = "here" if state.startswith("present") else state
        where = ", ".join(dict.fromkeys(f["where"] for f in record["files"] if f["where"]))
        tail = (f"  in {where}" if where else "") + (f"  `{record['fetch']}`" if here == "missing" else "")
        lines.append(f"{record['preset']:<{width}}  {here}  {size}{tail}".rstrip())
        if not files:
            continue
        for f in record["files"]:
            variant = f"[{f['variant']}] " if f["variant"] else ""
            known = f"sha256 {f['sha256']} ({f['sha256_source']})" if f["sha256_known"] else "sha256 unknown"
            lines.append(f"    {variant}{f['file']}: {_size(f['size'])}, {known}, license {f['license'] or 'unknown'}")
            for url in f["urls"]:
                lines.append(f"      source {url}")
            if f["manual"]:
                lines.append(f"      manual: {f['manual']}")
            status = FileStatus(record["preset"], _declared(record["preset"], f["file"], f["variant"]),
                                Path(f["path"]) if f["path"] else None, f["state"], f["local_sha256"], f["where"] or "")
            lines.append(f"      local: {_state_text(status)}")
    if not files:
        known = sum(f["sha256_known"] for r in records for f in r["files"])
        total = sum(len(r["files"]) for r in records)
        lines.append(f"({total} files, sha256 known for {known}; `weights list --files` for sources and hashes, "
                     "`--json` for all of it)")
    return lines


def _declared(preset_name: str, filename: str, variant: str | None) -> WeightFile:
    _, preset = find_preset(preset_name)
    return next(wf for wf in weight_files(preset) if wf.filename == filename and (variant_of(wf) or None) == variant)


def _state_text(status: FileStatus) -> str:
    if status.path is None:
        return "missing (`" + fetch_command(status.preset) + "`)"
    text = {
        "verified": "verified (sha256 matches the published one)",
        "mismatch": f"SHA256 MISMATCH (file has {status.sha256}); delete it and fetch again",
        "recorded": "matches the sha256 recorded when it was fetched (none published)",
        "changed": f"CHANGED since it was fetched (now {status.sha256}); fetch again",
        "unverified": f"present, not verifiable (no published sha256; file has {status.sha256})",
    }[status.state]
    return f"{status.path} {text}" + (f" [found in {status.where}]" if status.where else "")


# ------------------------------------------------------------------------------------------ fetch


def is_manual(url: str) -> bool:
    """A page for people, not a file: Drive/Baidu links, a GitHub release or tree page."""
    return any(host in url for host in MANUAL_HOSTS) or any(page in url for page in PAGE_PATHS)


def fetch(names: Iterable[str], weights_dir: str | Path | None = None, progress: bool = True,
          say: Callable[[str], None] = print, variant: str | None = None) -> list[Path]:
    """Download the files of each named preset into the cache; returns the paths now in place.

    Unknown names fail before anything is downloaded. A source that needs a browser prints its manual step.
    A preset with alternative releases (GSASR enhanced: DIV2K, DF2K) gets its first one unless `variant` names one.
    """
    names = list(names)
    if not names:
        raise UserError("weights fetch needs at least one preset name, e.g. `asr-bench weights fetch rt4ksr.x2`; "
                        "see `asr-bench weights list`.")
    chosen = [(name, find_preset(name)[1]) for name in names]
    for name, preset in chosen:
        if variant is not None and variants(preset) != [""] and variant not in variants(preset):
            raise UnknownName(f"variant of {name}", variant, variants(preset))
    root = cache_dir(weights_dir)
    done: list[Path] = []
    for name, preset in chosen:
        files = weight_files(preset)
        if not files:
            say(f"{name}: no official weights declared; nothing to fetch.")
        wanted = variant if variant in variants(preset) else variants(preset)[0] if files else ""
        for wf in (f for f in files if variant_of(f) == wanted):
            path = fetch_file(name, wf, root, progress, say)
            if path is not None:
                done.append(path)
    return done


def fetch_file(preset_name: str, wf: WeightFile, root: Path, progress: bool = True,
               say: Callable[[str], None] = print) -> Path | None:
    hub = hub_file(wf)
    if hub is not None:
        return fetch_hub(preset_name, wf, hub, progress, say)
    target = local_path(root, preset_name, wf)
    existing = file_status(preset_name, wf, [root])
    if existing.present and existing.ok:
        say(f"{preset_name}: {wf.filename} already at {existing.path} ({existing.state})")
        return existing.path
    urls = [u for u in wf.urls if not is_manual(u)]
    if not urls:
        step = wf.manual or (f"download {wf.filename} from {wf.urls[0]} in a browser" if wf.urls
                             else f"no source is published for {wf.filename}")
        say(f"{preset_name}: {wf.filename} needs a manual step: {step}; put it at {target}")
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    errors = []
    for url in urls:
        try:
            download(url, part, wf.size, progress, label=f"{preset_name}/{wf.filename}")
            break
        except _Retryable as exc:
            errors.append(f"{url}: {exc}")
    else:
        kept = f"; the partial file {part} is kept, rerun to resume" if part.exists() and part.stat().st_size else ""
        raise UserError(f"network error fetching {preset_name}/{wf.filename} ({'; '.join(errors)}){kept}.")
    return _install(preset_name, wf, part, target, urls, say)


def _install(preset_name: str, wf: WeightFile, part: Path, target: Path, urls: list[str],
             say: Callable[[str], None]) -> Path:
    """Check size and sha256, then rename into place; a bad download is deleted, never installed."""
    size = part.stat().st_size
    if wf.size is not None and size != wf.size:
        part.unlink()
        raise UserError(f"{preset_name}/{wf.filename}: downloaded {size} bytes, the source publishes {wf.size}; "
                        "the download was deleted, try again later or report the source.")
    digest = sha256_of(part)
    if wf.sha256 and digest != wf.sha256.lower():
        part.unlink()
        raise UserError(f"sha256 mismatch for {preset_name}/{wf.filename}: got {digest}, published {wf.sha256}; "
                        "the download was deleted (nothing installed); try again or report the source.")
    os.replace(part, target)
    return _record_fetch(preset_name, wf, target, digest, {"url": urls[0]}, say)


def fetch_hub(preset_name: str, wf: WeightFile, hub: HubFile, progress: bool = True,
              say: Callable[[str], None] = print) -> Path:
    """A Hub-hosted file through huggingface_hub, into the Hub cache (`$HF_ENDPOINT` is honoured, read now).

    A copy already in the cache is used without a request; huggingface_hub resumes a cut transfer from its
    `.incomplete` file (also on a rerun). The result is checked like any download: a wrong size or sha256 is
    deleted from the cache and refused, never used."""
    cached = in_hub_cache(wf)
    if cached is not None:
        say(f"{preset_name}: {wf.filename} already in the {HUB} at {cached}")
        _check_hub(preset_name, wf, cached)
        return cached
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    except ImportError:
        raise UserError(f"{preset_name}/{wf.filename} is hosted on the Hugging Face Hub; install its client: "
                        "pip install huggingface_hub.") from None
    (enable_progress_bars if progress else disable_progress_bars)()
    try:
        path = Path(hf_hub_download(hub.repo_id, hub.path, revision=hub.revision, cache_dir=str(hub_cache_dir()),
                                    endpoint=os.environ.get("HF_ENDPOINT") or None))
    except Exception as exc:  # noqa: BLE001 - network, 404, auth: one line; the partial file is kept to resume
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise UserError(f"could not fetch {preset_name}/{wf.filename} from the Hugging Face Hub ({hub.repo_id} "
                        f"{hub.path} @ {hub.revision}: {type(exc).__name__}: {text}); rerun to resume.") from None
    _check_hub(preset_name, wf, path)
    source = {"url": f"hf://{hub.repo_id}/{hub.path}@{hub.revision}", "commit": _snapshot_commit(path)}
    return _record_fetch(preset_name, wf, path, sha256_of(path), source, say)


def _record_fetch(preset_name: str, wf: WeightFile, path: Path, digest: str, source: dict[str, Any],
                  say: Callable[[str], None]) -> Path:
    """Remember where a fetched file came from and its sha256 (the yardstick for a file with none published)."""
    stat = path.stat()
    entry = {"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, **source}
    if not wf.sha256:
        entry["fetched_sha256"] = digest
    records = read_records()
    records[record_key(path)] = entry
    write_records(records)
    how = "verified" if wf.sha256 else "sha256 recorded (none published)"
    say(f"{preset_name}: {wf.filename} -> {path} ({how}: {digest})")
    return path


def _snapshot_commit(path: Path) -> str | None:
    """The Hub commit a cached file belongs to (its `snapshots/<commit>/` folder): what a branch resolved to."""
    parts = path.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def _check_hub(preset_name: str, wf: WeightFile, path: Path) -> None:
    """Refuse (and delete from the Hub cache) a file whose size or sha256 is not the published one."""
    size = path.stat().st_size
    digest = sha256_of(path)
    bad = (wf.size is not None and size != wf.size) or (wf.sha256 and digest != wf.sha256.lower())
    if not bad:
        return
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)
    raise UserError(f"sha256 mismatch for {preset_name}/{wf.filename} from the Hugging Face Hub: got {digest} "
                    f"({size} bytes), published {wf.sha256 or '-'} ({wf.size if wf.size is not None else '-'} bytes); "
                    "deleted from the cache, nothing installed; try again or report the source.")


class _Retryable(Exception):
    """A source that failed: try the next URL, or report."""


def download(url: str, part: Path, size: int | None, progress: bool, label: str) -> None:
    """Fill `part` with the file at `url`, resuming from its current length after each cut connection."""
    last: Exception | None = None
    for _ in range(ATTEMPTS):
        start = part.stat().st_size if part.exists() else 0
        if size is not None and start == size:
            return
        if size is not None and start > size:
            part.unlink()
            start = 0
        try:
            _transfer(url, part, start, progress, label)
            return
        except _NotAFile as exc:
            raise _Retryable(str(exc)) from exc
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and start:          # our partial file is not a prefix the server can continue
                part.unlink()
                last = exc
                continue
            raise _Retryable(f"HTTP {exc.code} {exc.reason}") from exc
        except urllib.error.URLError as exc:               # the host is not reachable (at open)
            raise _Retryable(str(exc.reason)) from exc
        except (OSError, http.client.HTTPException, _Cut) as exc:
            last = exc
    raise _Retryable(f"connection kept failing ({type(last).__name__}: {last})")


class _NotAFile(Exception):
    """The URL serves HTML (a preview or login page): the file needs a manual step."""


class _Cut(Exception):
    """The server closed the connection before the announced end of the file."""


def _transfer(url: str, part: Path, start: int, progress: bool, label: str) -> None:
    headers = {"User-Agent": "asr-bench"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        resumed = start and response.status == 206 and \
            response.headers.get("Content-Range", "").startswith(f"bytes {start}-")
        if response.headers.get_content_type() == "text/html":
            raise _NotAFile(f"{url} answers with a web page, not the file; download it in a browser")
        offset = start if resumed else 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        from tqdm import tqdm

        with part.open("ab" if resumed else "wb") as out, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=label, file=sys.stderr,
                     disable=not progress, leave=True) as bar:
            while True:
                try:
                    block = response.read(CHUNK)
                except http.client.IncompleteRead as exc:
                    out.write(exc.partial)
                    bar.update(len(exc.partial))
                    raise _Cut(f"cut after {out.tell()} bytes") from exc
                if not block:
                    break
                out.write(block)
                bar.update(len(block))
            written = out.tell()
    if total is not None and written < total:
        raise _Cut(f"cut after {written} of {total} bytes")


# ------------------------------------------------------------------------------------------ verify


def verify(checkpoint: str | Path, device: str = "cpu") -> list[str]:
    """`weights verify FILE`: detect, strict-load through build_model, parameters and sha256 of each file."""
    from .checkpoints import CHECKPOINT_SUFFIXES
    from .detect import detect_checkpoint
    from .models import build_model

    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise MissingFile("checkpoint", path, "Check the path (a .pth file, or a folder of them).")
    found = detect_checkpoint(path)
    model = build_model(checkpoint=path, device=device)
    params = sum(p.numel() for p in model.parameters())
    lines = [f"method {found.method}, encoder {found.encoder}, preset {found.preset or '(method default)'}",
             f"  why: {found.reason}",
             f"  strict load: ok, {params:,} parameters, weights_loaded={bool(getattr(model, 'weights_loaded', False))}"]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES) \
        if path.is_dir() else [path]
    declared = [(name, wf) for name, (_, preset) in named_presets().items() for wf in weight_files(preset)]
    names = [wf.filename for _, wf in declared]
    published = {wf.filename: (name, wf) for name, wf in declared if wf.sha256 and names.count(wf.filename) == 1}
    by_hash = {wf.sha256.lower(): name for name, wf in declared if wf.sha256}
    for file in files:
        digest = sha256_of(file)
        if digest in by_hash:
            note = f"the published file of {by_hash[digest]}"
        elif file.name in published:
            name, wf = published[file.name]
            raise UserError(f"sha256 mismatch: {file} has the name of {name}'s official file but sha256 {digest}, "
                            f"published {wf.sha256}; fetch it again with `asr-bench weights fetch {name}`.")
        else:
            note = "no published sha256 to compare"
        lines.append(f"  sha256 {digest}  {file.name} ({note})")
    return lines
