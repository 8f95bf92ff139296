"""`rlntp sweep --executor slurm` against a real Slurm (scripts/slurm_local.sh starts a single-node one; `.ci/run`
does): the table equals the local pool's, requeued, cancelled and timed-out jobs resume to the same table, a killed
sweep process rerun submits nothing twice, and bad input fails in one line before anything is claimed."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from test_sweeps import TINY  # the small sweep the local executor's tests run

from rlntp.cli import main

pytestmark = pytest.mark.integration

pytest.importorskip("submitit", reason="--executor slurm needs submitit: pip install 'rlntp[slurm]'")


def _slurm_answers() -> str | None:
    """Why the Slurm tests cannot run here, or None where a Slurm node answers idle."""
    if shutil.which("sinfo") is None:
        return "no Slurm here (no sinfo on the PATH); start one as root with scripts/slurm_local.sh"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10).stdout.split()
    except subprocess.TimeoutExpired:
        return "Slurm does not answer (sinfo took over 10 s); start it with scripts/slurm_local.sh"
    if not {"idle", "mixed", "allocated"} & set(states):
        return f"no Slurm node is up (sinfo: {states or 'nothing'}); start one with scripts/slurm_local.sh"
    return None


NO_SLURM = _slurm_answers()
needs_slurm = pytest.mark.skipif(NO_SLURM is not None, reason=str(NO_SLURM))

LONG = """
[pretrain]
task = { d = 4, p_cot = 0.5 }
model = { layers = 1, width = 16, heads = 2 }
train = { steps = STEPS, batch_size = 32, lr = 3e-3, eval_every = 100, eval_samples = 64, save_every = 100 }

[pretrain.axes]
"train.seed" = [0, 1]
"""
"""Two runs long enough (about 15 s at STEPS = 2500 on a free core) to be requeued, cancelled or timed out mid-run."""


def _table(out):
    """The results table without its timings."""
    table = pd.read_parquet(out / "results.parquet")
    return table.drop(columns=[c for c in table.columns if c.startswith("perf/")])


def _queue_empty() -> bool:
    return not subprocess.run(["squeue", "-h", "--me"], capture_output=True, text=True, timeout=30).stdout.strip()


def _now() -> str:
    """The time after which sacct lists only this test's jobs (the earlier ones have left the queue)."""
    _wait_for(_queue_empty, 60, "an empty queue")
    time.sleep(1)
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _sacct(since: str, *extra: str) -> list[str]:
    """sacct's lines (JobID|State) of the jobs that started since `since`, one per allocation (-D: each requeue),
    once none is still running (a job writes its result, then exits; the accounting database hears of the exit
    after the queue does)."""
    _wait_for(_queue_empty, 60, "the jobs to leave the queue")

    def settled() -> list[str] | None:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-S", since, "-o", "JobID,State", *extra],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        lines = [line for line in out.splitlines() if line.strip()]
        return None if any(line.endswith(("|RUNNING", "|PENDING")) for line in lines) else lines

    return _wait_for(settled, 60, "sacct to record the jobs' ends")


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.5)
    raise AssertionError(f"waited {seconds} s for {what}")


