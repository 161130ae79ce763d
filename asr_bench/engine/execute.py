"""One case, in this process: build the model, measure its cost, run and score every image, hand each result to a sink.

Per case: build the model (seeded, so random weights are the same on a rerun), measure its cost on the first image
(peak memory first, while the process is fresh; then warm-up + timed repeats; then FLOPs), then run and score
every image at batch 1 through the protocol. Each result goes to a `Sink` the moment it exists: the run's store
when the case runs in the run's own process, a pipe to the supervising process when it runs in a worker, a list
when it runs on a Ray worker. The sink also says what an earlier, interrupted attempt already stored, so a resumed
case measures and scores only what is missing.
"""
from __future__ import annotations

import contextlib
import math
import statistics
import zlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Protocol

import torch

from ..config import Config
from ..checkpoints import trusting_checkpoints
from ..ops import backend_log
from .provenance import op_sources
from ..errors import UnsupportedScale, UserError, cannot_write
from .cases import Case, case_supported, encoder_refuses
from .console import image_bar, ticking
from ..memory import peak_memory_mb
from .allocator import apply_steady, one_arena
from .outputs import save_output
from .params import params_that_ran
from .records import ERROR, NO_WEIGHTS, OK, UNSUPPORTED, CaseRecord, ImageRecord
from .tiling import engine_tile, tiled_forward
from ..results.schema import UNSUPPORTED_PRECISION_NOTE, UNSUPPORTED_SCALE_NOTE, variant_label
from ..stages import describe_setup, recording
from .timing import time_until_stable, timing_stats

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
NO_WEIGHTS_NOTE = "n/a (no weights)"
UNSUPPORTED_NOTE = UNSUPPORTED_SCALE_NOTE


class Sink(Protocol):
    """Where one case's results go, and what an earlier attempt of it already stored."""

    case_key: str
    run_dir: str

    def done_images(self) -> dict[str, ImageRecord]: ...
    def profile(self) -> dict[str, Any] | None: ...
    def add_image(self, record: ImageRecord) -> None: ...
    def put_profile(self, profile: dict[str, Any]) -> None: ...
    def put_case(self, record: CaseRecord) -> None: ...


class StoreSink:
    """A case writing straight into the run's store (the case runs in the process that holds the store)."""

    def __init__(self, store: Any, case_id: str, case_key: str) -> None:
        self.store, self.case_id, self.case_key = store, case_id, case_key
        self.run_dir = str(store.run_dir)

    def done_images(self) -> dict[str, ImageRecord]:
        return self.store.images_of(self.case_id, self.case_key)

    def profile(self) -> dict[str, Any] | None:
        return self.store.profile_of(self.case_id, self.case_key)

    def add_image(self, record: ImageRecord) -> None:
        self.store.add_image(record, self.case_key)

    def put_profile(self, profile: dict[str, Any]) -> None:
        self.store.put_profile(self.case_id, self.case_key, profile)

    def put_case(self, record: CaseRecord) -> None:
        self.store.put_case(record, self.case_key)


def base_record(case: Case, config: Config, device: torch.device, protocol_label: str = "",
                provenance: dict[str, Any] | None = None) -> CaseRecord:
    entry = case.entry
    provenance = provenance or {}
    return CaseRecord(case_id=case.case_id, label=case.label, method=entry.method, encoder=entry.encoder or "",
                      dataset=case.dataset, scale=case.scale_label,
                      protocol=protocol_label or protocol_text(config), device=str(device),
                      precision=case.precision, compiled=case.compiled, case_key=provenance.get("case_key", ""),
                      provenance=dict(provenance))


def protocol_text(config: Config) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in config.protocol.overrides.items())
    return f"{config.protocol.name} ({extra})" if extra else config.protocol.name


def make_protocol(config: Config) -> Any:
    from ..protocols import get_protocol

    return get_protocol(config.protocol.name, **config.protocol.overrides)


