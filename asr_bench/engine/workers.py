"""Supervised case workers: every case runs in a child process, so a crash is that case's error, not the run's end.

The worker never touches the store: it sends each result (profile, image, case) through a pipe and the supervising
process writes it, so one process per run folder holds the claims and writes, and a Ray task can collect the same
messages into a list for its driver. On CPU with memory profiling a worker serves one case (a fresh process, so
its peak RSS is that case's own); otherwise one worker serves case after case while it stays healthy and is
replaced after a crash. A worker exits when its supervisor's end of the lifeline pipe closes (a killed run must
not leave a worker writing).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

import torch

from .. import atomic
from ..config import Config
from ..errors import UserError, cannot_write
from .allocator import one_arena
from .cases import Case, load_plugins
from .execute import Sink, execute_case
from .records import CaseRecord, ImageRecord

POLL_S = 0.1
TIMED_OUT = "timed out after"  # how a case killed at profiling.case_timeout is recorded: "timed out after N s"


@dataclass
class Task:
    """What a worker needs for one case: the case, the config, and what earlier attempts stored."""

    case: Case
    config: Config
    device: str
    case_key: str
    run_dir: str
    provenance: dict[str, Any]
    done: dict[str, dict[str, Any]]
    profile: dict[str, Any] | None
    progress: bool
    umask: int | None = None  # the run's: a worker forks from a server started earlier, perhaps under another


class PipeSink:
    """The worker's side: results go to the supervisor as plain dicts."""

    def __init__(self, conn: Any, task: Task) -> None:
        self.conn, self.case_key, self.run_dir = conn, task.case_key, task.run_dir
        self._done = {k: ImageRecord.from_dict(v) for k, v in task.done.items()}
        self._profile = task.profile

    def done_images(self) -> dict[str, ImageRecord]:
        return dict(self._done)

    def profile(self) -> dict[str, Any] | None:
        return self._profile

    def add_image(self, record: ImageRecord) -> None:
        self.conn.send(("image", record.to_dict()))

    def put_profile(self, profile: dict[str, Any]) -> None:
        self.conn.send(("profile", profile))

    def put_case(self, record: CaseRecord) -> None:
        self.conn.send(("case", record.to_dict()))


def deliver(message: tuple[Any, ...], sink: Sink) -> None:
    kind, payload = message[0], message[1]
    if kind == "image":
        sink.add_image(ImageRecord.from_dict(payload))
    elif kind == "profile":
        sink.put_profile(payload)
    elif kind == "case":
        sink.put_case(CaseRecord.from_dict(payload))
    elif kind == "note":  # a line for the user (a compile starting): on its own line, above the bars
        from .console import write

        write(str(payload))


def died_error(died: str) -> str:
    """The error a case is stored with when its worker did not finish it (`Supervisor.run`'s reason)."""
    if died.startswith(TIMED_OUT):
        return f"{died} (profiling.case_timeout): its worker was stopped and the run went on"
    return f"worker process died ({died}) before the case finished"


def exit_reason(code: int | None) -> str:
    """'killed by signal 11 (SIGSEGV)', or 'exit code 1': a crash is named, not guessed at. Only SIGKILL is
    what the kernel's out-of-memory killer sends, so only it carries that hint."""
    if code is None or code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "unknown signal"
    hint = ", e.g. by the out-of-memory killer" if name == "SIGKILL" else ""
    return f"killed by signal {-code} ({name}{hint})"


_PRELOADED = False


def context() -> Any:
    """forkserver: workers fork from a clean server that has already imported torch (fast, and fork-safe)."""
    global _PRELOADED
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    if not _PRELOADED:
        # Everything this process has imported without error by now (torch, the method plugins, protocols,
        # metrics): imported once in the server, so each worker starts in milliseconds, not seconds.
        ours = sorted(name for name in sys.modules if name.startswith("asr_bench.") and sys.modules[name] is not None)
        heavy = ["torch", "torch._dynamo", "torch.utils.flop_counter", "numpy", "PIL.Image", "tqdm",
                 "skimage.data", "skimage.io"]  # torch imports _dynamo lazily on the first call of many ops:
        # seconds per worker if not done here, once.
        ctx.set_forkserver_preload([*heavy, *ours, "asr_bench.engine.workers"])
        _PRELOADED = True
    return ctx


