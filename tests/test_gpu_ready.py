"""Ready for a GPU, checked on a CPU: a training step that waits for nothing, compiled steps equal to eager ones,
and the prepared GPU check (benchmarks/gpu_check.py) run in its CPU mode so that it cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlntp.data import make_data, make_sampled_dataset
from rlntp.devices import HostSyncCounter
from rlntp.generation import generate, generate_static
from rlntp.models import ModelConfig, build_model
from rlntp.runs.metrics import read_metrics
from rlntp.tasks import TaskConfig, make_task
from rlntp.training import pretrain as pretrain_module
from rlntp.training.losses import LossTally
from rlntp.training.optim import make_optimizer
from rlntp.training.posttrain import PosttrainConfig, PosttrainRun, posttrain
from rlntp.training.pretrain import PretrainConfig, PretrainRun, make_step_loss, pretrain, pretrain_packed

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


def test_the_sync_counter_sees_what_makes_a_gpu_wait():
    x = torch.arange(6.0)
    with HostSyncCounter() as syncs:
        x.sum().item()
        bool(x.max() > 2)
        x[x > 2]
        torch.nonzero(x)
        torch.unique(x)
        (x * 2).softmax(0)  # none
    assert syncs.ops == ["_local_scalar_dense", "_local_scalar_dense", "index", "nonzero", "_unique2"]


@pytest.mark.parametrize("task_config,dataset", [(TaskConfig(d=8, p_cot=0.25, p_medium=0.25), False),
                                                 (TaskConfig(task="mult", digits=2, p_cot=0.25), False),
                                                 (TaskConfig(d=8, p_cot=0.25), True)],
                         ids=["parity", "mult", "parity-dataset"])
def test_a_static_step_waits_for_nothing(task_config, dataset, tmp_path):
    """Batch (fresh, or the next rows of a dataset's epochs, across an epoch's end), loss, backward, the loss
    tally, clipping and AdamW: no operation that makes a GPU's host wait (the grouped step reads the rows'
    lengths, so it does)."""
    task = make_task(task_config)
    model = build_model(ModelConfig(layers=2, width=32, heads=2), task.vocab_size, task.context_len, task.eos_id, 0)
    optimizer = make_optimizer(model, "adamw", 1e-3, CPU, 0.01, max_grad_norm=1.0)
    data_dir = make_sampled_dataset(tmp_path / "data", task, {"train": 100, "test": 10}, 0) if dataset else None
    data, tally = make_data(task, data_dir and str(data_dir), 0, CPU), LossTally(CPU)
    data.train_batch(1, 64)  # rows 64..127 of a train split of 100: its first epoch's order is drawn here
    counts = {}
    for impl in ("grouped", "static"):
        step_loss = make_step_loss(model, task, impl, CPU)
        with HostSyncCounter() as syncs:
            batch = data.train_batch(1, 64)
            loss, _ = step_loss(batch.tokens, batch.loss_mask)
            loss.backward()
            tally.add(loss, 1)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        counts[impl] = syncs.ops
    assert counts["static"] == []
    assert counts["grouped"], "the counter should see the grouped step's reads"


@pytest.mark.parametrize("temperature,repeats", [(0.0, 1), (1.0, 8), (0.5, 2)])
def test_static_decoding_gives_the_shared_decoders_tokens_and_waits_for_nothing(small_trained, temperature, repeats):
    """generate_static draws as generate does (the same race per step), so the same seed gives the same tokens,
    greedy and sampled, on a model with varied outputs; and it makes no operation a GPU's host waits for."""
    task, model = small_trained
    prompts = task.sample_prompts(128, torch.Generator().manual_seed(1))
    shared = generate(model, prompts, task.max_new_tokens, task.eos_id, temperature,
                      torch.Generator().manual_seed(2), repeats=repeats)
    with HostSyncCounter() as syncs:
        static = generate_static(model, prompts, task.max_new_tokens, task.eos_id, temperature,
                                 torch.Generator().manual_seed(2), repeats=repeats)
    assert syncs.ops == []
    assert len(set(map(tuple, shared.tolist()))) > 10  # varied outputs: the test can tell decoders apart
    # the logits differ in float rounding (no cache against a cache), which may flip a near-tie, rarely
    assert (static == shared).all(dim=1).float().mean() >= 0.99


