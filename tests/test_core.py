"""The core contracts: output sizes, scale checks, the registry's errors."""
import math

import pytest
import torch

import asr_bench as ab
from asr_bench.errors import UnknownName, UnsupportedScale, UserError
from asr_bench.sizes import format_scale, output_size
from asr_bench.upsampler import Upsampler


class Nearest(Upsampler):
    """A throwaway upsampler for testing the base class."""

    def forward_size(self, lr, size, scale):
        return torch.nn.functional.interpolate(lr, size=size, mode="nearest") * 2 - 0.5


class FixedX2(Nearest):
    scales = (2, 3)


@pytest.mark.parametrize("hw,scale", [((57, 86), 4), ((85, 85), 3), ((10, 7), 1.1), ((33, 20), (3.5, 2.25))])
def test_output_size_is_floor_of_scale_times_size(hw, scale):
    sy, sx = scale if isinstance(scale, tuple) else (scale, scale)
    # Decimal arithmetic so the reference is not subject to the float error output_size guards against.
    from decimal import Decimal
    expect = (math.floor(Decimal(str(sy)) * hw[0]), math.floor(Decimal(str(sx)) * hw[1]))
    assert output_size(hw, scale) == expect


def test_format_scale():
    assert [format_scale(s) for s in (4, 3.5, (3, 2.5))] == ["4", "3.5", "3x2.5"]


def test_upscale_clamps_unless_told_not_to():
    lr = torch.rand(1, 3, 5, 6)
    model = Nearest()
    assert model.upscale(lr, scale=2).max() <= 1 and model.upscale(lr, scale=2).min() >= 0
    raw = model.upscale(lr, scale=2, clamp=False)
    assert raw.max() > 1 and raw.min() < 0
    assert model.upscale(lr, size=(11, 13)).shape[-2:] == (11, 13)


@pytest.mark.parametrize("bad", [1, 0.5, -2, float("nan")])
def test_scale_at_most_one_is_a_user_error(bad):
    with pytest.raises(UserError, match="scale"):
        Nearest().upscale(torch.rand(1, 3, 4, 4), scale=bad)


def test_fixed_scale_method_rejects_other_scales_naming_the_supported_ones():
    lr = torch.rand(1, 3, 4, 4)
    assert FixedX2().upscale(lr, scale=3).shape[-2:] == (12, 12)
    with pytest.raises(UnsupportedScale, match=r"x2, x3"):
        FixedX2().upscale(lr, scale=2.5)
    with pytest.raises(UnsupportedScale):
        FixedX2().upscale(lr, size=(9, 9))


def test_unknown_method_lists_known_and_suggests_closest():
    with pytest.raises(UnknownName) as info:
        ab.build_model("no-such-method")
    assert "known:" in str(info.value)
