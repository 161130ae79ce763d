"""The meta-upscale op: the per-pixel definition, the phase-deduplicating front, autograd, backend choice."""
import importlib

import pytest
import torch

from asr_bench.errors import UserError

# The module, not the front function that asr_bench.ops re-exports under the same name.
mu = importlib.import_module("asr_bench.ops.meta_upscale")


def slow_definition(features, table, row_source, row_phase, col_source, col_phase):
    """out[b,o,i,j] = sum_{c,ky,kx} F[b,c,rs[i]+ky-1,cs[j]+kx-1] * T[rp[i],cp[j],c*9+ky*3+kx,o], zero outside."""
    b_, c_, h, w = features.shape
    out = torch.zeros(b_, table.shape[-1], len(row_source), len(col_source), dtype=torch.float64)
    for i in range(len(row_source)):
        for j in range(len(col_source)):
            weights = table[row_phase[i], col_phase[j]].double()
            for c in range(c_):
                for ky in range(3):
                    for kx in range(3):
                        y, x = int(row_source[i]) + ky - 1, int(col_source[j]) + kx - 1
                        if 0 <= y < h and 0 <= x < w:
                            out[:, :, i, j] += features[:, c, y, x].double()[:, None] * weights[c * 9 + ky * 3 + kx]
    return out


def random_maps(h, w, height, width, py, px, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, h, (height,), generator=g), torch.randint(0, py, (height,), generator=g),
            torch.randint(0, w, (width,), generator=g), torch.randint(0, px, (width,), generator=g))


def assert_close_to_rounding(actual, expected, rel=1e-5):
    """Every element within rel of the output's largest magnitude: fp32 sums of many terms in another order."""
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * expected.abs().max().item())


def test_reference_backend_equals_the_per_pixel_definition():
    features = torch.randn(2, 3, 4, 5)
    table = torch.randn(3, 4, 27, 2)
    maps = random_maps(4, 5, 9, 11, 3, 4)
    out = mu.meta_upscale_table(features, table, *maps, backend="torch")
    assert out.shape == (2, 2, 9, 11)
    torch.testing.assert_close(out.double(), slow_definition(features, table, *maps), atol=1e-5, rtol=1e-5)


def test_reference_backend_blocks_do_not_change_the_result():
    features = torch.randn(1, 2, 6, 5)
    table = torch.randn(2, 3, 18, 3)
    maps = random_maps(6, 5, 17, 13, 2, 3, seed=1)
    whole = mu.torch_forward(features, table, *maps)
    tiny_blocks = mu.torch_forward(features, table, *maps, gather_budget_bytes=1)
    # Equal to float rounding, not bitwise: each block is its own BLAS call, and BLAS may block the 9C-term sums
    # differently for different row counts (9.5e-07 seen on some CPUs).
    assert_close_to_rounding(tiny_blocks, whole)


