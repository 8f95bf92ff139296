"""Where the jobs of the engine execute: a local process pool, a Ray cluster, or Slurm jobs (`rlntp.sweeps.slurm`).

Every executor only places jobs and reports their state, through the same three calls (`Executor`): each
calls the function the engine gives it (`sweeps.stages.execute`) on one job (or pack) at a time and reports
its outcome; what a job means, what runs when, and what happens to a pack that fails are the engine's. A job
resumes (a run from its checkpoints), so an executor that loses one (a killed worker, a lost node) only costs
the steps since its last checkpoint.
"""

import concurrent.futures as cf
import multiprocessing
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rlntp.config import Config
from rlntp.errors import UserError, check, check_choice
from rlntp.sweeps.stages import job_threads, most_threads, stage_of

if TYPE_CHECKING:
    from rlntp.sweeps.spec import Job

EXECUTORS = ("local", "ray", "slurm")
Run = Callable[..., dict[str, Any]]
"""What an executor runs where it places a job: run(job or pack, runs_dir[, progress]) -> outcome
(`sweeps.stages.execute`)."""


@dataclass(frozen=True)
class ExecutorConfig(Config):
    """Where and how many runs of a sweep execute at once."""

    executor: str = "local"
    """local (a process pool on this machine), ray (a Ray cluster) or slurm (Slurm jobs, through submitit)"""
    workers: int | None = None
    """local: runs at once (default: as many as this machine's cores hold, each run with its own threads; on a
    GPU 1; 1: in the sweep's own process); they share --device (several GPUs: --executor ray --gpus-per-run 1).
    Only the wall time changes: a run's floats depend on its seed and threads (train.threads), not on its
    neighbours"""
    gpus_per_run: float = 0.0
    """ray, slurm: GPUs requested per run (Ray: fractions share a GPU; Slurm: whole GPUs); the run's --device auto
    then picks it"""
    address: str | None = None
    """ray: the cluster to join (e.g. auto, or ray://HEAD:10001); default: RAY_ADDRESS, else a local instance"""
    report_to: tuple[str, ...] = ()
    """also log every run to these trackers, offline, in its run directory, grouped by the sweep: none, tensorboard,
    wandb, mlflow (several allowed; `tensorboard --logdir OUT` shows them all)"""
    pack: int = 1
    """train up to this many pre-training runs together as one batched model in one process (slot): runs of one
    GPT-2 shape that differ only in seed and p_cot (`rlntp.training.packed`), spread over the free workers. Each run
    directory is as if the run had trained alone; the floats agree with it within the tolerances of docs/sweeps.md,
    "Packing runs" (a pack always takes the static step: train.step_impl = "grouped" has no packed form, refused)"""

    partition: str | None = None
    """slurm: the partition to submit to (default: the cluster's default partition)"""
    time_limit: int | None = None
    """slurm: each job's time limit in minutes (default: the partition's); a job that reaches it is requeued and
    resumes from its last checkpoint, so it must exceed one checkpoint interval"""
    account: str | None = None
    """slurm: the account to charge"""
    qos: str | None = None
    """slurm: the quality of service (e.g. a preemptible one)"""
    mem: str | None = None
    """slurm: memory per job, as sbatch takes it (e.g. 16G)"""
    constraint: str | None = None
    """slurm: node features each job needs (sbatch --constraint, e.g. a100)"""
    max_running: int | None = None
    """slurm: at most this many jobs of a wave's job array run at once (its %N; default: as Slurm allows)"""
    sbatch: tuple[str, ...] = ()
    """slurm: more sbatch options, KEY=VALUE or KEY (e.g. --sbatch exclusive mail-type=END)"""
    checkpoint_minutes: float | None = None
    """slurm: the longest a run takes between two checkpoints on the cluster's nodes, checked against
    --time-limit (default: estimated by --plan's timing probe on this machine)"""

    def check(self) -> None:
        check_choice("executor", self.executor, EXECUTORS)
        slurm = {"--partition": self.partition, "--time-limit": self.time_limit, "--account": self.account,
                 "--qos": self.qos, "--mem": self.mem, "--constraint": self.constraint,
                 "--max-running": self.max_running, "--sbatch": self.sbatch or None,
                 "--checkpoint-minutes": self.checkpoint_minutes}
        given = [flag for flag, value in slurm.items() if value is not None]
        check(self.executor == "slurm" or not given, f"{', '.join(given)}: for --executor slurm")
        for flag in ("--time-limit", "--max-running", "--checkpoint-minutes"):
            check(slurm[flag] is None or slurm[flag] > 0, f"{flag} must be > 0, got {slurm[flag]}")
        check(self.executor != "slurm" or self.gpus_per_run == int(self.gpus_per_run),
              f"--gpus-per-run on Slurm is a whole number of GPUs, got {self.gpus_per_run:g}")
        check(self.executor != "slurm" or self.pack == 1,
              "--pack is for --executor local and ray; on Slurm each run is its own job")
        check(self.pack >= 1, f"pack must be >= 1, got {self.pack}")
        check(self.workers is None or self.workers >= 1, f"workers must be >= 1, got {self.workers}")
        check(self.executor == "ray" or self.address is None, "--address is for --executor ray")
        check(self.executor != "local" or self.gpus_per_run == 0, "--gpus-per-run is for --executor ray and slurm")
        check(self.executor == "local" or self.workers is None,
              "--workers is for --executor local; Ray and Slurm run as many at once as the runs' threads and "
              "--gpus-per-run allow")
        from rlntp.runs.trackers import check_trackers

        check_trackers(self.report_to)


