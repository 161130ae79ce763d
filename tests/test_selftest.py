"""The compiled backends' self-test (asr_bench/ops/selftest.py): a backend runs only after matching the reference.

The wrong backends here are fake extension modules built on the torch reference with a deliberate error (an
output off by 1e-3, a gradient off by 0.1 %), so what the self-test must catch is known exactly.
"""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
import types
import warnings

import pytest
import torch

from asr_bench.cli import run_cli
from asr_bench.errors import UserError
from asr_bench.ops import backend_log, backends, build, rasterize, reset_used_backends, selftest, used_backends
from asr_bench.ops.build import ExtensionUnavailable
from asr_bench.ops.meta_upscale import cases as meta_cases
from asr_bench.ops.rasterize import cases as rasterize_cases
from asr_bench.ops.rasterize.reference import rasterize_reference
from asr_bench.ops.selective_scan import cases as scan_cases

mu = importlib.import_module("asr_bench.ops.meta_upscale")  # the module; asr_bench.ops binds the front's name
CPU = torch.device("cpu")


@pytest.fixture
def verdicts(monkeypatch, tmp_path):
    """An empty verdict cache (memory and disk) and no warnings given yet: as a fresh machine's first process."""
    folder = tmp_path / "selftest"
    monkeypatch.setattr(selftest, "verdict_dir", lambda: folder)
    monkeypatch.setattr(selftest, "_verdicts", {})
    monkeypatch.setattr(selftest, "_warned", set())
    return folder


@pytest.fixture
def fake_meta_backends(monkeypatch):
    """Backends registered by a test replace the live ones for the test's duration only."""
    monkeypatch.setattr(mu, "BACKENDS", {"torch": mu.BACKENDS["torch"]})
    monkeypatch.setattr(mu, "_DISCOVERED", True)


def compiled(op):
    try:
        return build.load_extension(op, "cpp")
    except ExtensionUnavailable as error:
        pytest.skip(f"the cpp {op} backend cannot be built here: {error}")


def fake_rasterizer(name, forward_offset=0.0, colour_grad_scale=1.0, calls=None):
    """An 'extension module' with the compiled rasterizer ABI, computing the reference, plus a chosen error."""
    module = types.ModuleType(name)
    calls = [] if calls is None else calls

    def forward(*args):
        calls.append("forward")
        return rasterize_reference(*args) + forward_offset

    def backward(sigma_x, sigma_y, rho, coords, colours, grad_image, height, width, dmax):
        calls.append("backward")
        leaves = [t.clone().requires_grad_() for t in (sigma_x, sigma_y, rho, coords, colours)]
        with torch.enable_grad():
            grads = torch.autograd.grad(rasterize_reference(*leaves, height, width, dmax), leaves, grad_image)
        return (*grads[:4], grads[4] * colour_grad_scale)

    module.forward, module.backward = forward, backward
    return module


def gaussians(n=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, generator=g) * 0.2 + 0.05, torch.rand(n, generator=g) * 0.2 + 0.05,
            torch.rand(n, generator=g) - 0.5, torch.rand(n, 2, generator=g) * 2 - 1, torch.rand(n, 3, generator=g)]


def meta_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = (torch.randint(0, 4, (9,), generator=g), torch.randint(0, 2, (9,), generator=g),
            torch.randint(0, 5, (11,), generator=g), torch.randint(0, 3, (11,), generator=g))
    return torch.randn(1, 2, 4, 5, generator=g), torch.randn(2, 3, 18, 3, generator=g), maps


def self_test_warnings(caught):
    return [str(w.message) for w in caught if "self-test" in str(w.message)]


