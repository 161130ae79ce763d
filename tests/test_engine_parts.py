"""Engine building blocks: timing, memory, FLOPs, tiling, crop boxes, aggregation."""
import sys

import pytest
import torch
import torch.nn.functional as F

from asr_bench.memory import CPU_KIND, peak_memory_mb
from asr_bench.engine.records import ImageRecord
from asr_bench.engine.runner import aggregate, count_flops
from asr_bench.engine.tiling import tiled_forward, windows
from asr_bench.engine.timing import median_ms, time_call
from asr_bench.engine.visuals import crop_box


def test_time_call_runs_warmup_plus_repeats_and_takes_the_median():
    calls = []
    times = time_call(lambda: calls.append(1), torch.device("cpu"), warmup=2, repeats=5)
    assert len(calls) == 7 and len(times) == 5 and all(t >= 0 for t in times)
    assert median_ms([5.0, 1.0, 100.0]) == 5.0 and median_ms([]) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS reset is Linux-only")
def test_cpu_peak_memory_sees_each_call_alone():
    """In a fresh process, as the runner's workers are: what earlier tests left in this process's malloc
    arenas (resident, reusable memory) would otherwise let a later allocation grow no RSS at all."""
    import subprocess

    script = (
        "import torch\n"
        "from asr_bench.memory import CPU_KIND, peak_memory_mb\n"
        "touch = lambda mib: (lambda: torch.ones(mib * 2**18).sum())  # float32: all pages touched\n"
        "big, kind = peak_memory_mb(touch(64), torch.device('cpu'))\n"
        "small, _ = peak_memory_mb(touch(16), torch.device('cpu'))\n"
        "print(kind == CPU_KIND, big, small)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "True"
    big, small = float(out[1]), float(out[2])
    assert 60 <= big <= 90
    assert 14 <= small <= 40  # an earlier, bigger call does not hide this one


def test_flops_of_a_convolution_equal_the_formula():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.rand(1, 3, 10, 12)
    assert count_flops(lambda: conv(x)) == 2 * 8 * 3 * 3 * 3 * 10 * 12


@pytest.mark.parametrize("length,tile,overlap", [(10, 4, 2), (100, 48, 8), (5, 8, 2), (49, 16, 0), (17, 16, 15)])
def test_windows_keep_regions_partition_the_axis(length, tile, overlap):
    kept = []
    for start, stop, keep_from, keep_to in windows(length, tile, overlap):
        assert 0 <= start <= keep_from < keep_to <= stop <= length and stop - start == min(tile, length)
        kept += range(keep_from, keep_to)
    assert kept == list(range(length))


def bicubic(lr, size):
    return F.interpolate(lr, size=size, mode="bicubic", align_corners=False)


def test_tiled_equals_whole_image_for_a_local_method_at_integer_scale():
    lr = torch.rand(1, 3, 37, 29, dtype=torch.float64)
    whole = bicubic(lr, (148, 116))
    tiled = tiled_forward(bicubic, lr, (148, 116), tile=12, overlap=8)  # bicubic reaches 2 LR px; 4 are kept
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-12)


def test_tiled_gives_a_fixed_scale_method_exactly_s_times_each_window():
    sizes = []

    def x3_only(lr, size):
        assert size == (3 * lr.shape[-2], 3 * lr.shape[-1])
        sizes.append(size)
        return bicubic(lr, size)

    out = tiled_forward(x3_only, torch.rand(1, 3, 20, 26), (60, 78), tile=8, overlap=2)
    assert out.shape == (1, 3, 60, 78) and len(sizes) > 4


def test_tiled_non_integer_scale_has_the_exact_output_size():
    lr = torch.rand(1, 3, 23, 31)
    out = tiled_forward(bicubic, lr, (80, 108), tile=10, overlap=4)
    assert out.shape == (1, 3, 80, 108) and torch.isfinite(out).all()


def test_crop_box_is_centred_and_clipped_to_both_images():
    assert crop_box((200, 300), (200, 300), 96) == (52, 102, 148, 198)
    assert crop_box((50, 300), (48, 290), 96) == (0, 97, 48, 193)


def test_aggregate_is_the_mean_and_na_propagates_with_its_reason():
    images = [ImageRecord("c", "a", {"psnr": 30.0, "lpips": None}, {"lpips": "n/a (weights missing: x)"}),
              ImageRecord("c", "b", {"psnr": 33.0, "lpips": None}, {"lpips": "n/a (weights missing: x)"})]
    means, notes = aggregate(images, ("psnr", "lpips"))
    assert means == {"psnr": 31.5, "lpips": None} and notes == {"lpips": "n/a (weights missing: x)"}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_timing_and_peak_memory():
    device = torch.device("cuda")
    held = torch.zeros(2**20, device=device)  # 4 MiB already allocated: part of the peak, as papers count it
    mib, kind = peak_memory_mb(lambda: torch.ones(64 * 2**18, device=device).sum(), device)
    assert kind == "cuda max_memory_allocated" and 68 <= mib <= 72
    times = time_call(lambda: torch.ones(2**22, device=device).cumsum(0), device, warmup=1, repeats=3)
    assert len(times) == 3 and all(t > 0 for t in times)
    del held


def test_flops_are_counted_when_a_parameter_feeds_a_submodule_in_inference_mode():
    class LearnedQuery(torch.nn.Module):  # GSASR-like: a learned embedding is a submodule's input
        def __init__(self):
            super().__init__()
            self.query = torch.nn.Parameter(torch.rand(4, 8))
            self.proj = torch.nn.Linear(8, 8, bias=False)

        def forward(self, x):
            return self.proj(self.query) + x

    model = LearnedQuery()

    def call():
        with torch.inference_mode():
            return model(torch.rand(4, 8))

    assert count_flops(call, model) == 2 * 4 * 8 * 8
    assert all(p.requires_grad for p in model.parameters())  # restored afterwards


def test_a_checkpoint_folder_is_accepted_and_a_missing_one_named(tmp_path):
    """Methods such as RT4KSR (x2 + x3 files) and GSASR (encoder + decoder) take a folder as checkpoint."""
    from asr_bench.config import parse_config
    from asr_bench.engine.cases import resolve_methods
    from asr_bench.errors import MissingFile

    (tmp_path / "weights").mkdir()
    ok = parse_config({"methods": [{"method": "rt4ksr", "checkpoint": str(tmp_path / "weights")}]})
    assert resolve_methods(ok)[0].checkpoint == str(tmp_path / "weights")
    missing = parse_config({"methods": [{"method": "rt4ksr", "checkpoint": str(tmp_path / "nope")}]})
    with pytest.raises(MissingFile, match="nope"):
        resolve_methods(missing)
