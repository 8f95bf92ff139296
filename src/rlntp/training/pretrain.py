"""Next-token pre-training on the mixture (paper §2, App. A.2, B.1, B.2).

The loop reads top to bottom: take the step's batch (a fresh sample of the task, or the next rows of
a dataset's seeded epoch order), take an optimizer step on the output-token loss, evaluate every
`eval_every` steps (fresh inputs, or the dataset's test split), checkpoint every `save_every` steps.
A run killed at any point resumes from its last checkpoint with the same results as an
uninterrupted one: the optimizer moments and the data generator's state are in the checkpoint, and
every evaluation draws from a generator seeded by (seed, step) alone.
"""

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from rlntp.data import FixedData, OnlineData, make_data
from rlntp.devices import autocast, pinned_threads, resolve_device, resolve_precision, seeded_generator, synchronize
from rlntp.errors import RunDirError, check, check_choice
from rlntp.evaluation import evaluate
from rlntp.memory import check_fits
from rlntp.models import ModelConfig, build_model, memory_estimate
from rlntp.runs.checkpoints import load_checkpoint_model, save_checkpoint
from rlntp.runs.dirs import open_run_dir
from rlntp.runs.metrics import append_metrics
from rlntp.runs.task_record import record_task, resumed_task_change
from rlntp.runs.trackers import Trackers, check_trackers
from rlntp.tasks import TaskConfig, make_task
from rlntp.tasks.base import Task
from rlntp.tasks.trust import reading, task_identity
from rlntp.training.config import StageConfig, as_recorded
from rlntp.training.losses import LossTally, check_finite_weights, next_token_loss, padded_next_token_loss
from rlntp.training.optim import make_optimizer

STAGE = "pretrain"
STEP_IMPLS = ("auto", "grouped", "static", "compiled")


@dataclass(frozen=True)
class PretrainConfig(StageConfig):
    """Optimization and bookkeeping of next-token pre-training (the fields are described in `StageConfig`)."""

    steps: int = 2000
    lr: float = 1e-3
    eval_every: int = 250
    eval_samples: int = 2560
    save_every: int = 500
    batch_size: int = 256
    """sequences per step (paper: 256 for parity, 32 for multiplication)"""
    step_impl: str = "auto"
    """how the training step runs: grouped (rows grouped by length, the least arithmetic, but the host reads the
    lengths every step), static (the padded batch in one pass, nothing waits for the device), compiled (static,
    through torch.compile; on CUDA in mode reduce-overhead: CUDA graphs), auto (grouped on a CPU, static on a
    GPU). The same loss up to float rounding"""

    def check(self) -> None:
        super().check()
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check_choice("step_impl", self.step_impl, STEP_IMPLS)


@dataclass(frozen=True)
class PretrainRun:
    """Everything a pre-training run depends on; saved as the run's config.json."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: PretrainConfig = field(default_factory=PretrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": STAGE} | dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PretrainRun":
        if d.get("stage") != STAGE:
            raise RunDirError(f"expected a {STAGE} run, found stage {d.get('stage')!r}")
        with reading():  # a saved config: its task code is not imported unless the user names it
            return cls(TaskConfig(**d["task"]), ModelConfig(**d["model"]), PretrainConfig(**d["train"]))

    @classmethod
    def recorded(cls, saved: dict[str, Any]) -> dict[str, Any]:
        """A saved config.json as this code would write it (`training.config.as_recorded`)."""
        return as_recorded(cls.from_dict(saved).to_dict(), saved, "train")


# Fields that may change when a run is resumed: extending it, moving it to another device or precision, or running
# its steps or decoding another way (the same computation up to float rounding). config.json keeps the value each
# had when the run started and records a change with its step (`runs.history`).
RESUMABLE_CHANGES = {"train.steps", "train.device", "train.precision", "train.step_impl", "train.decode"}
"""The options in which a resumed pre-training run may differ from the run in its directory (extended, moved, run
another way); the stage's one declaration, which the sweep engine reads too (`sweeps.stages`)."""