def cpu_count() -> int:
    """Cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def one_at_a_time(config: ExecutorConfig | None) -> ExecutorConfig:
    """`config` (default: the local executor) running one job at a time unless --workers says otherwise: the
    executor of a recipe's own plan, whose stages use the machine's cores themselves."""
    config = config or ExecutorConfig()
    return replace(config, workers=1) if config.executor == "local" and config.workers is None else config


def default_workers(jobs: list["Job"]) -> int:
    """Runs at once when --workers is not given: as many as this machine's cores hold at the runs' threads, or
    one where the runs use a GPU (they would share it, and its memory)."""
    import torch

    devices = {stage_of(job).device(job) for job in jobs}
    if any(d.startswith("cuda") or d == "auto" and torch.cuda.is_available() for d in devices):
        return 1
    return max(1, cpu_count() // most_threads(jobs))


class Executor(Protocol):
    """What the sweep engine asks of an executor: it places jobs and reports their state, nothing more."""

    slots: int
    """jobs it holds at once (the engine submits no more)"""

    def submit(self, key: str, job: "Job | tuple[Job, ...]", runs_dir: str) -> None:
        """Place `job` (a tuple: a pack) to run the engine's function under `runs_dir`; its outcome is reported
        under `key`."""

    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        """(key, outcome) of the jobs finished within `timeout` seconds; outcome state done, failed or lost (its
        runner died: the engine places it again, to resume from its checkpoints)."""

    def close(self) -> None:
        """Stop placing jobs (after the sweep, or an interrupt)."""


class InlineExecutor:
    """One run at a time in this process (`--workers 1`): no worker to start, and the run's own progress bar
    under the sweep's."""

    def __init__(self, progress: bool, run: "Run"):
        self.progress, self.slots, self.run = progress, 1, run
        self._queue: list[tuple[str, "Job", str]] = []

    def submit(self, key: str, job: "Job | tuple[Job, ...]", runs_dir: str) -> None:
        self._queue.append((key, job, runs_dir))

    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        if not self._queue:
            return []
        key, job, runs_dir = self._queue.pop(0)
        return [(key, self.run(job, runs_dir, self.progress))]

    def close(self) -> None:
        self._queue.clear()


