"""The weights zoo against a local HTTP server (http.server on 127.0.0.1, serving files the test makes, with Range):
progress, resume after a cut connection, a bad hash refused, nothing left half-written; `weights list`, `verify`,
`doctor` and `list`; every bad input as one line with exit code 2 through the CLI."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from asr_bench import zoo
from asr_bench.cli import run_cli
from asr_bench.weightfiles import WeightFile

PAYLOAD = os.urandom(300_000)          # several read chunks, so a cut lands mid-file
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    """Serves `files` (name -> bytes); honours `Range: bytes=N-`; cuts the first `cuts` responses after `cut_at` bytes."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cuts = 0
        self.cut_at = 100_000
        self.ranges: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                if name.startswith("moved/"):             # a release page / HF hub redirect to the file
                    self.send_response(302)
                    self.send_header("Location", "/" + name[len("moved/"):])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                outer.ranges.append(self.headers.get("Range"))
                if name not in outer.files:
                    self.send_error(404)
                    return
                data = outer.files[name]
                if name.endswith(".html"):                  # a preview/login page where a file was expected
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if outer.cuts > 0:
                    outer.cuts -= 1
                    self.wfile.write(body[: outer.cut_at])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    srv.files["w.pth"] = PAYLOAD
    yield srv
    srv.close()


