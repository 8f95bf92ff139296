"""Sweeps: the file format and its errors, the results table, resume after kills, failures, Ray vs local."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import tomllib

from rlntp.cli import main
from rlntp.sweeps.engine import new_status
from rlntp.sweeps.spec import expand

pytestmark = pytest.mark.integration

TINY = """
[pretrain]
task = { d = 4, p_cot = 0.5 }
model = { layers = 1, width = 16, heads = 2 }
train = { steps = 40, batch_size = 32, lr = 3e-3, eval_every = 10, eval_samples = 64, save_every = 10 }

[pretrain.axes]
"train.seed" = [0, 1]

[posttrain.grpo]
from_steps = [20, "last"]
post = { steps = 6, eval_every = 2, eval_samples = 64, save_every = 2, prompts_per_step = 4, rollouts_per_prompt = 4 }
"""


def _sweep_file(tmp_path, text=TINY, name="sweep.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _table(out):
    """The results table without its timings (the only columns allowed to differ between executions)."""
    table = pd.read_parquet(out / "results.parquet")
    return table.drop(columns=[c for c in table.columns if c.startswith("perf/")])



@pytest.mark.unit
def test_expansion_names_runs_by_their_axes_and_seeds_post_training_from_pre_training():
    spec = {"pretrain": {"task": {"d": 6}, "train": {"steps": 100, "save_every": 50},
                         "axes": {"task.p_cot": [0.1, 0.5], "train.seed": [0, 1, 2], "model.width, model.heads": [[32, 2], [64, 4]]}},
            "posttrain": {"grpo": {"from_steps": [50, "last"], "post": {"steps": 3},
                                   "axes": {"post.temperature": [0.5, 1.0]}},
                          "star": {"from_steps": [100], "post": {"algo": "star", "seed": 7}}}}
    jobs = expand(spec, device="cpu")
    pre = [j for j in jobs if j.stage == "pretrain"]
    post = [j for j in jobs if j.stage == "posttrain"]
    assert len(pre) == 2 * 3 * 2 and len(post) == len(pre) * (2 * 2 + 1)
    assert jobs[: len(pre)] == pre  # pre-training first
    assert pre[0].name == "p_cot=0.1,seed=0,width=32,heads=2/pretrain"
    assert pre[0].pretrain.model.width == 32 and pre[-1].pretrain.model.heads == 4
    assert "p_cot=0.5,seed=2,width=64,heads=4/grpo,temperature=1,from=100" in {j.name for j in post}
    for job in post:
        assert job.source in {p.name for p in pre} and job.source_step in (50, 100)
        assert job.post.seed == (7 if job.group == "star" else job.pretrain.train.seed)
        assert job.post.device == "cpu" and job.pretrain.train.device == "cpu"
    assert isinstance(pre[0].pretrain.task.p_cot, float)


@pytest.mark.parametrize("text, message", [
    ("[pretrain]\ntrain = { stepz = 10 }\n", "pretrain.train.stepz: PretrainConfig has no field 'stepz'"),
    ("[pretrain]\ntrain = { steps = 'ten' }\n", "pretrain.train: steps must be a whole number, got 'ten'"),
    ("[pretrain]\ntask = { p_cot = 1.5 }\n", "pretrain.task: p_cot must be in [0, 1]"),
    ("[pretrain.axes]\n'task.width' = [1, 2]\n", "pretrain.axes.task.width: TaskConfig has no field 'width'"),
    ("[pretrain.axes]\n'optim.lr' = [1e-3]\n", "pretrain.axes.optim.lr: unknown section 'optim'"),
    ("[pretrain.axes]\n'train.lr' = [1e-3, -1.0]\n", "lr must be"),
    ("[pretrain.axes]\n'train.seed' = 3\n", "pretrain.axes.train.seed: must be a non-empty list"),
    ("[pretrain]\ntrain = { device = 'cuda' }\n", "the device is not a sweep field; pass --device"),
    ("[pretrain]\nsteps = 10\n", "pretrain.steps: unknown entry"),
    ("[pretrain]\n[posttrain.grpo]\nfrom_steps = [300]\n",
     "posttrain.grpo.from_steps: step 300 is not a checkpoint of pre-training run base/pretrain"),
    ("[pretrain]\n[posttrain.grpo]\nfrom_steps = [500]\npost = { algo = 'ppo' }\n", "unknown algo 'ppo'"),
    ("[pretrain]\n[posttrain.grpo]\nfrom_steps = [500]\n[posttrain.grpo.axes]\n'task.d' = [4]\n",
     "posttrain.grpo.axes.task.d: unknown section 'task'"),
    ("[posttrain.grpo]\nfrom_steps = [500]\n", "pretrain: missing"),
    ("[pretrain\n", "is not valid TOML"),
    ("[pretrain.axes]\n'task.p_cot' = [0.1, 0.1000001]\n", "two runs would share the directory p_cot=0.1/pretrain"),
])
@pytest.mark.unit
def test_a_bad_sweep_file_fails_before_any_run_with_one_line_naming_the_field(tmp_path, text, message, refused):
    out = tmp_path / "out"
    err = refused(["sweep", str(_sweep_file(tmp_path, text)), "--out", str(out)], message)
    assert "sweep.toml" in err
    assert not out.exists()


def test_a_sweep_writes_one_row_per_run_and_evaluation_and_a_rerun_does_nothing(tmp_path, capsys):
    file, out = _sweep_file(tmp_path), tmp_path / "out"
    main(["sweep", str(file), "--out", str(out), "--device", "cpu", "--quiet"])
    table = pd.read_parquet(out / "results.parquet")
    assert set(table["state"]) == {"done"}
    assert len(table) == 2 * 5 + 4 * 4  # pre-training: steps 0..40 every 10; RL: steps 0..6 every 2
    assert {"task.d", "model.width", "train.seed", "post.algo", "post.temperature", "eval/greedy_acc",
            "eval/sampled_len_hist", "samples_seen", "rl_samples"} <= set(table.columns)
    post = table[table["stage"] == "posttrain"]
    assert set(post["source_step"]) == {20, 40} and set(post["train.seed"]) == {0, 1}
    start = post[post["step"] == 0]
    assert list(start["samples_seen"]) == [20 * 32, 40 * 32] * 2  # continues from the checkpoint's samples
    pre = table[table["stage"] == "pretrain"]  # the regime: 2^4 inputs, seen 40 x 32 times by pre-training
    assert set(table["distinct_inputs"]) == {16.0} and set(pre["pretrain_samples"]) == {40 * 32}
    assert set(pre["passes"]) == {80.0} and list(start["passes"]) == [40.0, 80.0] * 2  # as of the source step
    assert json.loads((out / "runs" / "seed=0" / "pretrain" / "task.json").read_text())["distinct_inputs"] == 16
    for run in table["run"].unique():  # every run is an ordinary run directory
        assert (out / "runs" / run / "config.json").is_file()

    before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    capsys.readouterr()
    main(["sweep", str(file), "--out", str(out), "--device", "cpu", "--quiet"])
    after = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    assert before == after  # finished runs are not touched again
    pd.testing.assert_frame_equal(_table(out), table.drop(columns=[c for c in table if c.startswith("perf/")]))
    main(["sweep", str(file), "--out", str(out), "--status"])
    assert "6 runs: 6 done" in capsys.readouterr().out


def test_a_failed_run_is_recorded_its_dependents_skipped_and_the_rest_finishes(tmp_path, capsys, refused):
    file, out = _sweep_file(tmp_path), tmp_path / "out"
    blocked = out / "runs" / "seed=1" / "pretrain"
    blocked.mkdir(parents=True)
    (blocked / "notes.txt").write_text("a user's file")
    (out / "status.json").write_text(json.dumps(new_status(tomllib.loads(TINY), str(file))))  # the sweep's own

    err = refused(["sweep", str(file), "--out", str(out), "--device", "cpu", "--quiet"],
                 "1 of 6 runs failed (seed=1/pretrain: ", code=1)
    assert "notes.txt" in err
    assert (blocked / "notes.txt").read_text() == "a user's file"
    table = pd.read_parquet(out / "results.parquet")
    states = table.groupby("run")["state"].first().to_dict()
    assert states["seed=1/pretrain"] == "failed"
    assert states["seed=1/grpo,from=20"] == states["seed=1/grpo,from=40"] == "skipped"
    assert all(states[r] == "done" for r in states if r.startswith("seed=0/"))
    main(["sweep", str(file), "--out", str(out), "--status"])
    status = capsys.readouterr().out
    assert "3 done, 1 failed, 2 skipped" in status and "notes.txt" in status

    (blocked / "notes.txt").unlink()  # the cause removed, a rerun retries the failed run and its dependents
    main(["sweep", str(file), "--out", str(out), "--device", "cpu", "--quiet"])
    assert set(pd.read_parquet(out / "results.parquet")["state"]) == {"done"}


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _workers(sweep: int) -> list[int]:
    """A sweep's pool workers: the forks of its fork server (`sweeps.executors.LocalExecutor`), or its spawned
    children where the platform has no fork server."""
    found = []
    for child in _children(sweep):
        command = _cmdline(child)
        found += _children(child) if "forkserver" in command else [child] if "spawn_main" in command else []
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers through /proc")
def test_killing_a_worker_and_then_the_sweep_loses_nothing(tmp_path, pause):
    file = _sweep_file(tmp_path, TINY.replace("steps = 40,", "steps = 160,").replace('"last"', "80, \"last\""))
    argv = [sys.executable, "-m", "rlntp.cli", "sweep", str(file), "--device", "cpu", "--workers", "2", "--quiet"]
    reference = tmp_path / "reference"
    subprocess.run([*argv, "--out", str(reference)], check=True, capture_output=True)

    out = tmp_path / "out"
    sweep = subprocess.Popen([*argv, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=pause.env(20, 60))
    victim = pause.wait(20, sweep, count=2)[0]  # both pre-training runs hold at step 20
    os.kill(victim, signal.SIGKILL)  # a worker dies mid-run: the pool is rebuilt, its runs are retried
    pause.release(20)
    pause.wait(60, sweep)  # a run holds at step 60: the sweep is still going
    workers = _workers(sweep.pid)
    assert workers and victim not in workers
    sweep.kill()  # then the sweep itself, without warning
    sweep.wait()
    deadline = time.time() + 60
    while any(_cmdline(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(_cmdline(pid) for pid in workers), "workers outlived the killed sweep"
    assert not (out / "runs" / "seed=1" / "grpo,from=160" / "checkpoints" / "step_0000006").exists()

    subprocess.run([*argv, "--out", str(out)], check=True, capture_output=True)
    pd.testing.assert_frame_equal(_table(out), _table(reference))


def test_a_runs_floats_depend_on_its_seed_and_threads_not_on_the_workers(tmp_path):
    file = _sweep_file(tmp_path)
    for workers in (1, 2):
        main(["sweep", str(file), "--device", "cpu", "--quiet", "--out", str(tmp_path / f"w{workers}"),
              "--workers", str(workers)])
    table = _table(tmp_path / "w1")
    pd.testing.assert_frame_equal(_table(tmp_path / "w2"), table)
    pre = table["stage"] == "pretrain"
    assert set(table.loc[pre, "train.threads"]) == {1} and set(table.loc[~pre, "post.threads"]) == {1}


def test_the_ray_executor_gives_the_local_executors_results(tmp_path):
    pytest.importorskip("ray")
    file = _sweep_file(tmp_path)
    argv = ["sweep", str(file), "--device", "cpu", "--quiet"]
    main([*argv, "--out", str(tmp_path / "local"), "--workers", "2"])
    main([*argv, "--out", str(tmp_path / "ray"), "--executor", "ray"])
    pd.testing.assert_frame_equal(_table(tmp_path / "ray"), _table(tmp_path / "local"))


@pytest.mark.unit
def test_a_sweep_resumed_with_another_step_or_decoder_records_each_row_as_it_ran(tmp_path):
    """The sweep file extended with train.step_impl and post.decode changed (both resumable): each run resumes from
    its checkpoint, and results.parquet gives every row the values its steps and evaluation ran with, not the new
    ones for the whole run; config.json keeps the values the runs started with and the changes with their step."""
    text = """