def test_a_run_with_static_decoding(tmp_path):
    """--decode static through both stages: evaluations and GRPO rollouts."""
    run = PretrainRun(TaskConfig(d=6), ModelConfig(layers=1, width=16, heads=2),
                      PretrainConfig(steps=20, batch_size=32, eval_every=10, save_every=20, eval_samples=32,
                                     device="cpu", decode="static"))
    pretrain(run, tmp_path / "pre", progress=False)
    post = PosttrainConfig(steps=4, eval_every=2, save_every=4, eval_samples=32, device="cpu", decode="static")
    posttrain(PosttrainRun.starting_from(tmp_path / "pre", None, post), tmp_path / "grpo", progress=False)
    assert [r["step"] for r in read_metrics(tmp_path / "grpo")] == [0, 2, 4]


def _no_eval(*args, **kwargs):
    return {"eval/greedy_acc": 0.0, "eval/sampled_acc": 0.0, "eval/sampled_long_frac": 0.0}


@pytest.mark.parametrize("packed", [False, True], ids=["alone", "packed"])
def test_the_training_loop_waits_only_where_it_logs(tmp_path, monkeypatch, packed):
    """Runs of 6 and 12 steps, each evaluated and saved at step 0 (evaluation) and its last step only: the
    longer run makes exactly as many synchronising operations as the shorter, so none happens per step.
    (Evaluation is stubbed out: decoding's prefix sharing reads the device, a count that depends on the weights.)"""
    monkeypatch.setattr(pretrain_module, "evaluate", _no_eval)

    def syncs(steps: int) -> int:
        train = PretrainConfig(steps=steps, batch_size=32, eval_every=steps, save_every=steps, eval_samples=8,
                               device="cpu", step_impl="static", optimizer="adamw", max_grad_norm=1.0)
        run = PretrainRun(TaskConfig(d=6), ModelConfig(layers=1, width=16, heads=2), train)
        with HostSyncCounter() as counter:
            if packed:
                seeds = [PretrainRun(run.task, run.model, PretrainConfig(**vars(train) | {"seed": s})) for s in (0, 1)]
                pretrain_packed(seeds, [tmp_path / f"{steps}-{s}" for s in (0, 1)], progress=False)
            else:
                pretrain(run, tmp_path / str(steps), progress=False)
        return counter.count

    assert syncs(12) == syncs(6)


def _metrics(run_dir: Path) -> list[dict]:
    return read_metrics(run_dir)


@pytest.mark.integration
def test_compiled_and_static_steps_train_as_the_grouped_one(tmp_path):
    """30 steps of one run with each --step-impl (compiled: torch.compile's inductor on this CPU; on CUDA the same
    graphs are captured as CUDA graphs): the losses agree within 1e-5 relative and the evaluations exactly (the
    steps differ only in float rounding; measured: within 2e-7)."""
    results = {}
    for impl in ("grouped", "static", "compiled"):
        run = PretrainRun(TaskConfig(d=6), ModelConfig(layers=1, width=32, heads=2),
                          PretrainConfig(steps=30, batch_size=32, eval_every=10, save_every=30, eval_samples=64,
                                         device="cpu", step_impl=impl))
        results[impl] = _metrics(pretrain(run, tmp_path / impl, progress=False))
    for impl in ("static", "compiled"):
        for a, b in zip(results["grouped"], results[impl], strict=True):
            assert b.get("train/loss", 0) == pytest.approx(a.get("train/loss", 0), rel=1e-5)
            assert (b["eval/greedy_acc"], b["eval/sampled_acc"]) == (a["eval/greedy_acc"], a["eval/sampled_acc"])


