"""What the numbers were measured on: stored in run.json beside the results, shown by `doctor`."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]


def resolve_device(name: str, shard: Any = None) -> torch.device:
    """`auto` -> cuda when available, else cpu; an unavailable cuda is a user error, not a crash mid-run.

    Under torchrun (`shard.local_rank` set) a device without an index is this process's GPU, cuda:LOCAL_RANK."""
    from ..errors import UserError

    local_rank = getattr(shard, "local_rank", None)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and local_rank is not None:
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"config key 'device' is 'mps' but this machine has no usable Apple-silicon GPU "
                        f"(torch {torch.__version__}, {sys.platform}); use --set device=cpu or device: auto.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"config key 'device' is '{name}' but this machine has no usable CUDA device "
                        f"(torch {torch.__version__}); use --set device=cpu or device: auto.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device '{name}' does not exist; this machine has {torch.cuda.device_count()} CUDA device(s).")
    return device


def git_commit() -> str | None:
    """The checkout's commit (+ '-dirty' when files differ), or None outside a git checkout."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def live_backends() -> dict[str, Any]:
    """The custom ops' backends that work on this machine ({} until the ops package provides them)."""
    try:
        from ..ops.backends import live_backends as probe
    except ImportError:
        return {}
    try:
        return dict(probe(compile=False))  # what is built; a run compiles on first use of an op
    except Exception as exc:  # noqa: BLE001 - a broken build must not stop a run; it is recorded instead
        return {"error": f"{type(exc).__name__}: {exc}"}


def cpu_model() -> str:
    """The CPU's marketing name ('AMD EPYC 7763 64-Core Processor'); platform.processor() is often empty on Linux."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "cpu_model": cpu_model()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    else:
        info.update(cpu=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
                    torch_threads=torch.get_num_threads())
    return info


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, device, backends live, git commit: everything that may change a time or a number."""
    from .. import __version__

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "asr_bench": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "torch_cuda": torch.version.cuda,
        **device_info(device),
        "git_commit": git_commit(),
        "op_backends": live_backends(),
        "allocator": allocator_setting(),
    }


def allocator_setting() -> dict[str, Any]:
    """The malloc setting every case worker applies (asr_bench/engine/allocator.py)."""
    from .allocator import describe

    return describe()
