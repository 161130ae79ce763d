"""The benchmark loop: plan the cases, run each one, store every result the moment it exists.

Per case: build the model (seeded, so random weights are the same on a rerun), measure its cost on the first
image (peak memory first, while the process is fresh; then warm-up + timed repeats; then FLOPs), then run and
score every image at batch 1 through the protocol. A rerun skips finished cases and finished images, so a run
killed at any point and restarted writes the same results as one that never stopped.

What stops a run and what does not: a user mistake (bad name, missing folder, unreadable image, checkpoint
that does not fit) raises `UserError` at once, since every later case would hit it too; anything else a case
raises (out of memory, a bug in one method) is stored as that case's error and the run goes on.
"""
from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import statistics
import sys
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..config import Config, config_hash, results_key
from ..errors import UnsupportedScale, UserError
from .cases import Case, check_names, load_plugins, plan_cases, resolve_methods
from .environment import environment, live_backends, resolve_device
from .console import RunConsole, image_bar, ticking
from .memory import peak_memory_mb
from .outputs import save_output
from .params import params_that_ran
from .records import ERROR, NO_WEIGHTS, OK, UNSUPPORTED, CaseRecord, ImageRecord
from .store import RunStore
from .tiling import tiled_forward
from .timing import median_ms, time_call

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
NO_WEIGHTS_NOTE = "n/a (no weights)"
UNSUPPORTED_NOTE = "n/a (unsupported scale)"


@dataclass
class RunResult:
    run_dir: Path
    cases: list[CaseRecord]
    failed: int


# ---------------------------------------------------------------- the run


def run_benchmark(config: Config, progress: bool = True, retry_errors: bool = False,
                  isolate: bool | None = None, render: bool = True) -> RunResult:
    """Run (or resume) every case of `config`; returns the case records in plan order."""
    resolve_methods(config)  # unknown methods first: the most common typo
    cases = plan_cases(config, check_names(config))
    device = resolve_device(config.device)
    store = RunStore(config.run_dir())
    check_resumable(store, config)
    store.write_run(run_json(config, device, cases))
    if isolate is None:
        isolate = config.profiling.memory and device.type == "cpu"
    _SHOWN.clear()
    console = RunConsole(len(cases), progress)
    for case in cases:
        done = store.finished(case.case_id)
        if done is not None and retry_errors and done.status == ERROR:
            store.drop_case(case.case_id)
        if store.finished(case.case_id) is not None:
            console.skip()
            continue
        console.start_case(case.case_id)
        try:
            if isolate and case_supported(case):
                run_isolated(case, config, device, store, progress)
            else:
                execute_case(case, config, device, store, progress)
        except BaseException:
            console.close()
            raise
        console.finish_case(store.cases[case.case_id])
    console.close()
    records = [store.cases[c.case_id] for c in cases]
    finished = store.read_run()
    finished.setdefault("environment", {})["op_backends"] = live_backends()  # what the cases compiled and used
    store.write_run(finished)
    if render:
        render_run(store.run_dir)
    return RunResult(store.run_dir, records, sum(r.status == ERROR for r in records))


def run_json(config: Config, device: torch.device, cases: list[Case]) -> dict[str, Any]:
    return {
        "name": config.name,
        "config": config.to_dict(),
        "config_hash": config_hash(config),
        "results_key": results_key(config),
        "cases": [c.case_id for c in cases],
        "environment": environment(device),
    }


def check_resumable(store: RunStore, config: Config) -> None:
    """Refuse to mix results measured under another protocol, metric set, precision or tiling."""
    previous = store.read_run().get("results_key")
    if store.cases and previous is not None and previous != results_key(config):
        changed = sorted(k for k in previous if previous.get(k) != results_key(config).get(k))
        raise UserError(f"{store.run_dir} holds results measured with a different {', '.join(changed)}; "
                        f"write elsewhere (--output <dir>) or delete that folder to start over.")


def render_run(run_dir: Path) -> dict[str, Any]:
    """Tables and report.html (the report package), if it is installed in this checkout."""
    try:
        from ..report import render_report
    except ImportError:
        return {}
    return render_report(Path(run_dir), published_dir=published_dir())


def published_dir() -> Path | None:
    """results/published of the current folder, else of the checkout this package runs from."""
    candidates = (Path.cwd() / "results" / "published", Path(__file__).resolve().parents[2] / "results" / "published")
    return next((p for p in candidates if p.is_dir()), None)