# -- the real compiled backends --------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["rasterize", "meta_upscale", "selective_scan"])
def test_the_cpp_backends_pass_and_are_keyed_by_their_source_hash(verdicts, op):
    module = compiled(op)
    result = selftest.verdict(op, "cpp", selftest.build_of(module), CPU, module.forward,
                              getattr(module, "backward", None))  # the selective scan is forward-only
    assert result.passed and result.failed_test is None and not result.detail, result.reason()
    assert 0 <= result.max_error <= selftest.TOLERANCE
    assert result.build == build.extension(op, "cpp").name  # the name carries the hash of sources and flags
    assert result.device == selftest.device_name(CPU) and result.device.startswith("cpu")
    stored = json.loads(selftest.verdict_file(result.build, result.device).read_text())
    assert stored["passed"] is True and stored["version"] == selftest.SELFTEST_VERSION


def test_the_first_use_of_a_compiled_op_is_marked_one_time_setup_and_the_next_is_not(verdicts, monkeypatch):
    """Loading (or compiling) the rasterizer and its first self-test happen inside a model's first call: they are
    recorded as setup, so the engine's timer takes them out (tests/test_engine_runner.py checks the taking out)."""
    from asr_bench.stages import setup_events

    compiled("rasterize")  # built once for the session, so the timed part below is a load, not a compile
    monkeypatch.setattr(build, "_loaded", {})
    before = len(setup_events())
    assert backends.resolve_backend("rasterize", "auto", CPU)[0] == "cpp"
    first = [e.what for e in setup_events()[before:]]
    assert first == ["loading the cpp rasterize backend", "self-testing the cpp rasterize backend"]
    before = len(setup_events())
    backends.resolve_backend("rasterize", "auto", CPU)
    assert setup_events()[before:] == []  # loaded and verdict known: a second call does no setup


def test_auto_uses_the_cpp_backends_once_they_pass(verdicts):
    compiled("rasterize")
    compiled("meta_upscale")
    assert backends.resolve_backend("rasterize", "auto", CPU)[0] == "cpp"
    mu.live_backends()
    assert mu.select_backend("auto", CPU).name == "cpp"


def test_the_cases_cover_what_they_claim():
    # Gaussians centred beyond the border that still reach into the image, a 2-pixel-high image, and a rational
    # meta-upscale scale (x3.5: 7 phases per axis) with maps that read the first and last LR lines.
    border = next(c for c in rasterize_cases.SELFTEST_CASES if "beyond the border" in c.name)
    params = rasterize_cases.rasterize_inputs(border, CPU, seed=rasterize_cases.SELFTEST_CASES.index(border))
    outside = (params[3].abs() > 1).any(dim=1)
    alone = rasterize_reference(*[p[outside] for p in params], border.height, border.width, border.dmax)
    assert outside.sum() >= 5 and alone.abs().max() > 0.05
    assert min(c.height for c in rasterize_cases.SELFTEST_CASES) == 2
    assert len({(c.height, c.width) for c in rasterize_cases.SELFTEST_CASES if c.height != c.width}) >= 2
    rational = next(c for c in meta_cases.SELFTEST_CASES if c.name.startswith("x3.5"))
    _, table, row_source, _, col_source, _ = meta_cases.meta_upscale_inputs(rational, CPU)
    assert table.shape[:2] == (7, 7)
    arbitrary = next(c for c in meta_cases.SELFTEST_CASES if c.arbitrary_maps)
    _, _, row_source, _, col_source, _ = meta_cases.meta_upscale_inputs(arbitrary, CPU)
    assert {0, arbitrary.lr[0] - 1} <= set(row_source.tolist()) and {0, arbitrary.lr[1] - 1} <= set(col_source.tolist())


# -- wrong backends are caught ----------------------------------------------------------------------------------


