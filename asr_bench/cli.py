"""Command line: `python run_bench.py [run] --config configs/quick.yml` and the helper subcommands.

    run (default)  run or resume a benchmark config; prints a progress bar per case and a summary table
    score          score a folder of SR images against a folder of GT images (per image + mean; JSON or CSV)
    prepare        write LR folders from an HR folder; `prepare div2k-720` makes the GSASR cost-benchmark crops
    list           methods, encoders, datasets, protocols, metrics
    report         re-render tables and report.html of a stored run
    doctor         what this machine has: torch, devices, op backends, metric weights, data folders
                   (--selftest: the compiled op backends checked against the reference on this device)
    bench-ops      the custom ops' micro-benchmarks

Every user mistake prints one line on stderr and exits with code 2; `--debug` shows the traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import UserError

COMMANDS = ("run", "score", "prepare", "list", "report", "doctor", "bench-ops")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `run_bench.py` and the `asr-bench` console script; exits with the command's code."""
    sys.exit(run_cli(list(sys.argv[1:] if argv is None else argv)))


def run_cli(argv: list[str]) -> int:
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    if argv[0] == "bench-ops":  # its own argument parser owns everything after the name
        return _bench_ops(argv[1:], debug)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.handler(args) or 0)
    except UserError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted; the results so far are stored; rerun the same command to resume.", file=sys.stderr)
        return 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is a one-line UserError like every other mistake (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}. See `{self.prog} --help`.")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run_bench.py", description="asr-bench: benchmark arbitrary-scale super-resolution.",
                     epilog="Add --debug anywhere to see tracebacks.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser("run", help="run or resume a benchmark config (the default command)")
    run.add_argument("--config", "-c", required=True, help="YAML config, e.g. configs/quick.yml")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key (dotted, YAML-typed), e.g. --set profiling.repeats=3")
    run.add_argument("--data-root", help="folder holding the datasets (config data_root)")
    run.add_argument("--output", "-o", help="run folder (config output); default results/<config name>")
    run.add_argument("--device", help="cpu, cuda, cuda:N or auto (config device)")
    run.add_argument("--retry-errors", action="store_true", help="rerun cases that failed in an earlier run")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(handler=cmd_run)

    score = sub.add_parser("score", help="score a folder of SR images against GT")
    score.add_argument("--sr", required=True, help="folder of super-resolved images")
    score.add_argument("--gt", required=True, help="folder of ground-truth images (same stems)")
    score.add_argument("--scale", required=True, type=float, help="the upscaling factor (sets the border crop)")
    score.add_argument("--protocol", default="gsasr", help="protocol name (see `list`); default gsasr")
    score.add_argument("--metrics", nargs="+", default=["psnr", "ssim"], help="default: psnr ssim")
    score.add_argument("--suffix", default="", help="SR file stem = GT stem + suffix (e.g. _x4)")
    score.add_argument("--format", choices=("json", "csv"), default="json")
    score.add_argument("--out", help="write to this file instead of stdout")
    score.add_argument("--weights-dir", help="LPIPS/DISTS weights folder")
    score.add_argument("--dataset", help="dataset name for protocol rules (liif scores div2k* on RGB); "
                                         "default: the GT folder's name")
    score.set_defaults(handler=cmd_score)

    prepare = sub.add_parser("prepare", help="write LR folders from HR images (or `prepare div2k-720`)")
    prepare.add_argument("target", nargs="?", choices=("lr", "div2k-720"), default="lr",
                         help="lr (default): LR folders per scale; div2k-720: the GSASR 720x720 cost crops")
    prepare.add_argument("--hr", required=True, help="folder of HR images (DIV2K_valid_HR for div2k-720)")
    prepare.add_argument("--scales", nargs="+", type=float,
                         help="integer scales; default 2 3 4 (div2k-720: GSASR's 2 3 4 6 8 12)")
    prepare.add_argument("--mode", choices=("uint8", "float"), default="uint8",
                         help="uint8 = MATLAB imresize on uint8 (the benchmark LR files); float = BasicSR python")
    prepare.add_argument("--out", required=True, help="output folder")
    prepare.set_defaults(handler=cmd_prepare)

    listing = sub.add_parser("list", help="methods, encoders, datasets, protocols, metrics")
    listing.add_argument("what", nargs="?", choices=("methods", "encoders", "datasets", "protocols", "metrics"))
    listing.set_defaults(handler=cmd_list)

    report = sub.add_parser("report", help="re-render tables and report.html of a stored run")
    report.add_argument("run_dir", help="a run folder (holding run.json and cases.jsonl)")
    report.set_defaults(handler=cmd_report)

    doctor = sub.add_parser("doctor", help="what this machine has")
    doctor.add_argument("--data-root", help="also check this data folder")
    doctor.add_argument("--weights-dir", help="also look for metric weights here")
    doctor.add_argument("--build", action="store_true", help="compile the op backends now (minutes, once)")
    doctor.add_argument("--selftest", action="store_true",
                        help="re-run the compiled op backends' self-tests against the reference (exit 1 if one fails)")
    doctor.set_defaults(handler=cmd_doctor)
    return parser