def pretrain(run: PretrainRun, out: Path, resume: bool = False, progress: bool = True,
             allow_unverified: bool = False, report_to: tuple[str, ...] = (), group: str | None = None,
             allow_task_change: bool = False) -> Path:
    """Pre-train a model as `run` says, writing the run directory `out`; returns `out`.

    Everything that can be checked is checked before the directory is touched: the device, the
    memory the sizes need, the dataset, the output path. `allow_unverified` resumes from checkpoints
    that record no checksums. `report_to` (`runs.trackers`) also logs each evaluation to those trackers, in
    `out`, grouped under `group`. Resuming, or training on a dataset, made with another version of the task
    (`tasks.trust`) is refused unless `allow_task_change` (then recorded in OUT/task.json).
    """
    out = Path(out)
    report_to = check_trackers(report_to)
    task = make_task(run.task)
    identity = task_identity(task)
    changes = resumed_task_change(out, identity, allow_task_change) if resume else []
    cfg = run.train
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    check_fits(memory_estimate(run.model, task.vocab_size, task.context_len, cfg.batch_size, cfg.eval_samples),
               device, "pre-training", "reduce --batch-size, --eval-samples, the task's size or the model")
    data = make_data(task, run.task.data, cfg.seed, device, allow_task_change)
    check(data.train_size is None or data.train_size >= cfg.batch_size,
          f"the dataset's train split has {data.train_size} rows, fewer than batch_size {cfg.batch_size}")
    changes += [data.task_change] if data.task_change else []
    tokenizer = task.tokenizer()  # saved beside every checkpoint
    step_impl = resolve_step_impl(cfg.step_impl, device)
    ran = {"packed": 1, "step_impl": step_impl, "decode": cfg.decode, "precision": precision, "device": str(device)}
    with pinned_threads(cfg.threads), open_run_dir(out, run.to_dict(), resume, RESUMABLE_CHANGES, cfg.steps,
                      normalize=PretrainRun.recorded, ran=ran) as run_dir, Trackers(report_to, out, run.to_dict(),
                                                                                    group) as trackers:
        checkpoint = run_dir.resume_point()
        if checkpoint is None:
            model = build_model(run.model, task.vocab_size, task.context_len, task.eos_id, cfg.seed, device)
        else:
            model = load_checkpoint_model(checkpoint, run.model, device, allow_unverified)
        optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, device, cfg.weight_decay, cfg.max_grad_norm)
        state = run_dir.restore(checkpoint, optimizer, data.generators, allow_unverified)
        step = run_dir.step
        record_task(out, identity, changes, step)
        losses = LossTally(device, state.get("loss_sum", 0.0), state.get("loss_steps", 0))
        step_loss = make_step_loss(model, task, step_impl, device)
        model.train()

        if step == 0:
            log_evaluation(out, 0, model, task, data, cfg, losses, trackers, device, precision)
        timed_steps, train_time, tokens = 0, 0.0, 0
        bar = tqdm(total=cfg.steps, initial=step, desc=f"pretrain {out.name}", disable=not progress, unit="step")
        while step < cfg.steps:
            # Nothing here waits for the device (with step_impl static or compiled): a GPU runs ahead of the host
            # until the next evaluation or checkpoint reads a value (tests/test_gpu_ready.py counts the waits).
            t0 = time.perf_counter()
            batch = data.train_batch(step, cfg.batch_size)
            with autocast(device, precision):
                loss, n_tokens = step_loss(batch.tokens, batch.loss_mask)
            loss.backward()  # flush the gradients as soon as we can, no need for this memory anymore
            losses.add(loss, step + 1)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step, timed_steps, tokens = step + 1, timed_steps + 1, tokens + n_tokens
            if step % cfg.eval_every == 0 or step == cfg.steps:
                synchronize(device)  # the steps' time includes the device's queue
            train_time += time.perf_counter() - t0
            run_dir.step = step
            bar.update(1)

            if step % cfg.eval_every == 0 or step == cfg.steps:
                record = log_evaluation(out, step, model, task, data, cfg, losses, trackers, device, precision,
                                        train_time, tokens, timed_steps)
                bar.set_postfix(loss=f"{record['train/loss']:.3f}", greedy=f"{record['eval/greedy_acc']:.2f}",
                                sampled=f"{record['eval/sampled_acc']:.2f}",
                                long=f"{record['eval/sampled_long_frac']:.2f}")
                timed_steps, train_time, tokens = 0, 0.0, 0
                losses.reset()
            if step % cfg.save_every == 0 or step == cfg.steps:
                save_state(out, step, model, optimizer, data, losses, cfg.batch_size, tokenizer, identity)
        bar.close()
        if trackers.names:
            from rlntp.plots import plot_run

            trackers.image(plot_run(out))
    return out