def case_supported(case: Case) -> bool:
    """Whether the method declares the case's scale (else the case is stored as unsupported, no worker needed)."""
    from ..registry import get_method
    from ..upsampler import supports

    return supports(get_method(case.entry.method).scales, case.scale)


# ---------------------------------------------------------------- one case, in a fresh process


def run_isolated(case: Case, config: Config, device: torch.device, store: RunStore, progress: bool) -> None:
    """Run the case in a new worker process (CPU peak memory must not see earlier cases; a crash stays there)."""
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    lifeline, keep_alive = context.Pipe(duplex=False)  # the worker exits when this process's end closes
    worker = context.Process(target=_worker_main,
                             args=(case, config, str(device), str(store.run_dir), progress, sender, lifeline))
    worker.start()
    sender.close()
    lifeline.close()
    try:
        worker.join()
    except BaseException:
        worker.terminate()
        worker.join()
        raise
    finally:
        keep_alive.close()
    try:
        message = receiver.recv() if receiver.poll() else None
    except EOFError:  # the worker died without a word (killed, or crashed outside the case)
        message = None
    store.reload()
    if message is not None:
        show_once(message[2])
        if message[0] == "user_error":
            raise UserError(message[1])
    if store.finished(case.case_id) is None:
        code = worker.exitcode
        why = (f"killed by signal {-code} (out of memory?)" if code is not None and code < 0
               else f"exit code {code}")
        store.put_case(replace(base_record(case, config, device), status=ERROR,
                               error=f"worker process died ({why}) before the case finished"))


_PRELOADED = False
_SHOWN: set[str] = set()


def show_once(messages: list[str]) -> None:
    """Warnings from case workers: each distinct one once per run, not once per case."""
    for text in messages:
        if text not in _SHOWN:
            _SHOWN.add(text)
            print(f"warning: {text}", file=sys.stderr)


def _context() -> Any:
    """forkserver: workers fork from a clean server that has already imported torch (fast, and fork-safe)."""
    global _PRELOADED
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    if not _PRELOADED:
        # Everything this process has imported without error by now (torch, the method plugins, protocols,
        # metrics): imported once in the server, so each worker starts in milliseconds, not seconds.
        ours = sorted(name for name in sys.modules if name.startswith("asr_bench.") and sys.modules[name] is not None)
        heavy = ["torch", "torch._dynamo", "torch.utils.flop_counter", "numpy", "PIL.Image", "tqdm",
                 "skimage.data", "skimage.io"]  # torch
        # imports _dynamo lazily on the first call of many ops: seconds per worker if not done here, once.
        context.set_forkserver_preload([*heavy, *ours, "asr_bench.engine.runner"])
        _PRELOADED = True
    return context


def _worker_main(case: Case, config: Config, device: str, run_dir: str, progress: bool, sender: Any,
                 lifeline: Any) -> None:
    _exit_with_run(lifeline)
    with warnings.catch_warnings(record=True) as caught:  # handed to the run, which shows each one once
        warnings.simplefilter("always")
        try:
            load_plugins(config.plugins)
            execute_case(case, config, torch.device(device), RunStore(run_dir), progress)
            message = ("ok", "")
        except UserError as exc:
            message = ("user_error", str(exc))
    sender.send((*message, [f"{w.category.__name__}: {w.message}" for w in caught]))


def _exit_with_run(lifeline: Any) -> None:
    """A killed run must not leave its worker writing to the store: exit when the run's end of the pipe closes.

    (The worker's parent is the fork server, which outlives a killed run while any worker lives, so a
    parent-death signal is not enough.)"""
    def wait() -> None:
        try:
            lifeline.recv()
        except (EOFError, OSError):
            pass
        os._exit(1)

    threading.Thread(target=wait, name="asr-bench-lifeline", daemon=True).start()


# ---------------------------------------------------------------- one case


def base_record(case: Case, config: Config, device: torch.device, protocol_label: str = "") -> CaseRecord:
    entry = case.entry
    return CaseRecord(case_id=case.case_id, label=case.label, method=entry.method, encoder=entry.encoder or "",
                      dataset=case.dataset, scale=case.scale_label,
                      protocol=protocol_label or protocol_text(config), device=str(device),
                      precision=config.precision)


