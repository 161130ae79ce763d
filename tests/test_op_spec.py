"""Ops describe themselves (asr_bench/ops/spec.py): the self-test and bench-ops run any op from its `OpSpec` alone.

A toy op (y = a * b, differentiable in both) is declared only as a spec; the generic self-test must pass a right
fake backend, and name the case and the gradient of a wrong one."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from asr_bench.errors import UserError
from asr_bench.ops import selftest, spec
from asr_bench.ops.spec import Gradients, OpSpec, Workload

CPU = torch.device("cpu")


@dataclass(frozen=True)
class ToyCase:
    name: str
    size: int

    def inputs(self, device: torch.device, seed: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return [torch.randn(self.size, generator=g).to(device), torch.randn(self.size, generator=g).to(device)]


def product(a: torch.Tensor, b: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    return a * b


TOY = OpSpec(
    name="toy_product",
    front=product,
    reference=lambda a, b: a * b,
    selftest=(ToyCase("seven values", 7), ToyCase("one value", 1)),
    gradients=Gradients((0, 1), ("a", "b"), lambda backward, inputs, grad: backward(grad, *inputs)),
    workloads=(Workload("fwd 1000", lambda device: [torch.ones(1000), torch.ones(1000)]),),
    flops=lambda a, b: float(a.numel()),
)


@pytest.fixture
def toy(monkeypatch, tmp_path):
    spec.op_specs()  # the real ones first, so the cache is filled and the toy joins it
    monkeypatch.setitem(spec._SPECS, TOY.name, TOY)
    monkeypatch.setattr(selftest, "verdict_dir", lambda: tmp_path / "selftest")
    monkeypatch.setattr(selftest, "_verdicts", {})
    return TOY


def test_every_op_package_declares_a_spec_named_after_it():
    names = [s.name for s in spec.op_specs()]
    assert names == ["meta_upscale", "rasterize", "selective_scan", "window_attention"]
    for op in spec.op_specs():
        assert op.selftest and op.workloads and op.flops is not None
        assert all(w.direction in ("forward", "backward") for w in op.workloads)
        assert op.gradients is not None or all(w.direction == "forward" for w in op.workloads)


def test_a_right_toy_backend_passes_on_its_spec_alone(toy):
    calls = []

    def backward(grad, a, b):
        calls.append("backward")
        return grad * b, grad * a

    result = selftest.verdict(toy.name, "cpp", "toy-build-1", CPU, lambda a, b: a * b, backward)
    assert result.passed and result.max_error == 0.0 and calls == ["backward", "backward"]


def test_a_wrong_toy_gradient_is_named_by_case_and_argument(toy):
    result = selftest.verdict(toy.name, "cpp", "toy-build-2", CPU, lambda a, b: a * b,
                              lambda grad, a, b: (grad * b, grad * a * (1 + 1e-3)))
    assert not result.passed and result.failed_test == "backward db, seven values"
    forward_wrong = selftest.verdict(toy.name, "cpp", "toy-build-3", CPU, lambda a, b: a * b + 1e-3, None)
    assert not forward_wrong.passed and forward_wrong.failed_test == "forward, seven values"


def test_bench_ops_times_the_toy_from_its_spec(toy, monkeypatch):
    from asr_bench.ops import bench

    monkeypatch.setattr(bench, "op_specs", lambda: [toy])
    (row,) = bench.run(CPU, repeats=1)
    assert row["op"] == "toy_product" and row["backend"] == "torch" and row["seconds"] > 0
    assert row["gflop_per_s"] == pytest.approx(1000 / row["seconds"] / 1e9)


def test_an_unknown_op_is_one_line_naming_the_known_ones():
    with pytest.raises(UserError, match="unknown op 'rasterise'.*Did you mean 'rasterize'"):
        spec.get_op("rasterise")