def unsupported_record(case: Case, config: Config, device: torch.device,
                       provenance: dict[str, Any] | None = None) -> CaseRecord:
    from ..registry import get_method
    from ..upsampler import supported_label

    spec = get_method(case.entry.method)
    base = base_record(case, config, device, make_protocol(config).label, provenance)
    if case.precision not in spec.dtypes:
        why = (f"method '{spec.name}' is not tested in {case.precision} (it runs in {', '.join(spec.dtypes)})")
        return unsupported(base, config, why, UNSUPPORTED_PRECISION_NOTE)
    refusal = encoder_refuses(case)
    if refusal:
        return unsupported(base, config, refusal, UNSUPPORTED_PRECISION_NOTE)
    return unsupported(base, config, str(UnsupportedScale(spec.name, case.scale_label, supported_label(spec.scales))))


def execute_case(case: Case, config: Config, device: torch.device, sink: Sink, progress: bool = True,
                 provenance: dict[str, Any] | None = None) -> CaseRecord:
    """Run one case to a final CaseRecord, handed to the sink before returning."""
    one_arena()  # before any thread of the case allocates (allocator.py)
    protocol = make_protocol(config)
    base = base_record(case, config, device, protocol.label, provenance)
    if not case_supported(case):
        record = unsupported_record(case, config, device, provenance)
    else:
        try:
            with trusting_checkpoints(config.trust_checkpoints), backend_log() as used:  # used: op -> backend
                record = evaluate(case, config, device, sink, protocol, base, progress)
            record = replace(record, backends=dict(used),
                             provenance={**record.provenance, "code": {**record.provenance.get("code", {}),
                                                                       "ops": op_sources(used)}})
        except UnsupportedScale as exc:
            record = unsupported(base, config, str(exc))
        except UserError:
            raise
        except OSError as exc:
            if cannot_write(exc) is not None:  # a full or read-only disk stops the run, it is not this case's
                raise
            record = replace(base, status=ERROR, error=one_line(exc))
        except Exception as exc:  # noqa: BLE001 - one failing case is data, not the end of the run
            record = replace(base, status=ERROR, error=one_line(exc))
    sink.put_case(record)
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