def test_a_rasterizer_off_by_1e3_is_disabled_with_one_warning_and_auto_runs_the_reference(verdicts, monkeypatch):
    calls = []
    fake = fake_rasterizer("asr_bench_rasterize_cpp_0ff5e7000001", forward_offset=1e-3, calls=calls)
    monkeypatch.setattr(build, "_loaded", {**build._loaded, ("rasterize", "cpp"): fake})
    params = gaussians()
    with warnings.catch_warnings(record=True) as caught, backend_log() as used:
        warnings.simplefilter("always")
        first = rasterize(*params, 12, 17, 0.1)
        tested = len(calls)
        rasterize(*params, 12, 17, 0.1)
    messages = self_test_warnings(caught)
    assert len(messages) == 1, messages
    assert "cpp backend failed its self-test" in messages[0] and "forward, non-square 13x21" in messages[0]
    assert "using the torch reference" in messages[0]
    assert used == {"rasterize": "torch"} and len(calls) == tested  # the fake ran in its self-test only
    assert torch.equal(first, rasterize_reference(*params, 12, 17, 0.1))
    with pytest.raises(ExtensionUnavailable, match="failed its self-test .*forward, non-square"):
        rasterize(*params, 12, 17, 0.1, backend="cpp")
    assert backends.backend_status()["rasterize"]["cpp"].startswith("disabled: failed its self-test")


def test_a_selective_scan_off_by_1e3_is_disabled_and_auto_runs_the_torch_scan(verdicts, monkeypatch):
    from asr_bench.ops.selective_scan import selective_scan, selective_scan_reference

    calls = []
    fake = types.ModuleType("asr_bench_selective_scan_cpp_0ff5e7000006")
    fake.forward = lambda *args: calls.append(1) or selective_scan_reference(*args) * (1 + 1e-3)
    monkeypatch.setattr(build, "_loaded", {**build._loaded, ("selective_scan", "cpp"): fake})
    case = scan_cases.SELFTEST_CASES[1]
    args = scan_cases.selective_scan_inputs(case, CPU)
    with warnings.catch_warnings(record=True) as caught, torch.no_grad(), backend_log() as used:
        warnings.simplefilter("always")
        first = selective_scan(*args)
        tested = len(calls)
        selective_scan(*args)
    messages = self_test_warnings(caught)
    assert len(messages) == 1 and "selective_scan: the cpp backend failed its self-test" in messages[0]
    assert f"forward, {scan_cases.SELFTEST_CASES[0].name}" in messages[0] and "backend 'torch'" in messages[0]
    assert used == {"selective_scan": "torch"} and len(calls) == tested  # the fake ran in its self-test only
    assert selftest.relative_error(first, selective_scan_reference(*args)) < 1e-5
    with pytest.raises(ExtensionUnavailable, match="failed its self-test"):
        selective_scan(*args, backend="cpp")
    assert backends.backend_status()["selective_scan"]["cpp"].startswith("disabled: failed its self-test")


def test_the_selective_scan_cases_cover_what_they_claim():
    cases = scan_cases.SELFTEST_CASES
    assert any(c.groups > 1 for c in cases) and any(c.length & (c.length - 1) for c in cases)
    assert any(c.state % 2 for c in cases)  # odd N
    assert any(c.per_group > 16 and c.per_group % 16 for c in cases)  # the C++ op's 16-channel blocks, one partial
    wild = next(c for c in cases if c.a_max > 100)
    u, delta, A, *_, bias = scan_cases.selective_scan_inputs(wild, CPU, seed=cases.index(wild))
    x = delta + bias.view(1, -1, 1)
    assert (x > 20).any() and (x < 20).any()  # softplus on both sides of its threshold
    dt = torch.nn.functional.softplus(x)
    assert (torch.exp(dt[..., None] * A[None, :, None, :]) == 0).any()  # decays that underflow


def test_a_wrong_rasterizer_gradient_is_caught_and_named(verdicts):
    fake = fake_rasterizer("asr_bench_rasterize_cpp_0ff5e7000002", colour_grad_scale=1 + 1e-3)
    result = selftest.verdict("rasterize", "cpp", fake.__name__, CPU, fake.forward, fake.backward)
    assert not result.passed and result.failed_test.startswith("backward dcolours, ")
    assert 5e-4 < result.max_error < 2e-3  # the error is the planted 1e-3 relative, nothing else


