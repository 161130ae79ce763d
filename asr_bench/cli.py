"""Command line: `asr-bench [run] --config quick` (a shipped config by name, or a YAML path) and the helper subcommands.

    run (default)  run or resume a benchmark config; prints a progress bar per case and a summary table
    score          score a folder of SR images against a folder of GT images (per image + mean; JSON or CSV)
    prepare        write LR folders from an HR folder; `prepare div2k-720` makes the GSASR cost-benchmark crops
    list           methods, encoders, datasets, protocols, metrics
    report         re-render tables and report.html of a stored run
    doctor         what this machine has: torch, devices, op backends, metric and method weights, data folders
                   (--selftest: the compiled op backends checked against the reference on this device)
    weights        the weights zoo: `weights list`, `weights fetch PRESET...`, `weights verify FILE`
    reproduce      a paper's table in one command: `reproduce --list`, `reproduce liif-set5 --data-root ...`
    bench-ops      the custom ops' micro-benchmarks
    validate       check this installation on its device (self-tests, tests, bench-ops, runs); one report

`asr-bench`, `python -m asr_bench` and `python run_bench.py` are the same program; with no arguments it prints
the usage and the subcommands. Every user mistake prints one line on stderr and exits with code 2; `--debug` shows the traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .arguments import Parser as _Parser
from . import atomic
from .errors import UserError, cannot_write

COMMANDS = ("run", "score", "prepare", "list", "report", "compare", "doctor", "weights", "reproduce", "bench-ops",
            "validate")


def program_name(argv0: str | None = None) -> str:
    """How the user started us: 'asr-bench', 'run_bench.py' or 'python -m asr_bench' (usage text says the same)."""
    name = Path(argv0 if argv0 is not None else (sys.argv[0] if sys.argv and sys.argv[0] else "asr-bench")).name
    if name in ("__main__.py", "-c", "") or name.startswith("python"):
        return "python -m asr_bench"
    return name


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `run_bench.py` and the `asr-bench` console script; exits with the command's code."""
    from .checkout import shadowed_checkout

    shadowed = shadowed_checkout()
    if shadowed is not None:        # another checkout's code would run under this one's name
        print(f"error: {shadowed}", file=sys.stderr)
        sys.exit(UserError.exit_code)
    sys.exit(run_cli(list(sys.argv[1:] if argv is None else argv)))


