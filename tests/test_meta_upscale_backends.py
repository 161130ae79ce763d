"""The compiled meta-upscale backend (csrc/meta_upscale/cpu.cpp) against the torch reference, the specification."""
import pytest
import torch

import asr_bench.ops.meta_upscale as mu
from asr_bench.ops.build import ExtensionUnavailable, load_extension


@pytest.fixture(scope="module")
def cpp():
    try:
        module = load_extension("meta_upscale", "cpp")
    except ExtensionUnavailable as error:
        pytest.skip(f"the cpp meta-upscale backend cannot be built here: {error}")
    mu.live_backends()  # let the front register the compiled backends
    return module


def meta_sr_axis(n_lr, n_out):
    """Meta-SR's map of one axis: LR line floor(i*n_lr/n_out), phase = its exact fractional offset."""
    i = torch.arange(n_out)
    return mu.AxisMap(source=(i * n_lr) // n_out, phase=((i * n_lr) % n_out).float() / n_out)


def weight_fn_of(channels, out_channels=3, seed=0, dtype=torch.float32):
    """A stand-in weight MLP on (row phase, column phase), as a Meta-SR's would be."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 9 * channels * out_channels)).to(dtype)

    def weight_fn(rows, cols):
        grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).to(dtype)
        return net(grid).view(rows.numel(), cols.numel(), 9 * channels, out_channels)

    return weight_fn


def assert_close_relative(actual, expected, rel=1e-5):
    """Equal to float rounding: every element within rel of the output's magnitude (sums over 9C terms)."""
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale)


# (h, w) LR -> (H, W) output: x2, x3.5 (7 phases per axis), x4, an asymmetric non-integer size.
SIZES = {"x2": (12, 10, 24, 20), "x3.5": (8, 6, 28, 21), "x4": (6, 7, 24, 28), "asymmetric": (9, 7, 20, 31)}


@pytest.mark.parametrize("case", SIZES)
def test_forward_equals_the_reference(cpp, case):
    h, w, height, width = SIZES[case]
    torch.manual_seed(1)
    features = torch.randn(2, 16, h, w)
    rows, cols = meta_sr_axis(h, height), meta_sr_axis(w, width)
    weight_fn = weight_fn_of(16)
    out = mu.meta_upscale(features, rows, cols, weight_fn, backend="cpp")
    ref = mu.meta_upscale(features, rows, cols, weight_fn, backend="torch")
    assert out.shape == (2, 3, height, width)
    assert_close_relative(out, ref)


@pytest.mark.parametrize("case", SIZES)
def test_backward_equals_the_reference(cpp, case):
    h, w, height, width = SIZES[case]
    torch.manual_seed(2)
    rows, cols = meta_sr_axis(h, height), meta_sr_axis(w, width)
    py, px = torch.unique(rows.phase).numel(), torch.unique(cols.phase).numel()
    maps = (rows.source, torch.unique(rows.phase, return_inverse=True)[1],
            cols.source, torch.unique(cols.phase, return_inverse=True)[1])
    features, table = torch.randn(2, 8, h, w), torch.randn(py, px, 72, 3)
    grad_out = torch.randn(2, 3, height, width)
    grads = {}
    for backend in ("cpp", "torch"):
        f, t = features.clone().requires_grad_(), table.clone().requires_grad_()
        out = mu.meta_upscale_table(f, t, *maps, backend=backend)
        grads[backend] = torch.autograd.grad(out, (f, t), grad_out)
    for ours, ref in zip(grads["cpp"], grads["torch"]):
        assert_close_relative(ours, ref)


def test_the_64_channel_meta_sr_head_at_x4_equals_the_reference(cpp):
    torch.manual_seed(3)
    features = torch.randn(1, 64, 10, 9)
    rows, cols = meta_sr_axis(10, 40), meta_sr_axis(9, 36)
    weight_fn = weight_fn_of(64)
    assert_close_relative(mu.meta_upscale(features, rows, cols, weight_fn, backend="cpp"),
                          mu.meta_upscale(features, rows, cols, weight_fn, backend="torch"))