def unsupported(base: CaseRecord, config: Config, why: str, note: str = "") -> CaseRecord:
    return replace(base, status=UNSUPPORTED, error=why, metrics={m: None for m in config.metrics},
                   notes={m: note or UNSUPPORTED_NOTE for m in config.metrics})


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's CUDA OOM, Python's MemoryError, and the CPU allocator's RuntimeError are all out of memory."""
    if isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("DefaultCPUAllocator: can't allocate" in text
                                              or "DefaultCPUAllocator: not enough memory" in text
                                              or "CUDA out of memory" in text)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "DefaultCPUAllocator" in text:
        return "out of memory: " + text[text.index("DefaultCPUAllocator"):]
    if is_out_of_memory(exc):
        return f"out of memory: {text}" if text else "out of memory"
    if isinstance(exc, CaseFailure):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def evaluate(case: Case, config: Config, device: torch.device, sink: Sink, protocol: Any,
             base: CaseRecord, progress: bool) -> CaseRecord:
    from ..data.catalogue import resolve_dataset
    from ..models import build_model
    from ..registry import get_method

    entry = case.entry
    dtype = DTYPES[case.precision]
    torch.manual_seed(zlib.crc32(case.case_id.encode()))  # random weights: identical on every (re)run
    model = build_model(entry.method, entry.encoder, checkpoint=entry.checkpoint, device=str(device),
                        preset=entry.preset, dtype=case.precision, **entry.kwargs)
    if case.compiled:  # the forward through torch.compile (the first timed calls pay the compile: warm up)
        model.forward_size = torch.compile(model.forward_size)
    scored = not (get_method(entry.method).needs_weights and not getattr(model, "weights_loaded", False))
    dataset = resolve_dataset(case.dataset_ref, data_root=config.data_root)
    ids = list(dataset.image_ids())
    if not ids:
        raise UserError(f"dataset '{case.dataset}' has no images; put PNG/JPEG files in it or remove it from `datasets:`.")
    tile, overlap = engine_tile(model, config.tiling.tile), config.tiling.overlap

    def upscale(lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        # The nominal scale travels with the size: methods feed it to their network (GSASR, Meta-RDN).
        call = lambda x, s: model.upscale(x, size=s, scale=case.scale, clamp=False)  # noqa: E731 - protocol finalizes
        with torch.inference_mode(), method_failures():
            return tiled_forward(call, lr, size, tile, overlap) if tile else call(lr, size)

    bar = progress_bar(case, len(ids) if scored else 0, progress)
    try:
        profile = sink.profile()
        reused: dict[str, Any] = {}
        if profile is None:
            bar.set_postfix_str("profiling")
            lr, size = profiling_input(case, config, protocol, dataset, ids[0])
            with ticking(bar):  # the elapsed time keeps moving while the cost is measured
                profile, output = measure_cost(model, upscale, lr.to(device, dtype), size, config, device)
                if case.frame_rates:
                    profile.update(frame_rates(model, upscale, config, device, dtype, profile["cost_notes"]))
            sink.put_profile(profile)
            if config.profiling.input is None:
                reused[ids[0]] = output  # the timed call was image 0's own call: not run again
        if scored:
            done = score_images(case, config, device, sink, protocol, dataset, ids, upscale, dtype, bar, reused)
    finally:
        bar.close()
    cost = {k: v for k, v in profile.items() if k in CaseRecord.__dataclass_fields__}
    if not scored:
        return replace(base, status=NO_WEIGHTS, n_images=0, metrics={m: None for m in config.metrics},
                       notes={m: NO_WEIGHTS_NOTE for m in config.metrics}, **cost)
    metrics, notes = aggregate([done[i] for i in ids], config.metrics)
    return replace(base, status=OK, n_images=len(ids), metrics=metrics, notes=notes, **cost)


def progress_bar(case: Case, total: int, enabled: bool) -> Any:
    return image_bar(case.case_id, total, enabled)


FLOPS_MAX_CALL_S = 5.0  # counting FLOPs costs about one more call: skipped (with a note) above this, unless "always"


def measure_cost(model: torch.nn.Module, upscale: Any, lr: torch.Tensor, size: tuple[int, int],
                 config: Config, device: torch.device) -> tuple[dict[str, Any], Any]:
    """Peak memory (first, while the process is fresh), timing statistics, FLOPs and params of one call.

    Returns the profile and the last timed call's output, which the caller may reuse as that input's result."""
    call = lambda: upscale(lr, size)  # noqa: E731
    memory_mb, memory_kind = (None, "")
    prof = config.profiling
    warmup = prof.warmup
    if prof.memory:
        memory_mb, memory_kind = peak_memory_mb(call, device)
        warmup = max(0, warmup - 1)  # the memory call was the first untimed call
    # Every method's timed calls (and frame rates) run under the same steady malloc setting; the memory call
    # above ran under the allocator's defaults (but for one arena, set when the case started), so the peak RSS is
    # not inflated by memory kept for reuse.
    apply_steady()
    per_call: list[dict[str, float]] = []

    def staged() -> Any:  # the same call, with its stages timed (methods mark them with asr_bench.stages.stage)
        with recording(device) as recorder:
            out = call()
        per_call.append(recorder.totals)
        return out

    times, output, timed_setup = time_until_stable(staged, device, warmup, prof.repeats, prof.max_repeats,
                                                   prof.rel_ci, prof.max_seconds)
    stats = timing_stats(times)
    stages = stage_medians(per_call[warmup:])
    flops, cost_notes = None, {}
    if timed_setup:  # e.g. the first call compiled the rasterizer (warm-up 0): taken out, said here
        cost_notes["time"] = describe_setup(timed_setup)
    if prof.flops == "always" or (prof.flops and stats["time_ms"] / 1000.0 <= FLOPS_MAX_CALL_S):
        flops = count_flops(call, model)
    elif prof.flops:
        cost_notes["flops"] = (f"not counted: one call takes {stats['time_ms'] / 1000.0:.1f} s "
                               "(set profiling.flops: always to count it)")
    profile = {
        **stats,
        "time_warmup": prof.warmup,
        "time_setup_ms": 1000.0 * sum(event.seconds for event in timed_setup),
        "memory_mb": memory_mb,
        "memory_kind": memory_kind,
        "params": params_that_ran(model, tuple(lr.shape[-2:]), size),
        "flops": flops,
        "output_mpix": size[0] * size[1] / 1e6,
        "cost_notes": cost_notes,
        "stages": stages,
        "profile_input": list(lr.shape[-2:]),
    }
    return profile, output


FRAMES = {"fps_720p_4k": ((720, 1280), 3), "fps_1080p_4k": ((1080, 1920), 2)}  # LR size, scale -> 3840x2160


def frame_rates(model: Any, upscale: Any, config: Config, device: torch.device, dtype: torch.dtype,
                notes: dict[str, str]) -> dict[str, float | None]:
    """Frames per second on a seeded random frame for each 4K target whose scale the method supports."""
    from ..upsampler import supports

    out: dict[str, float | None] = {}
    for name, ((h, w), scale) in FRAMES.items():
        if not supports(getattr(model, "scales", "any"), float(scale)):
            out[name] = None
            notes[name] = f"n/a (x{scale} unsupported)"
            continue
        frame = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device, dtype)
        size = (h * scale, w * scale)
        prof = config.profiling
        warmup = min(prof.warmup, 1)  # a 4K frame can take minutes on a CPU: `profiling.warmup: 0` skips it
        times, _, setup = time_until_stable(lambda: upscale(frame, size), device, warmup, 1,
                                            max(1, min(prof.max_repeats, 5)), prof.rel_ci, prof.max_seconds)
        out[name] = 1000.0 / timing_stats(times)["time_ms"]
        notes[name] = f"{len(times)} timed frame(s) after {warmup} warm-up, {frame_tiling(model, config, (h, w))}"
        if setup:
            notes[name] += "; " + describe_setup(setup)
    return out


