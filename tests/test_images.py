"""Image I/O: RGB uint8 in and out, greyscale expanded as the official readers do, clear errors."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from asr_bench.data import read_image, to_tensor, to_uint8, write_image
from asr_bench.data.images import quantize
from asr_bench.errors import UserError


def test_real_file(set5):
    img = read_image(set5 / "HR" / "woman.png")
    assert img.shape == (344, 228, 3) and img.dtype == np.uint8
    assert np.array_equal(img, np.asarray(Image.open(set5 / "HR" / "woman.png").convert("RGB")))


def test_write_read_round_trip(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    write_image(tmp_path / "sub" / "a.png", img)
    assert np.array_equal(read_image(tmp_path / "sub" / "a.png"), img)
    assert not list((tmp_path / "sub").glob(".*"))  # no temp file left behind


def test_greyscale_is_replicated_to_three_channels(tmp_path):
    grey = np.random.default_rng(1).integers(0, 256, (6, 5), dtype=np.uint8)
    Image.fromarray(grey, mode="L").save(tmp_path / "bridge.png")
    img = read_image(tmp_path / "bridge.png")
    # cv2.imread(IMREAD_COLOR) and PIL convert('RGB') both copy the grey value into B, G and R
    assert img.shape == (6, 5, 3) and all(np.array_equal(img[..., c], grey) for c in range(3))


def test_alpha_is_dropped_and_palette_expanded(tmp_path):
    rgba = np.random.default_rng(2).integers(0, 256, (4, 4, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png"), rgba[..., :3])
    Image.fromarray(rgba[..., :3]).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (4, 4, 3)


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(UserError, match="nothere.png"):
        read_image(tmp_path / "nothere.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png"):
        read_image(tmp_path / "broken.png")


def test_tensor_conversions():
    img = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    t = to_tensor(img)
    assert t.shape == (1, 3, 16, 16) and t.dtype == torch.float32
    assert torch.equal(t[0, 0], torch.from_numpy(img[..., 0]).float() / 255)
    assert np.array_equal(to_uint8(t), img)
    # to_uint8 clamps and rounds to nearest (BasicSR tensor2img)
    odd = torch.tensor([-0.1, 0.4 / 255, 0.6 / 255, 1.2]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    assert to_uint8(odd)[0, :, 0].tolist() == [0, 0, 1, 255]
    assert torch.equal(quantize(odd) * 255, torch.tensor([0.0, 0, 1, 255]).view(1, 1, 1, 4).expand(1, 3, 1, 4))
    with pytest.raises(UserError):
        to_tensor(img.astype(np.float32))


def _png16(path, array):
    """A 16-bit-per-channel PNG written from the spec (Pillow cannot write 16-bit RGB)."""
    import struct
    import zlib

    h, w, c = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("channels", [1, 3, 4], ids=["grey16", "rgb16", "rgba16"])
def test_every_16_bit_image_is_refused_alike_in_one_line(tmp_path, channels):
    values = np.random.default_rng(0).integers(0, 65536, (6, 5, channels), dtype=np.uint16)
    _png16(tmp_path / "deep.png", values)
    with pytest.raises(UserError, match="more than 8 bits per channel") as info:
        read_image(tmp_path / "deep.png")
    assert "\n" not in str(info.value) and "deep.png" in str(info.value)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "1"])
def test_8_bit_images_of_every_mode_still_read(tmp_path, mode):
    rgb = np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    image = Image.fromarray(rgb).convert(mode)
    image.save(tmp_path / "x.png")
    image.convert("RGB").save(tmp_path / "x.jpg", quality=95)
    assert np.array_equal(read_image(tmp_path / "x.png"), np.asarray(image.convert("RGB")))
    assert read_image(tmp_path / "x.jpg").shape == (6, 5, 3)


IMAGE_WRITER = """
import sys
import numpy as np
from asr_bench.data import write_image
value = int(sys.argv[2])
for _ in range(200):
    write_image(sys.argv[1], np.full((64, 64, 3), value, np.uint8))
"""


def test_two_processes_writing_one_image_neither_fails_and_the_file_is_one_of_theirs(tmp_path):
    """Two runs sharing a folder both write a crop's GT.png: each renames its own temp file into place."""
    target = tmp_path / "GT.png"
    writers = [subprocess.Popen([sys.executable, "-c", IMAGE_WRITER, str(target), value], stderr=subprocess.PIPE,
                                text=True) for value in ("10", "200")]
    for w in writers:
        assert w.wait() == 0, w.stderr.read()
    pixels = np.unique(read_image(target))
    assert pixels.tolist() in ([10], [200])
    assert [p.name for p in tmp_path.iterdir()] == ["GT.png"]  # no temp file left behind