class LocalExecutor:
    """A pool of `workers` processes on this machine; each run sets its own threads.

    On Linux, workers start from a fork server, elsewhere as fresh interpreters (spawn; macOS forbids forking a
    process whose system libraries may hold threads): never forked from the sweep itself, so no parent torch state
    (thread pools, CUDA) is shared. The fork server is one clean interpreter per Python process, started by its
    first pool, that imports the code a run needs (`run`'s module: torch, transformers) once, about 4 s of CPU; every
    worker of every later pool is a fork of it and starts in well under a second instead of repeating those
    imports. A worker takes the sweep's `os.environ` as it is when its pool starts; what the fork server's imports
    read from the environment when it started (torch's and Hugging Face's import-time settings) stays as it was.
    Workers die with the sweep process: a spawned one through PR_SET_PDEATHSIG, a forked one (whose parent, the fork
    server, lives as long as any worker does) through a thread that waits on the sweep's pidfd (`_die_with`), so a
    killed sweep leaves no run going on without it. If a worker dies (killed, out of memory), the old pool's
    processes are ended, a new pool is built and the runs it held are reported as `lost`.
    """

    def __init__(self, workers: int, run: "Run"):
        self.workers = self.slots = workers
        self.run = run
        self._pool = self._new_pool()
        self._futures: dict[cf.Future, str] = {}

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        if sys.platform.startswith("linux"):
            context = multiprocessing.get_context("forkserver")
            module = getattr(self.run, "__module__", None)
            context.set_forkserver_preload([module] if module else [])  # read when its fork server starts
        else:
            context = multiprocessing.get_context("spawn")
        return cf.ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                      initargs=(os.getpid(), dict(os.environ)))

    def submit(self, key: str, job: "Job | tuple[Job, ...]", runs_dir: str) -> None:
        self._futures[self._pool.submit(self.run, job, runs_dir)] = key

    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        """Outcomes of the runs that finished within `timeout` seconds."""
        done, _ = cf.wait(list(self._futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        finished, broken = [], False
        for future in done:
            key = self._futures.pop(future)
            try:
                finished.append((key, future.result()))
            except cf.process.BrokenProcessPool:
                broken = True
                finished.append((key, {"state": "lost", "error": "its worker process died (killed, or out of memory?)"}))
        if broken:  # every run in flight is lost with the pool; they resume from their checkpoints
            for future, key in self._futures.items():
                finished.append((key, {"state": "lost", "error": "its worker process died (killed, or out of memory?)"}))
            self._futures.clear()
            for process in list((self._pool._processes or {}).values()):  # none may still hold a run's directory
                process.terminate()                                       # when the new pool retries it
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = self._new_pool()
        return finished

    def close(self) -> None:
        """Stop the pool; runs still in flight (after an interrupt) are killed and resume on a rerun."""
        if self._futures:  # ProcessPoolExecutor cannot cancel a running call: end its process
            for process in list((self._pool._processes or {}).values()):
                process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _init_worker(sweep: int, environment: dict[str, str]) -> None:
    """A worker's start: death with the sweep process, and the sweep's environment."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG: with its parent
    if os.getppid() != sweep:  # a fork server's child: the fork server lives as long as its children do
        _die_with(sweep)
    elif not _alive(sweep):  # the sweep died before the prctl above took effect
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep's to handle; it stops the workers
    os.environ.clear()  # a fork server keeps the environment of the pool that started it
    os.environ.update(environment)


def _die_with(pid: int) -> None:
    """End this process (SIGKILL) when process `pid` ends: a thread waits on its pidfd (Linux 5.3 and later), or
    looks once a second."""
    try:
        handle = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux, a kernel before 5.3, or `pid` already gone
        handle = None
    if handle is None and not _alive(pid):
        os._exit(1)

    def watch() -> None:
        if handle is not None:
            select.select([handle], [], [])
        else:
            while _alive(pid):
                time.sleep(1)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name=f"die-with-{pid}", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


class RayExecutor:
    """Runs as Ray tasks: on the cluster at `address`, or on a Ray instance started here.

    Each run requests as many CPUs as its threads, and `gpus` GPUs. The run directories must be on
    a path that every node sees (a shared file system); a task lost with its node is retried once and
    resumes from its checkpoints.
    """

    def __init__(self, address: str | None, cpus: int, gpus: float, local_cpus: int, run: "Run"):
        """`cpus`: the most threads any of the sweep's runs uses (a cluster without room for it is refused)."""
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs the ray package: pip install 'rlntp[ray]'") from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            local = address is None and "RAY_ADDRESS" not in os.environ
            try:
                ray.init(address=address, num_cpus=local_cpus if local else None, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise UserError(f"cannot connect to Ray{f' at {address}' if address else ''}: {reason}") from None
        self._remote = ray.remote(num_gpus=gpus, max_retries=1)(run)
        resources = ray.cluster_resources()
        slots = [resources.get("CPU", 1) // cpus] + ([resources.get("GPU", 0) // gpus] if gpus else [])
        check(min(slots) >= 1, f"the Ray cluster has {resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} "
              f"GPUs, fewer than one run needs ({cpus} threads, --gpus-per-run {gpus:g})")
        self.slots = int(min(slots))
        self._refs: dict[Any, str] = {}

    def submit(self, key: str, job: "Job | tuple[Job, ...]", runs_dir: str) -> None:
        self._refs[self._remote.options(num_cpus=job_threads(job)).remote(job, runs_dir)] = key

    def wait(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        ready, _ = self._ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        finished = []
        for ref in ready:
            key = self._refs.pop(ref)
            try:
                finished.append((key, self._ray.get(ref)))
            except self._ray.exceptions.RayError as e:  # the task's worker or node died twice
                finished.append((key, {"state": "lost", "error": f"Ray lost the run ({type(e).__name__})"}))
        return finished

    def close(self) -> None:
        for ref in self._refs:
            self._ray.cancel(ref, force=True)
        if self._started:
            self._ray.shutdown()


def check_executor(config: ExecutorConfig, jobs: list["Job"]) -> None:
    """UserError now, before any work, if the executor cannot start (Ray not installed, no such cluster), --pack
    would override a run's step (`training.packed.check_packable`), or --pack or --report-to is given for jobs that
    have no run of theirs (an LLM recipe's, the theory's); a note on stderr if the local runs would share cores
    (slower, the same floats)."""
    trained = [job for job in jobs if job.stage in ("pretrain", "posttrain")]
    check(config.pack == 1 or any(job.stage == "pretrain" for job in jobs),
          f"--pack {config.pack} packs pre-training runs, and these jobs have none: leave --pack out")
    check(not config.report_to or trained, "--report-to reports pre- and post-training runs, and these jobs have "
          "none: leave --report-to out")
    if config.pack > 1:  # nothing that packing would override: train.step_impl = "grouped" is refused
        from rlntp.training.packed import check_packable

        check_packable([job.pretrain for job in jobs if job.stage == "pretrain"])
    cores, threads = cpu_count(), most_threads(jobs)
    if config.executor == "local":
        workers = config.workers or default_workers(jobs)
        if workers * threads > cores:
            print(f"note: {workers} runs of {threads} threads at once share this machine's {cores} cores: slower, "
                  "with the same results", file=sys.stderr)
    elif config.executor == "slurm":
        from rlntp.sweeps.plan import checkpoint_interval_s
        from rlntp.sweeps.slurm import check_slurm

        # the timing probe knows pre- and post-training steps; the other stages' checkpoints (SFT, GRPO) are bounded
        # by --checkpoint-minutes alone
        check_slurm(config, jobs, lambda _: checkpoint_interval_s(trained))
    else:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("--executor ray needs the ray package: pip install 'rlntp[ray]'") from None
        address = config.address or os.environ.get("RAY_ADDRESS")
        if address and address != "auto":
            _check_reachable(address)


def _check_reachable(address: str) -> None:
    """UserError in seconds if nothing listens at a Ray address (HOST:PORT or ray://HOST:PORT); Ray itself would
    retry for minutes, printing a warning each time."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise UserError(f"cannot reach the Ray cluster at {address} ({e.strerror or e}); start it (ray start --head) "
                        "or pass its address") from None


def make_executor(config: ExecutorConfig, jobs: list["Job"], run: "Run", progress: bool = False,
                  out: Path | None = None) -> Executor:
    """The executor `config` names for `jobs`, placing calls of `run` (`progress`: jobs in this process show their
    bars; `out`: the engine's directory, where Slurm's job ids and logs go); the local one runs `default_workers`
    at once unless --workers says."""
    if config.executor == "slurm":
        from rlntp.sweeps.slurm import SlurmExecutor

        return SlurmExecutor(config, out, run)
    if config.executor == "ray":
        return RayExecutor(config.address, most_threads(jobs), config.gpus_per_run, cpu_count(), run)
    workers = min(config.workers or default_workers(jobs), max(1, len(jobs)))
    return InlineExecutor(progress, run) if workers == 1 else LocalExecutor(workers, run)
