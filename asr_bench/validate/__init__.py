"""`asr-bench validate`: check an installation on its device in one command, and write one report.

    asr-bench validate [--device cuda|cpu] [--budget-s N] [--out DIR] [--official-gsasr PATH] [--steps A,B]

Steps, in order (each in its own process under a time limit, asr_bench/validate/supervisor.py; a failing or
hanging step is recorded and the next one runs): environment, op self-tests (every compiled backend of the
device on each self-test case, forward and backward), the device's tests (`pytest -m cuda` on a GPU, a short
selection on the CPU), bench-ops rows (ours against the torch reference; the rasterizer's x4 720x720 rows
against their targets), the official GSASR kernel built from the user's checkout (--official-gsasr), the GSASR
cost protocol with its stage breakdown, and the quick config on the device (last: it has the most cases, and it
gets the time the earlier steps left). The budget is shared by weight; time a step leaves goes to the later ones. On the CPU the sizes are reduced so the whole form runs in CI.

The report is `<out>/validate.md` and `<out>/validate.json`, rewritten after every step; each step's console
output is in `<out>/logs/<step>.log`. Exit code 0: every step passed or was skipped with a reason; 1: a step
failed or ran out of time; 2: bad input (one line on stderr). docs/kernels.md "Validating on a GPU" says what
each step checks and the targets. This module imports no torch until a run starts (`--help` stays instant).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import UserError
from .supervisor import Step, exit_code, run_steps

REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_BUDGET_S = {"cuda": 1500.0, "cpu": 1200.0}  # cpu: room for compiling the three cpp backends
_STEPS = "asr_bench.validate.steps"
STEPS = (
    Step("environment", f"{_STEPS}:environment", 0.3, "torch, CUDA, the device, compilers, threads"),
    Step("op-selftest", f"{_STEPS}:op_selftests", 3.0,  # on a fresh GPU machine: two nvcc compiles
         "every compiled backend of the device (built now if needed) against the torch reference on each "
         "self-test case, forward and backward"),
    Step("device-tests", f"{_STEPS}:device_tests", 2.0,
         "the device's tests: `pytest -m cuda` on a GPU, a short selection on the CPU"),
    Step("bench-ops", f"{_STEPS}:bench_ops", 2.0,
         "ours against the torch reference per op workload (time, peak memory); rasterizer x4 720x720 targets"),
    Step("official-gsasr", f"{_STEPS}:official_gsasr", 1.5,  # a compile of the official kernel
         "the official GSASR rasterizer built from the user's checkout against ours (agreement, time)"),
    Step("gsasr-cost", f"{_STEPS}:gsasr_cost", 2.0,
         "the GSASR cost protocol (EDSR-baseline, x2/x4/x12, DIV2K-720-style crops) with its stage breakdown"),
    Step("quick-config", f"{_STEPS}:quick_config", 2.0, "configs/quick.yml on the device"),
)


def build_parser(prog: str = "asr-bench validate") -> argparse.ArgumentParser:
    from ..arguments import Parser

    parser = Parser(prog=prog, description="Check this installation on its device (environment, op self-tests, "
                     "the device's tests, bench-ops, quick config, GSASR cost protocol); writes validate.md and "
                     "validate.json. Exit code 0: all passed; 1: a step failed; 2: bad input.")
    parser.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when available, else cpu")
    parser.add_argument("--budget-s", type=float, help="seconds for the whole run, shared among the steps by "
                        f"weight (default {DEFAULT_BUDGET_S['cuda']:g} on cuda, {DEFAULT_BUDGET_S['cpu']:g} on cpu)")
    parser.add_argument("--out", default="validate-report", help="report folder (default ./validate-report)")
    parser.add_argument("--official-gsasr", metavar="PATH",
                        help="a checkout of the official GSASR repository: its CUDA rasterizer is built from there "
                             "and compared with ours")
    parser.add_argument("--steps", metavar="A,B", help="only these steps, in the usual order: "
                        + ",".join(step.name for step in STEPS))
    return parser


def main(argv: Sequence[str], prog: str = "asr-bench validate") -> int:
    """The command; raises UserError (exit code 2) on bad input."""
    args = build_parser(prog).parse_args(list(argv))
    steps = select_steps(args.steps)
    if args.budget_s is not None and not args.budget_s > 0:
        raise UserError(f"--budget-s {args.budget_s:g}: give a positive number of seconds, e.g. --budget-s 600.")
    if args.official_gsasr and not Path(args.official_gsasr).expanduser().is_dir():
        raise UserError(f"--official-gsasr {args.official_gsasr}: no such folder; give the root of your checkout "
                        "of the official GSASR repository (git clone https://github.com/ChrisDud0257/GSASR).")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; give a folder path (it is created if missing).")
    device = args.device or _default_device()
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            why = "this torch is a CPU-only build" if torch.version.cuda is None else "no GPU is visible"
            raise UserError(f"--device cuda: CUDA is not available ({why}); install a CUDA build of torch on a GPU "
                            "machine, or run `validate --device cpu`.")
    budget = args.budget_s or DEFAULT_BUDGET_S[device]
    command = f"{prog} {shlex.join(list(argv))}".strip()
    return run_validation(steps, device, budget, out, official_gsasr=args.official_gsasr, command=command)


def select_steps(names: str | None) -> list[Step]:
    if not names:
        return list(STEPS)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {step.name for step in STEPS}
    unknown = [n for n in wanted if n not in known]
    if unknown or not wanted:
        raise UserError(f"--steps: unknown step(s) {', '.join(unknown) or '(none given)'}; known: "
                        f"{', '.join(step.name for step in STEPS)}.")
    return [step for step in STEPS if step.name in wanted]


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_validation(steps: Sequence[Step], device: str, budget_s: float, out: Path, official_gsasr: str | None = None,
                   command: str = "", env: dict[str, str] | None = None) -> int:
    """Run `steps` on `device` within `budget_s` seconds, report into `out`; the exit code (0 or 1)."""
    params = {"device": device, "reduced": device == "cpu", "repo": str(REPO),
              "official_gsasr": str(Path(official_gsasr).expanduser().resolve()) if official_gsasr else None}
    header = {"command": command, "device": device, "budget_s": budget_s, "reduced": device == "cpu",
              "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()) + " UTC", "device_name": device}
    child_env = {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
                 **(env or {})}
    print(f"validate on {device}: {len(steps)} step(s), budget {budget_s:g} s; report: {out}/validate.md", flush=True)
    results = run_steps(steps, params, out, budget_s, header, env=child_env,
                        echo=lambda line: print(line, flush=True))
    code = exit_code(results)
    failed = [r.name for r in results if r.failed]
    print(f"{'all steps passed' if not failed else 'failed: ' + ', '.join(failed)}; report: {out / 'validate.md'}",
          file=sys.stderr if failed else sys.stdout, flush=True)
    return code
