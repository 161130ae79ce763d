"""The one atomic writer (asr_bench/atomic.py): old or new contents, never half; the mode an ordinary open() gives
under the user's umask; only abandoned temp files of dead writers on this host are cleaned."""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from asr_bench import atomic
from asr_bench.cli import run_cli


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test, restored after (umask is per process: tests run one at a time)."""
    old = os.umask(0o022)
    os.umask(old)

    def set_to(value: int) -> None:
        os.umask(value)
    yield set_to
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_a_written_file_has_the_mode_an_ordinary_open_gives(tmp_path, umask, mask):
    umask(mask)
    ordinary = tmp_path / "ordinary.txt"
    with open(ordinary, "w") as handle:  # what the user's own tools would create
        handle.write("x")
    assert mode(ordinary) == 0o666 & ~mask
    for writer, name in ((atomic.write_text, "a.txt"), (atomic.write_bytes, "b.bin")):
        target = writer(tmp_path / name, "text" if name.endswith(".txt") else b"bytes")
        assert mode(target) == mode(ordinary), (name, oct(mode(target)))
    # a replaced file takes the umask's mode too, not the old file's
    old = tmp_path / "old.txt"
    old.write_text("old")
    old.chmod(0o600)
    atomic.write_text(old, "new")
    assert mode(old) == 0o666 & ~mask and old.read_text() == "new"


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600)])
def test_every_file_a_run_and_its_report_write_has_the_umask_mode(tmp_path, umask, capsys, mask, expected):
    umask(mask)
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(images / f"{i}.png")
    config = tmp_path / "c.yml"
    config.write_text(f"methods: [bicubic]\ndatasets: [{images}]\nscales: [2]\nmetrics: [psnr]\ndevice: cpu\n"
                      "profiling: {warmup: 0, repeats: 1, memory: false, flops: false}\nvisuals: {crop: 8}\n"
                      f"cache_dir: {tmp_path / 'cache'}\nsave_images: true\n")
    run = tmp_path / "run"
    assert run_cli(["--config", str(config), "--no-progress", "--output", str(run)]) == 0
    assert run_cli(["report", str(run)]) == 0
    capsys.readouterr()
    written = [p for p in run.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in written}
    assert {".html", ".csv", ".jsonl", ".json", ".png", ".md", ".sqlite"} <= kinds, kinds
    wrong = {str(p.relative_to(run)): oct(mode(p)) for p in written if mode(p) != expected}
    assert wrong == {}


def test_an_interrupted_write_keeps_the_old_contents_and_leaves_no_temp_file(tmp_path, monkeypatch):
    target = atomic.write_text(tmp_path / "f.txt", "old\n")

    def explode(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", explode)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_text(target, "new\n")
    with pytest.raises(ValueError):
        with atomic.open_atomic(target, "w") as handle:
            handle.write("half")
            raise ValueError("the writer failed midway")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_the_temp_file_is_owner_tagged_in_the_target_folder(tmp_path, monkeypatch):
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append(Path(src))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic.write_text(tmp_path / "sub" / "x.json", "{}")
    (temp,) = seen
    pid_start = atomic.process_start(os.getpid())
    assert temp.parent == tmp_path / "sub" and temp.name.endswith(".tmp")
    assert temp.name.startswith(f".asr-bench-{os.getpid()}-{pid_start}@{socket.gethostname()}@x.json.")


def test_cleanup_deletes_only_temp_files_of_dead_writers_on_this_host(tmp_path):
    host = socket.gethostname()
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = atomic.process_start(child.pid)
        files = {
            "dead": f".asr-bench-{dead}-5@{host}@a.json.1.tmp",
            "reused": f".asr-bench-{child.pid}-1@{host}@a.json.2.tmp",  # same pid, another start: the writer died
            "live": f".asr-bench-{child.pid}-{start}@{host}@a.json.3.tmp",
            "other host": f".asr-bench-{dead}-5@elsewhere@a.json.4.tmp",
            "unowned": ".asr-bench-a.json.5.tmp",
            "user's": ".notes.tmp",
            "user's too": f"asr-bench-{dead}-5@{host}@a.json.6.tmp",
        }
        for name in files.values():
            (tmp_path / name).write_text("half")
        removed = atomic.clean(tmp_path)
        assert sorted(p.name for p in removed) == sorted([files["dead"], files["reused"]])
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            n for k, n in files.items() if k not in ("dead", "reused"))
    finally:
        child.kill()
        child.wait()


def test_a_writer_cleans_its_target_folder_once(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_cleaned", set())
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    left = tmp_path / f".asr-bench-{dead}-5@{socket.gethostname()}@report.html.1.tmp"
    left.write_text("half a report")
    atomic.write_text(tmp_path / "report.html", "<html>")
    assert not left.exists()


def test_current_umask_reads_without_changing_it(umask):
    for mask in (0o022, 0o077, 0o002):
        umask(mask)
        assert atomic.current_umask() == mask
        assert atomic.current_umask() == mask  # unchanged by the reading
