"""The whole harness on real data: the official LIIF checkpoint on Set5 must give LIIF's own numbers."""
import pytest

from asr_bench.config import parse_config
from asr_bench.engine.runner import run_benchmark


@pytest.mark.slow
def test_liif_set5_through_the_harness_equals_the_official_code(tmp_path, set5, liif_checkpoint):
    """docs/methods/liif.md §6.5: official LIIF code + edsr-baseline-liif.pth on Set5 (premade LR, LIIF protocol)
    gives 34.3997 / 32.2375 dB at x3 / x4."""
    config = parse_config({
        "methods": [{"method": "liif", "encoder": "edsr-baseline", "checkpoint": str(liif_checkpoint), "label": "LIIF"}],
        "datasets": ["set5"], "scales": [3, 4], "protocol": "liif", "metrics": ["psnr"], "device": "cpu",
        "data_root": str(set5.parent.parent), "output": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"),
        "profiling": {"warmup": 0, "repeats": 1, "memory": False, "flops": False}, "visuals": {"crop": 0},
    })
    result = run_benchmark(config, progress=False, render=False)
    assert [c.status for c in result.cases] == ["ok", "ok"]
    assert [c.n_images for c in result.cases] == [5, 5]
    assert result.cases[0].metrics["psnr"] == pytest.approx(34.3997, abs=5e-4)
    assert result.cases[1].metrics["psnr"] == pytest.approx(32.2375, abs=5e-4)
