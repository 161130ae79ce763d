"""The CUDA meta-upscale backend (csrc/meta_upscale/cuda.cu) against the torch reference; skipped without CUDA."""
import pytest
import torch

import asr_bench.ops.meta_upscale as mu
from asr_bench.ops.build import ExtensionUnavailable, load_extension
from test_meta_upscale_backends import TinyEncoder

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def cuda_module():
    try:
        module = load_extension("meta_upscale", "cuda")
    except ExtensionUnavailable as error:
        pytest.fail(f"a CUDA device is visible but the cuda meta-upscale backend does not build: {error}")
    mu.live_backends()
    return module


def poison_allocator():
    """Leave NaN-filled blocks in the caching allocator, so an output element nobody writes shows up as NaN."""
    torch.cuda.synchronize()
    junk = [torch.full((n,), float("nan"), device="cuda") for n in (1 << 12, 1 << 16, 1 << 20, 1 << 24)]
    del junk


def meta_sr_axis(n_lr, n_out, device="cuda"):
    i = torch.arange(n_out)
    return mu.AxisMap(source=((i * n_lr) // n_out).to(device), phase=(((i * n_lr) % n_out).float() / n_out).to(device))


def phase_maps(h, w, height, width):
    rows, cols = meta_sr_axis(h, height, "cpu"), meta_sr_axis(w, width, "cpu")
    rp = torch.unique(rows.phase, return_inverse=True)[1]
    cp = torch.unique(cols.phase, return_inverse=True)[1]
    return (rows.source, rp, cols.source, cp), int(rp.max()) + 1, int(cp.max()) + 1


def relative_error(actual, expected):
    return ((actual.double().cpu() - expected.double().cpu()).abs().max() / expected.double().abs().max()).item()


SIZES = {"x2": (12, 10, 24, 20), "x3.5": (8, 6, 28, 21), "x4": (6, 7, 24, 28), "asymmetric": (9, 7, 20, 31),
         "x4 180-like": (45, 40, 180, 160)}


@pytest.mark.parametrize("case", SIZES)
def test_forward_equals_the_reference_and_writes_every_element(cuda_module, case):
    h, w, height, width = SIZES[case]
    maps, py, px = phase_maps(h, w, height, width)
    features, table = torch.randn(2, 64, h, w), torch.randn(py, px, 576, 3)
    expected = mu.torch_forward(features, table, *maps)
    poison_allocator()
    out = cuda_module.forward(features.cuda(), table.cuda(), *[m.cuda() for m in maps])
    assert not out.isnan().any()
    assert relative_error(out, expected) < 1e-5


@pytest.mark.parametrize("case", SIZES)
def test_backward_equals_the_reference(cuda_module, case):
    h, w, height, width = SIZES[case]
    maps, py, px = phase_maps(h, w, height, width)
    features, table = torch.randn(2, 16, h, w), torch.randn(py, px, 144, 3)
    grad_out = torch.randn(2, 3, height, width)
    f, t = features.clone().requires_grad_(), table.clone().requires_grad_()
    expected = torch.autograd.grad(mu.torch_forward(f, t, *maps), (f, t), grad_out)
    poison_allocator()
    ours = cuda_module.backward(grad_out.cuda(), features.cuda(), table.cuda(), *[m.cuda() for m in maps])
    for got, ref in zip(ours, expected):
        assert not got.isnan().any()
        assert relative_error(got, ref) < 1e-5


@pytest.mark.parametrize("out_channels", [1, 2, 5])
def test_arbitrary_maps_and_output_channel_counts(cuda_module, out_channels):
    g = torch.Generator().manual_seed(out_channels)
    maps = (torch.randint(0, 4, (11,), generator=g), torch.randint(0, 3, (11,), generator=g),
            torch.randint(0, 6, (13,), generator=g), torch.randint(0, 2, (13,), generator=g))
    features, table = torch.randn(3, 5, 4, 6), torch.randn(3, 2, 45, out_channels)
    grad_out = torch.randn(3, out_channels, 11, 13)
    f, t = features.clone().requires_grad_(), table.clone().requires_grad_()
    out = mu.torch_forward(f, t, *maps)
    expected = torch.autograd.grad(out, (f, t), grad_out)
    cuda_maps = [m.cuda() for m in maps]
    assert relative_error(cuda_module.forward(features.cuda(), table.cuda(), *cuda_maps), out.detach()) < 1e-5
    for got, ref in zip(cuda_module.backward(grad_out.cuda(), features.cuda(), table.cuda(), *cuda_maps), expected):
        assert relative_error(got, ref) < 1e-5


def test_float64_gradcheck_through_the_front(cuda_module):
    g = torch.Generator().manual_seed(5)
    maps = [m.cuda() for m in (torch.randint(0, 3, (5,), generator=g), torch.randint(0, 2, (5,), generator=g),
                               torch.randint(0, 4, (7,), generator=g), torch.randint(0, 3, (7,), generator=g))]
    features = torch.randn(1, 2, 3, 4, dtype=torch.float64, device="cuda", requires_grad=True)
    table = torch.randn(2, 3, 18, 2, dtype=torch.float64, device="cuda", requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, t: mu.meta_upscale_table(f, t, *maps, backend="cuda"),
                                    (features, table))


def test_repeated_runs_are_bitwise_identical(cuda_module):
    maps, py, px = phase_maps(30, 27, 105, 94)
    maps = [m.cuda() for m in maps]
    features, table = torch.randn(2, 64, 30, 27, device="cuda"), torch.randn(py, px, 576, 3, device="cuda")
    grad_out = torch.randn(2, 3, 105, 94, device="cuda")
    first = (cuda_module.forward(features, table, *maps), *cuda_module.backward(grad_out, features, table, *maps))
    for _ in range(3):
        again = (cuda_module.forward(features, table, *maps), *cuda_module.backward(grad_out, features, table, *maps))
        for a, b in zip(first, again):
            assert torch.equal(a, b)


def test_auto_picks_cuda_for_cuda_tensors(cuda_module):
    assert mu.select_backend("auto", torch.device("cuda")).name == "cuda"


@pytest.mark.parametrize("variant", ["liif", "official"])
def test_metasr_on_cuda_equals_the_cpu_reference(cuda_module, variant, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the encoder's conv in full float32
    metasr = pytest.importorskip("asr_bench.methods.metasr.net")

    torch.manual_seed(9)
    model = metasr.MetaSR(TinyEncoder(), variant=variant, backend="torch").eval()
    lr = torch.rand(1, 3, 7, 9)
    with torch.no_grad():
        expected = model.upscale(lr, size=(24, 31), clamp=False)
        model = model.cuda()
        model.backend = "cuda"
        got = model.upscale(lr.cuda(), size=(24, 31), clamp=False)
    assert relative_error(got, expected) < 1e-5