@pytest.fixture
def presets(monkeypatch, server):
    """A registry of test presets (the zoo reads only name, encoder and weights) in place of the real one."""
    table: dict[str, WeightFile | tuple] = {}

    def install(**files):
        table.clear()
        table.update(files)
        entries = []
        for name, wfs in files.items():
            method, tag = name.split(".", 1)
            spec = SimpleNamespace(name=method, needs_weights=True)
            entries.append((spec, SimpleNamespace(name=name, encoder="none", weights=tuple(wfs))))
        monkeypatch.setattr(zoo, "all_presets", lambda: entries)

    install(**{"toy.good": [WeightFile("w.pth", (server.url("w.pth"),), sha256=SHA, size=len(PAYLOAD), license="MIT")]})
    return install


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def error_of(capsys, argv):
    code = run_cli(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def only_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_fetch_downloads_with_progress_verifies_and_installs(server, presets, cache, capsys):
    assert run_cli(["weights", "fetch", "toy.good"]) == 0
    out, err = capsys.readouterr()
    target = cache / "toy.good" / "w.pth"
    assert target.read_bytes() == PAYLOAD
    assert "100%" in err and "toy.good/w.pth" in err               # the tqdm bar on stderr
    assert "verified" in out and SHA in out
    assert only_files(cache) == ["sha256.json", "toy.good/w.pth"]  # no .part left
    assert server.ranges == [None]


def test_fetch_resumes_after_a_cut_connection_with_a_range_request(server, presets, cache, capsys):
    server.cuts = 1
    assert run_cli(["weights", "fetch", "toy.good", "--no-progress"]) == 0
    assert (cache / "toy.good" / "w.pth").read_bytes() == PAYLOAD
    assert server.ranges == [None, f"bytes={server.cut_at}-"]


def test_resume_follows_a_redirect_with_its_range(server, presets, cache, capsys):
    presets(**{"toy.moved": [WeightFile("w.pth", (server.url("moved/w.pth"),), sha256=SHA)]})
    server.cuts = 1
    assert run_cli(["weights", "fetch", "toy.moved", "--no-progress"]) == 0
    assert (cache / "toy.moved" / "w.pth").read_bytes() == PAYLOAD
    assert server.ranges == [None, f"bytes={server.cut_at}-"]


def test_a_connection_that_keeps_failing_leaves_only_a_part_file_and_a_rerun_resumes(server, presets, cache, capsys):
    server.cuts, server.cut_at = 1000, 20_000      # every attempt gets a little further, never to the end
    err = error_of(capsys, ["weights", "fetch", "toy.good", "--no-progress"])
    assert "network error" in err and "rerun to resume" in err
    assert only_files(cache) == ["toy.good/w.pth.part"]             # never a half-written w.pth
    kept = (cache / "toy.good" / "w.pth.part").stat().st_size
    assert 0 < kept < len(PAYLOAD)
    server.cuts, server.ranges = 0, []
    assert run_cli(["weights", "fetch", "toy.good", "--no-progress"]) == 0
    assert server.ranges == [f"bytes={kept}-"]
    assert (cache / "toy.good" / "w.pth").read_bytes() == PAYLOAD


def test_a_bad_hash_is_refused_and_nothing_is_installed(server, presets, cache, capsys):
    presets(**{"toy.bad": [WeightFile("w.pth", (server.url("w.pth"),), sha256="0" * 64)]})
    err = error_of(capsys, ["weights", "fetch", "toy.bad", "--no-progress"])
    assert "sha256 mismatch" in err and SHA in err
    assert only_files(cache) == []


def test_a_wrong_size_is_refused(server, presets, cache, capsys):
    presets(**{"toy.size": [WeightFile("w.pth", (server.url("w.pth"),), size=len(PAYLOAD) + 1)]})
    err = error_of(capsys, ["weights", "fetch", "toy.size", "--no-progress"])
    assert f"{len(PAYLOAD)} bytes" in err and only_files(cache) == []


def test_unpublished_hash_is_recorded_and_later_checked(server, presets, cache, capsys):
    presets(**{"toy.nohash": [WeightFile("w.pth", (server.url("w.pth"),))]})
    assert run_cli(["weights", "fetch", "toy.nohash", "--no-progress"]) == 0
    record = json.loads((cache / "sha256.json").read_text())
    assert record["toy.nohash/w.pth"]["fetched_sha256"] == SHA
    capsys.readouterr()
    assert run_cli(["weights", "list", "--files"]) == 0
    assert "matches the sha256 recorded" in capsys.readouterr().out
    (cache / "toy.nohash" / "w.pth").write_bytes(PAYLOAD[:-1] + b"\0")
    assert run_cli(["weights", "list", "--files"]) == 0
    assert "CHANGED since it was fetched" in capsys.readouterr().out


def test_the_next_url_is_tried_when_one_fails(server, presets, cache, capsys):
    presets(**{"toy.mirror": [WeightFile("w.pth", (server.url("gone.pth"), server.url("w.pth")), sha256=SHA)]})
    assert run_cli(["weights", "fetch", "toy.mirror", "--no-progress"]) == 0
    assert (cache / "toy.mirror" / "w.pth").read_bytes() == PAYLOAD


def test_a_browser_only_source_prints_its_manual_step_in_one_line(presets, cache, capsys):
    presets(**{"toy.drive": [WeightFile("model_1000.pt", ("https://drive.google.com/drive/folders/abc",))]})
    assert run_cli(["weights", "fetch", "toy.drive"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "manual step" in out and "drive.google.com" in out
    assert str(cache / "toy.drive" / "model_1000.pt") in out
    assert not cache.exists() or only_files(cache) == []


def test_a_release_page_is_a_manual_step_and_an_html_answer_is_refused(server, presets, cache, capsys):
    page = "https://github.com/dslisleedh/IGConv/releases/tag/v1.0.0"
    presets(**{"toy.page": [WeightFile("E.pth", (page,), manual=f"download E.pth from {page}")]})
    assert run_cli(["weights", "fetch", "toy.page"]) == 0
    assert "manual step: download E.pth from" in capsys.readouterr().out
    server.files["preview.html"] = b"<html>sign in</html>"
    presets(**{"toy.html": [WeightFile("w.pth", (server.url("preview.html"),))]})
    assert "web page, not the file" in error_of(capsys, ["weights", "fetch", "toy.html", "--no-progress"])
    assert not (cache / "toy.html" / "w.pth").exists()


def test_alternative_releases_fetch_the_first_or_the_named_one(server, presets, cache, capsys):
    server.files["b.pth"] = PAYLOAD[::-1]
    pair = [WeightFile("encoder.pth", (server.url("w.pth"),), sha256=SHA, extra={"train": "DIV2K"}),
            WeightFile("encoder.pth", (server.url("b.pth"),), extra={"train": "DF2K"})]
    presets(**{"toy.two": pair})
    assert run_cli(["weights", "fetch", "toy.two", "--no-progress"]) == 0
    assert only_files(cache) == ["sha256.json", "toy.two/DIV2K/encoder.pth"]
    from asr_bench.engine.doctor import _method_weights_lines

    assert "  toy.two: present (DIV2K)" in _method_weights_lines(None)
    assert run_cli(["weights", "fetch", "toy.two", "--variant", "DF2K", "--no-progress"]) == 0
    assert (cache / "toy.two" / "DF2K" / "encoder.pth").read_bytes() == PAYLOAD[::-1]
    assert (cache / "toy.two" / "DIV2K" / "encoder.pth").read_bytes() == PAYLOAD
    capsys.readouterr()
    assert "Did you mean 'DF2K'" in error_of(capsys, ["weights", "fetch", "toy.two", "--variant", "DF2k"])


def test_list_shows_sources_sizes_hashes_licenses_and_local_state(server, presets, cache, tmp_path, capsys):
    assert run_cli(["weights", "list", "--files"]) == 0
    out = capsys.readouterr().out
    assert "toy.good" in out and server.url("w.pth") in out and "0.3 MB" in out and SHA in out and "MIT" in out
    assert "missing" in out
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "w.pth").write_bytes(PAYLOAD)                            # a file placed by hand, flat
    assert run_cli(["weights", "list", "--files", "--weights-dir", str(mine)]) == 0
    assert f"{mine / 'w.pth'} verified" in capsys.readouterr().out
    (mine / "w.pth").write_bytes(b"not the file")
    assert run_cli(["weights", "list", "--files", "--weights-dir", str(mine)]) == 0
    assert "SHA256 MISMATCH" in capsys.readouterr().out


def test_doctor_and_list_show_per_preset_weights(server, presets, cache, capsys):
    assert run_cli(["weights", "fetch", "toy.good", "--no-progress"]) == 0
    presets(**{"toy.good": [WeightFile("w.pth", (server.url("w.pth"),), sha256=SHA)],
               "toy.absent": [WeightFile("x.pth", (server.url("x.pth"),))]})
    capsys.readouterr()
    from asr_bench.engine.doctor import _method_weights_lines

    lines = _method_weights_lines(None)
    assert "  toy.good: present" in lines and "  toy.absent: missing" in lines
    assert run_cli(["list", "methods"]) == 0   # the real registry: every preset carries a weights state
    out = capsys.readouterr().out
    assert "liif.edsr-baseline [" in out


# ---------------------------------------------------------------- bad inputs through the CLI


def test_unknown_preset_names_the_closest(presets, cache, capsys):
    assert "Did you mean 'toy.good'" in error_of(capsys, ["weights", "fetch", "toy.god"])
    assert "Did you mean 'toy.good'" in error_of(capsys, ["weights", "list", "toy.god"])


def test_network_error_is_one_line(presets, cache, capsys):
    presets(**{"toy.down": [WeightFile("w.pth", ("http://127.0.0.1:9/w.pth",))]})   # discard port: refused
    err = error_of(capsys, ["weights", "fetch", "toy.down", "--no-progress"])
    assert "network error" in err and "127.0.0.1:9" in err


def test_verify_missing_file_and_no_subcommand(tmp_path, capsys):
    assert "not found" in error_of(capsys, ["weights", "verify", str(tmp_path / "nope.pth")])
    assert "subcommand" in error_of(capsys, ["weights"])
    assert "fetch" in error_of(capsys, ["weights", "fetch"])


def test_verify_detects_loads_and_hashes_a_real_file(rt4ksr_weights, capsys):
    assert run_cli(["weights", "verify", str(rt4ksr_weights / "rt4ksr_x3.pth")]) == 0
    out = capsys.readouterr().out
    assert "method rt4ksr, encoder none, preset rt4ksr.x3" in out
    assert "165,253 parameters" in out                                   # shared/data README
    assert "13229f15a7f3897096ab0ee92b7c3d3c64fd59b4e558fea3248147cec225e65e" in out


def test_verify_refuses_a_file_with_an_official_name_and_another_hash(rt4ksr_weights, presets, tmp_path, capsys):
    presets(**{"rt4ksr.x3": [WeightFile("rt4ksr_x3.pth", (), sha256="1" * 64)]})
    err = error_of(capsys, ["weights", "verify", str(rt4ksr_weights / "rt4ksr_x3.pth")])
    assert "sha256 mismatch" in err and "weights fetch rt4ksr.x3" in err


def test_verify_names_an_unloadable_file(tmp_path, capsys):
    import torch

    torch.save({"params": {"net.conv.weight": torch.zeros(2)}}, tmp_path / "odd.pth")
    assert "not a checkpoint of a supported method" in error_of(capsys, ["weights", "verify", str(tmp_path / "odd.pth")])


def test_no_code_outside_the_zoo_opens_urls():
    """No download ever happens implicitly: only zoo.py may call urlopen."""
    package = Path(zoo.__file__).parent
    users = sorted(str(p.relative_to(package)) for p in package.rglob("*.py") if "urlopen" in p.read_text())
    assert users == ["zoo.py"]


def test_every_declared_weight_file_is_well_formed():
    """The real registry's weight sources (presets as data): names, https URLs, hex sha256, sizes, licenses."""
    for name, (_, preset) in zoo.named_presets().items():
        for wf in zoo.weight_files(preset):
            assert isinstance(wf, WeightFile) and wf.filename and "/" not in wf.filename, name
            assert wf.urls or wf.manual, f"{name}/{wf.filename}: neither a URL nor a manual step"
            assert all(u.startswith("https://") for u in wf.urls), name
            assert wf.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", wf.sha256), name
            assert wf.size is None or wf.size > 0, name
            assert wf.license, f"{name}/{wf.filename}: no license"


RECORDER = """
import sys
from asr_bench import zoo
for i in range(300):
    zoo.write_records({sys.argv[1]: {"sha256": sys.argv[1] * 64, "n": i}})
"""


def test_two_processes_recording_hashes_at_once_neither_fails_nor_mixes_the_file(tmp_path, monkeypatch):
    """Two runs (or a run and a `fetch`) record hashes in one cache: each writes its own temp file, so neither
    rename finds its file gone and the record is always one writer's whole text."""
    env = {**os.environ, zoo.ENV: str(tmp_path)}
    writers = [subprocess.Popen([sys.executable, "-c", RECORDER, name], env=env, stderr=subprocess.PIPE, text=True)
               for name in ("a", "b")]
    monkeypatch.setenv(zoo.ENV, str(tmp_path))
    seen = set()
    while any(w.poll() is None for w in writers):
        if (tmp_path / zoo.RECORD).is_file():
            seen.update(zoo.read_records())  # {} on text that does not parse
    for w in writers:
        assert w.wait() == 0, w.stderr.read()
    final = json.loads((tmp_path / zoo.RECORD).read_text())
    (name, entry), = final.items()  # the last rename is some writer's last record, whole
    assert name in ("a", "b") and entry == {"sha256": name * 64, "n": 299}
    assert seen <= {"a", "b"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [zoo.RECORD]  # no temp file left behind
