"""Packed pre-training (`rlntp sweep --pack N`): each run's directory as if it had trained alone, its floats
bit for bit those of the run alone with the same step (static) on a CPU, and a pack that cannot train packed falls
back to runs alone. What ran is what is recorded: config.json, status.json and results.parquet say which steps
trained packed and which step ran."""

import json
import shutil
import signal
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from rlntp.cli import main
from rlntp.data import make_data
from rlntp.errors import Diverged
from rlntp.models import ModelConfig, build_model
from rlntp.runs.checkpoints import checkpoint_path, checkpoint_steps
from rlntp.runs.metrics import read_metrics
from rlntp.sweeps.stages import execute_pack
from rlntp.sweeps.spec import Job
from rlntp.tasks import TaskConfig, make_task
from rlntp.training import pretrain as pretrain_module
from rlntp.training.packed import Pack, PackError, StepsDiffer
from rlntp.training.pretrain import PretrainConfig, PretrainRun, pretrain, pretrain_packed

pytestmark = pytest.mark.unit

# 4 runs (2 seeds x 2 mixtures) with clipping and weight decay, so the per-run clipping and AdamW are exercised
SWEEP = {
    "pretrain": {"task": {"d": 6}, "model": {"layers": 2, "width": 32, "heads": 2},
                 "train": {"steps": 60, "batch_size": 32, "lr": 3e-3, "optimizer": "adamw", "weight_decay": 0.01,
                           "max_grad_norm": 1.0, "eval_every": 20, "eval_samples": 128, "save_every": 30},
                 "axes": {"train.seed": [0, 1], "task.p_cot": [0.25, 0.5]}},
    "posttrain": {"grpo": {"from_steps": ["last"], "post": {"steps": 2, "eval_every": 2, "eval_samples": 32,
                                                           "save_every": 2, "prompts_per_step": 2,
                                                           "rollouts_per_prompt": 2}}},
}
LOSS_RTOL = 1e-4
"""Packed (the static step) and alone with step_impl auto (on a CPU the grouped step), the logged losses agree within
this, relative (measured: within 5e-6 after 60 steps). The weights are compared with the run alone that takes the
static step too, and are equal: the grouped and static steps round differently, and Adam divides by the root of the
second moment, so a coordinate whose gradient is about rounding-sized (the attention's key bias, whose exact gradient
is 0) moves by up to lr in either direction (measured: grouped against static, 1.0e-2 of the largest entry of one
c_attn.bias at step 60)."""


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory):
    """The same sweep unpacked and with --pack 4 (both in this process: --workers 1); and under "static" each of
    its pre-training runs alone with the step a pack takes (step_impl static), by its name."""
    root = tmp_path_factory.mktemp("packed")
    spec = root / "sweep.json"
    spec.write_text(json.dumps(SWEEP))
    outs = {}
    for pack in (1, 4):
        outs[pack] = root / f"pack{pack}"
        main(["sweep", str(spec), "--out", str(outs[pack]), "--device", "cpu", "--workers", "1", "--pack", str(pack),
              "--quiet"])
    outs["static"] = root / "static"
    for config in (outs[4] / "runs").glob("*/pretrain/config.json"):
        run = PretrainRun.from_dict(json.loads(config.read_text()))
        pretrain(replace(run, train=replace(run.train, step_impl="static")), outs["static"] / config.parent.parent.name,
                 progress=False)
    return outs


def _files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() and p.name != "rlntp.lock"}