def protocol_text(config: Config) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in config.protocol.overrides.items())
    return f"{config.protocol.name} ({extra})" if extra else config.protocol.name


def make_protocol(config: Config) -> Any:
    from ..protocols import get_protocol

    return get_protocol(config.protocol.name, **config.protocol.overrides)


def execute_case(case: Case, config: Config, device: torch.device, store: RunStore, progress: bool = True) -> CaseRecord:
    """Run one case to a final CaseRecord, stored before returning."""
    from ..registry import get_method
    from ..upsampler import supported_label

    protocol = make_protocol(config)
    base = base_record(case, config, device, protocol.label)
    spec = get_method(case.entry.method)
    if not case_supported(case):
        record = unsupported(base, config, str(UnsupportedScale(spec.name, case.scale_label, supported_label(spec.scales))))
    else:
        try:
            record = evaluate(case, config, device, store, protocol, base, progress)
        except UnsupportedScale as exc:
            record = unsupported(base, config, str(exc))
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - one failing case is data, not the end of the run
            record = replace(base, status=ERROR, error=one_line(exc))
    store.put_case(record)
    return record


class CaseFailure(RuntimeError):
    """A complaint raised while a method runs: it fails this case only (the input is fine for the others)."""


@contextlib.contextmanager
def method_failures() -> Iterator[None]:
    """UserErrors raised by a method's call (other than an unsupported scale) become this case's error."""
    try:
        yield
    except UnsupportedScale:
        raise
    except UserError as exc:
        raise CaseFailure(str(exc)) from exc