def test_a_correct_fake_passes_so_the_catches_above_are_the_planted_errors(verdicts):
    fake = fake_rasterizer("asr_bench_rasterize_cpp_0ff5e7000003")
    result = selftest.verdict("rasterize", "cpp", fake.__name__, CPU, fake.forward, fake.backward)
    assert result.passed and result.max_error == 0.0


def test_a_wrong_meta_upscale_backend_registered_by_a_test_is_caught(verdicts, fake_meta_backends):
    mu.register_backend(mu.Backend("cpp", frozenset({"cpu"}), lambda *a: mu.torch_forward(*a) + 1e-3,
                                   build="fake-meta-upscale-1"))
    features, table, maps = meta_inputs()
    with warnings.catch_warnings(record=True) as caught, backend_log() as used:
        warnings.simplefilter("always")
        out = mu.meta_upscale_table(features, table, *maps)
        mu.meta_upscale_table(features, table, *maps)
    messages = self_test_warnings(caught)
    assert len(messages) == 1 and "forward, x2 on 5x7" in messages[0] and "torch reference" in messages[0]
    assert used == {"meta_upscale": "torch"}
    assert torch.equal(out, mu.torch_forward(features, table, *maps))
    with pytest.raises(UserError, match="failed its self-test"):
        mu.meta_upscale_table(features, table, *maps, backend="cpp")


def test_a_wrong_meta_upscale_backward_is_caught(verdicts, fake_meta_backends):
    def backward(grad_out, features, table, *maps):
        f, t = features.clone().requires_grad_(), table.clone().requires_grad_()
        with torch.enable_grad():
            grad_features, grad_table = torch.autograd.grad(mu.torch_forward(f, t, *maps), (f, t), grad_out)
        return grad_features, grad_table * (1 + 1e-3)

    backend = mu.Backend("cpp", frozenset({"cpu"}), mu.torch_forward, backward, build="fake-meta-upscale-2")
    mu.register_backend(backend)
    with pytest.warns(RuntimeWarning, match="backward dtable"):
        assert mu.select_backend("auto", CPU).name == "torch"


def test_a_crashing_backend_fails_the_test_it_crashed_in_for_this_process_only(verdicts, monkeypatch):
    def forward(*args):
        raise RuntimeError("illegal memory access\nsecond line")

    result = selftest.verdict("meta_upscale", "cuda", "fake-crash", CPU, forward, None)
    assert not result.passed and result.failed_test == "forward, x2 on 5x7"
    assert result.detail == "RuntimeError: illegal memory access" and "raised" in result.reason()
    assert selftest.verdict("meta_upscale", "cuda", "fake-crash", CPU, forward, None).cached  # not re-run here
    assert not verdicts.exists()  # a raise may be transient (out of memory): the next process tries again


def test_the_self_test_runs_inside_inference_mode_and_no_grad(verdicts):
    # The runner calls the ops under torch.inference_mode(); the self-test still needs autograd for the reference.
    fake = fake_rasterizer("asr_bench_rasterize_cpp_0ff5e7000005")
    with torch.inference_mode():
        assert selftest.verdict("rasterize", "cpp", fake.__name__, CPU, fake.forward, fake.backward).passed
    with torch.no_grad():
        assert selftest.verdict("meta_upscale", "cpp", "fake-meta-ok", CPU, mu.torch_forward, None).passed


def test_a_backend_without_a_build_is_not_self_tested(fake_meta_backends):
    calls = []
    mu.register_backend(mu.Backend("cpp", frozenset({"cpu"}), lambda *a: calls.append(1) or mu.torch_forward(*a)))
    features, table, maps = meta_inputs()
    mu.meta_upscale_table(features, table, *maps)
    assert calls == [1]


def test_an_op_without_a_self_test_is_not_trusted(verdicts):
    result = selftest.verdict("new_op", "cpp", "asr_bench_new_op_cpp_123", CPU, lambda *a: None, None)
    assert not result.passed and "no self-test is defined" in result.detail