@pytest.mark.integration
def test_packed_run_directories_are_those_of_runs_alone(two_sweeps):
    alone, packed = two_sweeps[1], two_sweeps[4]
    status = json.loads((packed / "status.json").read_text())["runs"]
    pretrain_runs = sorted(name for name in status if name.endswith("/pretrain"))
    assert len(pretrain_runs) == 4 and all(status[name].get("packed") == 4 for name in pretrain_runs)
    assert all(status[name]["packed_steps"] == [[0, 60]] for name in pretrain_runs)
    assert all(s["state"] == "done" and "pack_error" not in s for s in status.values())
    for name in pretrain_runs:
        a, b = alone / "runs" / name, packed / "runs" / name
        assert _files(a) == _files(b)
        config_a, config_b = (json.loads((d / "config.json").read_text()) for d in (a, b))
        # the same options; what ran differs: packed, the pack's static step; alone, the CPU's grouped one
        assert config_a["train"]["step_impl"] == config_b["train"]["step_impl"] == "auto"
        assert {k: v for k, v in config_a.items() if k != "ran"} == {k: v for k, v in config_b.items() if k != "ran"}
        how = {"decode": "shared", "precision": "fp32", "device": "cpu"}
        assert config_a["ran"] == [{"step": 0, "packed": 1, "step_impl": "grouped"} | how]
        assert config_b["ran"] == [{"step": 0, "packed": 4, "step_impl": "static"} | how]
        assert checkpoint_steps(a) == checkpoint_steps(b) == [30, 60]
        for step in (30, 60):
            wa, wb = (load_file(checkpoint_path(d, step) / "model.safetensors") for d in (a, b))
            assert wa.keys() == wb.keys()
            sa, sb = (load_file(checkpoint_path(d, step) / "trainer_state.safetensors") for d in (a, b))
            assert sa.keys() == sb.keys()  # optimizer moments of every parameter, and the data generator
            assert torch.equal(sa["rng/data"], sb["rng/data"])
        ma, mb = read_metrics(a), read_metrics(b)
        assert [r.keys() for r in ma] == [r.keys() for r in mb]
        for ra, rb in zip(ma, mb, strict=True):
            assert rb.get("train/loss", 0) == pytest.approx(ra.get("train/loss", 0), rel=LOSS_RTOL)
            for key in ("eval/greedy_acc", "eval/sampled_acc"):  # a near-tie may flip a decision, not more
                assert abs(rb[key] - ra[key]) <= 2 / SWEEP["pretrain"]["train"]["eval_samples"]


@pytest.mark.integration
def test_packed_runs_are_bit_for_bit_the_runs_alone_with_the_same_step(two_sweeps):
    """Packed on a CPU, each run's forward is the model's own on its slice of the stacked parameters, run by run; one
    optimizer steps the stack (Adam is element-wise) and clipping is per run: every weight, Adam moment, random state,
    loss and evaluation equals the run's alone with step_impl static (only the timings differ)."""
    names = sorted(p.parent.name for p in (two_sweeps[4] / "runs").glob("*/pretrain"))
    assert len(names) == 4
    for name in names:
        alone, packed = two_sweeps["static"] / name, two_sweeps[4] / "runs" / name / "pretrain"
        assert checkpoint_steps(alone) == checkpoint_steps(packed) == [30, 60]
        for step in (30, 60):
            for file in ("model.safetensors", "trainer_state.safetensors"):
                wa, wb = (load_file(checkpoint_path(d, step) / file) for d in (alone, packed))
                assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), (name, step, file)
        timing = ("perf/tokens_per_s", "perf/step_s")
        ma, mb = ([{k: v for k, v in r.items() if k not in timing} for r in read_metrics(d)] for d in (alone, packed))
        assert ma == mb and len(ma) == 4


def test_the_vectorized_forward_agrees_with_the_run_by_run_one():
    """An accelerator maps the model's forward over a pack's runs with torch.func.vmap (one batched kernel per
    operation); checked here on the CPU against the run-by-run map: 3 runs (clipping, AdamW), the same losses and
    gradients up to the rounding of the batched kernels (measured: losses equal, gradients within 6e-7 of each
    tensor's largest entry; the bound 1e-5)."""
    task = make_task(TaskConfig(d=6, p_cot=0.25))
    cfg = PretrainConfig(optimizer="adamw", weight_decay=0.01, max_grad_norm=1.0)
    results = {}
    for vectorize in (False, True):
        models = [build_model(ModelConfig(layers=2, width=32, heads=2), task.vocab_size, task.context_len,
                              task.eos_id, seed, "cpu") for seed in range(3)]
        pack = Pack(models, cfg, task.prompt_len - 1, vectorize=vectorize)
        batches = [make_data(task, None, seed, torch.device("cpu")).train_batch(0, 32) for seed in range(3)]
        with warnings.catch_warnings():  # vmap warns that CPU attention has no batching rule (it loops over runs)
            warnings.simplefilter("ignore", UserWarning)
            losses, _ = pack.losses(batches)
        losses.sum().backward()
        results[vectorize] = losses.detach(), {name: p.grad for name, p in pack.params.items()}
    (loop, loop_grads), (vmapped, vmapped_grads) = results[False], results[True]
    assert loop.shape == (3,) and torch.allclose(vmapped, loop, rtol=1e-6, atol=0)
    assert loop_grads.keys() == vmapped_grads.keys() and len(loop_grads) == 28  # wte once: lm_head is tied to it
    for name, grad in loop_grads.items():
        assert (vmapped_grads[name] - grad).abs().max() <= 1e-5 * grad.abs().max(), name


