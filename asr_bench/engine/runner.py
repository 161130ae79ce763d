"""The benchmark loop: plan the cases, give each its provenance key, run each one in a supervised worker, store
every result the moment it exists.

A rerun skips a case only when the store holds it under the same provenance key (anything that can change its
numbers changed -> it is recomputed); a case interrupted mid-way continues after its last stored image. Several
processes may share a run folder (two configs, or the shards of one sweep): each case is claimed before it is
computed, so it is computed once, and a process waits at the end for the cases it planned that another process
is still computing (or takes them over if that process died).

What stops a run and what does not: a user mistake (bad name, missing folder, unreadable image, checkpoint that
does not fit) raises `UserError` at once, since every later case would hit it too; anything else a case raises
(out of memory, a bug in one method, a segfault in its worker) is stored as that case's error and the run goes on.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..config import Config, config_hash
from ..errors import UserError
from .cases import Case, check_names, plan_cases, resolve_methods
from .environment import environment, live_backends, resolve_device
from .peak import gemm_peak
from .execute import (DTYPES, NO_WEIGHTS_NOTE, UNSUPPORTED_NOTE, StoreSink, aggregate, base_record,  # noqa: F401
                      case_supported, count_flops, execute_case, make_protocol, one_line, unsupported_record)
from .console import RunConsole, forget_shown, show_once
from .records import ERROR, CaseRecord
from .shards import Shard, database_name, resolve_shard, select
from .store import RunStore
from .workers import Supervisor, Task, died_error, exit_reason  # noqa: F401 - exit_reason: part of the runner's API

WAIT_POLL_S = 1.0


@dataclass
class RunResult:
    run_dir: Path
    cases: list[CaseRecord]
    failed: int


@dataclass
class Planned:
    case: Case
    provenance: dict[str, Any]

    @property
    def key(self) -> str:
        return self.provenance["case_key"]


# ---------------------------------------------------------------- the run


def run_benchmark(config: Config, progress: bool = True, retry_errors: bool = False, isolate: bool = True,
                  render: bool = True, shard: str | Shard | None = None, executor: str = "local",
                  ray_address: str | None = None, db_per_shard: bool | None = None) -> RunResult:
    """Run (or resume) every case of `config` (or of its `shard`); returns the case records in plan order.

    `isolate=False` runs cases in this process (for tests and debugging: a crash then ends the run)."""
    resolve_methods(config)  # unknown methods first: the most common typo
    all_cases = plan_cases(config, check_names(config))
    the_shard = resolve_shard(shard)
    device = resolve_device(config.device, the_shard)
    store = RunStore(config.run_dir(), database_name(config.run_dir(), the_shard, db_per_shard))
    for line in store.repairs:  # the integrity check on open: what it dropped, so it is computed again
        print(f"repaired {line}", file=sys.stderr)
    planned = [Planned(case, provenance) for case, provenance in with_provenance(select(all_cases, the_shard),
                                                                                   config, device)]
    store.write_run(run_json(config, device, all_cases, the_shard), shard=the_shard.label if the_shard else "")
    store.start_heartbeat()
    forget_shown()
    console = RunConsole(len(planned), progress)
    todo = []
    for item in planned:
        done = store.finished(item.case.case_id, item.key)
        if done is not None and retry_errors and done.status == ERROR:
            store.drop_case(item.case.case_id)
            done = None
        if done is None:
            todo.append(item)
        else:
            console.skip()
    try:
        if executor == "ray":
            from .ray_executor import run_on_ray

            run_on_ray(todo, config, device, store, progress, ray_address, console)
        elif executor == "local":
            run_local(todo, config, device, store, progress, isolate, console)
        else:
            raise UserError(f"unknown executor '{executor}'; use local (default) or ray.")
    finally:
        console.close()
    records = [store.finished(p.case.case_id) or store.record(p.case.case_id)[1] for p in planned]  # type: ignore[index]
    finished = store.read_run_row()
    finished.setdefault("environment", {})["op_backends"] = live_backends()  # what the cases compiled and used
    store.write_run(finished)
    store.export_views()
    store.close()
    if render:
        render_run(config.run_dir())
    return RunResult(config.run_dir(), records, sum(r.status == ERROR for r in records))


def with_provenance(cases: list[Case], config: Config, device: torch.device) -> list[tuple[Case, dict[str, Any]]]:
    """Each case with its provenance (datasets resolved once; file hashes come from a cache on reruns)."""
    from ..data.catalogue import resolve_dataset
    from .provenance import case_provenance

    protocol = make_protocol(config)
    datasets: dict[str, Any] = {}
    out = []
    for case in cases:
        if case.dataset_ref not in datasets:
            datasets[case.dataset_ref] = resolve_dataset(case.dataset_ref, data_root=config.data_root)
        out.append((case, case_provenance(case, config, device, datasets[case.dataset_ref], protocol)))
    return out


def run_local(todo: list[Planned], config: Config, device: torch.device, store: RunStore, progress: bool,
              isolate: bool, console: RunConsole) -> None:
    """Claim and run each case here; then wait for the planned cases another process was computing."""
    supervisor = Supervisor(fresh_per_case=device.type == "cpu" and config.profiling.memory) if isolate else None
    waiting: list[Planned] = []
    try:
        for item in todo:
            if not run_claimed(item, config, device, store, progress, supervisor, console):
                waiting.append(item)
        announced = False
        while waiting:
            still = []
            for item in waiting:
                done = store.finished(item.case.case_id, item.key)
                if done is not None:
                    console.finish_case(done)
                    continue
                if not run_claimed(item, config, device, store, progress, supervisor, console):
                    still.append(item)
            waiting = still
            if waiting:
                if not announced:
                    holder = store.claimed_elsewhere(waiting[0].case.case_id) or "another process"
                    print(f"waiting for {len(waiting)} case(s) being computed by {holder} in {store.run_dir}",
                          file=sys.stderr)
                    announced = True
                time.sleep(WAIT_POLL_S)
    finally:
        if supervisor is not None:
            show_once(supervisor.warnings)
            supervisor.stop()


def run_claimed(item: Planned, config: Config, device: torch.device, store: RunStore, progress: bool,
                supervisor: Supervisor | None, console: RunConsole) -> bool:
    """Compute one case if this process can claim it; False when a live process holds it."""
    case = item.case
    if not case_supported(case):  # no model runs: stored at once (identical from any process)
        console.start_case(case.case_id)
        record = unsupported_record(case, config, device, item.provenance)
        store.put_case(record, item.key)
        console.finish_case(record)
        return True
    if not store.claim(case.case_id, item.key):
        done = store.finished(case.case_id, item.key)  # stored meanwhile by another process: done
        if done is not None:
            console.finish_case(done)
        return done is not None
    console.start_case(case.case_id)
    compute(item, config, device, store, progress, supervisor)  # an exception here ends the run (console closed)
    record = store.finished(case.case_id)
    if record is not None:
        console.finish_case(record)
    return True


def compute(item: Planned, config: Config, device: torch.device, store: RunStore, progress: bool,
            supervisor: Supervisor | None) -> None:
    """Run a claimed case in a worker (or here), store what it produced, release the claim."""
    case = item.case
    sink = StoreSink(store, case.case_id, item.key)
    if supervisor is None:
        try:
            execute_case(case, config, device, sink, progress, item.provenance)
        finally:
            store.release(case.case_id)
        return
    task = Task(case, config, str(device), item.key, str(store.run_dir), item.provenance,
                {k: v.to_dict() for k, v in sink.done_images().items()}, sink.profile(), progress)
    try:
        died = supervisor.run(task, sink)
    finally:
        show_once(supervisor.warnings)
        supervisor.warnings.clear()
        store.release(case.case_id)
    if died is not None and store.finished(case.case_id, item.key) is None:
        base = base_record(case, config, device, make_protocol(config).label, item.provenance)
        store.put_case(replace(base, status=ERROR, error=died_error(died)), item.key)


def run_json(config: Config, device: torch.device, cases: list[Case], shard: Shard | None) -> dict[str, Any]:
    return {
        "name": config.name,
        "started": time.time(),
        "host": os.uname().nodename if hasattr(os, "uname") else "",
        "shard": shard.label if shard else None,
        "config": config.to_dict(),
        "config_hash": config_hash(config),
        "cases": [c.case_id for c in cases],
        "environment": environment(device),
        "gemm_peak": gemm_peak(str(device)),  # the cost table's "% of GEMM peak" yardstick, once per run
    }


def render_run(run_dir: Path) -> dict[str, Any]:
    """Tables and report.html (the report package), if it is installed in this checkout."""
    try:
        from ..report import render_report
    except ImportError:
        return {}
    return render_report(Path(run_dir), published_dir=published_dir())


def published_dir() -> Path | None:
    """results/published of the current folder, else the numbers shipped with the package."""
    from ..resources import published_dir as shipped

    return shipped()