class Supervisor:
    """Runs tasks in a child process and forwards their results to a sink; survives the child's death."""

    def __init__(self, fresh_per_case: bool) -> None:
        self.fresh_per_case = fresh_per_case
        self.worker: Any = None
        self.warnings: list[str] = []

    def _start(self) -> None:
        ctx = context()
        self.tasks_out, tasks_in = ctx.Pipe(duplex=False)[::-1]
        self.results_in, results_out = ctx.Pipe(duplex=False)
        lifeline, self.keep_alive = ctx.Pipe(duplex=False)
        self.worker = ctx.Process(target=worker_main, args=(tasks_in, results_out, lifeline), daemon=False)
        self.worker.start()
        for end in (tasks_in, results_out, lifeline):
            end.close()

    def run(self, task: Task, sink: Sink) -> str | None:
        """Run one task; None when it finished, else why the worker died. A UserError in the worker is raised here."""
        if self.worker is None or not self.worker.is_alive():
            self._start()
        if task.umask is None:
            task = replace(task, umask=atomic.current_umask())  # files the worker writes get the run's umask
        try:
            self.tasks_out.send(task)
            outcome = self._pump(sink, task.config.profiling.case_timeout)
        except BaseException:
            self.stop(kill=True)
            raise
        if outcome is not None or self.fresh_per_case:
            self.stop(kill=outcome is not None)
        return outcome

    def _deliver_leftovers(self, sink: Sink) -> None:
        """Hand on the messages a worker sent before it died or was killed (its last images, a profile)."""
        while self.results_in.poll(0):
            try:
                message = self.results_in.recv()
            except EOFError:
                return
            if message[0] not in ("done", "user_error"):
                deliver(message, sink)

    def _pump(self, sink: Sink, timeout: float | None = None) -> str | None:
        """Forward the worker's messages until it says done; why it died otherwise. Past `timeout` seconds the
        worker is killed (a method that never returns must not hold the run): 'timed out after N s'."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None and time.monotonic() > deadline and self.worker.is_alive():
                self.worker.kill()
                self.worker.join()
                self._deliver_leftovers(sink)  # what it sent before it was killed (images scored so far)
                return f"{TIMED_OUT} {timeout:g} s"
            if self.results_in.poll(POLL_S):
                try:
                    message = self.results_in.recv()
                except EOFError:
                    message = None
                if message is not None:
                    if message[0] in ("done", "user_error"):
                        self.warnings.extend(message[2])
                        if message[0] == "user_error":
                            raise UserError(message[1])
                        return None
                    deliver(message, sink)
                    continue
            if not self.worker.is_alive():
                self._deliver_leftovers(sink)  # what it sent before it died
                self.worker.join()
                return exit_reason(self.worker.exitcode)

    def stop(self, kill: bool = False) -> None:
        if self.worker is None:
            return
        if kill and self.worker.is_alive():
            self.worker.kill()
        else:
            try:
                self.tasks_out.send(None)
            except (OSError, BrokenPipeError):
                pass
        self.worker.join(timeout=30)
        if self.worker.is_alive():
            self.worker.kill()
            self.worker.join()
        for end in (self.tasks_out, self.results_in, self.keep_alive):
            end.close()
        self.worker = None


def worker_main(tasks: Any, results: Any, lifeline: Any) -> None:
    one_arena()  # before the lifeline's or any case's thread allocates (allocator.py)
    _exit_with_run(lifeline)
    from ..ops import build

    # The supervisor draws the progress bars: a note printed here would land on the bar's line.
    build.compile_notice = lambda op, backend: results.send(("note", build.compile_text(op, backend)))
    while True:
        try:
            task = tasks.recv()
        except EOFError:
            return
        if task is None:
            return
        if task.umask is not None:
            os.umask(task.umask)
        with warnings.catch_warnings(record=True) as caught:  # handed to the run, which shows each one once
            warnings.simplefilter("always")
            try:
                load_plugins(task.config.plugins)
                execute_case(task.case, task.config, torch.device(task.device), PipeSink(results, task),
                             task.progress, task.provenance)
                message: tuple[str, str] = ("done", "")
            except UserError as exc:
                message = ("user_error", str(exc))
            except OSError as exc:  # a full or read-only disk (saving crops) stops the run in one line
                if cannot_write(exc) is None:
                    raise
                message = ("user_error", str(cannot_write(exc)))
        results.send((*message, [f"{w.category.__name__}: {w.message}" for w in caught]))


def _exit_with_run(lifeline: Any) -> None:
    """A killed run must not leave its worker writing: exit when the supervisor's end of the pipe closes.

    (The worker's parent is the fork server, which outlives a killed run while any worker lives, so a
    parent-death signal is not enough.)"""
    def wait() -> None:
        try:
            lifeline.recv()
        except (EOFError, OSError):
            pass
        os._exit(1)

    threading.Thread(target=wait, name="asr-bench-lifeline", daemon=True).start()
