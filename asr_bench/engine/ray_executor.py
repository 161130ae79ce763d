"""`--executor ray`: each case is a Ray task (one GPU per case on CUDA, one CPU otherwise); the driver writes the store.

Inside the task the case still runs in a supervised worker process (a crash is that case's error, CPU peak memory
is the case's own), and its results come back to the driver as the same messages a local worker sends, so the
driver is the only process that writes the run folder. Ray retries a task whose worker was lost once
(`max_retries=1`); a second loss is recorded as the case's error.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from .. import atomic
from ..config import Config
from ..errors import UserError
from .console import show_once
from .execute import base_record, case_supported, make_protocol, unsupported_record
from .records import ERROR, CaseRecord, ImageRecord
from .store import RunStore
from .workers import Supervisor, Task, deliver, died_error


class ListSink:
    """Collects a case's results as plain messages (what the Ray task returns to the driver)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def add_image(self, record: ImageRecord) -> None:
        self.messages.append(("image", record.to_dict()))

    def put_profile(self, profile: dict[str, Any]) -> None:
        self.messages.append(("profile", profile))

    def put_case(self, record: CaseRecord) -> None:
        self.messages.append(("case", record.to_dict()))


def ray_case(task: Task, fresh: bool) -> dict[str, Any]:
    """The Ray task: one case in a supervised worker; returns its messages, or why the worker died."""
    sink = ListSink()
    supervisor = Supervisor(fresh_per_case=fresh)
    try:
        died = supervisor.run(task, sink)  # type: ignore[arg-type]
    except UserError as exc:
        return {"user_error": str(exc), "messages": sink.messages, "warnings": supervisor.warnings}
    finally:
        supervisor.stop()
    return {"messages": sink.messages, "died": died, "warnings": supervisor.warnings}


CONNECT_TIMEOUT_S = 3.0


def check_reachable(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, in one line, when nothing listens at `--ray-address host:port` (`ray://host:port` too): ray.init
    would retry for minutes, logging as it goes. 'auto' and no address are Ray's to resolve."""
    import socket

    if not address or address == "auto":
        return
    target = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"--ray-address {address!r} is not host:port (e.g. 127.0.0.1:6379, as `ray start --head` "
                        "prints it) or 'auto'.")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise UserError(f"no Ray cluster answers at {address} ({why} within {timeout:g} s); start one with "
                        "`ray start --head` and pass the address it prints, or run without --executor ray.") from None


def run_on_ray(todo: list[Any], config: Config, device: torch.device, store: RunStore, progress: bool,
               address: str | None, console: Any) -> None:
    from .execute import StoreSink

    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'asr-bench[cluster]' (or pip install ray), "
                        "or run without --executor.") from None
    started_here = not ray.is_initialized()
    if started_here:
        check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=progress)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"could not reach a Ray cluster at {address or 'a new local one'} "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                            "check --ray-address (ray start --head prints it).") from None
    remote = ray.remote(num_gpus=1 if device.type == "cuda" else 0, num_cpus=1, max_retries=1)(ray_case)
    fresh = device.type == "cpu" and config.profiling.memory
    worker_device = "cuda" if device.type == "cuda" else str(device)  # Ray gives each task its GPU as cuda:0
    pending: dict[Any, Any] = {}
    try:
        umask = atomic.current_umask()
        for item in todo:
            case = item.case
            if not case_supported(case):
                record = unsupported_record(case, config, device, item.provenance)
                store.put_case(record, item.key)
                console.finish_case(record)
                continue
            if not store.claim(case.case_id, item.key):
                continue  # another process is computing it; it stores the result
            sink = StoreSink(store, case.case_id, item.key)
            task = Task(case, config, worker_device, item.key, str(store.run_dir), item.provenance,
                        {k: v.to_dict() for k, v in sink.done_images().items()}, sink.profile(), False,
                        umask=umask)  # the driver's: a Ray worker was started under whatever umask its node had
            pending[remote.remote(task, fresh)] = item
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            item = pending.pop(ready[0])
            collect(ray, ready[0], item, config, device, store)
            record = store.finished(item.case.case_id)
            if record is not None:
                console.finish_case(record)
    finally:
        for ref, item in pending.items():
            ray.cancel(ref, force=True)
            store.release(item.case.case_id)
        if started_here:
            ray.shutdown()


def collect(ray: Any, ref: Any, item: Any, config: Config, device: torch.device, store: RunStore) -> None:
    """Write one finished Ray task's results into the store (or its error)."""
    from .execute import StoreSink

    case = item.case
    sink = StoreSink(store, case.case_id, item.key)
    try:
        result = ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - a task lost twice (or a Ray failure) is this case's error
        result = {"messages": [], "died": f"Ray task failed after one retry: {type(exc).__name__}: "
                                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"}
    try:
        if "user_error" in result:
            raise UserError(result["user_error"])
        for message in result["messages"]:
            deliver(message, sink)
        show_once(result.get("warnings", []))
        if result.get("died") and store.finished(case.case_id, item.key) is None:
            base = base_record(case, config, device, make_protocol(config).label, item.provenance)
            store.put_case(replace(base, status=ERROR,
                                   error=died_error(result['died'])), item.key)
    finally:
        store.release(case.case_id)