@pytest.mark.integration
def test_the_gpu_check_runs_on_the_cpu(tmp_path):
    """`benchmarks/gpu_check.py --device cpu --tiny`: every part runs, and its summary holds what each part measured,
    consistent with itself: every timing finite and positive, the projection recomputed from the parts' numbers."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--device", "cpu", "--tiny",
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    log = (tmp_path / "gpu_check.log").read_text()
    parts = summary["parts"]
    assert {name: part["status"] for name, part in parts.items()} == dict.fromkeys(
        ("tests", "steps", "grpo", "fig1", "llm"), "ok"), log[-3000:]
    assert summary["tiny"] is True and summary["machine"]["device"] == "cpu"
    assert all(0 < part["seconds"] < float("inf") for part in parts.values())

    def timing(value) -> bool:
        return isinstance(value, float) and 0 < value < float("inf")

    assert "skipped" in parts["tests"]["result"]["summary"]  # no CUDA here: tests/test_cuda.py skips
    # the pre-training step, each way it runs on a CPU (bf16 is left out there), and 4 runs packed into one
    steps = parts["steps"]["result"]
    assert set(steps) == {"grouped/fp32", "static/fp32", "compiled/fp32", "packed4/fp32"}
    for name in ("grouped/fp32", "static/fp32", "compiled/fp32"):
        assert timing(steps[name]["ms_per_step"]) and timing(steps[name]["first_step_s"]), name
    assert steps["static/fp32"]["syncs_per_step"] == 0  # static shapes: the host never waits
    assert steps["compiled/fp32"]["syncs_per_step"] is None  # compiled code is not seen by a dispatch mode
    assert steps["grouped/fp32"]["syncs_per_step"] > 0  # the grouped step reads the rows' lengths
    packed = steps["packed4/fp32"]
    assert timing(packed["ms_per_step"]) and packed["ms_per_run_step"] == pytest.approx(packed["ms_per_step"] / 4)
    # a GRPO step, the rollouts alone with each decoder, and the evaluations with each decoder
    grpo = parts["grpo"]["result"]
    assert grpo["precision"] == "fp32"
    for key in ("grpo_step_s", "rollouts_shared_s", "rollouts_static_s", "rollouts_static_compiled_s", "eval_s",
                "eval_s_static", "rl_eval_s", "rl_eval_s_static"):
        assert timing(grpo[key]), key
    # fig1's first steps and its projection, recomputed from the measured step, evaluation and GRPO times
    from rlntp.experiments.fig1 import RECIPE

    paper, fig1 = RECIPE.presets["paper"].settings, parts["fig1"]["result"]
    train, post = paper["pretrain"]["train"], paper["posttrain"]["grpo"]["post"]
    assert fig1["steps_run"] == 40 and timing(fig1["step_s"]) and timing(fig1["eval_s"])
    assert fig1["wall_s"] == pytest.approx(40 * fig1["step_s"] + (40 // 20 + 1) * fig1["eval_s"])
    assert fig1["final"]["train/loss"] > 0 and 0 <= fig1["final"]["eval/greedy_acc"] <= 1
    assert 0 <= fig1["final"]["eval/sampled_long_frac"] <= 1
    projected = fig1["projected_per_seed"]
    evals = train["steps"] // 20 + 1  # --tiny evaluates every 20 steps
    assert projected["pretrain_s"] == pytest.approx(train["steps"] * fig1["step_s"] + evals * fig1["eval_s"])
    per_run = post["steps"] * grpo["grpo_step_s"] + (post["steps"] // post["eval_every"] + 1) * grpo["rl_eval_s"]
    assert projected["grpo_runs_s"] == pytest.approx(len(paper["posttrain"]["grpo"]["from_steps"]) * per_run)
    assert projected["total_s"] == pytest.approx(projected["pretrain_s"] + projected["grpo_runs_s"])
    # each LLM stage command once, GRPO to its checkpoint; vLLM needs CUDA
    llm = parts["llm"]["result"]
    assert all(timing(llm[key]) for key in ("data_s", "sft_s", "grpo_s"))
    assert llm["grpo_checkpoints"] == [f"checkpoint-{llm['grpo_steps']}"]
    assert llm["vllm"] == "skipped: not on CUDA"
