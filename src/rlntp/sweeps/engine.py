"""Running a sweep: ordinary run directories, pre-training before the post-training that needs it, one table.

Layout of a sweep directory:

    status.json       the sweep process (pid, host), the sweeps run here, each run's state, error and seconds;
                      written first, it marks the directory as a sweep's (`runs.dirs.open_sweep_dir`)
    sweep.json        the sweep as given (`rlntp sweep`) or the recipe's (`rlntp reproduce`)
    results.parquet   one row per run and evaluation: the run's state, its config as recorded in the run
                      (config.json), how the steps up to the evaluation ran (packed, ran.*, a resume's changes:
                      `runs.history`), every metric, and the sweep it belongs to
    runs/NAME/        one ordinary run directory per run (`rlntp eval` and `rlntp plot` read them)
    slurm/            --executor slurm: each run's job id (jobs.json) and the jobs' logs (`sweeps.slurm`)

A run of the sweep is finished when its config equals the job's (the fields that define it) and it
holds its checkpoint at its last step; a finished run is skipped, every other one resumes from its
checkpoints, a failed one is retried, and a run whose pre-training failed is skipped. A run whose
config differs from the sweep file's is refused before anything runs. A run that fails is recorded
with its error and the rest of the sweep goes on. Runs of an earlier version of the sweep that the
current one no longer lists stay in status.json and the table, marked with the sweep they belong to.
"""

import hashlib
import json
import math
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from rlntp.config import flatten
from rlntp.errors import Interrupted, RunDirError, UserError
from rlntp.files import atomic_write_bytes, atomic_write_text
from rlntp.regime import COLUMNS as REGIME
from rlntp.regime import passes
from rlntp.runs import history
from rlntp.runs.checkpoints import checkpoint_steps
from rlntp.runs.dirs import CONFIG, STATUS, read_status
from rlntp.runs.metrics import read_metrics
from rlntp.runs.task_record import recorded_distinct_inputs
from rlntp.sweeps.executors import ExecutorConfig, make_executor
from rlntp.sweeps.spec import Job
from rlntp.sweeps.stages import STAGES, execute, job_state
from rlntp.tasks import builtin_distinct_inputs

RUNS, RESULTS, SWEEP = "runs", "results.parquet", "sweep.json"
STATES = ("done", "running", "failed", "damaged", "changed", "skipped", "partial", "pending")
"""damaged: its files cannot be read; changed: its config differs from the sweep file's; partial: started and
stopped before its last step (a rerun resumes it); pending: not started"""


class SweepFailed(UserError):
    """Some runs of a sweep failed; the others finished and the results table holds them all."""

    exit_code = 1


class SweepInterrupted(UserError):
    """The sweep was stopped (Ctrl-C, SIGTERM); rerunning the same command continues it."""

    exit_code = 130


def sweep_id(spec: dict[str, Any]) -> str:
    """A short name of a sweep's contents: the first 12 hex digits of the SHA-256 of its canonical JSON (without
    its [slurm] table: where the runs execute does not change them)."""
    runs = {key: value for key, value in spec.items() if key != "slurm"}
    return hashlib.sha256(json.dumps(runs, sort_keys=True).encode()).hexdigest()[:12]