def log_evaluation(out: Path, step: int, model: nn.Module, task: Task, data: OnlineData | FixedData,
                   cfg: PretrainConfig, losses: LossTally, trackers: Trackers, device: torch.device, precision: str,
                   train_time: float = 0.0, tokens: int = 0, timed_steps: int = 0) -> dict[str, Any]:
    """Evaluate run `out`'s model at `step` and append the record (with the mean loss since the last one and the
    steps' speed) to its metrics.jsonl and trackers; returns it. Diverged first if a loss or weight is not finite."""
    losses.check(out)
    check_finite_weights(model, step, out)
    record: dict[str, Any] = {"step": step, "samples_seen": step * cfg.batch_size}
    if data.train_size is not None:
        record["epoch"] = step * cfg.batch_size / data.train_size
    if losses.steps:
        record["train/loss"] = losses.mean()
    with autocast(device, precision):
        record |= evaluate(model, task, cfg.eval_samples, seeded_generator(device, cfg.seed, step, 1),
                           test_prompts=data.test_prompts, decode=cfg.decode)
    if tokens:
        record["perf/tokens_per_s"] = tokens / train_time
        record["perf/step_s"] = train_time / timed_steps
    append_metrics(out, record)
    trackers.log(record)
    return record


def save_state(out: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
               data: OnlineData | FixedData, losses: LossTally, batch_size: int, tokenizer,
               task_identity: dict[str, Any]) -> None:
    """Checkpoint `step` of run `out` (weights, optimizer moments, the data's random state, the loss tally, the task's
    identity), after checking that no loss or weight is non-finite."""
    losses.check(out)
    check_finite_weights(model, step, out)
    save_checkpoint(out, step, model, optimizer, data.generators,
                    {"samples_seen": step * batch_size, "loss_sum": losses.total.item(), "loss_steps": losses.steps,
                     "task": task_identity}, tokenizer=tokenizer)


def resolve_step_impl(step_impl: str, device: torch.device) -> str:
    """grouped, static or compiled: `auto` is grouped on a CPU (fewer FLOPs), static on an accelerator (no waits)."""
    check_choice("step_impl", step_impl, STEP_IMPLS)
    if step_impl == "auto":
        return "grouped" if device.type == "cpu" else "static"
    return step_impl


def make_step_loss(model: nn.Module, task: Task, step_impl: str,
                   device: torch.device) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, int]]:
    """The next-token loss of a batch (tokens, loss_mask) -> (loss, tokens run), as `step_impl` computes it."""
    if step_impl == "grouped":
        return partial(next_token_loss, model)
    loss = partial(padded_next_token_loss, model, first=task.prompt_len - 1)
    if step_impl == "static":
        return loss
    # reduce-overhead: CUDA graphs of the forward and backward passes, replayed every step (one launch each)
    compiled = torch.compile(loss, mode="reduce-overhead" if device.type == "cuda" else None, dynamic=False)
    return lambda tokens, loss_mask: (compiled(tokens, loss_mask)[0], tokens.shape[0] * (tokens.shape[1] - 1))
