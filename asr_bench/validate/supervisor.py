"""Run validation steps one by one, each in its own process under a time limit, and keep the report current.

Why a process per step: a step can hang (a deadlocked kernel, a compile waiting on a lock) or crash the
interpreter (a segfault in a compiled op); in a child process the supervisor cuts it at its limit (the whole
process group, so its own children, pytest or a memory-measuring worker, go too), records why, and runs the
next step. A step is a function `f(params) -> dict` named `"module:function"`; the child
(`python -m asr_bench.validate.child`) imports it, runs it and writes its result as JSON. The report (Markdown
and JSON) is rewritten atomically after every step, so a run that is stopped keeps what it measured.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import atomic, jsontext

PASS, FAIL, SKIP, TIMEOUT, PENDING = "pass", "FAIL", "skip", "TIMEOUT", "pending"
MIN_STEP_S = 5.0  # no step is given less, whatever the budget (an interpreter and torch take seconds to start)


@dataclass(frozen=True)
class Step:
    """One step: its name, the function the child runs ("module:function") and its share of the budget."""

    name: str
    target: str
    weight: float
    what: str  # one line: what the step checks (report and docs)


@dataclass
class StepResult:
    """What one step reported (or why it has no report: a crash, a time limit)."""

    name: str
    what: str
    status: str = PENDING
    summary: str = ""
    seconds: float | None = None
    limit_s: float | None = None
    tables: list[dict[str, Any]] = field(default_factory=list)  # {"title", "columns", "rows"}
    details: dict[str, Any] = field(default_factory=dict)
    log: str = ""  # the step's console output file, relative to the report folder

    @property
    def failed(self) -> bool:
        return self.status in (FAIL, TIMEOUT)


def step_limits(weights: Sequence[float], budget_s: float, spent_s: float) -> float:
    """The limit of the next step: the budget left, shared by weight among the steps left (time a fast step
    did not use goes to the later ones), never below MIN_STEP_S."""
    left = max(0.0, budget_s - spent_s)
    total = sum(weights)
    share = left * weights[0] / total if total > 0 else left
    return max(MIN_STEP_S, share)


def run_steps(steps: Sequence[Step], params: dict[str, Any], out_dir: Path, budget_s: float,
              header: dict[str, Any], env: dict[str, str] | None = None,
              echo: Callable[[str], None] = print) -> list[StepResult]:
    """Run `steps` in order under `budget_s` seconds; write `out_dir`/validate.{md,json} after each one."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "logs").mkdir(exist_ok=True)
    results = [StepResult(step.name, step.what) for step in steps]
    write_report(out_dir, header, results)
    begin = time.monotonic()
    width = max((len(step.name) for step in steps), default=0)
    for index, (step, result) in enumerate(zip(steps, results, strict=True)):
        limit = step_limits([s.weight for s in steps[index:]], budget_s, time.monotonic() - begin)
        run_one(step, result, params, out_dir, limit, env)
        if result.details.get("device_name"):  # the environment step names the GPU/CPU for the title
            header = {**header, "device_name": result.details["device_name"]}
        line = (f"[{index + 1}/{len(steps)}] {step.name:<{width}}  {result.status:<7} {result.seconds:7.1f} s "
                f"(limit {limit:.0f} s)  {result.summary}")
        echo(line)
        write_report(out_dir, header, results)
    return results


def run_one(step: Step, result: StepResult, params: dict[str, Any], out_dir: Path, limit_s: float,
            env: dict[str, str] | None = None) -> None:
    """Run one step in a child process, cut at `limit_s`; fill `result` in place."""
    result.limit_s = round(limit_s, 1)
    result.log = f"logs/{step.name}.log"
    work = out_dir / "steps" / step.name
    work.mkdir(parents=True, exist_ok=True)
    answer = work / "result.json"
    answer.unlink(missing_ok=True)
    arguments = {**params, "limit_s": limit_s, "work_dir": str(work)}
    command = [sys.executable, "-m", "asr_bench.validate.child", step.target, json.dumps(arguments), str(answer)]
    start = time.monotonic()
    with open(out_dir / result.log, "w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **(env or {})}, start_new_session=True)
        try:
            code = process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            code = None
        except BaseException:  # Ctrl-C: take the step's processes down with us
            _kill_group(process)
            raise
        finally:
            _kill_group(process, only_children=True)  # a step's stray grandchildren do not outlive it
    result.seconds = round(time.monotonic() - start, 2)
    if code is None:
        result.status, result.summary = TIMEOUT, f"cut at its {limit_s:.0f} s limit (see {result.log})"
        return
    try:
        reported = json.loads(answer.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        reported = None
    if reported is None:
        result.status = FAIL
        result.summary = f"the step's process ended with code {code} without a result: {_last_line(out_dir / result.log)}"
        return
    result.status = reported.get("status", FAIL)
    result.summary = str(reported.get("summary", ""))
    result.tables = list(reported.get("tables", []))
    result.details = dict(reported.get("details", {}))


def _kill_group(process: subprocess.Popen, only_children: bool = False) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if not only_children:
        process.wait()


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no output)"
    return lines[-1][:300] if lines else "(no output)"


# --------------------------------------------------------------------------------------------- the report


def exit_code(results: Sequence[StepResult]) -> int:
    """0 when no step failed or ran out of time (skipped steps say why in the report), else 1."""
    return 1 if any(r.failed for r in results) else 0


def write_report(out_dir: Path, header: dict[str, Any], results: Sequence[StepResult]) -> None:
    """validate.json and validate.md, each replaced atomically (a reader sees the old file or the new one)."""
    data = {**header, "updated": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()) + " UTC",
            "finished": all(r.status != PENDING for r in results), "exit_code": exit_code(results),
            "steps": [asdict(r) for r in results]}
    _atomic_write(out_dir / "validate.json", jsontext.dumps(data, indent=1))  # inf/NaN as null
    _atomic_write(out_dir / "validate.md", markdown(data))


def _atomic_write(path: Path, text: str) -> None:
    atomic.write_text(path, text)  # the package's one atomic writer (owner-tagged temp, fsync, umask mode)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def markdown(data: dict[str, Any]) -> str:
    """The report as Markdown: the header, one summary row per step, then each step's tables."""
    state = ("finished" if data["finished"] else "running") + f", exit code {data['exit_code']}"
    lines = [f"# asr-bench validate: {data.get('device_name', data.get('device', '?'))}", "",
             f"`{data.get('command', '')}`", "",
             (f"device {data.get('device')}, budget {data.get('budget_s')} s, "
              f"{'reduced sizes (CPU form)' if data.get('reduced') else 'full sizes'}; "
              f"started {data.get('started')}, updated {data['updated']} ({state})"), "",
             *markdown_table(("step", "status", "time", "limit", "summary"),
                             [(r["name"], r["status"], None if r["seconds"] is None else f"{r['seconds']:.1f} s",
                               None if r["limit_s"] is None else f"{r['limit_s']:.0f} s", r["summary"])
                              for r in data["steps"]])]
    for r in data["steps"]:
        if r["status"] == PENDING:
            continue
        lines += ["", f"## {r['name']}: {r['status']}", "", f"{r['what']}. {r['summary']} (log: `{r['log']}`)"]
        for table in r["tables"]:
            lines += ["", f"**{table.get('title', '')}**", "", *markdown_table(table["columns"], table["rows"])]
    return "\n".join(lines) + "\n"
