"""Runs of a sweep as Slurm jobs, through submitit (`--executor slurm`).

Each wave of runs the sweep engine finds ready (every pre-training run first; then the post-training runs whose
pre-training has finished) is submitted as job arrays, one per thread count, each run a job of `threads` CPUs
and --gpus-per-run GPUs, at most --max-running of an array at once. Post-training waits on its pre-training
through these waves: the engine submits it only once its pre-training run is done.

`config` is always the sweep's `sweeps.executors.ExecutorConfig` (not imported here: that module imports this one).
A job is the ordinary resumable `execute` of one run, so Slurm may stop it at any time: before its time limit
(and on preemption signals) submitit's handler requeues it (`SlurmRun.checkpoint`); `scontrol requeue` and a
preemption with PreemptMode=REQUEUE requeue it from Slurm's side. Either way the requeued job resumes from the
run's last checkpoint and ends with the floats of an uninterrupted run. A job that ends without a result
(cancelled, killed) is resubmitted, and counts as failed, with its log's path, after two such losses.

The sweep directory holds `slurm/jobs.json` (each run's job id) and `slurm/logs/` (submitit's pickles and each
job's log). The sweep's own process may exit: its jobs go on, `rlntp sweep ... --status` shows them, and a
rerun adopts the jobs still queued or running instead of submitting them again.
"""

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlntp.errors import ConfigError, UserError, check
from rlntp.files import atomic_write_text

if TYPE_CHECKING:
    from rlntp.sweeps.spec import Job

JOBS, LOGS = Path("slurm/jobs.json"), Path("slurm/logs")
SECTION_FIELDS = ("partition", "time_limit", "account", "qos", "mem", "constraint", "max_running", "sbatch",
                  "gpus_per_run", "checkpoint_minutes")
"""The ExecutorConfig fields a sweep file's [slurm] table may set (the command line's flags win)."""
LIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING", "SUSPENDED",
        "RESIZING", "SIGNALING", "STAGE_OUT", "PREEMPTED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
"""squeue states of a job that will still run (or is finishing)."""
QUERY_TIMEOUT_S = 15
"""How long a Slurm command (sinfo, squeue, sbatch) may take before the scheduler counts as not answering."""
POLL_S = 5.0
"""Seconds between two squeue calls while the sweep waits (result files are looked at every second)."""
STARTUP_S = 30
"""Seconds a job may spend starting (Python, torch, loading its checkpoint) before its first step, in the check
of the time limit against the checkpoint interval."""