def new_status(spec: dict[str, Any], file: str) -> dict[str, Any]:
    """The status.json of a sweep that has not run yet (written when its directory is claimed)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "updated": time.strftime("%Y-%m-%d %H:%M:%S"),
            "sweeps": {sweep_id(spec): file}, "runs": {}}


def run_sweep(jobs: list[Job], out: Path, executor: ExecutorConfig, spec: dict[str, Any], file: str,
              progress: bool = True) -> Path:
    """Run every job not yet finished under `out` (claimed by the caller); write status.json and results.parquet.

    `spec` and `file` identify the sweep (its contents, written to sweep.json once its runs are checked, and
    where they came from). Returns the results
    table's path. RunDirError before anything runs if a run's config differs from its job's;
    SweepFailed (after every other run finished) if any run failed; SweepInterrupted on Ctrl-C or
    SIGTERM (the runs in flight are stopped and resume on a rerun).
    """
    out = Path(out).resolve()
    try:
        run_jobs(jobs, out, executor, out / RUNS, spec, file, progress,
                 before=lambda: atomic_write_text(out / SWEEP, json.dumps(spec, indent=2) + "\n"),
                 after=lambda states, sweeps: write_results(jobs, out, states, sweeps))
    except (KeyboardInterrupt, Interrupted):
        raise SweepInterrupted("sweep interrupted; rerun the same command to continue it (finished runs are "
                               "kept, the others resume from their checkpoints)") from None
    return out / RESULTS


def run_jobs(jobs: list[Job], out: Path, executor: ExecutorConfig, root: Path, spec: Any, file: str,
             progress: bool = True, before: Callable[[], None] | None = None,
             after: Callable[[dict[str, dict[str, Any]], dict[str, str]], None] | None = None,
             each: Callable[[], None] | None = None) -> dict[str, dict[str, Any]]:
    """The engine: run every job of `jobs` (any stages, each after the jobs it needs) not yet done under `root`,
    recording each one's state in OUT/status.json (`out` claimed by the caller); returns the states.

    A job whose record says it is done is skipped; every other one resumes; one that fails is recorded with
    its error while the others go on, and the jobs that need it are skipped. `spec` identifies the work (its
    hash, the `sweep` of each state) and `file` where it came from. `before` runs once the jobs are checked,
    `after` (states of every job status.json knows, the sweeps) when the engine stops, however it stops; `each`
    after every job the engine runs or skips (an `accelerate launch` barrier). RunDirError before anything
    runs if a run's config differs from its job's; SweepFailed (after every other job finished) if any failed;
    KeyboardInterrupt (or a run's Interrupted) on Ctrl-C or SIGTERM: the jobs in flight are stopped and resume on a
    rerun.
    """
    out, root = Path(out).resolve(), Path(root).resolve()
    by_name = {job.name: job for job in jobs}
    found = read_states(jobs, out, root)
    changed = [(name, s["error"]) for name, s in found.items() if s["state"] == "changed"]
    if changed:
        name, error = changed[0]
        raise RunDirError(f"{root / name} {error}; a changed sweep needs another --out (its finished runs stay "
                          f"as they are)" + (f"; {len(changed) - 1} more run(s) differ" if len(changed) > 1 else ""))
    if before is not None:
        before()
    status = read_status(out) or new_status(spec, file)
    here = sweep_id(spec)
    status["sweeps"] = {**status.get("sweeps", {}), here: file}
    earlier = {name: state for name, state in status["runs"].items() if name not in by_name}
    states = {name: (state if state["state"] == "done" else {"state": "pending"} | _kept(state)) | {"sweep": here}
              for name, state in found.items()}
    todo = [job for job in jobs if states[job.name]["state"] != "done"]
    lost: Counter[str] = Counter()
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="run", desc=f"sweep {out.name}",
               disable=not progress, dynamic_ncols=True)
    pool = make_executor(executor, todo, execute, progress, out) if todo else None

    def write_status() -> None:
        status.update(pid=os.getpid(), host=socket.gethostname(), updated=time.strftime("%Y-%m-%d %H:%M:%S"),
                      runs=states | earlier)
        atomic_write_text(out / STATUS, json.dumps(status, indent=1) + "\n")

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        in_flight: dict[str, list[Job]] = {}  # the jobs submitted under each key, by key

        def show_running() -> None:
            failed = sum(s["state"] == "failed" for s in states.values())
            running = sum(map(len, in_flight.values()))
            bar.set_postfix_str(f"running {running}" + (f", failed {failed}" if failed else ""))
        while todo or in_flight:
            for job in list(todo):
                if len(in_flight) >= pool.slots:
                    break
                if job not in todo:  # packed with an earlier one
                    continue
                needs = [states[name]["state"] if name in states else "done" for name in job.needs]
                if failed_need := next((n for n, s in zip(job.needs, needs) if s in ("failed", "skipped")), None):
                    label = STAGES[by_name[failed_need].stage].label if failed_need in by_name else "job"
                    states[job.name] = {"state": "skipped", "error": f"its {label} {failed_need} failed",
                                        "sweep": here}
                    if each is not None:  # once per job, run or skipped (`accelerate launch` counts on it)
                        each()
                elif all(s == "done" for s in needs):
                    unit = [job] + _pack_companions(job, todo, executor.pack, pool.slots - len(in_flight))
                    runs = tuple(replace(j, report_to=executor.report_to, tracker_group=out.name) for j in unit)
                    pool.submit(job.name, runs if len(runs) > 1 else runs[0], str(root))
                    for j in unit:
                        if j is not job:
                            todo.remove(j)
                        states[j.name] = _kept(states[j.name]) | {"state": "running", "sweep": here}
                    in_flight[job.name] = unit
                else:
                    continue
                todo.remove(job)
                bar.update(states[job.name]["state"] == "skipped")
            write_status()
            show_running()
            for key, result in pool.wait(timeout=2.0) if in_flight else []:
                unit = in_flight.pop(key)
                outcomes = result.get("runs") or {j.name: result for j in unit}
                for name, outcome in outcomes.items():
                    if outcome["state"] == "lost" and lost[name] < 2:
                        lost[name] += 1  # its worker died: run it again, from its checkpoints
                        states[name] = _kept(states[name]) | {"state": "pending", "sweep": here}
                        todo.insert(0, by_name[name])
                        continue
                    states[name] = _packing(root / name, outcome | {
                        "state": "done" if outcome["state"] == "done" else "failed", "sweep": here})
                    bar.update(1)
                if each is not None:
                    each()
            show_running()
            bar.refresh()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if pool is not None:
            pool.close()
        bar.close()
        for name, state in states.items():
            if state["state"] == "running":  # stopped: what its config.json says of its packed steps so far
                states[name] = _packing(root / name, state | {"state": "partial"})
        write_status()
        if after is not None:
            after(states | earlier, status["sweeps"])
    failed = [(name, s["error"]) for name, s in states.items() if s["state"] == "failed"]
    if failed:
        shown = "; ".join(f"{name}: {error}" for name, error in failed[:3])
        raise SweepFailed(f"{len(failed)} of {len(jobs)} runs failed ({shown}{'; ...' if len(failed) > 3 else ''}); "
                          f"the others finished; details in {out / STATUS}; rerunning retries the failed ones")
    return states


def _pack_companions(job: Job, todo: list[Job], pack: int, free_slots: int) -> list[Job]:
    """Pending pre-training jobs to train packed with `job` (`training.packed.pack_key`): at most pack - 1, and
    few enough that the jobs of its kind spread over the free worker slots (4 runs, --pack 4, 2 workers: 2 packs
    of 2, each on its own cores)."""
    if pack <= 1 or job.stage != "pretrain":
        return []
    from rlntp.training.packed import pack_key

    key = pack_key(job.pretrain)
    if key is None:
        return []
    kin = [j for j in todo if j is not job and j.stage == "pretrain" and pack_key(j.pretrain) == key]
    size = min(pack, math.ceil((len(kin) + 1) / max(1, free_slots)))
    return kin[:size - 1]


_PACKING = ("packed", "packed_steps")
"""What status.json says of a run some of whose steps trained packed (`runs.history.packing`)."""


def _kept(state: dict[str, Any]) -> dict[str, Any]:
    """The packing record of a run's state, kept while it waits or runs again (alone, say)."""
    return {key: state[key] for key in _PACKING if key in state}


def _packing(run_dir: Path, state: dict[str, Any]) -> dict[str, Any]:
    """`state` with the packing that its run's config.json records (which steps trained packed, in packs of how many);
    a run that records none (made before runs recorded what ran) keeps what `state` says."""
    config = _read_config(run_dir)
    try:
        found = history.packing(config, (checkpoint_steps(run_dir) or [0])[-1]) if history.RAN in config else None
    except RunDirError:
        found = None
    return state if found is None else {k: v for k, v in state.items() if k not in _PACKING} | found


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def read_states(jobs: list[Job], out: Path, root: Path | None = None) -> dict[str, dict[str, Any]]:
    """Each job's state as the directory shows it now (what `rlntp sweep --status` prints), read-only: its record
    under `root` (default: a sweep's OUT/runs; `sweeps.stages`) and what OUT/status.json says of it.

    `running` only while the sweep process recorded in status.json is alive on this host (or on
    another host, which this one cannot check), or while its Slurm job is queued or running.
    """
    from rlntp.sweeps.slurm import live_runs

    out = Path(out)
    root = out / RUNS if root is None else Path(root)
    status = read_status(out) or {}
    slurm = live_runs(out)
    recorded = status.get("runs", {})
    alive = status.get("host") != socket.gethostname() or _alive(status.get("pid"))
    states = {}
    for job in jobs:
        saved = recorded.get(job.name, {})
        state = job_state(job, root)
        if state is not None and state["state"] == "done":
            state |= {k: v for k, v in saved.items() if k in ("seconds", "pack_error")}
        elif job.name in slurm and (state is None or state["state"] == "partial"):  # a changed run stays refused
            state = {"state": "running", "error": slurm[job.name]}
        elif saved.get("state") == "running" and alive:
            state = {"state": "running"}
        elif state is None or state["state"] == "partial":
            state = saved if saved.get("state") in ("failed", "skipped") else state or {"state": "pending"}
        states[job.name] = _packing(root / job.name, state | _kept(saved))
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


def status_report(jobs: list[Job], out: Path, root: Path | None = None) -> str:
    """What is done, running, failed, skipped, partial (resumes on a rerun) and pending, job by job (`read_states`:
    their records under `root`, default OUT/runs); and the jobs of earlier versions of the sweep that this one no
    longer lists."""
    states = read_states(jobs, out, root)
    counts = Counter(s["state"] for s in states.values())
    lines = [f"{out}: {len(jobs)} runs: " + ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])]
    for name, state in states.items():
        if state["state"] != "done":
            lines.append(f"  {state['state']:8s} {name}" + (f": {state['error']}" if state.get("error") else ""))
    others = sorted(set((read_status(out) or {}).get("runs", {})) - set(states))
    if others:
        lines.append(f"{len(others)} more runs in {out / RUNS if root is None else root} are not in this sweep (an "
                     "earlier version of it listed them; they stay on disk and in results.parquet):")
        lines.extend(f"  not in this sweep {name}" for name in others)
    return "\n".join(lines)


