"""The bicubic method: MATLAB bicubic upscaling through the plugin interface."""
import pytest
import torch

import asr_bench as ab
from asr_bench.data import imresize
from asr_bench.errors import UserError
from asr_bench.registry import get_method
from test_imresize import slow_resize


def test_registered_without_weights():
    assert "bicubic" in ab.list_methods()
    spec = get_method("bicubic")
    assert spec.needs_weights is False and spec.encoders == ("none",) and spec.scales == "any"
    model = ab.build_model("bicubic")
    assert model.weights_loaded and not list(model.parameters())


@pytest.mark.parametrize("scale,size", [(4, (64, 72)), (3.5, (56, 63)), ((2.5, 3.25), (40, 58))])
def test_upscale_is_matlab_bicubic_at_any_scale(scale, size):
    torch.manual_seed(0)
    lr = torch.rand(1, 3, 16, 18)
    sr = ab.build_model("bicubic").upscale(lr, scale=scale, clamp=False)
    assert tuple(sr.shape[-2:]) == size
    ref = slow_resize(lr[0].permute(1, 2, 0).double().numpy(), size, (size[0] / 16, size[1] / 18))
    assert (sr[0].permute(1, 2, 0).double().numpy() - ref).__abs__().max() < 1e-5


def test_exact_size_and_batches():
    lr = torch.rand(2, 3, 10, 12)
    sr = ab.build_model("bicubic").upscale(lr, size=(31, 25))
    assert sr.shape == (2, 3, 31, 25) and 0 <= sr.min() and sr.max() <= 1
    assert torch.equal(sr[1], imresize(lr[1], size=(31, 25)).clamp(0, 1))


def test_rejects_weights_and_options():
    with pytest.raises(UserError, match="no weights"):
        ab.build_model("bicubic", checkpoint={"x": torch.zeros(1)})
    with pytest.raises(UserError, match="unknown option 'sharpen' for bicubic"):
        ab.build_model("bicubic", sharpen=True)