def frame_tiling(model: Any, config: Config, lr_hw: tuple[int, int]) -> str:
    """The tile policy a frame ran under: the engine's tiles, the method's own (GSASR's `tile` option), or none."""
    engine = None if getattr(model, "tiling", "allowed") == "internal" else config.tiling.tile
    if engine:
        return f"engine-tiled ({engine} px LR tiles, overlap {config.tiling.overlap})"
    own = getattr(model, "tile", None)
    if isinstance(own, int) and min(lr_hw) > own:
        return f"tiled by the method ({own} px LR tiles)"
    return "whole frame"


def stage_medians(calls: list[dict[str, float]]) -> dict[str, float]:
    """Each stage's median over the timed calls (a stage a call did not enter counts 0 ms for it)."""
    names = list(dict.fromkeys(name for totals in calls for name in totals))
    return {name: float(statistics.median([totals.get(name, 0.0) for totals in calls])) for name in names}


# FLOPs per element of the element-wise work torch's counter leaves out (an exp counts as one, as in the ops'
# declarations): softmax = max, subtract, exp, sum, divide; LayerNorm = mean (1), centre (1), variance (2),
# normalise (1), scale and shift (2).
SOFTMAX_FLOPS_PER_ELEMENT = 5
LAYER_NORM_FLOPS_PER_ELEMENT = 7


def _numel(shape: Any) -> int:
    return math.prod(shape) if shape is not None else 0


def _linear_pointwise_flops(x_shape: Any, *args: Any, **kwargs: Any) -> int:
    """mkldnn::_linear_pointwise(x, w, b, attr, ...) and its .binary(x, other, w, b, attr): 2 M N K."""
    w_shape = args[0] if isinstance(args[2], str) else args[1]
    return 2 * _numel(x_shape[:-1]) * x_shape[-1] * w_shape[0]


def _softmax_flops(x_shape: Any, *args: Any, **kwargs: Any) -> int:
    return SOFTMAX_FLOPS_PER_ELEMENT * _numel(x_shape)


def _layer_norm_flops(x_shape: Any, *args: Any, **kwargs: Any) -> int:
    return LAYER_NORM_FLOPS_PER_ELEMENT * _numel(x_shape)


def extra_flop_formulas() -> dict[Any, Any]:
    """Formulas for what torch's counter does not count: oneDNN's fused linear (bias/ReLU/residual as post-ops,
    2MNK like addmm), softmax and LayerNorm."""
    aten = torch.ops.aten
    # Keys are overload packets: the counter looks ops up by packet.
    formulas: dict[Any, Any] = {aten._softmax: _softmax_flops, aten._log_softmax: _softmax_flops,
                                aten.native_layer_norm: _layer_norm_flops}
    mkldnn = getattr(torch.ops, "mkldnn", None)
    if mkldnn is not None and hasattr(mkldnn, "_linear_pointwise"):
        formulas[mkldnn._linear_pointwise] = _linear_pointwise_flops
    return formulas


