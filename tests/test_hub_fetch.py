"""Files hosted on the Hugging Face Hub are fetched through huggingface_hub, against a local server on 127.0.0.1
standing in for the Hub (HF_ENDPOINT): a cut connection is resumed with a Range request, a wrong hash is refused
and deleted from the cache, and a file already in the Hub cache is used (by `weights fetch`, the run's
resolution and `build_model`'s lookup) without any request."""
from __future__ import annotations

import hashlib
import http.server
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("huggingface_hub")

from asr_bench import weights, zoo  # noqa: E402
from asr_bench.cli import run_cli  # noqa: E402
from asr_bench.weightfiles import WeightFile  # noqa: E402

PAYLOAD = os.urandom(600_000)          # big enough that a cut lands mid-file
SHA = hashlib.sha256(PAYLOAD).hexdigest()
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO, PATH = "someone/toy-sr", "folder/encoder.pth"


class FakeHub:
    """`/<repo>/resolve/<revision>/<path>`: HEAD answers the Hub's metadata headers, GET the bytes (with Range);
    the first `cuts` GETs stop after `cut_at` bytes. Every request is counted."""

    def __init__(self, data: bytes) -> None:
        self.data, self.cuts, self.cut_at = data, 0, 200_000
        self.requests: list[tuple[str, str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _known(self) -> bool:
                return self.path.split("?")[0] == f"/{REPO}/resolve/main/{PATH}" or \
                    self.path.split("?")[0] == f"/{REPO}/resolve/{COMMIT}/{PATH}"

            def _headers(self, status: int, length: int, start: int = 0) -> None:
                self.send_response(status)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{SHA}"')
                self.send_header("Content-Length", str(length))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.data) - 1}/{len(outer.data)}")
                self.end_headers()

            def do_HEAD(self):
                outer.requests.append(("HEAD", self.path, None))
                if not self._known():
                    self.send_error(404)
                    return
                self._headers(200, len(outer.data))

            def do_GET(self):
                outer.requests.append(("GET", self.path, self.headers.get("Range")))
                if not self._known():
                    self.send_error(404)
                    return
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                self._headers(206 if start else 200, len(outer.data) - start, start)
                body = outer.data[start:]
                if outer.cuts > 0:
                    outer.cuts -= 1
                    self.wfile.write(body[: outer.cut_at])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hub(monkeypatch, tmp_path):
    server = FakeHub(PAYLOAD)
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv(zoo.ENV, str(tmp_path / "ours"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    yield server
    server.close()


def install(monkeypatch, sha256: str | None = SHA) -> WeightFile:
    wf = WeightFile("encoder.pth", (f"https://huggingface.co/{REPO}/resolve/main/{PATH}",), sha256=sha256,
                    size=len(PAYLOAD))
    entries = [(SimpleNamespace(name="toy", needs_weights=True), SimpleNamespace(name="toy.hub", encoder="none",
                                                                                 weights=(wf,)))]
    monkeypatch.setattr(zoo, "all_presets", lambda: entries)
    return wf


def put_in_hub_cache(root: Path, data: bytes) -> Path:
    """The Hub cache layout huggingface_hub writes: blobs/<etag>, snapshots/<commit>/<path> -> blob, refs/main."""
    repo = root / f"models--{REPO.replace('/', '--')}"
    blob = repo / "blobs" / SHA
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    link = repo / "snapshots" / COMMIT / PATH
    link.parent.mkdir(parents=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return link


def test_the_hub_location_is_read_from_the_url_and_a_pinned_revision_wins():
    wf = WeightFile("e.pth", ("https://drive.google.com/x", f"https://huggingface.co/{REPO}/resolve/main/{PATH}"))
    assert weights.hub_file(wf) == weights.HubFile(REPO, "main", PATH)
    pinned = WeightFile("e.pth", wf.urls, extra={"revision": COMMIT})
    assert weights.hub_file(pinned).revision == COMMIT
    assert weights.hub_file(WeightFile("e.pth", ("https://github.com/a/b/raw/main/e.pth",))) is None


def test_fetch_goes_through_huggingface_hub_and_resumes_a_cut_connection(hub, monkeypatch, tmp_path, capsys):
    install(monkeypatch)
    monkeypatch.setattr("huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE", 1 << 16)  # so the bytes before a cut count
    hub.cuts = 1
    assert run_cli(["weights", "fetch", "toy.hub", "--no-progress"]) == 0, capsys.readouterr().err
    found = weights.in_hub_cache(zoo.find_preset("toy.hub")[1].weights[0])
    assert found is not None and found.read_bytes() == PAYLOAD
    assert str(found).startswith(str(tmp_path / "hf"))                       # the Hub's own cache
    gets = [r for r in hub.requests if r[0] == "GET" and PATH in r[1]]
    assert len(gets) == 2 and gets[0][2] is None
    resumed_at = int(gets[1][2].removeprefix("bytes=").rstrip("-"))       # resumed from what it had, not restarted
    assert 0 < resumed_at <= hub.cut_at
    assert not list((tmp_path / "hf").rglob("*.incomplete"))
    entry = zoo.read_records()[str(found.resolve())]
    assert entry["sha256"] == SHA and entry["commit"] == COMMIT        # the hash and the commit "main" resolved to
    assert SHA in capsys.readouterr().out


def test_a_wrong_hash_from_the_hub_is_refused_and_deleted(hub, monkeypatch, capsys):
    wf = install(monkeypatch, sha256="0" * 64)
    code = run_cli(["weights", "fetch", "toy.hub", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "sha256 mismatch" in err and SHA in err
    assert weights.in_hub_cache(wf) is None                                  # nothing left to be used later


def test_a_file_already_in_the_hub_cache_is_used_without_any_request(hub, monkeypatch, tmp_path, capsys):
    wf = install(monkeypatch)
    link = put_in_hub_cache(tmp_path / "hf", PAYLOAD)
    assert run_cli(["weights", "fetch", "toy.hub", "--no-progress"]) == 0
    assert "already in the Hugging Face Hub cache" in capsys.readouterr().out
    found = weights.resolve_preset("toy.hub", SimpleNamespace(weights=(wf,)))
    assert found.found and Path(found.checkpoint) == link and found.where() == weights.HUB
    assert run_cli(["weights", "list", "toy.hub"]) == 0
    assert "here" in capsys.readouterr().out
    assert hub.requests == []


def test_a_damaged_file_in_the_hub_cache_is_refused_in_one_line(hub, monkeypatch, tmp_path):
    wf = install(monkeypatch)
    put_in_hub_cache(tmp_path / "hf", PAYLOAD[:-1] + b"x")
    with pytest.raises(weights.WeightsMismatch, match="sha256") as info:
        weights.resolve_preset("toy.hub", SimpleNamespace(weights=(wf,)))
    assert "\n" not in str(info.value) and "asr-bench weights fetch toy.hub" in str(info.value)
    assert hub.requests == []