def write_results(jobs: list[Job], out: Path, states: dict[str, dict[str, Any]], sweeps: dict[str, str]) -> Path:
    """results.parquet: one row per run and evaluation (a run with none: one row), the run's config a column per field.

    Columns: run, stage, group, source, source_step, state, error, sweep_id, sweep_file, packed (the size of
    the pack that trained the steps up to the row's evaluation; 1: alone), pack_error (why the run fell back to
    training alone), changes (the options a resume changed, "train.step_impl grouped→static@120"); task.*,
    model.*, train.* (for a post-training run: its pre-training's, as they stood at its source_step), post.*,
    read from each run's own config.json (from the job for a run not started), each as it stood for the steps up
    to the row's evaluation (`runs.history`); ran.* (the training step, decoder, precision and device that
    ran them); then step, samples_seen, rl_samples and every metric (`eval/...`, `rl/...`, `train/...`,
    `perf/...`). Runs that `states` holds and no job lists (an earlier version of the sweep) have a row too.
    After the identity columns come the regime of the run's pre-training (one value per run): distinct_inputs (of
    its task, or its dataset's train prompts, as the pre-training recorded it in task.json; computed for a built-in
    task where it recorded none; a float: 2^d outgrows 64-bit integers; None where the task cannot say),
    pretrain_samples (the samples the pre-training saw: samples_seen at its last evaluation, its last step once
    done, or steps x batch_size as configured before it evaluated; for a post-training run, the samples its
    pre-training had seen at source_step) and passes = pretrain_samples / distinct_inputs (> 1: the memorisation
    regime, where `experiments.claims` does not judge a claim about generalization).
    Read it with `pandas.read_parquet`.
    """
    by_name = {job.name: job for job in jobs}
    rows = []
    for name, state in states.items():
        job = by_name.get(name)
        run_dir = out / RUNS / name
        config = _read_config(run_dir)
        row: dict[str, Any] = {"run": name, "stage": job.stage if job else config.get("stage"),
                               "group": job.group if job else None, "source": job.source if job else None,
                               "source_step": job.source_step if job else config.get("source_step"),
                               "state": state["state"], "error": state.get("error"),
                               "sweep_id": state.get("sweep"), "sweep_file": sweeps.get(state.get("sweep"))}
        row |= {"pack_error": state.get("pack_error"), "changes": _history(history.describe_changes, config, None)}
        row |= _config_columns(config, job)
        try:
            records = read_metrics(run_dir)
        except RunDirError as e:
            records, row["state"], row["error"] = [], "damaged", str(e)
        row |= _regime_columns(out, run_dir, config, job, records)
        rows.extend(row | _ran_columns(config, state, record.get("step", 0)) | record for record in records or [{}])
    columns = sorted(dict.fromkeys(key for row in rows for key in row), key=_column_order)
    table = pa.table({key: pa.array([row.get(key) for row in rows]) for key in columns})
    path = out / RESULTS
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    atomic_write_bytes(path, buffer.getvalue().to_pybytes())
    return path


