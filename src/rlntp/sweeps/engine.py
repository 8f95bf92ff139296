"""Running a sweep: ordinary run directories, pre-training before the post-training that needs it, one table.

Layout of a sweep directory:

    sweep.json        the sweep as given (`rlntp sweep`) or the recipe's (`rlntp reproduce`)
    status.json       the sweep process (pid, host) and each run's state, error and seconds
    results.parquet   one row per run and evaluation: the run's state, every config field, every metric
    runs/NAME/        one ordinary run directory per run (`rlntp eval` and `rlntp plot` read them)

Rerunning a sweep skips finished runs (their last checkpoint is at their last step), resumes every
other one from its checkpoints, and retries the ones that failed; a run whose pre-training failed is
skipped. A run that fails is recorded with its error and the rest of the sweep goes on.
"""

import json
import os
import signal
import socket
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from rlntp import runs
from rlntp.errors import Interrupted, RunDirError, UserError
from rlntp.files import atomic_write_text
from rlntp.sweeps.executors import ExecutorConfig, make_executor
from rlntp.sweeps.spec import Job

RUNS, STATUS, RESULTS = "runs", "status.json", "results.parquet"
STATES = ("done", "running", "failed", "skipped", "partial", "pending")
"""partial: started and stopped before its last step (a rerun resumes it); pending: not started"""


class SweepFailed(UserError):
    """Some runs of a sweep failed; the others finished and the results table holds them all."""

    exit_code = 1


class SweepInterrupted(UserError):
    """The sweep was stopped (Ctrl-C, SIGTERM); rerunning the same command continues it."""

    exit_code = 130


def run_sweep(jobs: list[Job], out: Path, executor: ExecutorConfig, progress: bool = True) -> Path:
    """Run every job not yet finished under `out` (held by the caller); write status.json and results.parquet.

    Returns the results table's path. SweepFailed (after every other run finished) if any run failed,
    SweepInterrupted on Ctrl-C or SIGTERM (the runs in flight are stopped and resume on a rerun).
    """
    out = Path(out).resolve()
    runs_dir = out / RUNS
    by_name = {job.name: job for job in jobs}
    states = {name: state if state["state"] == "done" else {"state": "pending"}  # finished earlier: keep its time
              for name, state in read_states(jobs, out).items()}
    todo = [job for job in jobs if states[job.name]["state"] != "done"]
    lost: Counter[str] = Counter()
    finished = len(jobs) - len(todo)
    bar = tqdm(total=len(jobs), initial=finished, unit="run", desc=f"sweep {out.name}", disable=not progress,
               dynamic_ncols=True)
    pool = make_executor(executor, progress) if todo else None
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        in_flight: set[str] = set()
        while todo or in_flight:
            for job in list(todo):
                if len(in_flight) >= pool.slots:
                    break
                source = states[job.source]["state"] if job.source else "done"
                if source in ("failed", "skipped"):
                    states[job.name] = {"state": "skipped", "error": f"its pre-training {job.source} failed"}
                elif source == "done":
                    pool.submit(job.name, job, str(runs_dir))
                    states[job.name] = {"state": "running"}
                    in_flight.add(job.name)
                else:
                    continue
                todo.remove(job)
                bar.update(states[job.name]["state"] == "skipped")
            _write_status(out, states)
            for name, outcome in pool.wait(timeout=2.0) if in_flight else []:
                in_flight.discard(name)
                if outcome["state"] == "lost" and lost[name] < 2:
                    lost[name] += 1  # its worker died: run it again, from its checkpoints
                    states[name] = {"state": "pending"}
                    todo.insert(0, by_name[name])
                    continue
                states[name] = outcome | {"state": "done" if outcome["state"] == "done" else "failed"}
                bar.update(1)
                failed = sum(s["state"] == "failed" for s in states.values())
                bar.set_postfix_str(f"running {len(in_flight)}" + (f", failed {failed}" if failed else ""))
            bar.refresh()
    except (KeyboardInterrupt, Interrupted):
        raise SweepInterrupted("sweep interrupted; rerun the same command to continue it (finished runs are "
                               "kept, the others resume from their checkpoints)") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        if pool is not None:
            pool.close()
        bar.close()
        for state in states.values():
            if state["state"] == "running":
                state["state"] = "partial"
        _write_status(out, states)
        write_results(jobs, out, states)
    failed = [(name, s["error"]) for name, s in states.items() if s["state"] == "failed"]
    if failed:
        shown = "; ".join(f"{name}: {error}" for name, error in failed[:3])
        raise SweepFailed(f"{len(failed)} of {len(jobs)} runs failed ({shown}{'; ...' if len(failed) > 3 else ''}); "
                          f"the others finished; details in {out / STATUS}; rerunning retries the failed ones")
    return out / RESULTS


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def is_done(runs_dir: Path, job: Job) -> bool:
    """Whether a job's run directory holds its checkpoint at its last step (written after its last metrics)."""
    steps = runs.checkpoint_steps(runs_dir / job.name)
    return bool(steps) and steps[-1] >= job.steps