def _checkpoints(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").glob("step_*")) if run_dir.is_dir() else []


@needs_slurm
def test_a_slurm_sweep_gives_the_local_pools_table(tmp_path, capsys):
    file = tmp_path / "sweep.toml"
    file.write_text(TINY + '\n[slurm]\nmax_running = 2\nsbatch = ["job-name=rlntp-test"]\n')
    argv = ["sweep", str(file), "--device", "cpu", "--quiet"]
    main([*argv, "--out", str(tmp_path / "local"), "--workers", "2"])
    main([*argv, "--out", str(tmp_path / "slurm"), "--executor", "slurm", "--plan"])
    plan = capsys.readouterr().out
    assert "slurm: 6 jobs in waves of job arrays (2 pretrain, then 4 posttrain" in plan, plan
    assert "pretrain: 2 jobs of 1 CPUs, 0 GPUs" in plan and "--max-running 2" in plan, plan
    main([*argv, "--out", str(tmp_path / "slurm"), "--executor", "slurm"])
    pd.testing.assert_frame_equal(_table(tmp_path / "slurm"), _table(tmp_path / "local"))
    jobs = json.loads((tmp_path / "slurm" / "slurm" / "jobs.json").read_text())
    assert len(jobs) == 6 and all(Path(entry["log"]).is_file() for entry in jobs.values())
    script = next((tmp_path / "slurm" / "slurm" / "logs").glob("*_submission.sh")).read_text()
    assert re.search(r"#SBATCH --array=0-\d+%2", script) and "#SBATCH --job-name=rlntp-test" in script, script
    assert "#SBATCH --job-name=rlntp\n" not in script, script
    assert "#SBATCH --requeue" in script and "#SBATCH --cpus-per-task=1" in script, script


@needs_slurm
def test_requeued_and_cancelled_jobs_and_a_killed_sweep_resume_to_the_same_table_submitting_nothing_twice(tmp_path):
    """`scontrol requeue` one run's job and `scancel` the other's mid-run, kill the sweep process: the rerun adopts
    the requeued job (no second submission), resubmits the cancelled run, and both resume from their checkpoints
    to the table of an uninterrupted sweep."""
    file = tmp_path / "sweep.toml"
    file.write_text(LONG.replace("STEPS", "2500"))
    out = tmp_path / "slurm"
    since = _now()
    sweep = subprocess.Popen([sys.executable, "-m", "rlntp.cli", "sweep", str(file), "--device", "cpu", "--quiet",
                              "--out", str(out), "--executor", "slurm"], stderr=subprocess.PIPE, text=True)
    try:
        runs = [out / "runs" / f"seed={seed}" / "pretrain" for seed in (0, 1)]
        _wait_for(lambda: all(_checkpoints(run)[1:] for run in runs), 120, "both runs' first checkpoints")
        jobs = json.loads((out / "slurm" / "jobs.json").read_text())
        requeued, cancelled = jobs["seed=0/pretrain"]["job_id"], jobs["seed=1/pretrain"]["job_id"]
        subprocess.run(["scontrol", "requeue", requeued], check=True, timeout=30)
        subprocess.run(["scancel", cancelled], check=True, timeout=30)
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(timeout=30)
    finally:
        sweep.kill()
    assert _checkpoints(runs[0])[-1] != "step_0000002500"  # stopped mid-run
    status = subprocess.run([sys.executable, "-m", "rlntp.cli", "sweep", str(file), "--device", "cpu", "--out",
                             str(out), "--status"], capture_output=True, text=True, timeout=120).stdout
    assert f"running  seed=0/pretrain: slurm job {requeued}" in status, status
    main(["sweep", str(file), "--device", "cpu", "--quiet", "--out", str(out), "--executor", "slurm"])
    after = json.loads((out / "slurm" / "jobs.json").read_text())
    assert after["seed=0/pretrain"]["job_id"] == requeued  # adopted, not submitted again
    assert after["seed=1/pretrain"]["job_id"] != cancelled
    lines = _sacct(since)
    assert sorted(lines) == sorted([f"{requeued}|COMPLETED", f"{cancelled}|CANCELLED by 0",
                                    f"{after['seed=1/pretrain']['job_id']}|COMPLETED"]), lines
    assert f"{requeued}|REQUEUED" in _sacct(since, "-D")
    main(["sweep", str(file), "--device", "cpu", "--quiet", "--out", str(tmp_path / "local"), "--workers", "2"])
    pd.testing.assert_frame_equal(_table(out), _table(tmp_path / "local"))


@needs_slurm
def test_a_job_past_its_time_limit_is_requeued_and_resumes_to_the_same_table(tmp_path, pause, monkeypatch):
    """--time-limit 1 (minute) on a run held (tests/pause_hook) right after its checkpoint of step 200 until it is
    past its limit, whatever this machine's speed: Slurm signals the job before its limit (slurmctld looks every
    30 s), submitit requeues it, and it resumes from that checkpoint (--checkpoint-minutes 0.1 passes the check).
    The uninterrupted reference trains meanwhile on the other core."""
    file = tmp_path / "sweep.toml"
    file.write_text(LONG.replace("STEPS", "2000").replace("[0, 1]", "[0]").replace("= 100,", "= 200,")
                    .replace("save_every = 100", "save_every = 200"))
    argv = ["sweep", str(file), "--device", "cpu", "--quiet"]
    reference = subprocess.Popen([sys.executable, "-m", "rlntp.cli", *argv, "--out", str(tmp_path / "local")],
                                 stdout=subprocess.DEVNULL)
    for name, value in pause.env(200).items():  # the job's environment (sbatch exports this process's)
        monkeypatch.setenv(name, value)
    try:
        since = _now()
        main([*argv, "--out", str(tmp_path / "slurm"), "--executor", "slurm", "--time-limit", "1",
              "--checkpoint-minutes", "0.1"])
        assert reference.wait(timeout=600) == 0
    finally:
        reference.kill()
    assert len(pause.paused(200)) == 1  # held once: the requeued job resumed from step 200 and went on
    allocations = _sacct(since, "-D")
    assert any(line.endswith("|REQUEUED") for line in allocations), allocations
    assert allocations[-1].endswith("|COMPLETED"), allocations
    assert len({line.split("|")[0] for line in allocations}) == 1, allocations  # one job, requeued
    pd.testing.assert_frame_equal(_table(tmp_path / "slurm"), _table(tmp_path / "local"))


@pytest.mark.parametrize("case", ["no sbatch", "not answering", "partition", "account", "time limit",
                                  "section"])
@pytest.mark.unit
def test_bad_slurm_input_is_one_line_in_seconds_before_the_directory_is_claimed(tmp_path, monkeypatch, refused,
                                                                                case):
    file = tmp_path / "sweep.toml"
    file.write_text(TINY)
    out = tmp_path / "out"
    argv = ["sweep", str(file), "--device", "cpu", "--quiet", "--out", str(out), "--executor", "slurm"]
    if case == "no sbatch":
        monkeypatch.setenv("PATH", str(tmp_path))
        tail, message = [], "no sbatch on the PATH; run the sweep on a Slurm login node"
    elif NO_SLURM is not None:
        pytest.skip(NO_SLURM)
    elif case == "not answering":
        dead = tmp_path / "dead.conf"  # a controller at a port nobody listens on
        conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
        dead.write_text(conf.read_text().replace("ClusterName=", "SlurmctldPort=6899\nClusterName=", 1))
        monkeypatch.setenv("SLURM_CONF", str(dead))
        tail, message = [], "the Slurm scheduler does not answer"
    elif case == "partition":
        tail, message = ["--partition", "nope"], "--partition nope: no such Slurm partition; this cluster has: "
    elif case == "account":
        if subprocess.run(["sbatch", "--test-only", "--account", "nope", "--wrap", "true"],
                          capture_output=True, timeout=30).returncode == 0:
            pytest.skip("this Slurm takes any account (no AccountingStorageEnforce=associations)")
        tail, message = ["--account", "nope"], "Slurm refuses the job options: allocation failure: Invalid account"
    elif case == "time limit":
        file.write_text(LONG.replace("STEPS", "100000").replace("save_every = 100", "save_every = 50000"))
        tail, message = ["--time-limit", "1"], "--time-limit 1 min leaves 0.3 min of work per job"
    else:
        file.write_text(TINY + "\n[slurm]\npartishun = 'gpu'\n")
        tail, message = [], "slurm.partishun: unknown entry; expected one of: partition, time_limit"
    started = time.monotonic()
    refused([*argv, *tail], message)
    assert time.monotonic() - started < 30
    assert not out.exists()


@pytest.mark.unit
def test_a_lost_job_taken_over_from_an_earlier_sweep_process_is_submitted_anew(tmp_path, monkeypatch):
    """A rerun adopts the job an earlier sweep process queued; once that job is gone without a result (cancelled),
    the engine's resubmission queues a new job instead of adopting the dead one again (no Slurm needed: the queue
    is stubbed)."""
    from rlntp.sweeps import slurm
    from rlntp.sweeps.executors import ExecutorConfig
    from rlntp.sweeps.stages import execute

    (tmp_path / slurm.JOBS).parent.mkdir(parents=True)
    (tmp_path / slurm.JOBS).write_text(json.dumps({"a/pretrain": {"job_id": "111", "runs": ["a/pretrain"]}}))
    live = {"111": "RUNNING"}
    monkeypatch.setattr(slurm, "queued", lambda job_ids=None: dict(live))
    executor = slurm.SlurmExecutor(ExecutorConfig(executor="slurm"), tmp_path, execute)
    executor.submit("a/pretrain", None, str(tmp_path))
    assert executor._jobs["a/pretrain"].job_id == "111" and not executor._pending  # adopted
    live.clear()  # scancel 111
    assert executor._lost() == [] and [key for key, _ in executor._lost()] == ["a/pretrain"]  # two polls
    executor._jobs.pop("a/pretrain")
    executor.submit("a/pretrain", None, str(tmp_path))
    assert "a/pretrain" not in executor._jobs and [key for key, _, _ in executor._pending] == ["a/pretrain"]


@pytest.mark.unit
def test_a_changed_run_whose_old_job_is_still_queued_stays_refused(tmp_path, monkeypatch):
    """An edited sweep rerun while the old jobs are queued: the run reads as changed (refused), not running."""
    from rlntp.sweeps import engine, slurm
    from rlntp.sweeps.spec import expand
    from rlntp.sweeps.stages import job_config

    spec = {"pretrain": {"task": {"d": 4}, "model": {"layers": 1, "width": 16, "heads": 2},
                         "train": {"steps": 4, "save_every": 2}}}
    job = expand(spec)[0]
    run = tmp_path / "runs" / job.name
    run.mkdir(parents=True)
    config = job_config(job)
    config["train"]["lr"] = 0.5
    (run / "config.json").write_text(json.dumps(config))
    assert engine.read_states([job], tmp_path)[job.name]["state"] == "changed"
    (tmp_path / slurm.JOBS).parent.mkdir(parents=True)
    (tmp_path / slurm.JOBS).write_text(json.dumps({job.name: {"job_id": "7", "runs": [job.name]}}))
    monkeypatch.setattr(slurm, "queued", lambda job_ids=None: {"7": "PENDING"})
    assert engine.read_states([job], tmp_path)[job.name]["state"] == "changed"