# -- the verdict cache --------------------------------------------------------------------------------------------


def test_a_second_process_reads_the_verdict_and_a_new_build_hash_is_tested_again(verdicts, monkeypatch):
    calls = []
    good = fake_rasterizer("asr_bench_rasterize_cpp_aaaaaaaaaaaa", calls=calls)
    first = selftest.verdict("rasterize", "cpp", good.__name__, CPU, good.forward, good.backward)
    assert first.passed and not first.cached and "forward" in calls and "backward" in calls
    assert list(verdicts.iterdir()) == [selftest.verdict_file(good.__name__, selftest.device_name(CPU))]

    monkeypatch.setattr(selftest, "_verdicts", {})  # what a second process starts with
    calls.clear()
    again = selftest.verdict("rasterize", "cpp", good.__name__, CPU, good.forward, good.backward)
    assert again.passed and again.cached and calls == []

    # Changed sources give a new hash, hence a new build name: that build is tested, not trusted on the old verdict.
    rebuilt = fake_rasterizer("asr_bench_rasterize_cpp_bbbbbbbbbbbb", forward_offset=1e-3, calls=calls)
    verdict = selftest.verdict("rasterize", "cpp", rebuilt.__name__, CPU, rebuilt.forward, rebuilt.backward)
    assert not verdict.passed and not verdict.cached and calls
    assert len(list(verdicts.iterdir())) == 2


def test_a_verdict_of_another_self_test_version_or_a_torn_file_is_ignored(verdicts, monkeypatch):
    calls = []
    fake = fake_rasterizer("asr_bench_rasterize_cpp_cccccccccccc", calls=calls)
    selftest.verdict("rasterize", "cpp", fake.__name__, CPU, fake.forward, fake.backward)
    (path,) = verdicts.iterdir()
    for text in (path.read_text().replace(f'"version": {selftest.SELFTEST_VERSION}', '"version": 0'), "{\"op\":"):
        path.write_text(text)
        monkeypatch.setattr(selftest, "_verdicts", {})
        calls.clear()
        assert not selftest.verdict("rasterize", "cpp", fake.__name__, CPU, fake.forward, fake.backward).cached
        assert calls


@pytest.mark.slow
def test_a_second_python_process_does_not_rerun_the_self_test(tmp_path):
    script = textwrap.dedent("""
        import types, torch
        from asr_bench.ops import selftest
        from asr_bench.ops.rasterize.reference import rasterize_reference
        calls = []
        fake = types.ModuleType("asr_bench_rasterize_cpp_dddddddddddd")
        fake.forward = lambda *a: calls.append(1) or rasterize_reference(*a)
        result = selftest.verdict("rasterize", "cpp", fake.__name__, torch.device("cpu"), fake.forward, None)
        print(result.passed, result.cached, len(calls))
    """)
    env = {**__import__("os").environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
            for _ in range(2)]
    assert runs[0].stdout.split() == ["True", "False", str(len(rasterize_cases.SELFTEST_CASES))]
    assert runs[1].stdout.split() == ["True", "True", "0"]


@pytest.mark.parametrize("name", ["cpu Intel(R) Xeon(R) Platinum 8480+", "cpu AMD EPYC 9654 96-Core Processor",
                                  "NVIDIA H100 80GB HBM3 (sm_90)", "gpu@node-3", "a/b/../../c", "..", "",
                                  "cpu Ryzen™ été 漢字", "tab\there\nline"])
def test_verdict_file_names_are_portable_and_stay_inside_the_verdict_folder(name, verdicts):
    safe = selftest.file_safe(name)
    assert safe and all(c.isascii() and (c.isalnum() or c in "._-") for c in safe), safe
    assert safe not in (".", "..")
    path = selftest.verdict_file("asr_bench_rasterize_cpp_0123456789ab", name)
    assert path.parent == verdicts and path.name.startswith("asr_bench_rasterize_cpp_0123456789ab--")
    assert selftest.file_safe(name) == safe  # stable across calls (and so across processes: no salted hash)