def _read_config(run_dir: Path) -> dict[str, Any]:
    """A run's config.json, or {} where there is none (not started) or it cannot be read."""
    try:
        config = json.loads((run_dir / CONFIG).read_bytes())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _config_columns(config: dict[str, Any], job: Job | None) -> dict[str, Any]:
    """The config fields of a run as its config.json records them (the job's for a run not started yet)."""
    if not config:
        if job is None:
            return {}
        return flatten(asdict(job.pretrain)) | (flatten({"post": asdict(job.post)}) if job.post else {})
    columns = flatten({k: config.get(k) for k in ("task", "model", "train", "post") if isinstance(config.get(k), dict)})
    if config.get("stage") == "posttrain":  # its pre-training's train.* too
        try:
            source = json.loads((Path(str(config.get("source"))) / CONFIG).read_bytes())
            columns |= flatten({"train": source["train"]}) | _history(history.as_of, source, ({}, None),
                                                                       config.get("source_step"))[0]
        except (OSError, ValueError, KeyError, TypeError):
            if job is not None:
                columns |= flatten({"train": asdict(job.pretrain.train)})
    return columns


def _regime_columns(out: Path, run_dir: Path, config: dict[str, Any], job: Job | None,
                    records: list[dict[str, Any]]) -> dict[str, Any]:
    """distinct_inputs, pretrain_samples and passes of a run (a post-training run: of its pre-training, up to its
    source_step). The distinct inputs are what the pre-training run recorded in its task.json (its task's, or its
    dataset's train prompts) or, where it recorded none, a built-in task's computed from its config; never from a
    task of your own's code, which is not run here. None where neither says."""
    posttrain = (job.stage if job else config.get("stage")) == "posttrain"
    if posttrain:
        source = Path(str(config["source"])) if config.get("source") else out / RUNS / job.source if job else None
        task = _read_config(source).get("task") if source else None
        samples = config.get("start_samples_seen")
        if samples is None and job is not None:
            samples = job.source_step * job.pretrain.train.batch_size
    else:
        source, task = run_dir, config.get("task")
        seen = [r["samples_seen"] for r in records if isinstance(r.get("samples_seen"), int)]
        train = config.get("train") if isinstance(config.get("train"), dict) else None
        if seen:  # the run's last evaluation: its last step once it is done
            samples = max(seen)
        elif train is not None and isinstance(train.get("steps"), int) and isinstance(train.get("batch_size"), int):
            samples = train["steps"] * train["batch_size"]  # not started: what it is configured to see
        else:
            samples = job.pretrain.train.steps * job.pretrain.train.batch_size if job else None
    if not isinstance(task, dict) and job is not None:
        task = asdict(job.pretrain.task)
    inputs = recorded_distinct_inputs(source) if source else None
    if inputs is None and isinstance(task, dict):
        inputs = builtin_distinct_inputs(task)
    return {"distinct_inputs": _as_float(inputs), "pretrain_samples": samples,
            "passes": passes(samples, inputs) if isinstance(samples, int) else None}