def count_flops(call: Any, model: torch.nn.Module | None = None) -> float | None:
    """FLOPs of one call: torch's counter (matmuls, convolutions) plus `extra_flop_formulas` (fused linears,
    softmax, LayerNorm), with custom ops booking what their specs declare (asr_bench.ops.usage.op_flops).

    The counter's module tracker hooks the autograd graph of any input that requires grad, and a parameter
    fed to a submodule (a learned query, say) has no graph in inference mode: parameters are frozen meanwhile.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from ..ops.usage import counting_flops

    params = [p for p in (model.parameters() if model is not None else []) if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        with FlopCounterMode(display=False, custom_mapping=extra_flop_formulas()) as counter, \
                counting_flops(counter.get_total_flops) as declared:
            call()
        return float(counter.get_total_flops() + sum(declared.values()))
    except Exception:  # noqa: BLE001 - an op the counter cannot trace leaves FLOPs unknown, not the case failed
        return None
    finally:
        for p in params:
            p.requires_grad_(True)


def profiling_input(case: Case, config: Config, protocol: Any, dataset: Any, first_id: str) -> tuple[torch.Tensor, tuple[int, int]]:
    """The LR the cost is measured on and its output size: the dataset's first image, or a seeded random LR."""
    if config.profiling.input is None:
        lr, hr = protocol.lr_hr(dataset, first_id, case.scale, config.cache_dir)
        return lr, tuple(protocol.output_size(tuple(lr.shape[-2:]), tuple(hr.shape[-2:]), case.scale))
    from ..sizes import output_size

    h, w = config.profiling.input
    generator = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, h, w, generator=generator), tuple(output_size((h, w), case.scale))


def score_images(case: Case, config: Config, device: torch.device, sink: Sink, protocol: Any, dataset: Any,
                 ids: list[str], upscale: Any, dtype: torch.dtype, bar: Any,
                 reused: dict[str, Any] | None = None) -> dict[str, ImageRecord]:
    """Run and score every image not already stored; each result is handed on as soon as it exists."""
    from pathlib import Path

    from .visuals import save_crops, visual_dir

    done = dict(sink.done_images())
    bar.update(sum(i in done for i in ids))
    bar.set_postfix_str("")
    for index, image_id in enumerate(ids):
        if image_id in done:
            continue
        lr, hr = protocol.lr_hr(dataset, image_id, case.scale, config.cache_dir)
        size = tuple(protocol.output_size(tuple(lr.shape[-2:]), tuple(hr.shape[-2:]), case.scale))
        raw = reused.pop(image_id) if reused and image_id in reused else upscale(lr.to(device, dtype), size)
        sr = protocol.finalize(not_a_number_where_infinite(raw.float().cpu()))
        with method_failures():  # e.g. an output of the wrong size: this method's fault, not the input's
            values, notes = protocol.score(sr, hr, case.scale, list(config.metrics), case.dataset, config.weights_dir)
        if index == 0 and config.visuals.crop:
            save_crops(visual_dir(Path(sink.run_dir), case.dataset, case.scale_label, image_id), variant_label(case),
                       sr, hr, lr, config.visuals.crop, config.visuals.crop_at)
        if config.save_images:
            save_output(Path(sink.run_dir), case.dataset, case.scale_label, variant_label(case), image_id, sr)
        record = finite_record(ImageRecord(case_id=case.case_id, image=image_id, metrics=dict(values),
                                           notes=dict(notes), lr_size=tuple(lr.shape[-2:]), sr_size=tuple(sr.shape[-2:])))
        sink.add_image(record)
        done[image_id] = record
        bar.update(1)
    return done


def not_a_number_where_infinite(output: torch.Tensor) -> torch.Tensor:
    """+-inf becomes NaN: the protocol's clamp to [0, 1] would turn an infinite output into a plausible image (a
    method that output +inf everywhere scored 6.08 dB); as NaN it reads n/a (not finite) like a NaN output."""
    infinite = torch.isinf(output)
    return output.masked_fill(infinite, float("nan")) if bool(infinite.any()) else output


def finite_record(record: ImageRecord) -> ImageRecord:
    """A metric that came out NaN or infinite is stored as n/a with the value named (JSON has no NaN)."""
    for metric, value in list(record.metrics.items()):
        if isinstance(value, float) and not math.isfinite(value):
            record.metrics[metric] = None
            record.notes.setdefault(metric, f"n/a (not finite: {value})")
    return record


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