[pretrain]
task = { d = 4 }
model = { layers = 1, width = 16, heads = 2 }
train = { steps = STEPS, batch_size = 16, eval_every = 3, eval_samples = 16, save_every = 3, step_impl = "IMPL" }
[posttrain.grpo]
from_steps = [3]
[posttrain.grpo.post]
steps = POST
eval_every = 2
eval_samples = 16
save_every = 2
prompts_per_step = 2
rollouts_per_prompt = 2
decode = "DECODE"
"""
    out = tmp_path / "out"
    for steps, impl, post, decode in (("3", "grouped", "2", "shared"), ("6", "static", "4", "static")):
        file = _sweep_file(tmp_path, text.replace("STEPS", steps).replace("IMPL", impl).replace("POST", post)
                           .replace("DECODE", decode))
        main(["sweep", str(file), "--out", str(out), "--device", "cpu", "--workers", "1", "--quiet"])
    table = pd.read_parquet(out / "results.parquet").sort_values(["stage", "step"], ascending=[False, True])
    assert set(table["state"]) == {"done"}
    columns = ["stage", "step", "train.step_impl", "ran.step_impl", "post.decode", "ran.decode", "changes"]
    assert table[columns].fillna("-").values.tolist() == [
        ["pretrain", 0, "grouped", "grouped", "-", "shared", "train.step_impl grouped→static@3"],
        ["pretrain", 3, "grouped", "grouped", "-", "shared", "train.step_impl grouped→static@3"],
        ["pretrain", 6, "static", "static", "-", "shared", "train.step_impl grouped→static@3"],
        # post-training: its own decoder row by row; train.* as its pre-training stood at step 3, where it starts
        ["posttrain", 0, "grouped", "-", "shared", "shared", "post.decode shared→static@2"],
        ["posttrain", 2, "grouped", "-", "shared", "shared", "post.decode shared→static@2"],
        ["posttrain", 4, "grouped", "-", "static", "static", "post.decode shared→static@2"]]
    assert set(table["packed"]) == {1}
    config = json.loads((out / "runs" / "base" / "pretrain" / "config.json").read_text())
    assert config["train"]["step_impl"] == "grouped" and config["changes"] == [
        {"step": 3, "field": "train.step_impl", "from": "grouped", "to": "static"}]


@pytest.mark.unit
def test_censored_medians_are_lower_bounds_when_a_bound_sits_at_or_below_them():
    from rlntp.experiments.summary import censored_quantile

    assert censored_quantile([30, 10, 20], [True, True, True], 0.5) == (20, True)
    assert censored_quantile([30, 10, 20], [False, True, True], 0.5) == (20, True)  # the bound lies above
    assert censored_quantile([30, 10, 20], [True, False, True], 0.5) == (20, False)  # 10 may be above 20
    assert censored_quantile([30, 10, 20], [True, True, True], 0.25) == (10, True)
    assert censored_quantile([30, 10, 20], [True, True, True], 0.75) == (30, True)


@pytest.mark.unit
def test_fig13_counts_the_best_checkpoint_with_its_pre_training_samples_and_keeps_unreached_seeds():
    from rlntp.experiments.fig13 import per_seed

    def rows(run, stage, seed, step, evals):
        return [{"run": run, "stage": stage, "task.d": 8, "train.seed": seed, "source_step": step, "step": i,
                 "samples_seen": samples, "eval/greedy_acc": acc, "train.eval_samples": 100, "post.eval_samples": 100}
                for i, (samples, acc) in enumerate(evals)]
    table = pd.DataFrame(
        rows("s0/pretrain", "pretrain", 0, None, [(0, 0.5), (1000, 0.6), (2000, 0.96)])
        + rows("s0/a", "posttrain", 0, 500, [(500, 0.5), (564, 0.97)])
        + rows("s0/b", "posttrain", 0, 250, [(250, 0.5), (314, 0.6), (378, 0.95)])
        + rows("s1/pretrain", "pretrain", 1, None, [(0, 0.5), (1000, 0.5), (2000, 0.5)])
        + rows("s1/a", "posttrain", 1, 500, [(500, 0.5), (564, 0.6)])
        + rows("s1/b", "posttrain", 1, 250, [(250, 0.5), (314, 0.6)]))
    seeds = per_seed(table).set_index("seed")
    assert (seeds.loc[0, "ntp"], seeds.loc[0, "ntp_reached"]) == (2000, True)
    assert (seeds.loc[0, "rl"], seeds.loc[0, "rl_reached"], seeds.loc[0, "rl_from"]) == (378, True, 250)
    assert (seeds.loc[1, "ntp"], seeds.loc[1, "ntp_reached"]) == (2000, False)  # a lower bound, kept
    assert (seeds.loc[1, "rl"], seeds.loc[1, "rl_reached"]) == (314, False)  # the smallest bound over the ladder


@pytest.mark.science
def test_fig2_recipe_shows_the_one_third_threshold(tmp_path, monkeypatch, capsys):
    """Fig. 2 on a CI budget (d = 10, 600 steps, one seed): greedy guesses below 1/3, goes long and right above.

    d = 10 (1,024 inputs, each seen ~75 times): at d = 8 the short answers of 256 inputs get memorized, and
    greedy accuracy below 1/3 drifts up to the bound."""
    from rlntp.experiments import Preset, fig2

    ci = {"pretrain": {"task": {"d": 10}, "model": {"layers": 2, "width": 64, "heads": 4},
                       "train": {"steps": 600, "batch_size": 128, "lr": 1e-3, "eval_every": 50, "eval_samples": 1000,
                                 "save_every": 600},
                       "axes": {"task.p_cot": [0.15, 0.6], "train.seed": [0]}}}
    monkeypatch.setitem(fig2.RECIPE.presets, "ci", Preset("a test's", ci))
    main(["reproduce", "fig2", "--preset", "ci", "--out", str(tmp_path / "fig2"), "--device", "cpu", "--workers", "2",
          "--quiet"])
    assert (tmp_path / "fig2" / "fig2.png").stat().st_size > 0
    finals = fig2.final_values(pd.read_parquet(tmp_path / "fig2" / "results.parquet")).set_index("p_cot")
    assert 0.4 <= finals.loc[0.15, "eval/greedy_acc"] <= 0.6
    assert finals.loc[0.6, "eval/greedy_acc"] >= 0.9
    for p in (0.15, 0.6):  # calibrated: long answers as often as long sequences in the mixture
        assert abs(finals.loc[p, "eval/sampled_long_frac"] - p) <= 0.07
    assert "0.15" in capsys.readouterr().out


@pytest.mark.science
def test_fig13_recipe_shows_the_gap_grow_with_d(tmp_path, monkeypatch, capsys, pretrained_to_calibration):
    """Fig. 13 on a CI budget: at d = 4 NTP alone is quick; at d = 8 it is not reached, NTP + GRPO is.

    GRPO starts where d = 8's pre-training is first calibrated (measured on a run of the same seed and
    schedule; training batches do not depend on the evaluations), not at a fixed step."""
    from rlntp.experiments import Preset, fig13

    model = {"layers": 2, "width": 64, "heads": 4}
    _, step, _ = pretrained_to_calibration(["pretrain", "--d", "8", "--p-cot", "0.25",
                                            *[f"--{k}={v}" for k, v in model.items()], "--batch-size", "128", "--lr",
                                            "1e-3", "--eval-samples", "2000", "--device", "cpu", "--quiet"],
                                           p_cot=0.25, chunk=100, cap=2000)
    ci = {"pretrain": {"task": {"p_cot": 0.25}, "model": model,
                       "train": {"steps": step, "batch_size": 128, "lr": 1e-3, "eval_every": 100, "eval_samples": 500,
                                 "save_every": step},
                       "axes": {"task.d": [4, 8], "train.seed": [0]}},
          "posttrain": {"grpo": {"from_steps": ["last"], "post": {"steps": 20, "eval_every": 2, "eval_samples": 500,
                                                                  "save_every": 20}}}}
    monkeypatch.setitem(fig13.RECIPE.presets, "ci", Preset("a test's", ci))
    main(["reproduce", "fig13", "--preset", "ci", "--out", str(tmp_path / "fig13"), "--device", "cpu",
          "--workers", "2", "--quiet"])
    seeds = fig13.per_seed(pd.read_parquet(tmp_path / "fig13" / "results.parquet")).set_index("d")
    assert seeds.loc[4, "ntp_reached"] and seeds.loc[4, "ntp"] <= 300 * 128
    assert not seeds.loc[8, "ntp_reached"], (step, seeds)  # a lower bound
    assert seeds.loc[8, "rl_reached"] and seeds.loc[8, "rl"] <= step * 128 + 20 * 64, (step, seeds)
    assert ">" in capsys.readouterr().out  # the table marks the lower bound
