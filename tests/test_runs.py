"""Run directories: resume equivalence, atomic checkpoints, corrupt checkpoints, config checks."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from rlntp.errors import CheckpointError, RunDirError
from rlntp.models import ModelConfig
from rlntp.runs import checkpoints, metrics
from rlntp.tasks import TaskConfig
from rlntp.training.pretrain import PretrainConfig, PretrainRun, pretrain

pytestmark = pytest.mark.unit

TINY = PretrainRun(
    task=TaskConfig(d=6, p_cot=0.25),
    model=ModelConfig(layers=1, width=32, heads=2),
    train=PretrainConfig(steps=12, batch_size=32, lr=3e-3, eval_every=5, save_every=4, eval_samples=64, device="cpu"),
)


def _weights(run_dir, step):
    return load_file(checkpoints.checkpoint_path(run_dir, step) / "model.safetensors")


def _without_perf(records):
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in records]


def test_run_directory_layout(tmp_path):
    out = pretrain(TINY, tmp_path / "run", progress=False)
    config = json.loads((out / "config.json").read_text())
    assert config["stage"] == "pretrain" and config["task"]["p_cot"] == 0.25 and config["train"]["steps"] == 12
    assert PretrainRun.from_dict(config) == TINY
    assert checkpoints.checkpoint_steps(out) == [4, 8, 12]
    records = metrics.read_metrics(out)
    assert [r["step"] for r in records] == [0, 5, 10, 12]
    assert [r["samples_seen"] for r in records] == [0, 160, 320, 384]
    required = {"step", "samples_seen", "eval/greedy_acc", "eval/sampled_acc", "eval/greedy_len_median",
                "eval/greedy_long_frac", "eval/sampled_long_frac", "eval/greedy_len_hist", "train/loss",
                "perf/tokens_per_s"}
    assert required <= records[-1].keys()
    assert sum(records[-1]["eval/greedy_len_hist"]) == 64 and len(records[-1]["eval/greedy_len_hist"]) == 8


def test_resume_after_a_kill_gives_the_same_run(tmp_path):
    full = pretrain(TINY, tmp_path / "full", progress=False)
    killed = pretrain(TINY, tmp_path / "killed", progress=False)
    # simulate a kill just before step 12's evaluation: the step-8 checkpoint is the last one on disk,
    # the metrics file has a record past it and a half-written line, and a temporary checkpoint lingers
    checkpoints.checkpoint_path(killed, 12).rename(checkpoints.checkpoint_path(killed, 12).with_name("step_0000012.tmp"))
    with open(killed / metrics.METRICS, "a") as f:
        f.write('{"step": 13, "samples_')
    assert checkpoints.checkpoint_steps(killed) == [4, 8]

    pretrain(TINY, killed, resume=True, progress=False)
    assert checkpoints.checkpoint_steps(killed) == [4, 8, 12]
    for name, tensor in _weights(full, 12).items():
        assert torch.equal(tensor, _weights(killed, 12)[name]), name
    assert _without_perf(metrics.read_metrics(killed)) == _without_perf(metrics.read_metrics(full))


def test_resume_can_extend_a_finished_run(tmp_path):
    longer = PretrainRun(TINY.task, TINY.model, PretrainConfig(**{**vars(TINY.train), "steps": 16}))
    straight = pretrain(longer, tmp_path / "straight", progress=False)
    extended = pretrain(TINY, tmp_path / "extended", progress=False)
    pretrain(longer, extended, resume=True, progress=False)
    for name, tensor in _weights(straight, 16).items():
        assert torch.equal(tensor, _weights(extended, 16)[name]), name


def test_resume_with_different_options_is_refused(tmp_path):
    out = pretrain(TINY, tmp_path / "run", progress=False)
    other = PretrainRun(TaskConfig(d=6, p_cot=0.5), TINY.model, TINY.train)
    with pytest.raises(RunDirError, match=r"task.p_cot \(run: 0.25, given: 0.5\)"):
        pretrain(other, out, resume=True, progress=False)
    with pytest.raises(RunDirError, match="already holds a run; pass --resume"):
        pretrain(TINY, out, progress=False)


def test_corrupt_trainer_state_is_a_clear_error(tmp_path):
    out = pretrain(TINY, tmp_path / "run", progress=False)
    state = checkpoints.checkpoint_path(out, 12) / "trainer_state.safetensors"
    state.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="trainer_state.safetensors differs from the checksum"):
        pretrain(TINY, out, resume=True, progress=False)


def test_checkpoints_hold_no_pickles(tmp_path):
    out = pretrain(TINY, tmp_path / "run", progress=False)
    files = {p.name for p in checkpoints.checkpoint_path(out, 12).iterdir()}
    assert files >= {"config.json", "model.safetensors", "trainer_state.safetensors", "trainer_state.json"}
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))]


def test_resume_on_a_fixed_dataset_gives_the_same_run(tmp_path):
    """Epochs over a dataset (AdamW, clipping): a run killed mid-epoch resumes to the same weights and metrics."""
    from rlntp.data import make_mult_dataset

    dataset = make_mult_dataset(tmp_path / "data", 2, 0.5, {"train": 500, "valid": 0, "test": 50}, seed=0)
    run = PretrainRun(
        task=TaskConfig(task="mult", digits=2, p_cot=0.5, data=str(dataset)),
        model=ModelConfig(layers=1, width=32, heads=2),
        train=PretrainConfig(steps=12, batch_size=64, lr=3e-3, optimizer="adamw", weight_decay=0.01, max_grad_norm=1.0,
                             eval_every=5, save_every=4, eval_samples=64, device="cpu"),
    )
    full = pretrain(run, tmp_path / "full", progress=False)
    records = metrics.read_metrics(full)
    assert [r["step"] for r in records] == [0, 5, 10, 12] and records[-1]["epoch"] == 12 * 64 / 500
    assert records[-1]["eval/greedy_no_eos_frac"] >= 0 and sum(records[-1]["eval/greedy_len_hist"]) == 50
    killed = pretrain(run, tmp_path / "killed", progress=False)
    checkpoints.checkpoint_path(killed, 12).rename(checkpoints.checkpoint_path(killed, 12).with_name("step_0000012.tmp"))
    shutil.rmtree(checkpoints.checkpoint_path(killed, 8))  # resume from step 4: steps 5 .. 12 cross the first epoch's end
    pretrain(run, killed, resume=True, progress=False)
    for name, tensor in _weights(full, 12).items():
        assert torch.equal(tensor, _weights(killed, 12)[name]), name
    assert _without_perf(metrics.read_metrics(killed)) == _without_perf(records)
    # a checkpoint loads with transformers alone, tokenizer included
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint = checkpoints.checkpoint_path(full, 12)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    ids = tokenizer("2 1 * 4 3||", return_tensors="pt")["input_ids"]
    assert ids.tolist() == [[2, 1, 10, 4, 3, 14]] and model(ids).logits.shape == (1, 6, 17)


def test_runs_written_before_new_options_existed_still_resume(tmp_path):
    """Options added later (the optimizer, the task's digits and dataset) take their defaults in an older config."""
    out = pretrain(TINY, tmp_path / "run", progress=False)
    config = json.loads((out / "config.json").read_text())
    for section, key in (("train", "optimizer"), ("train", "weight_decay"), ("train", "max_grad_norm"),
                         ("task", "digits"), ("task", "data")):
        del config[section][key]
    (out / "config.json").write_text(json.dumps(config))
    longer = PretrainRun(TINY.task, TINY.model, PretrainConfig(**{**vars(TINY.train), "steps": 16}))
    pretrain(longer, out, resume=True, progress=False)
    assert checkpoints.checkpoint_steps(out) == [4, 8, 12, 16]