def random_maps(h, w, height, width, py, px, seed):
    """Arbitrary sources and phases (not monotone, repeated, skipped): the contract allows any."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, h, (height,), generator=g), torch.randint(0, py, (height,), generator=g),
            torch.randint(0, w, (width,), generator=g), torch.randint(0, px, (width,), generator=g))


@pytest.mark.parametrize("out_channels", [1, 2, 5])
def test_arbitrary_maps_and_output_channel_counts(cpp, out_channels):
    torch.manual_seed(4)
    features, table = torch.randn(3, 5, 4, 6), torch.randn(3, 2, 45, out_channels)
    maps = random_maps(4, 6, 11, 13, 3, 2, seed=out_channels)
    assert_close_relative(cpp.forward(features, table, *maps), mu.torch_forward(features, table, *maps))
    grad_out = torch.randn(3, out_channels, 11, 13)
    f, t = features.clone().requires_grad_(), table.clone().requires_grad_()
    expected = torch.autograd.grad(mu.torch_forward(f, t, *maps), (f, t), grad_out)
    for ours, ref in zip(cpp.backward(grad_out, features, table, *maps), expected):
        assert_close_relative(ours, ref)


def test_float64_gradcheck(cpp):
    features = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    table = torch.randn(2, 3, 18, 2, dtype=torch.float64, requires_grad=True)
    maps = random_maps(3, 4, 5, 7, 2, 3, seed=5)
    assert torch.autograd.gradcheck(lambda f, t: mu.meta_upscale_table(f, t, *maps, backend="cpp"),
                                    (features, table))


def test_float64_equals_the_per_pixel_definition_to_double_rounding(cpp):
    torch.manual_seed(6)
    features, table = torch.randn(1, 3, 5, 4, dtype=torch.float64), torch.randn(2, 2, 27, 3, dtype=torch.float64)
    maps = random_maps(5, 4, 9, 8, 2, 2, seed=6)
    padded = torch.nn.functional.pad(features, (1, 1, 1, 1))[0]
    expected = torch.zeros(3, 9, 8, dtype=torch.float64)
    for i in range(9):
        for j in range(8):
            y, x = int(maps[0][i]), int(maps[2][j])
            patch = padded[:, y:y + 3, x:x + 3].reshape(-1)              # index c*9 + ky*3 + kx
            expected[:, i, j] = patch @ table[maps[1][i], maps[3][j]]
    torch.testing.assert_close(cpp.forward(features, table, *maps)[0], expected, rtol=1e-12, atol=1e-12)


def test_results_are_bitwise_repeatable_and_independent_of_the_thread_count(cpp):
    torch.manual_seed(7)
    features, table = torch.randn(2, 16, 9, 11), torch.randn(4, 4, 144, 3)
    maps = random_maps(9, 11, 36, 44, 4, 4, seed=7)
    grad_out = torch.randn(2, 3, 36, 44)
    threads = torch.get_num_threads()
    runs = []
    try:
        for count in (1, 2, 1):
            torch.set_num_threads(count)
            runs.append((cpp.forward(features, table, *maps), *cpp.backward(grad_out, features, table, *maps)))
    finally:
        torch.set_num_threads(threads)
    for later in runs[1:]:
        for a, b in zip(runs[0], later):
            assert torch.equal(a, b)


def test_front_row_blocks_on_the_cpp_backend(cpp):
    torch.manual_seed(8)
    features = torch.randn(1, 4, 5, 6)
    rows, cols = meta_sr_axis(5, 17), meta_sr_axis(6, 14)
    weight_fn = weight_fn_of(4)
    whole = mu.meta_upscale(features, rows, cols, weight_fn, backend="torch")
    blocked = mu.meta_upscale(features, rows, cols, weight_fn, backend="cpp", table_budget_bytes=1)
    assert_close_relative(blocked, whole)


def test_out_of_range_indices_are_refused_not_read(cpp):
    features, table = torch.randn(1, 1, 3, 3), torch.randn(2, 2, 9, 3)
    good = [torch.tensor([0, 2]), torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([1, 0])]
    for position, bad in enumerate((torch.tensor([0, 3]), torch.tensor([0, 2]), torch.tensor([-1, 0]),
                                    torch.tensor([2, 0]))):
        maps = list(good)
        maps[position] = bad
        with pytest.raises(RuntimeError, match="outside"):
            cpp.forward(features, table, *maps)


def test_auto_picks_cpp_on_cpu_once_it_is_built(cpp):
    assert "cpp" in mu.live_backends()
    assert mu.select_backend("auto", torch.device("cpu")).name == "cpp"


class TinyEncoder(torch.nn.Module):
    """An 8-channel one-conv encoder, enough to drive a MetaSR head (also used by test_meta_upscale_cuda)."""

    out_channels = 8

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize("variant", ["liif", "official"])
def test_metasr_gives_the_same_output_on_cpp_and_torch(cpp, variant):
    metasr = pytest.importorskip("asr_bench.methods.metasr.net")

    torch.manual_seed(9)
    model = metasr.MetaSR(TinyEncoder(), variant=variant).eval()
    lr = torch.rand(1, 3, 7, 9)
    outputs = {}
    for backend in ("cpp", "torch"):
        model.backend = backend
        with torch.no_grad():
            outputs[backend] = model.upscale(lr, size=(24, 31), clamp=False)
    assert_close_relative(outputs["cpp"], outputs["torch"])