def test_device_names_differing_only_in_unsafe_characters_get_different_files():
    names = ["cpu Intel(R) Xeon(R)", "cpu Intel_R_ Xeon_R_", "cpu Intel[R] Xeon[R]", "cpu Intel_R__Xeon_R_",
             "gpu@a", "gpu/a", "gpu a", "café", "cafè"]
    assert len({selftest.file_safe(n) for n in names}) == len(names)
    assert selftest.file_safe("NVIDIA_H100-80GB.v2") == "NVIDIA_H100-80GB.v2"  # a safe name is kept as it is


def test_a_verdict_round_trips_under_a_device_name_with_unsafe_characters(verdicts, monkeypatch):
    """What broke on every Intel CPU: the stored file was found by the code but not by the tests."""
    monkeypatch.setattr(selftest, "device_name", lambda device: "cpu Intel(R) Xeon(R) @ 2.1GHz / é")
    fake = fake_rasterizer("asr_bench_rasterize_cpp_0ff5e7000007")
    device = selftest.device_name(CPU)
    first = selftest.verdict("rasterize", "cpp", fake.__name__, CPU, fake.forward, fake.backward)
    assert first.passed and first.device == device
    assert list(verdicts.iterdir()) == [selftest.verdict_file(fake.__name__, device)]
    monkeypatch.setattr(selftest, "_verdicts", {})  # a second process
    assert selftest.verdict("rasterize", "cpp", fake.__name__, CPU, fake.forward, fake.backward).cached


# -- which backend ran --------------------------------------------------------------------------------------------


def test_backend_log_records_what_the_calls_actually_ran(fake_meta_backends):
    mu.register_backend(mu.Backend("cpp", frozenset({"cpu"}), mu.torch_forward))
    features, table, maps = meta_inputs()
    reset_used_backends()
    with backend_log() as outer:
        rasterize(*gaussians(), 8, 9, 0.1, backend="torch")
        with backend_log() as inner:
            mu.meta_upscale_table(features, table, *maps)  # auto: the registered cpp
            mu.meta_upscale_table(features, table, *maps, backend="torch")
            mu.meta_upscale_table(features.double(), table.double(), *maps)
    assert inner == {"meta_upscale": "cpp,torch"}
    assert outer == {"rasterize": "torch", "meta_upscale": "cpp,torch"}
    assert used_backends() == outer
    reset_used_backends()
    assert used_backends() == {}


# -- doctor --selftest ----------------------------------------------------------------------------------------------


def test_doctor_selftest_prints_the_table(verdicts, capsys):
    compiled("rasterize")
    compiled("meta_upscale")
    compiled("selective_scan")
    compiled("window_attention")
    assert run_cli(["doctor", "--selftest"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("compiled backends vs the torch reference"):].splitlines()
    assert table[1].split() == ["backend", "device", "verdict", "max", "error", "time"]
    rows = {line.split()[0]: line for line in table[3:] if line.strip()}
    for op in ("rasterize", "meta_upscale", "selective_scan", "window_attention"):
        assert selftest.device_name(CPU) in rows[f"{op}/cpp"] and " pass " in rows[f"{op}/cpp"]
        assert rows[f"{op}/cpp"].rstrip().endswith(" ms")
    assert len(list(verdicts.iterdir())) == 4  # doctor re-ran all four and stored the verdicts


def test_doctor_selftest_names_a_failing_backend_and_exits_1(verdicts, monkeypatch, capsys):
    compiled("meta_upscale")
    fake = fake_rasterizer("asr_bench_rasterize_cpp_0ff5e7000004", forward_offset=1e-3)
    monkeypatch.setattr(build, "_loaded", {**build._loaded, ("rasterize", "cpp"): fake})
    assert run_cli(["doctor", "--selftest"]) == 1
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("rasterize/cpp")]
    assert "FAIL: forward, non-square 13x21" in row
    assert "rasterize/cpp failed" in out