# ---------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .engine.runner import run_benchmark

    overrides = list(args.overrides)
    for key, value in (("data_root", args.data_root), ("output", args.output), ("device", args.device)):
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")  # a quoted string: paths are never YAML-typed
    config = load_config(args.config, overrides)
    result = run_benchmark(config, progress=not args.no_progress, retry_errors=args.retry_errors)
    print(summary(result.cases))
    print(f"\nresults: {result.run_dir}/ (report.html, tables/, cases.csv, images.csv)")
    if result.failed:
        failed = [c for c in result.cases if c.status == "error"]
        for case in failed:
            print(f"failed: {case.case_id}: {case.error}", file=sys.stderr)
        print(f"{len(failed)} case(s) failed (stored with their errors); fix and rerun with --retry-errors.",
              file=sys.stderr)
        return 1
    return 0


def summary(cases: list[Any]) -> str:
    from .report import summary_table

    return summary_table(cases)


# ---------------------------------------------------------------- score


def cmd_score(args: argparse.Namespace) -> int:
    from .engine.score_folder import score_folders, to_csv, to_json

    result = score_folders(Path(args.sr), Path(args.gt), args.scale, args.protocol, args.metrics,
                           suffix=args.suffix, weights_dir=args.weights_dir, dataset=args.dataset)
    text = to_json(result) if args.format == "json" else to_csv(result)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out} ({len(result['images'])} images)")
    else:
        print(text, end="")
    return 0


# ---------------------------------------------------------------- prepare


def cmd_prepare(args: argparse.Namespace) -> int:
    from .data import prepare

    hr, out = Path(args.hr), Path(args.out)
    if not hr.is_dir():
        raise UserError(f"HR folder not found: {hr}. Give --hr the folder that holds the HR images.")
    for scale in args.scales or []:
        if not scale > 1:
            raise UserError(f"--scales {scale:g}: every scale must be greater than 1, e.g. --scales 2 3 4.")
    if args.target == "div2k-720":
        written = prepare.prepare_div2k_720(hr, out, *([args.scales] if args.scales else []))
    else:
        written = prepare.prepare_lr(hr, args.scales or [2, 3, 4], out, mode=args.mode)
    count = len(written) if hasattr(written, "__len__") else written
    print(f"wrote {count} files under {out}")
    return 0


# ---------------------------------------------------------------- list / report / doctor


def cmd_list(args: argparse.Namespace) -> int:
    sections = [args.what] if args.what else ["methods", "encoders", "datasets", "protocols", "metrics"]
    print("\n\n".join(LISTERS[name]() for name in sections))
    return 0


def _list_methods() -> str:
    from .registry import broken_plugins, method_specs
    from .upsampler import supported_label

    lines = ["methods (name: encoders; scales; presets):"]
    for spec in method_specs():
        presets = ", ".join(spec.presets) or "-"
        lines.append(f"  {spec.name}: {', '.join(spec.encoders)}; scales {supported_label(spec.scales)}; presets {presets}")
        if spec.description:
            lines.append(f"      {spec.description}")
    lines += [f"  (plugin '{name}' failed to import: {why})" for name, why in broken_plugins().items()]
    return "\n".join(lines)


def _list_simple(title: str, module: str, function: str) -> Any:
    def lister() -> str:
        import importlib

        try:
            names = getattr(importlib.import_module(module), function)()
        except ImportError as exc:
            return f"{title}: (not available in this checkout: {exc})"
        return f"{title}: " + ", ".join(names)
    return lister


LISTERS = {
    "methods": _list_methods,
    "encoders": _list_simple("encoders", "asr_bench.encoders", "list_encoders"),
    "datasets": _list_simple("datasets (catalogue names; or give any folder of images)",
                             "asr_bench.data.catalogue", "list_datasets"),
    "protocols": _list_simple("protocols", "asr_bench.protocols", "list_protocols"),
    "metrics": _list_simple("metrics", "asr_bench.metrics", "list_metrics"),
}


def cmd_report(args: argparse.Namespace) -> int:
    from .engine.runner import render_run
    from .report.reading import read_run

    run_dir = Path(args.run_dir)
    data = read_run(run_dir)
    paths = render_run(run_dir)
    print(summary(data.cases))
    shown = paths.values() if isinstance(paths, dict) else paths
    print("\nwrote: " + ", ".join(str(p) for p in shown))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .engine.doctor import doctor_report

    print(doctor_report(data_root=args.data_root, weights_dir=args.weights_dir, build=args.build))
    if not args.selftest:
        return 0
    from .engine.doctor import selftest_lines

    lines, passed = selftest_lines()
    print("\n" + "\n".join(lines))
    return 0 if passed else 1


def _bench_ops(argv: list[str], debug: bool) -> int:
    try:
        try:
            from .ops.bench import main as bench_main
        except ImportError:
            raise UserError("bench-ops is not available in this checkout (asr_bench.ops.bench is missing).") from None
        return int(bench_main(argv) or 0)
    except UserError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return UserError.exit_code


if __name__ == "__main__":
    main()