def with_sweep_section(config: Any, spec: dict[str, Any], where: str) -> Any:
    """`config` with the sweep file's [slurm] table filling the Slurm options the command line left unset."""
    section = spec.get("slurm", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: slurm: must be a table of Slurm options ({', '.join(SECTION_FIELDS)})")
    unknown = sorted(set(section) - set(SECTION_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: slurm.{unknown[0]}: unknown entry; expected one of: {', '.join(SECTION_FIELDS)}")
    if config.executor != "slurm":
        return config
    defaults = type(config)()
    values = {}
    for key, value in section.items():
        if getattr(config, key) == getattr(defaults, key):
            values[key] = tuple(value) if key == "sbatch" and isinstance(value, list) else value
    try:
        return replace(config, **values)
    except UserError as e:
        raise ConfigError(f"{where}: slurm: {e}") from None


def _run(args: list[str], what: str) -> str:
    """The stdout of a Slurm command; UserError in one line if it fails or does not answer in QUERY_TIMEOUT_S."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
    except FileNotFoundError:
        raise UserError(f"--executor slurm: no {args[0]} on the PATH; run the sweep on a Slurm login node") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"--executor slurm: the Slurm scheduler does not answer ({args[0]} took over "
                        f"{QUERY_TIMEOUT_S} s); is slurmctld up? (`scontrol ping`)") from None
    if done.returncode != 0:
        message = " ".join((done.stderr or done.stdout).split()) or f"exit status {done.returncode}"
        raise UserError(f"--executor slurm: {what}: {message}")
    return done.stdout


IntervalEstimate = Callable[[list["Job"]], tuple[float, "str | None"]]
"""Seconds of the slowest run's checkpoint interval and that run's name (`sweeps.plan.checkpoint_interval_s`)."""


def check_slurm(config: Any, jobs: list["Job"], interval_s: IntervalEstimate) -> None:
    """UserError in one line, in seconds, before anything is claimed: submitit missing, no sbatch, a scheduler
    that does not answer, an unknown partition, options Slurm refuses (account, qos, memory, constraint, GPUs:
    asked with `sbatch --test-only`), or a time limit shorter than one checkpoint interval of a run."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise UserError("--executor slurm needs the submitit package: pip install 'rlntp[slurm]'") from None
    for command in ("sbatch", "squeue", "sinfo"):
        check(shutil.which(command) is not None,
              f"--executor slurm: no {command} on the PATH; run the sweep on a Slurm login node")
    try:
        _run(["scontrol", "ping"], "scontrol ping") if shutil.which("scontrol") else None
    except UserError as e:
        down = [line for line in str(e).split("**")[0].split(": ", 2)[-1:] if line.strip()]
        raise UserError(f"--executor slurm: the Slurm scheduler does not answer (scontrol ping: "
                        f"{' '.join(down).strip()}); is slurmctld up?") from None
    partitions = [p.rstrip("*") for p in _run(["sinfo", "-h", "-o", "%P"], "sinfo").split()]
    check(config.partition is None or config.partition in partitions,
          f"--partition {config.partition}: no such Slurm partition; this cluster has: {', '.join(partitions)}")
    from rlntp.sweeps.stages import most_threads

    _run(["sbatch", "--test-only", *sbatch_flags(config, most_threads(jobs)), "--wrap", "true"],
         "Slurm refuses the job options")
    if config.time_limit is not None:
        _check_time_limit(config, jobs, interval_s)


def sbatch_flags(config: Any, cpus: int) -> list[str]:
    """The sbatch options of one run's job (what `--test-only` checks and the jobs are submitted with)."""
    flags = [f"--cpus-per-task={cpus}"]
    for name, value in (("partition", config.partition), ("account", config.account), ("qos", config.qos),
                        ("mem", config.mem), ("constraint", config.constraint), ("time", config.time_limit)):
        if value is not None:
            flags.append(f"--{name}={value}")
    if config.gpus_per_run:
        flags.append(f"--gpus-per-node={int(config.gpus_per_run)}")
    return flags + [f"--{flag.lstrip('-')}" for flag in config.sbatch]


def signal_delay_s(config: Any) -> int:
    """Seconds before the time limit at which Slurm signals a job to requeue itself: 90 (submitit's), at most a
    sixth of the limit (slurmctld looks every 30 s or so, and may signal that much earlier)."""
    return 90 if config.time_limit is None else min(90, config.time_limit * 60 // 6)


def _check_time_limit(config: Any, jobs: list["Job"], interval_s: IntervalEstimate) -> None:
    """ConfigError unless every run reaches a checkpoint within a job's time limit (less the signal's lead and
    STARTUP_S): from --checkpoint-minutes, else from `interval_s` (--plan's timing probe on this machine)."""
    usable = config.time_limit * 60 - signal_delay_s(config) - STARTUP_S
    if config.checkpoint_minutes is not None:
        need, source = config.checkpoint_minutes * 60, f"--checkpoint-minutes {config.checkpoint_minutes:g}"
        slowest = None
    else:
        need, slowest = interval_s(jobs)
        source = "estimated by --plan's timing probe on this machine"
    check(need <= usable,
          f"--time-limit {config.time_limit} min leaves {max(usable, 0) / 60:.1f} min of work per job (less "
          f"{signal_delay_s(config)} s of warning and {STARTUP_S} s to start), less than one checkpoint interval "
          f"({need / 60:.1f} min, {source}{f', run {slowest}' if slowest else ''}); raise --time-limit, lower "
          "save_every, or pass --checkpoint-minutes if the cluster's nodes are faster than this machine")


class SlurmRun:
    """What a Slurm job runs: one job (`execute`: `sweeps.stages.execute`, the local pool's), resumable, so
    checkpointing it is submitting it again."""

    def __init__(self, execute: Callable[["Job", str], dict[str, Any]]):
        self.execute = execute

    def __call__(self, job: "Job", runs_dir: str) -> dict[str, Any]:
        return self.execute(job, runs_dir)

    def checkpoint(self, job: "Job", runs_dir: str):
        """submitit's requeue protocol (before the time limit, on preemption): the same call, which resumes the
        run from its last checkpoint; the steps since it are trained again, to the same floats."""
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmRun(self.execute), job, runs_dir)


def partition_minutes(partition: str | None) -> int:
    """The time limit of `partition` (default: the default partition) in minutes, 0 where it has none: a job's
    --time where --time-limit is not given (submitit would ask for 5 minutes)."""
    args = ["sinfo", "-h", "-o", "%P %l"] + (["-p", partition] if partition else [])
    for line in _run(args, "sinfo").splitlines():
        name, _, limit = line.partition(" ")
        if partition or name.endswith("*"):
            return _minutes(limit.strip())
    return 0


def _minutes(limit: str) -> int:
    """Slurm's [D-]HH:MM:SS (or MM:SS, or infinite) in whole minutes; 0 for infinite."""
    if not limit or limit in ("infinite", "UNLIMITED", "n/a"):
        return 0
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    hours, minutes, seconds = ([0] * (3 - len(parts)) + parts) if len(parts) > 1 else (0, parts[0], 0)
    return (int(days or 0) * 24 + hours) * 60 + minutes + (seconds > 0)


def _submitit_executor(folder: Path, config: Any):
    """A submitit SlurmExecutor for the runs' jobs (their --cpus-per-task set per array)."""
    import submitit

    # every requeue for the time limit resumes from a checkpoint (the time limit is checked to reach one)
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=10_000)
    extra: dict[str, Any] = {"requeue": True}
    named: dict[str, Any] = {"job_name": "rlntp"}
    for flag in config.sbatch:  # those submitit names (job-name, exclusive, ...) replace its own lines
        key, eq, value = flag.lstrip("-").partition("=")
        if key.replace("-", "_") in submitit.SlurmExecutor._valid_parameters():
            named[key.replace("-", "_")] = value if eq else True
        else:
            extra[key] = value if eq else True
    executor.update_parameters(**named)
    executor.update_parameters(
        time=config.time_limit or partition_minutes(config.partition), partition=config.partition,
        account=config.account,
        qos=config.qos, mem=config.mem, constraint=config.constraint,
        gpus_per_node=int(config.gpus_per_run) or None, array_parallelism=config.max_running or 10_000,
        signal_delay_s=signal_delay_s(config), stderr_to_stdout=True, additional_parameters=extra)
    return executor


def read_jobs(out: Path) -> dict[str, dict[str, Any]]:
    """OUT/slurm/jobs.json: the Slurm job of each run submitted from this sweep directory ({} if none)."""
    try:
        jobs = json.loads((Path(out) / JOBS).read_text())
    except (OSError, ValueError):
        return {}
    return jobs if isinstance(jobs, dict) else {}


def queued(job_ids: list[str] | None = None) -> dict[str, str]:
    """{job id: state} of this user's Slurm jobs that will still run (LIVE), array elements one by one."""
    lines = _run(["squeue", "-h", "-r", "--me", "-o", "%i|%T"], "squeue").splitlines()
    states = dict(line.strip().split("|", 1) for line in lines if "|" in line)
    return {i: s for i, s in states.items() if s in LIVE and (job_ids is None or i in job_ids)}


def live_runs(out: Path) -> dict[str, str]:
    """{run name: "slurm job ID STATE"} for the runs of this sweep directory whose Slurm job is still queued or
    running ({} where Slurm does not answer or the sweep never used it)."""
    recorded = read_jobs(out)
    if not recorded:
        return {}
    try:
        live = queued()
    except UserError:
        return {}
    return {name: f"slurm job {entry['job_id']} {live[entry['job_id']]}" for name, entry in recorded.items()
            if entry.get("job_id") in live}


class SlurmExecutor:
    """Places a sweep's runs as Slurm jobs (module docstring); the same submit / wait / close as the local pool."""

    def __init__(self, config: Any, out: Path, execute: Callable[["Job", str], dict[str, Any]]):
        self.config, self.out, self._execute = config, Path(out), execute
        self.slots = 10_000  # jobs in the queue at once: waves are whole; --max-running caps them on the nodes
        self._folder = self.out / LOGS
        self._folder.mkdir(parents=True, exist_ok=True)
        self._recorded = read_jobs(self.out)
        recorded_ids = [entry.get("job_id") for entry in self._recorded.values()]
        self._live = queued(recorded_ids) if recorded_ids else {}
        self._pending: list[tuple[str, Any, str]] = []
        self._jobs: dict[str, Any] = {}  # key: submitit job
        self._missing: dict[str, int] = {}  # key: squeue polls that did not list it
        self._polled = 0.0

    def submit(self, key: str, job: "Job", runs_dir: str) -> None:
        """Queue `job` for the next wave's array, or adopt the job a previous sweep process submitted for it."""
        entry = self._recorded.get(key, {})
        if entry.get("job_id") in self._live and entry.get("runs") == [key]:
            import submitit

            self._jobs[key] = submitit.SlurmJob(folder=self._folder, job_id=entry["job_id"])
            return
        self._pending.append((key, job, runs_dir))

    def _flush(self) -> None:
        """Submit the queued runs: one job array per thread count."""
        from rlntp.sweeps.stages import job_threads

        by_threads: dict[int, list[tuple[str, Any, str]]] = {}
        for item in self._pending:
            by_threads.setdefault(job_threads(item[1]), []).append(item)
        self._pending = []
        for threads, items in by_threads.items():
            executor = _submitit_executor(self._folder, self.config)
            executor.update_parameters(cpus_per_task=threads)
            try:
                with executor.batch():
                    submitted = [executor.submit(SlurmRun(self._execute), job, runs_dir) for _, job, runs_dir in items]
            except Exception as e:  # sbatch refused the array (a limit of the cluster)
                raise UserError(f"--executor slurm: sbatch refused {len(items)} jobs: "
                                f"{' '.join(str(e).split())[:500]}") from None
            for (key, _, _), sjob in zip(items, submitted):
                self._jobs[key] = sjob
                self._recorded[key] = {"job_id": sjob.job_id, "runs": [key], "log": str(sjob.paths.stdout)}
        atomic_write_text(self.out / JOBS, json.dumps(self._recorded, indent=1) + "\n")

    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        """Outcomes of the jobs that finished within `timeout` seconds (a job gone from the queue without a
        result: `lost`, with its log)."""
        if self._pending:
            self._flush()
        deadline = time.monotonic() + timeout
        while True:
            finished = [(key, self._outcome(key, sjob)) for key, sjob in list(self._jobs.items())
                        if sjob.paths.result_pickle.exists()]
            if not finished and time.monotonic() - self._polled >= POLL_S:
                finished = self._lost()
            for key, _ in finished:
                self._jobs.pop(key)
                self._missing.pop(key, None)
            if finished or time.monotonic() >= deadline:
                return finished
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def _outcome(self, key: str, sjob) -> dict[str, Any]:
        log = sjob.paths.stdout
        try:
            outcome = sjob.result()
        except Exception as e:  # submitit's: the job raised outside the run (not requeued, out of timeouts)
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            return {"state": "failed", "error": f"slurm job {sjob.job_id}: {reason} (log: {log})"}
        if outcome["state"] != "done":
            outcome = outcome | {"error": f"{outcome['error']} (slurm job {sjob.job_id}, log: {log})"}
        return outcome | {"slurm_job": sjob.job_id}

    def _lost(self) -> list[tuple[str, dict[str, Any]]]:
        """Jobs missing from the queue on two polls in a row with no result: cancelled or killed."""
        self._polled = time.monotonic()
        try:
            live = queued()
        except UserError:  # a busy or restarting controller: the jobs are still there, ask again later
            return []
        lost = []
        for key, sjob in self._jobs.items():
            if sjob.job_id in live or sjob.paths.result_pickle.exists():
                self._missing.pop(key, None)
                continue
            self._missing[key] = self._missing.get(key, 0) + 1
            if self._missing[key] >= 2:
                self._live.pop(sjob.job_id, None)  # gone: a resubmission queues a new job instead of adopting it
                lost.append((key, {"state": "lost", "error": f"slurm job {sjob.job_id} ended without a result "
                                   f"(cancelled or killed; log: {sjob.paths.stdout})"}))
        return lost

    def close(self) -> None:
        """Leave the jobs queued or running: they go on without the sweep's process, and a rerun adopts them."""
        self._pending.clear()


def plan_section(config: Any, jobs: list["Job"], kinds: list[dict[str, Any]]) -> dict[str, Any]:
    """What `--plan` shows for --executor slurm: the jobs of each wave and what each job asks for; with the
    probe's estimate (`kinds`), a job's hours and how many time limits it spans (each a requeue)."""
    from rlntp.sweeps.stages import job_threads

    waves = {stage: [job for job in jobs if job.stage == stage] for stage in ("pretrain", "posttrain")}
    requests = []
    for kind in kinds:
        request = {"stage": kind["stage"], "jobs": kind["runs"], "cpus": kind["threads"],
                   "gpus": int(config.gpus_per_run)}
        if "seconds" in kind:
            hours = kind["seconds"] / kind["runs"] / 3600
            request["hours_per_job"] = hours
            if config.time_limit is not None:
                usable = config.time_limit * 60 - signal_delay_s(config) - STARTUP_S
                request["time_limits_per_job"] = max(1, -(-int(hours * 3600) // max(usable, 1)))
        requests.append(request)
    options = {key: getattr(config, key) for key in ("partition", "time_limit", "account", "qos", "mem",
                                                     "constraint", "max_running") if getattr(config, key) is not None}
    return {"jobs": len(jobs), "waves": {stage: len(wave) for stage, wave in waves.items() if wave},
            "arrays": {stage: sorted({job_threads(job) for job in wave}) for stage, wave in waves.items() if wave},
            "per_job": requests, "options": options | ({"sbatch": list(config.sbatch)} if config.sbatch else {})}


def render_plan(section: dict[str, Any]) -> list[str]:
    """`plan_section` as lines of text."""
    waves = ", then ".join(f"{count} {stage}" for stage, count in section["waves"].items())
    options = " ".join(f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}"
                       for k, v in section["options"].items())
    lines = [f"slurm: {section['jobs']} jobs in waves of job arrays ({waves}; post-training submitted once its "
             f"pre-training is done){'; ' + options if options else ''}"]
    for request in section["per_job"]:
        line = f"  {request['stage']}: {request['jobs']} jobs of {request['cpus']} CPUs, {request['gpus']} GPUs"
        if "hours_per_job" in request:
            hours = request["hours_per_job"]
            took = f"{hours:,.2f} h" if hours >= 0.1 else f"{hours * 60:.1f} min"
            line += f", ≈ {took} each on this machine's device"
        if "time_limits_per_job" in request:
            line += f" (spans {request['time_limits_per_job']} time limit(s): requeued and resumed each time)"
        lines.append(line)
    return lines