def _write_status(out: Path, states: dict[str, dict[str, Any]]) -> None:
    status = {"pid": os.getpid(), "host": socket.gethostname(), "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
              "runs": states}
    atomic_write_text(out / STATUS, json.dumps(status, indent=1) + "\n")


def read_states(jobs: list[Job], out: Path) -> dict[str, dict[str, Any]]:
    """Each job's state as the directory shows it now (what `rlntp sweep --status` prints), read-only.

    `running` only while the sweep process recorded in status.json is alive on this host (or on
    another host, which this one cannot check).
    """
    out = Path(out)
    try:
        status = json.loads((out / STATUS).read_bytes())
        recorded = status["runs"]
    except (OSError, ValueError, KeyError, TypeError):
        status, recorded = {}, {}
    alive = status.get("host") != socket.gethostname() or _alive(status.get("pid"))
    states = {}
    for job in jobs:
        saved = recorded.get(job.name) if isinstance(recorded.get(job.name), dict) else {}
        if is_done(out / RUNS, job):
            state = {"state": "done"} | {k: v for k, v in saved.items() if k == "seconds"}
        elif saved.get("state") == "running" and alive:
            state = {"state": "running"}
        elif saved.get("state") in ("failed", "skipped"):
            state = saved
        elif (out / RUNS / job.name / runs.METRICS).exists():
            state = {"state": "partial"}
        else:
            state = {"state": "pending"}
        states[job.name] = state
    return states


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status_report(jobs: list[Job], out: Path) -> str:
    """What is done, running, failed, skipped, partial (resumes on a rerun) and pending, run by run."""
    states = read_states(jobs, out)
    counts = Counter(s["state"] for s in states.values())
    lines = [f"{out}: {len(jobs)} runs: " + ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])]
    for name, state in states.items():
        if state["state"] != "done":
            lines.append(f"  {state['state']:8s} {name}" + (f": {state['error']}" if state.get("error") else ""))
    return "\n".join(lines)


def write_results(jobs: list[Job], out: Path, states: dict[str, dict[str, Any]]) -> Path:
    """results.parquet: one row per run and evaluation (a run with none: one row), every config field a column.

    Columns: run, stage, group, source, source_step, state, error; task.*, model.*, train.* (for a
    post-training run: its pre-training's), post.*; then step, samples_seen, rl_samples and every
    metric (`eval/...`, `rl/...`, `train/...`, `perf/...`). Read it with `pandas.read_parquet`.
    """
    rows = []
    for job in jobs:
        state = states.get(job.name, {"state": "pending"})
        row: dict[str, Any] = {"run": job.name, "stage": job.stage, "group": job.group, "source": job.source,
                               "source_step": job.source_step, "state": state["state"], "error": state.get("error")}
        row |= _flatten(asdict(job.pretrain))
        row |= _flatten({"post": asdict(job.post)}) if job.post is not None else {}
        try:
            records = runs.read_metrics(out / RUNS / job.name)
        except RunDirError as e:
            records, row["state"], row["error"] = [], "failed", str(e)
        rows.extend(row | record for record in records or [{}])
    columns = sorted(dict.fromkeys(key for row in rows for key in row), key=_column_order)
    table = pa.table({key: pa.array([row.get(key) for row in rows]) for key in columns})
    path = out / RESULTS
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


_IDENTITY = ("run", "stage", "group", "source", "source_step", "state", "error")
_CONFIG = ("task.", "model.", "train.", "post.")
_PROGRESS = ("step", "epoch", "samples_seen", "rl_samples")


def _column_order(key: str) -> tuple:
    """Identity, then config fields (in their dataclass order), then progress, then metrics by name."""
    if key in _IDENTITY:
        return (0, _IDENTITY.index(key))
    if key.startswith(_CONFIG):
        return (1, _CONFIG.index(key.split(".")[0] + "."))
    if key in _PROGRESS:
        return (2, _PROGRESS.index(key))
    return (3, key)


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