def _as_float(count: int | None) -> float | None:
    """A count as a float column holds it: 2^d outgrows 64-bit integers beyond d = 62 (inf from 2^1024)."""
    if count is None:
        return None
    try:
        return float(count)
    except OverflowError:
        return math.inf


def _ran_columns(config: dict[str, Any], state: dict[str, Any], step: int) -> dict[str, Any]:
    """How the steps of a run up to `step` ran (`runs.history`): the values its changed options had, packed and ran.*;
    where its config.json records no stretch (not started, or made before runs recorded one), packed is what
    status.json said (if anything) and ran.* are empty."""
    values, stretch = _history(history.as_of, config, ({}, None), step)
    if stretch is None:
        return values | {"packed": state.get("packed")} | {f"ran.{key}": None for key in _RAN}
    return values | {"packed": stretch.get("packed")} | {f"ran.{key}": stretch.get(key) for key in _RAN}


_RAN = ("step_impl", "decode", "precision", "device")


def _history(read, config: dict[str, Any], damaged: Any, *args: Any) -> Any:
    """`read(config, *args)` (a reader of `runs.history`), or `damaged` where the run's history cannot be read."""
    try:
        return read(config, *args)
    except (RunDirError, KeyError, TypeError):
        return damaged


_IDENTITY = ("run", "stage", "group", "source", "source_step", "state", "error", "sweep_id", "sweep_file", "packed",
             "pack_error", "changes")
_CONFIG = ("task.", "model.", "train.", "post.", "ran.")
_PROGRESS = ("step", "epoch", "samples_seen", "rl_samples")


def _column_order(key: str) -> tuple:
    """Identity, then the regime, then config fields (in their dataclass order), then progress, then metrics by
    name."""
    if key in _IDENTITY:
        return (0, _IDENTITY.index(key))
    if key in REGIME:  # the regime a run's pre-training trained in (`_regime_columns`)
        return (0, len(_IDENTITY) + REGIME.index(key))
    if key.startswith(_CONFIG):
        return (1, _CONFIG.index(key.split(".")[0] + "."))
    if key in _PROGRESS:
        return (2, _PROGRESS.index(key))
    return (3, key)