def run_cli(argv: list[str]) -> int:
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv:  # no arguments: say what the program does instead of complaining about a missing --config
        print(build_parser().format_help())
        return 0
    if argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version"):
        argv = ["run", *argv]
    if argv[0] == "bench-ops":  # its own argument parser owns everything after the name
        return _bench_ops(argv[1:], debug)
    if argv[0] == "validate":  # its own parser too (asr_bench/validate)
        return _validate(argv[1:], debug)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.handler(args) or 0)
    except UserError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return UserError.exit_code
    except OSError as exc:  # an unwritable, read-only or full output place: the user's to fix, in one line
        problem = cannot_write(exc)
        if problem is None or debug:
            raise
        print(f"error: {problem}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted; the results so far are stored; rerun the same command to resume.", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    prog = program_name()
    parser = _Parser(prog=prog, description="asr-bench: benchmark arbitrary-scale super-resolution.",
                     epilog=f"Without a subcommand, `run` is meant: `{prog} --config quick`. "
                            "Add --debug anywhere to see tracebacks.")
    parser.add_argument("--version", action="version", version=f"asr-bench {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, title="subcommands", metavar="<subcommand>")

    run = sub.add_parser("run", help="run or resume a benchmark config (the default command)")
    run.lists_config_keys = True
    run.add_argument("--config", "-c", required=True, help="a YAML file, or a shipped config by name: quick, x4, set5_liif, paper/liif_table1, ...")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key (dotted, YAML-typed), e.g. --set profiling.repeats=3")
    run.add_argument("--data-root", help="folder holding the datasets (config data_root)")
    run.add_argument("--output", "-o", help="run folder (config output); default results/<config name>")
    run.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (config device)")
    run.add_argument("--checkpoint-dir", dest="checkpoint_dirs", action="append", default=[], metavar="DIR",
                     help="look for method weights here first (repeatable; config checkpoint_dirs; then "
                          "$ASR_BENCH_WEIGHTS, ~/.cache/asr_bench/weights, the Hugging Face Hub cache)")
    run.add_argument("--require-weights", action="store_true",
                     help="stop before any case runs when a preset's official weights are missing (config "
                          "require_weights)")
    run.add_argument("--trust-checkpoints", action="store_true",
                     help="load checkpoints that need full pickle (they can run code; config trust_checkpoints)")
    run.add_argument("--retry-errors", action="store_true", help="rerun cases that failed in an earlier run")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (one log line per finished case)")
    run.add_argument("--dry-run", action="store_true",
                     help="list the cases and whether each one's weights and data are found; run and write nothing")
    run.add_argument("--methods", nargs="+", metavar="NAME", help="shortcut for the config key methods (names)")
    run.add_argument("--datasets", nargs="+", metavar="NAME", help="shortcut for the config key datasets")
    run.add_argument("--scales", nargs="+", type=float, metavar="S", help="shortcut for the config key scales")
    run.add_argument("--shard", metavar="I/N", help="run the I-th of N deterministic parts of the cases into the "
                     "same folder (default: from SLURM_ARRAY_TASK_ID/COUNT or torchrun's RANK/WORLD_SIZE)")
    run.add_argument("--db-per-shard", action="store_true", default=None,
                     help="one database file per shard (automatic on network file systems)")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local (default): supervised workers here; ray: one Ray task per case")
    run.add_argument("--ray-address", help="Ray cluster address for --executor ray (default: start a local one)")
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
    score.add_argument("--metric-weights-dir", "--weights-dir", dest="weights_dir",
                       help="LPIPS/DISTS weights folder (--weights-dir: the old name)")
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

    compare = sub.add_parser("compare", help="one report from several run folders (machines, days, shards); "
                                             "checks they are comparable first")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="two or more run folders")
    compare.add_argument("--output", "-o", required=True, help="a new folder for the merged store and its report")
    compare.set_defaults(handler=cmd_compare)

    doctor = sub.add_parser("doctor", help="what this machine has")
    doctor.add_argument("--data-root", help="also check this data folder")
    doctor.add_argument("--metric-weights-dir", "--weights-dir", dest="weights_dir",
                        help="also look for LPIPS/DISTS weights here (--weights-dir: the old name)")
    doctor.add_argument("--checkpoint-dir", dest="checkpoint_dirs", action="append", default=[],
                        help="also look for method weights here (repeatable)")
    doctor.add_argument("--build", action="store_true", help="compile the op backends now (minutes, once)")
    doctor.add_argument("--selftest", action="store_true",
                        help="re-run the compiled op backends' self-tests against the reference (exit 1 if one fails)")
    doctor.set_defaults(handler=cmd_doctor)

    weights = sub.add_parser("weights", help="official weights per preset: list, fetch, verify")
    zoo = weights.add_subparsers(dest="weights_command", parser_class=_Parser)
    zoo_list = zoo.add_parser("list", help="every preset's files, sources, size, sha256, license, local state")
    zoo_list.add_argument("presets", nargs="*", help="only these presets (method.tag)")
    zoo_list.add_argument("--checkpoint-dir", "--weights-dir", dest="weights_dir",
                          help="look here first (then $ASR_BENCH_WEIGHTS, ~/.cache/asr_bench/weights, the Hub cache)")
    zoo_list.add_argument("--files", action="store_true", help="every file's sources, size, sha256, license, state")
    zoo_list.add_argument("--json", action="store_true", help="everything, as JSON")
    zoo_list.set_defaults(handler=cmd_weights_list)
    zoo_fetch = zoo.add_parser("fetch", help="download presets' files into the cache (resumes, verifies sha256)")
    zoo_fetch.add_argument("presets", nargs="+", help="preset names (method.tag), e.g. rt4ksr.x2")
    zoo_fetch.add_argument("--checkpoint-dir", "--weights-dir", dest="weights_dir",
                           help="download plain-URL files here instead of $ASR_BENCH_WEIGHTS / the cache (Hub files "
                                "go to the Hugging Face Hub cache)")
    zoo_fetch.add_argument("--variant", help="which release of a preset that has several (e.g. DF2K); default the first")
    zoo_fetch.add_argument("--no-progress", action="store_true", help="no progress bars")
    zoo_fetch.set_defaults(handler=cmd_weights_fetch)
    zoo_verify = zoo.add_parser("verify", help="detect a checkpoint, load it strictly, print params and sha256")
    zoo_verify.add_argument("file", help="a checkpoint file, or a folder (GSASR encoder.pth + decoder.pth)")
    zoo_verify.add_argument("--device", default="cpu", help="where to load it (default cpu)")
    zoo_verify.set_defaults(handler=cmd_weights_verify)
    weights.set_defaults(handler=cmd_weights_usage)
    repro = sub.add_parser("reproduce", help="a paper's table in one command: check, run, ours beside published")
    repro.add_argument("table", nargs="?", help="e.g. liif-set5, liif-table1, gsasr-x4 (see --list)")
    repro.add_argument("--list", action="store_true", help="name the reproducible tables")
    repro.add_argument("--data-root", help="folder holding the datasets")
    repro.add_argument("--checkpoint-dir", dest="checkpoint_dirs", action="append", default=[], metavar="DIR",
                       help="a folder holding official weights (repeatable)")
    repro.add_argument("--output", "-o", help="run folder (default results/reproduce-<table>)")
    repro.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    repro.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key of the table's config")
    repro.add_argument("--no-progress", action="store_true", help="no progress bars")
    repro.set_defaults(handler=cmd_reproduce)
    # bench-ops owns its own argument parser (run_cli hands it everything after the name); listed here for --help
    sub.add_parser("bench-ops", help="the custom ops' micro-benchmarks (`bench-ops --help` for its options)",
                   add_help=False)
    sub.add_parser("validate", help="check this installation on its device; writes validate.md/.json "
                   "(`validate --help` for its options)", add_help=False)
    return parser


# ---------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config

    overrides = list(args.overrides)
    for key, value in (("data_root", args.data_root), ("output", args.output), ("device", args.device)):
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")  # a quoted string: paths are never YAML-typed
    if args.trust_checkpoints:
        overrides.append("trust_checkpoints=true")
    if args.require_weights:
        overrides.append("require_weights=true")
    for key, values in (("methods", args.methods), ("datasets", args.datasets), ("scales", args.scales)):
        if values:
            overrides.append(f"{key}={json.dumps([int(v) if isinstance(v, float) and v.is_integer() else v for v in values])}")
    config = load_config(args.config, overrides)
    if args.checkpoint_dirs:  # searched before the config's own folders, as --help says ("here first")
        from dataclasses import replace

        given = tuple(str(Path(d).expanduser()) for d in args.checkpoint_dirs)
        config = replace(config, checkpoint_dirs=given + tuple(d for d in config.checkpoint_dirs if d not in given))
    if args.dry_run:
        from .engine.dry_run import dry_run_lines

        print("\n".join(dry_run_lines(config)))
        return 0
    must_be_folder(config.run_dir(), "run folder (--output / config output)")
    if args.ray_address and args.executor != "ray":
        raise UserError("--ray-address is for --executor ray; add --executor ray or drop --ray-address.")
    from .engine.runner import run_benchmark  # torch: only once the config is known to be good

    result = run_benchmark(config, progress=not args.no_progress, retry_errors=args.retry_errors, shard=args.shard,
                           executor=args.executor, ray_address=args.ray_address, db_per_shard=args.db_per_shard)
    print(summary(result.cases))
    from .weights import run_notes

    for line in run_notes(result.cases):
        print(line)
    print(f"\nresults: {result.run_dir}/ (report.html, tables/, cases.csv, images.csv)")
    say_partial(result.run_dir)
    if result.failed:
        failed = [c for c in result.cases if c.status == "error"]
        for case in failed:
            print(f"failed: {case.case_id}: {case.error}", file=sys.stderr)
        print(f"{len(failed)} case(s) failed (stored with their errors); fix and rerun with --retry-errors.",
              file=sys.stderr)
        return 1
    return 0


def must_be_folder(path: Path, what: str) -> None:
    """An output folder that is an existing file fails late and cryptically; say so first."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder; give a folder path (it is created if missing).")


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
        if Path(args.out).is_dir():
            raise UserError(f"--out {args.out} is a folder; give a file name, e.g. --out {Path(args.out) / 'scores.json'}.")
        try:
            atomic.write_text(Path(args.out), text)
        except OSError as exc:  # any reason (a missing or unwritable place): the user's to fix, one line
            raise UserError(f"cannot write --out {args.out} ({exc.strerror or type(exc).__name__}); give a file in "
                            "a folder you can write, e.g. --out scores.json.") from None
        print(f"wrote {args.out} ({len(result['images'])} images)")
    else:
        print(text, end="")
    for metric, note in result["notes"].items():  # why a value is inf or empty, beside the numbers
        print(f"note: {metric}: {note}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- prepare


def cmd_prepare(args: argparse.Namespace) -> int:
    from .data import prepare

    hr, out = Path(args.hr), Path(args.out)
    if not hr.is_dir():
        raise UserError(f"HR folder not found: {hr}. Give --hr the folder that holds the HR images.")
    must_be_folder(out, "--out")
    for scale in args.scales or []:
        if not (scale > 1 and math.isfinite(scale)):
            raise UserError(f"--scales {scale:g}: every scale must be a finite number greater than 1, "
                            "e.g. --scales 2 3 4.")
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

    from .detect import preset_name
    from .zoo import preset_state, search_dirs

    dirs = search_dirs()
    lines = ["methods (name: encoders; scales; presets [their official weights here?]):"]
    for spec in method_specs():
        presets = ", ".join(f"{key} [{preset_state(preset_name(spec.name, key, p), p, dirs)}]"
                            for key, p in spec.presets.items()) or "-"
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

    from .results.database import database_files

    run_dir = Path(args.run_dir)
    data = read_run(run_dir)
    if database_files(run_dir):
        from .engine.store import export_views

        export_views(run_dir)  # the JSONL/CSV views, merged over every shard's database
    paths = render_run(run_dir)
    print(summary(data.cases))
    shown = paths.values() if isinstance(paths, dict) else paths
    print("\nwrote: " + ", ".join(str(p) for p in shown))
    say_partial(run_dir, data)
    return 0


def say_partial(run_dir: Path, data: Any = None) -> None:
    """A run with planned cases not stored (a shard that has not run or finished) says so, one line each."""
    if data is None:
        from .results.reading import read_run

        data = read_run(Path(run_dir))
    for line in data.partial:
        print(f"partial run: {line}", file=sys.stderr)


def cmd_compare(args: argparse.Namespace) -> int:
    """Merge comparable cases of several runs, keep the others apart (and say why), render one report."""
    from .engine.runner import render_run
    from .results.compare import compare_runs, write_comparison

    for folder in args.run_dirs:
        must_be_folder(Path(folder), "run folder")
    comparison = compare_runs([Path(d) for d in args.run_dirs])
    output = write_comparison(comparison, Path(args.output))
    paths = render_run(output)
    print(comparison.report())
    shown = paths.values() if isinstance(paths, dict) else paths
    print("wrote: " + ", ".join(str(p) for p in [output / "comparability.md", *shown]))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .engine.doctor import doctor_report

    print(doctor_report(data_root=args.data_root, weights_dir=args.weights_dir, build=args.build,
                        checkpoint_dirs=args.checkpoint_dirs))
    if not args.selftest:
        return 0
    from .engine.doctor import selftest_lines

    lines, passed = selftest_lines()
    print("\n" + "\n".join(lines))
    return 0 if passed else 1


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import list_lines, reproduce

    if args.list or not args.table:
        print("\n".join(list_lines()))
        return 0
    overrides = list(args.overrides)
    for key, value in (("data_root", args.data_root), ("output", args.output), ("device", args.device)):
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    if args.checkpoint_dirs:
        overrides.append(f"checkpoint_dirs={json.dumps(args.checkpoint_dirs)}")
    return reproduce(args.table, overrides, progress=not args.no_progress)


def cmd_weights_usage(args: argparse.Namespace) -> int:
    raise UserError("weights needs a subcommand: list, fetch PRESET..., or verify FILE (see `weights --help`).")


def cmd_weights_list(args: argparse.Namespace) -> int:
    from .zoo import list_lines, list_records

    if args.json:
        print(json.dumps(list_records(args.weights_dir, args.presets), indent=1))
    else:
        print("\n".join(list_lines(args.weights_dir, args.presets, files=args.files)))
    return 0


def cmd_weights_fetch(args: argparse.Namespace) -> int:
    from .zoo import fetch

    fetch(args.presets, weights_dir=args.weights_dir, progress=not args.no_progress, variant=args.variant)
    return 0


def cmd_weights_verify(args: argparse.Namespace) -> int:
    from .zoo import verify

    print("\n".join(verify(args.file, device=args.device)))
    return 0


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


def _validate(argv: list[str], debug: bool) -> int:
    from .validate import main as validate_main

    try:
        return validate_main(argv, prog=f"{program_name()} validate")
    except UserError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted; the report so far is written.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    main()