def weight_net(c_in, c_out=3):
    """A stand-in weight-prediction MLP on (row phase, col phase)."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 9 * c_in * c_out))
    calls = []

    def weight_fn(rows, cols):
        calls.append((rows.numel(), cols.numel()))
        grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)
        return net(grid).view(rows.numel(), cols.numel(), 9 * c_in, c_out)

    return net, weight_fn, calls


def axis(h, n_out):
    """LR line floor(i*h/n) and its exact phase, as a Meta-SR would define them."""
    i = torch.arange(n_out)
    return mu.AxisMap(source=(i * h) // n_out, phase=((i * h) % n_out).float() / n_out)


def test_front_runs_the_weight_net_once_per_distinct_phase_and_equals_per_pixel_weights():
    features = torch.randn(1, 2, 4, 6)
    rows, cols = axis(4, 10), axis(6, 15)          # x2.5: 5 row phases, 5 column phases
    net, weight_fn, calls = weight_net(2)
    out = mu.meta_upscale(features, rows, cols, weight_fn)
    assert calls == [(5, 5)]
    # Per pixel: the net on that pixel's own phases, dotted with its LR 3x3 neighbourhood (zero padded).
    padded = torch.nn.functional.pad(features, (1, 1, 1, 1))[0].double()
    with torch.no_grad():
        for i in range(10):
            for j in range(15):
                weights = net(torch.stack([rows.phase[i], cols.phase[j]])).view(2, 3, 3, 3).double()
                y, x = int(rows.source[i]), int(cols.source[j])
                expect = torch.einsum("cyx,cyxo->o", padded[:, y:y + 3, x:x + 3], weights)
                torch.testing.assert_close(out[0, :, i, j].double(), expect, atol=1e-5, rtol=1e-5)


def test_front_row_blocks_when_the_table_is_too_big_give_the_same_output():
    features = torch.randn(1, 2, 5, 4)
    rows, cols = axis(5, 13), axis(4, 9)
    _, weight_fn, calls = weight_net(2)
    whole = mu.meta_upscale(features, rows, cols, weight_fn)
    blocked = mu.meta_upscale(features, rows, cols, weight_fn, table_budget_bytes=1)
    assert len(calls) == 1 + 13 and all(r == 1 for r, _ in calls[1:])
    assert_close_to_rounding(blocked, whole)  # the weight net ran on other batch shapes: BLAS rounding differs


def test_gradients_of_the_reference_match_finite_differences():
    features = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    table = torch.randn(2, 2, 18, 2, dtype=torch.float64, requires_grad=True)
    maps = random_maps(3, 3, 5, 4, 2, 2, seed=3)
    assert torch.autograd.gradcheck(lambda f, t: mu.meta_upscale_table(f, t, *maps, backend="torch"), (features, table))


@pytest.fixture
def fake_cpp(monkeypatch):
    """A 'compiled' backend without its own backward (forward = the reference, so results are known)."""
    monkeypatch.setattr(mu, "BACKENDS", dict(mu.BACKENDS))
    monkeypatch.setattr(mu, "_DISCOVERED", True)
    calls = []

    def forward(*args):
        calls.append(1)
        return mu.torch_forward(*args)

    mu.register_backend(mu.Backend("cpp", frozenset({"cpu"}), forward))
    return calls


def test_auto_prefers_a_live_compiled_backend_and_torch_forces_the_reference(fake_cpp):
    features, table = torch.randn(1, 1, 3, 3), torch.randn(1, 1, 9, 3)
    maps = random_maps(3, 3, 6, 6, 1, 1)
    assert mu.live_backends() == ["cpp", "torch"]
    assert mu.select_backend("auto", features.device).name == "cpp"
    mu.meta_upscale_table(features, table, *maps)
    assert fake_cpp == [1]
    mu.meta_upscale_table(features, table, *maps, backend="torch")
    assert fake_cpp == [1]


def test_auto_falls_back_to_the_reference_for_dtypes_a_backend_does_not_declare(fake_cpp):
    assert mu.select_backend("auto", torch.device("cpu"), torch.float32).name == "cpp"
    assert mu.select_backend("auto", torch.device("cpu"), torch.bfloat16).name == "torch"
    features, table = torch.randn(1, 1, 3, 3, dtype=torch.bfloat16), torch.randn(1, 1, 9, 3, dtype=torch.bfloat16)
    out = mu.meta_upscale_table(features, table, *random_maps(3, 3, 6, 6, 1, 1))
    assert out.dtype == torch.bfloat16 and fake_cpp == []


def test_compiled_backend_without_backward_is_differentiated_through_the_reference(fake_cpp):
    features = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    table = torch.randn(2, 3, 18, 3, dtype=torch.float64, requires_grad=True)
    maps = random_maps(3, 4, 5, 7, 2, 3, seed=4)
    assert torch.autograd.gradcheck(lambda f, t: mu.meta_upscale_table(f, t, *maps, backend="cpp"), (features, table))
    assert fake_cpp


def test_unknown_or_dead_backend_is_a_user_error():
    with pytest.raises(UserError, match="backend"):
        mu.meta_upscale_table(torch.randn(1, 1, 2, 2), torch.randn(1, 1, 9, 3), *random_maps(2, 2, 3, 3, 1, 1),
                              backend="cuda")


def test_mismatched_table_is_a_user_error():
    with pytest.raises(UserError, match="9\\*C"):
        mu.meta_upscale_table(torch.randn(1, 2, 2, 2), torch.randn(1, 1, 9, 3), *random_maps(2, 2, 3, 3, 1, 1))