def unsupported(base: CaseRecord, config: Config, why: str) -> CaseRecord:
    return replace(base, status=UNSUPPORTED, error=why, metrics={m: None for m in config.metrics},
                   notes={m: UNSUPPORTED_NOTE for m in config.metrics})


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return f"out of memory: {text}" if text else "out of memory"
    if isinstance(exc, CaseFailure):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def evaluate(case: Case, config: Config, device: torch.device, store: RunStore, protocol: Any,
             base: CaseRecord, progress: bool) -> CaseRecord:
    from ..data.catalogue import resolve_dataset
    from ..registry import build_model, get_method

    entry = case.entry
    dtype = DTYPES[config.precision]
    torch.manual_seed(zlib.crc32(case.case_id.encode()))  # random weights: identical on every (re)run
    model = build_model(entry.method, entry.encoder, checkpoint=entry.checkpoint, device=str(device),
                        preset=entry.preset, **entry.kwargs)
    if dtype != torch.float32:
        model = model.to(dtype)
    scored = not (get_method(entry.method).needs_weights and not getattr(model, "weights_loaded", False))
    dataset = resolve_dataset(case.dataset_ref, data_root=config.data_root)
    ids = list(dataset.image_ids())
    if not ids:
        raise UserError(f"dataset '{case.dataset}' has no images; put PNG/JPEG files in it or remove it from `datasets:`.")
    tile, overlap = config.tiling.tile, config.tiling.overlap

    def upscale(lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        call = lambda x, s: model.upscale(x, size=s, clamp=False)  # noqa: E731 - protocol finalizes
        with torch.inference_mode(), method_failures():
            return tiled_forward(call, lr, size, tile, overlap) if tile else call(lr, size)

    bar = progress_bar(case, len(ids) if scored else 0, progress)
    try:
        profile = store.profiles.get(case.case_id)
        if profile is None:
            bar.set_postfix_str("profiling")
            lr, hr = protocol.lr_hr(dataset, ids[0], case.scale, config.cache_dir)
            size = tuple(protocol.output_size(tuple(lr.shape[-2:]), tuple(hr.shape[-2:]), case.scale))
            with ticking(bar):  # the elapsed time keeps moving while the cost is measured
                profile = measure_cost(model, upscale, lr.to(device, dtype), size, config, device)
            store.put_profile(case.case_id, profile)
        if scored:
            score_images(case, config, device, store, protocol, dataset, ids, upscale, dtype, bar)
    finally:
        bar.close()
    cost = {k: v for k, v in profile.items() if k != "case_id"}
    if not scored:
        return replace(base, status=NO_WEIGHTS, n_images=0, metrics={m: None for m in config.metrics},
                       notes={m: NO_WEIGHTS_NOTE for m in config.metrics}, **cost)
    metrics, notes = aggregate([store.images_of(case.case_id)[i] for i in ids], config.metrics)
    return replace(base, status=OK, n_images=len(ids), metrics=metrics, notes=notes, **cost)


def progress_bar(case: Case, total: int, enabled: bool) -> Any:
    return image_bar(case.case_id, total, enabled)


def measure_cost(model: torch.nn.Module, upscale: Any, lr: torch.Tensor, size: tuple[int, int],
                 config: Config, device: torch.device) -> dict[str, Any]:
    """Peak memory (first, while the process is fresh), median time, FLOPs and params of one call."""
    call = lambda: upscale(lr, size)  # noqa: E731
    memory_mb, memory_kind = (None, "")
    warmup = config.profiling.warmup
    if config.profiling.memory:
        memory_mb, memory_kind = peak_memory_mb(call, device)
        warmup = max(0, warmup - 1)  # the memory call was the first untimed call
    times = time_call(call, device, warmup, config.profiling.repeats)
    return {
        "time_ms": median_ms(times),
        "time_repeats": config.profiling.repeats,
        "time_warmup": config.profiling.warmup,
        "memory_mb": memory_mb,
        "memory_kind": memory_kind,
        "params": params_that_ran(model, tuple(lr.shape[-2:]), size),
        "flops": count_flops(call, model) if config.profiling.flops else None,
        "output_mpix": size[0] * size[1] / 1e6,
    }


def count_flops(call: Any, model: torch.nn.Module | None = None) -> float | None:
    """FLOPs of one call (torch's counter: matmuls and convolutions; custom ops declare their own).

    The counter's module tracker hooks the autograd graph of any input that requires grad, and a parameter
    fed to a submodule (a learned query, say) has no graph in inference mode: parameters are frozen meanwhile.
    """
    from torch.utils.flop_counter import FlopCounterMode

    params = [p for p in (model.parameters() if model is not None else []) if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        with FlopCounterMode(display=False) as counter:
            call()
        return float(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - an op the counter cannot trace leaves FLOPs unknown, not the case failed
        return None
    finally:
        for p in params:
            p.requires_grad_(True)


def score_images(case: Case, config: Config, device: torch.device, store: RunStore, protocol: Any, dataset: Any,
                 ids: list[str], upscale: Any, dtype: torch.dtype, bar: Any) -> None:
    """Run and score every image not already stored; each result is stored as soon as it exists."""
    from .visuals import save_crops, visual_dir

    done = store.images_of(case.case_id)
    bar.update(sum(i in done for i in ids))
    bar.set_postfix_str("")
    for index, image_id in enumerate(ids):
        if image_id in done:
            continue
        lr, hr = protocol.lr_hr(dataset, image_id, case.scale, config.cache_dir)
        size = tuple(protocol.output_size(tuple(lr.shape[-2:]), tuple(hr.shape[-2:]), case.scale))
        sr = protocol.finalize(upscale(lr.to(device, dtype), size).float().cpu())
        with method_failures():  # e.g. an output of the wrong size: this method's fault, not the input's
            values, notes = protocol.score(sr, hr, case.scale, list(config.metrics), case.dataset, config.weights_dir)
        if index == 0 and config.visuals.crop:
            save_crops(visual_dir(store.run_dir, case.dataset, case.scale_label, image_id), case.label,
                       sr, hr, lr, config.visuals.crop, config.visuals.crop_at)
        if config.save_images:
            save_output(store.run_dir, case.dataset, case.scale_label, case.label, image_id, sr)
        store.add_image(ImageRecord(case_id=case.case_id, image=image_id, metrics=dict(values), notes=dict(notes),
                                    lr_size=tuple(lr.shape[-2:]), sr_size=tuple(sr.shape[-2:])))
        bar.update(1)


def aggregate(images: list[ImageRecord], metrics: tuple[str, ...]) -> tuple[dict[str, float | None], dict[str, str]]:
    """Mean over images per metric; a metric any image could not compute is n/a with that image's reason."""
    means: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    for metric in metrics:
        values = [r.metrics.get(metric) for r in images]
        if values and all(v is not None and math.isfinite(v) for v in values):
            means[metric] = statistics.fmean(values)  # type: ignore[arg-type]
        else:
            means[metric] = None
            notes[metric] = next((r.notes[metric] for r in images if r.notes.get(metric)), "n/a")
    return means, notes