def test_the_results_table_reads_packed_runs_as_runs_alone(two_sweeps):
    alone, packed = (pd.read_parquet(two_sweeps[p] / "results.parquet") for p in (1, 4))
    assert list(alone.columns) == list(packed.columns)
    key = ["run", "step"]
    alone, packed = alone.sort_values(key).reset_index(drop=True), packed.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(alone[key + ["state", "train.seed", "task.p_cot"]],
                                  packed[key + ["state", "train.seed", "task.p_cot"]])
    assert (packed["train/loss"] - alone["train/loss"]).abs().max() <= LOSS_RTOL
    pre = packed["stage"] == "pretrain"
    assert set(packed.loc[pre, "packed"]) == {4} and set(packed.loc[~pre, "packed"]) == {1}
    assert set(alone["packed"]) == {1} and packed["pack_error"].isna().all() and packed["changes"].isna().all()
    assert set(packed.loc[pre, "ran.step_impl"]) == {"static"} and set(alone.loc[pre, "ran.step_impl"]) == {"grouped"}
    assert set(packed["train.step_impl"]) == {"auto"}  # the option as given; ran.step_impl: what it ran as
    assert packed.loc[~pre, "ran.step_impl"].isna().all()  # post-training has no such step


@pytest.mark.integration
def test_eval_and_resume_read_a_packed_run(two_sweeps, tmp_path, capsys):
    run = two_sweeps[4] / "runs" / "seed=1,p_cot=0.5" / "pretrain"
    main(["eval", str(run), "--samples", "32", "--device", "cpu"])
    assert "greedy   accuracy" in capsys.readouterr().out
    # a packed run continues alone: --resume with more steps
    shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns("rlntp.lock"))
    config = PretrainRun.from_dict(json.loads((run / "config.json").read_text()))
    pretrain(replace(config, train=replace(config.train, steps=70)), tmp_path / "run", resume=True, progress=False)
    assert [r["step"] for r in read_metrics(tmp_path / "run")][-2:] == [60, 70]


def _tiny(seed: int, steps: int = 8) -> PretrainRun:
    return PretrainRun(TaskConfig(d=4), ModelConfig(layers=1, width=16, heads=2),
                       PretrainConfig(steps=steps, batch_size=16, eval_every=4, save_every=4, eval_samples=16,
                                      device="cpu", seed=seed))


def test_runs_at_different_steps_catch_up_then_train_packed(tmp_path):
    """After a kill between two runs' saves, a pack's runs stand at different checkpoints: the ones behind catch up
    alone, then all go on packed."""
    pretrain(_tiny(0, steps=4), tmp_path / "a", progress=False)  # 4 of 8 steps done
    runs = [_tiny(0), _tiny(1)]  # a at step 4, b not started
    with pytest.raises(StepsDiffer, match=r"different steps \(0, 4\)"):
        pretrain_packed(runs, [tmp_path / "a", tmp_path / "b"], progress=False)
    jobs = tuple(Job(name, "pretrain", run) for name, run in zip(("a", "b"), runs))
    outcome = execute_pack(jobs, str(tmp_path))
    assert {name: (o["state"], o.get("packed"), o.get("pack_error")) for name, o in outcome["runs"].items()} == {
        "a": ("done", 2, None), "b": ("done", 2, None)}
    assert [r["step"] for r in read_metrics(tmp_path / "a")] == [0, 4, 8]
    assert [r["step"] for r in read_metrics(tmp_path / "b")] == [0, 4, 8]
    for name in "ab":  # b's first, refused, packed start at step 0 is not recorded: nothing ran then
        ran = json.loads((tmp_path / name / "config.json").read_text())["ran"]
        assert [(s["step"], s["packed"], s["step_impl"]) for s in ran] == [(0, 1, "grouped"), (4, 2, "static")]


def test_a_run_that_diverges_fails_alone(tmp_path, monkeypatch):
    """One run of a pack diverges (forced at its first evaluation after step 0): it fails with its error, the other
    finishes, packed."""
    real = pretrain_module.check_finite_weights  # evaluations and checkpoints of packed runs check through it

    def diverge_b(model, step, out):
        if Path(out).name == "b" and step > 0:
            raise Diverged(f"the weights hold NaN or infinite values at step {step}")
        real(model, step, out)

    monkeypatch.setattr(pretrain_module, "check_finite_weights", diverge_b)
    jobs = tuple(Job(name, "pretrain", _tiny(seed)) for name, seed in (("a", 0), ("b", 1)))
    outcome = execute_pack(jobs, str(tmp_path))["runs"]
    assert outcome["b"]["state"] == "failed" and "at step 4" in outcome["b"]["error"]
    assert outcome["a"]["state"] == "done" and outcome["a"]["packed"] == 1
    assert [r["step"] for r in read_metrics(tmp_path / "a")] == [0, 4, 8]


