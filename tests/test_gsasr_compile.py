"""GSASR's `compile` option: the compiled decoder equals eager to float rounding, compiling is booked as one-time
setup (never inside a timed call), a compiler that fails falls back to eager with a warning, a bad value is a
one-line error. Only the test marked slow runs inductor itself; the others replace torch.compile."""
from __future__ import annotations

import time
import warnings

import pytest
import torch

import asr_bench as ab
from asr_bench.engine.timing import time_until_stable
from asr_bench.errors import UserError
from asr_bench.methods.gsasr import compiled as compiled_module
from asr_bench.methods.gsasr.decoder import Fea2GS
from asr_bench.methods.gsasr.net import GSASR
from asr_bench.stages import recording, setup_events

CPU = torch.device("cpu")
COMPILE_SECONDS = 0.5  # what the stand-in compiler "spends" per new shape


def tiny_model(compile: bool | str) -> GSASR:  # noqa: A002 - the option's name
    torch.manual_seed(0)
    decoder = Fea2GS(inchannel=3, channel=12, num_heads=2, num_selfattn_blocks=1, num_selfattn_layers=2,
                     window_size=4).eval()
    return GSASR(torch.nn.Identity(), decoder, denominator=4, compile=compile, backend="torch").eval()


def upscale(model: GSASR, side: int = 8) -> torch.Tensor:
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side))
    with torch.inference_mode():
        return model.forward_size(x, (2 * side, 2 * side), (2.0, 2.0))


@pytest.fixture
def slow_compiler(monkeypatch):
    """torch.compile replaced by one that sleeps on each new input shape (the compile) and then runs eager."""
    compiled_shapes: list[tuple[int, ...]] = []

    def fake_compile(module, **kwargs):
        def run(feat, scale):
            if tuple(feat.shape) not in compiled_shapes:
                compiled_shapes.append(tuple(feat.shape))
                time.sleep(COMPILE_SECONDS)
            return module(feat, scale)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    return compiled_shapes


def test_compiling_is_one_time_setup_and_not_in_the_timed_call(slow_compiler):
    model = tiny_model(True)
    before = len(setup_events())
    with recording(CPU) as rec:
        first = upscale(model)
    events = setup_events()[before:]
    assert [e.what for e in events] == [compiled_module.SETUP] and events[0].seconds >= COMPILE_SECONDS
    # The setup holds the compile and one decoder run, the decoder stage one run: without the compile it is
    # under the setup less half a compile (what one run costs depends on what ran before in this process).
    assert rec.totals["decoder"] < 1000 * (events[0].seconds - COMPILE_SECONDS / 2)
    # The engine's timer with no warm-up: the first call is the compiling one for a new shape, timed without it.
    times, _, setup = time_until_stable(lambda: upscale(model, 12), CPU, 0, repeats=2, max_repeats=2, rel_ci=1.0,
                                        max_seconds=60)
    assert [e.what for e in setup] == [compiled_module.SETUP] and setup[0].seconds >= COMPILE_SECONDS
    assert all(t < 1000 * (setup[0].seconds - COMPILE_SECONDS / 2) for t in times)
    assert slow_compiler == [(1, 3, 8, 8), (1, 3, 12, 12)]
    before = len(setup_events())
    again = upscale(model)  # a shape seen before: nothing to compile
    assert setup_events()[before:] == [] and torch.equal(first, again)


def test_auto_stays_eager_on_cpu_float32(monkeypatch):
    """Measured a tie on CPU (compiled.py's figures), so "auto" never calls torch.compile there."""
    def refuse(*args, **kwargs):
        raise AssertionError("torch.compile called")

    monkeypatch.setattr(torch, "compile", refuse)
    assert (("cpu", torch.float32)) not in compiled_module.COMPILE_WINS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(upscale(tiny_model("auto")), upscale(tiny_model(False)))


@pytest.mark.parametrize("where", ["torch.compile", "first call"])
def test_a_failing_compiler_falls_back_to_eager_with_one_warning(monkeypatch, where):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nsecond line of the report")

    def lazy(module, **kwargs):
        return broken  # torch.compile itself succeeds; inductor fails on the first call, as it really does

    monkeypatch.setattr(torch, "compile", broken if where == "torch.compile" else lazy)
    model = tiny_model(True)
    with pytest.warns(RuntimeWarning, match=r"torch.compile of the decoder failed \(RuntimeError: no C\+\+ "
                                            r"compiler found\); running it eager\.$"):
        got = upscale(model)
    assert torch.equal(got, upscale(tiny_model(False)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: later calls run eager without asking again
        assert torch.equal(upscale(model), got)


def test_a_bad_compile_value_is_a_one_line_error():
    with pytest.raises(UserError, match=r"option compile='yes' of gsasr must be one of 'auto', True, False\."):
        ab.build_model("gsasr", "edsr-baseline", compile="yes")
    with pytest.raises(UserError, match=r"^GSASR option compile=1 must be one of 'auto', True, False\.$"):
        tiny_model(1)


@pytest.mark.slow
def test_inductor_compiled_decoder_equals_eager_to_float_rounding(tmp_path, monkeypatch):
    """Real inductor (about a minute on 2 cores). Inductor computes LayerNorm, softmax and the GEMM epilogues with its
    own kernels and summation orders, so float32 results differ from eager by rounding only: both are held to the
    float64 eager decoder with the float32 tolerance the eager fast path is held to (test_gsasr_fastpaths)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # a cold compile, nothing reused
    torch.manual_seed(4)
    dec = Fea2GS(channel=12, num_heads=2, num_crossattn_layers=1, num_selfattn_blocks=1, num_selfattn_layers=2,
                 window_size=4).eval()  # every kind of layer once, the shifted self-attention included
    feat, scale = torch.randn(1, 64, 8, 12), torch.tensor([3.5])
    runner = compiled_module.DecoderCompiler(True)
    before = len(setup_events())
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fall-back to eager would make this test vacuous
        got = runner(dec, feat, scale)
        eager = dec(feat, scale)
        want = dec.double()(feat.double(), scale)
    assert not runner.failed and [e.what for e in setup_events()[before:]] == [compiled_module.SETUP]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got, eager, rtol=1e-4, atol=1e-5)