SMALL = """
[pretrain]
task = { d = 4 }
model = { layers = 1, width = 16, heads = 2 }
train = { steps = 8, batch_size = 16, eval_every = 4, eval_samples = 16, save_every = 4, STEP }
[pretrain.axes]
"train.seed" = [0, 1]
"""


def test_a_sweep_that_asks_packing_for_a_step_it_does_not_take_is_refused(tmp_path, refused):
    """train.step_impl = "grouped" with --pack: refused before the directory is claimed (a pack would take the static
    step); through the API, the pack falls back to runs alone that take the grouped step, and say so."""
    file, out = tmp_path / "sweep.toml", tmp_path / "out"
    file.write_text(SMALL.replace("STEP", 'step_impl = "grouped"'))
    refused(["sweep", str(file), "--out", str(out), "--device", "cpu", "--pack", "2"],
            "train.step_impl = 'grouped' has no packed form")
    assert not out.exists()

    runs = [replace(_tiny(seed), train=replace(_tiny(seed).train, step_impl="grouped")) for seed in (0, 1)]
    with pytest.raises(PackError, match="no packed form"):
        pretrain_packed(runs, [tmp_path / "a", tmp_path / "b"], progress=False)
    assert not (tmp_path / "a").exists()
    outcome = execute_pack(tuple(Job(name, "pretrain", run) for name, run in zip("ab", runs)), str(tmp_path))
    for name in "ab":
        assert outcome["runs"][name]["state"] == "done" and "no packed form" in outcome["runs"][name]["pack_error"]
        ran = json.loads((tmp_path / name / "config.json").read_text())["ran"]
        assert [(s["step"], s["packed"], s["step_impl"]) for s in ran] == [(0, 1, "grouped")]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kills the sweep at a pause")
@pytest.mark.integration
def test_a_packed_sweep_killed_and_resumed_without_pack_records_the_hybrid(tmp_path, pause):
    """A pack of 2 killed while saving step 4 (run seed=0 holds its checkpoint, seed=1 not yet), then rerun without
    --pack: seed=0 trained steps 0-4 packed (static step) and 4-8 alone (grouped); seed=1 all alone (its packed
    steps were lost with the kill and ran again). config.json, status.json and results.parquet say so."""
    file, out = tmp_path / "sweep.toml", tmp_path / "out"
    file.write_text(SMALL.replace(", STEP", ""))
    argv = ["sweep", str(file), "--out", str(out), "--device", "cpu", "--workers", "1", "--quiet"]
    sweep = subprocess.Popen([sys.executable, "-m", "rlntp.cli", *argv, "--pack", "2"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=pause.env(4))
    pause.wait(4, sweep)
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    main(argv)  # without --pack

    first, second = (out / "runs" / f"seed={seed}" / "pretrain" for seed in (0, 1))
    ran = [(s["step"], s["packed"], s["step_impl"]) for s in json.loads((first / "config.json").read_text())["ran"]]
    assert ran == [(0, 2, "static"), (4, 1, "grouped")]
    ran = [(s["step"], s["packed"], s["step_impl"]) for s in json.loads((second / "config.json").read_text())["ran"]]
    assert ran == [(0, 1, "grouped")]
    status = json.loads((out / "status.json").read_text())["runs"]
    assert status["seed=0/pretrain"]["state"] == status["seed=1/pretrain"]["state"] == "done"
    assert (status["seed=0/pretrain"]["packed"], status["seed=0/pretrain"]["packed_steps"]) == (2, [[0, 4]])
    assert "packed" not in status["seed=1/pretrain"]
    table = pd.read_parquet(out / "results.parquet").sort_values(["run", "step"])
    got = table[["run", "step", "packed", "ran.step_impl", "train.step_impl"]].values.tolist()
    assert got == [["seed=0/pretrain", 0, 2, "static", "auto"], ["seed=0/pretrain", 4, 2, "static", "auto"],
                   ["seed=0/pretrain", 8, 1, "grouped", "auto"], ["seed=1/pretrain", 0, 1, "grouped", "auto"],
                   ["seed=1/pretrain", 4, 1, "grouped", "auto"], ["seed=1/pretrain", 8, 1, "grouped", "auto"]]
    main(argv)  # a rerun keeps the record
    assert json.loads((out / "status.json").read_text())["runs"]["seed=0/pretrain"]["packed_steps"] == [[0, 4]]
