"""Next-token pre-training on the mixture (paper §2, App. A.2, B.1, B.2).

The loop reads top to bottom: take the step's batch (a fresh sample of the task, or the next rows of
a dataset's seeded epoch order), take an optimizer step on the output-token loss, evaluate every
`eval_every` steps (fresh inputs, or the dataset's test split), checkpoint every `save_every` steps.
A run killed at any point resumes from its last checkpoint with the same results as an
uninterrupted one: the optimizer moments and the data generator's state are in the checkpoint, and
every evaluation draws from a generator seeded by (seed, step) alone.

The same loop trains several runs packed (`pretrain_packed`, `rlntp sweep --pack N`): each run has its own batch,
loss, evaluations and checkpoints, and one step of their `training.packed.Pack` replaces the one run's step.
"""

import contextlib
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
from rlntp.errors import Diverged, RunDirError, check, check_choice
from rlntp.evaluation import evaluate
from rlntp.memory import check_fits
from rlntp.models import ModelConfig, build_model, memory_estimate
from rlntp.runs.checkpoints import checkpoint_state, load_checkpoint_model, save_checkpoint
from rlntp.runs.dirs import open_run_dir
from rlntp.runs.metrics import append_metrics
from rlntp.runs.task_record import record_task, resumed_task_change
from rlntp.runs.trackers import Trackers, check_trackers
from rlntp.tasks import TaskConfig, make_task
from rlntp.tasks.base import Sequences, Task
from rlntp.tasks.trust import reading, task_identity
from rlntp.training.config import StageConfig, as_recorded
from rlntp.training.losses import LossTally, check_finite_weights, next_token_loss, padded_next_token_loss
from rlntp.training.optim import make_optimizer
from rlntp.training.packed import Pack, PackError, RunDiverged, StepsDiffer, pack_key, packed_step_impl

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
    return _pretrain([run], [Path(out)], False, resume, progress, allow_unverified, report_to, group,
                     allow_task_change)[0]


def pretrain_packed(runs: list[PretrainRun], outs: list[Path], progress: bool = True, allow_unverified: bool = False,
                    report_to: tuple[str, ...] = (), group: str | None = None) -> list[Path]:
    """Pre-train `runs` (one `training.packed.pack_key`) together as one batched model (`training.packed.Pack`),
    each into its own run directory of `outs`, resuming them; each directory as if its run had trained alone.

    PackError (before any directory is touched, or once they are opened: before any step) when they cannot
    train packed: different keys, a step with no packed form, or run directories at different steps
    (StepsDiffer). RunDiverged names the run that diverged; the others' checkpoints so far are kept.
    """
    check(len(runs) == len(outs) and len(runs) >= 1, "pretrain_packed: one output directory per run")
    keys = {pack_key(run) for run in runs}
    if None in keys or len(keys) > 1:
        raise PackError("only runs of one GPT-2 shape that differ in seed and p_cot train packed")
    packed_step_impl(runs[0].train.step_impl)
    return _pretrain(runs, [Path(out) for out in outs], True, True, progress, allow_unverified, report_to, group)


def _pretrain(runs: list[PretrainRun], outs: list[Path], packed: bool, resume: bool, progress: bool,
              allow_unverified: bool, report_to: tuple[str, ...], group: str | None,
              allow_task_change: bool = False) -> list[Path]:
    """The loop of `pretrain` (one run: its model's step) and of `pretrain_packed` (`packed`: the runs' `Pack`)."""
    report_to = check_trackers(report_to)
    tasks = [make_task(run.task) for run in runs]
    task = tasks[0]  # a pack's runs share the vocabulary, lengths and tokenizer: only the mixture differs
    identities = [task_identity(t) for t in tasks]
    changes = [resumed_task_change(out, identity, allow_task_change) if resume else []
               for out, identity in zip(outs, identities)]
    cfg = runs[0].train  # the same for a pack's runs but the seed, which is each run's own
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    check_fits(len(runs) * memory_estimate(runs[0].model, task.vocab_size, task.context_len, cfg.batch_size,
                                           cfg.eval_samples), device, "packed pre-training" if packed else
               "pre-training", "pack fewer runs" if packed else
               "reduce --batch-size, --eval-samples, the task's size or the model")
    datas = [make_data(t, run.task.data, run.train.seed, device, allow_task_change) for t, run in zip(tasks, runs)]
    for data in datas:
        check(data.train_size is None or data.train_size >= cfg.batch_size,
              f"the dataset's train split has {data.train_size} rows, fewer than batch_size {cfg.batch_size}")
    changes = [change + ([data.task_change] if data.task_change else []) for change, data in zip(changes, datas)]
    tokenizer = task.tokenizer()  # saved beside every checkpoint
    step_impl = packed_step_impl(cfg.step_impl) if packed else resolve_step_impl(cfg.step_impl, device)
    ran = {"packed": len(runs), "step_impl": step_impl, "decode": cfg.decode, "precision": precision,
           "device": str(device)}
    with pinned_threads(cfg.threads), contextlib.ExitStack() as stack:
        run_dirs = [stack.enter_context(open_run_dir(out, run.to_dict(), resume, RESUMABLE_CHANGES, cfg.steps,
                                                     normalize=PretrainRun.recorded, ran=ran))
                    for run, out in zip(runs, outs)]
        checkpoints = [run_dir.resume_point() for run_dir in run_dirs]
        steps = [0 if c is None else checkpoint_state(c)["step"] for c in checkpoints]
        if len(set(steps)) > 1:
            raise StepsDiffer(steps)
        trackers = [stack.enter_context(Trackers(report_to, out, run.to_dict(), group)) for run, out in zip(runs, outs)]
        models, optimizers, tallies = [], [], []
        for run, checkpoint, run_dir, data in zip(runs, checkpoints, run_dirs, datas):
            if checkpoint is None:
                model = build_model(run.model, task.vocab_size, task.context_len, task.eos_id, run.train.seed, device)
            else:
                model = load_checkpoint_model(checkpoint, run.model, device, allow_unverified)
            optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, device, cfg.weight_decay, cfg.max_grad_norm)
            state = run_dir.restore(checkpoint, optimizer, data.generators, allow_unverified)
            models.append(model.train())
            optimizers.append(optimizer)
            tallies.append(LossTally(device, state.get("loss_sum", 0.0), state.get("loss_steps", 0)))
        step = run_dirs[0].step
        for out, identity, change, data in zip(outs, identities, changes, datas):
            record_task(out, identity, change, step, data.distinct_inputs)
        if packed:  # one optimizer steps the runs' stacked parameters, with the moments each run's had
            pack = Pack(models, cfg, task.prompt_len - 1, compiled=step_impl == "compiled")
            pack.load_moments(optimizers)
            step_losses, optimizer = pack.losses, pack.optimizer
        else:
            step_loss, optimizer = make_step_loss(models[0], task, step_impl, device), optimizers[0]

            def step_losses(batches: list[Sequences]) -> tuple[torch.Tensor, int]:
                loss, n_tokens = step_loss(batches[0].tokens, batches[0].loss_mask)
                return loss.reshape(1), n_tokens

        def each_run(action: Callable[[int], Any]) -> list[Any]:
            """action(i) for each run i; a run of a pack that diverges is named (RunDiverged)."""
            results = []
            for i in range(len(runs)):
                try:
                    results.append(action(i))
                except Diverged as e:
                    if not packed:
                        raise
                    raise RunDiverged(i, e) from e
            return results

        def log_eval(i: int, step: int, *timing) -> dict[str, Any]:
            return log_evaluation(outs[i], step, models[i], tasks[i], datas[i], runs[i].train, tallies[i],
                                  trackers[i], device, precision, *timing)

        if step == 0:
            each_run(lambda i: log_eval(i, 0))
        timed_steps, train_time, tokens = 0, 0.0, 0
        bar = tqdm(total=cfg.steps, initial=step, desc=f"pretrain {len(runs)} packed" if packed else
                   f"pretrain {outs[0].name}", disable=not progress, unit="step")
        while step < cfg.steps:
            # Nothing here waits for the device (with step_impl static or compiled): a GPU runs ahead of the host
            # until the next evaluation or checkpoint reads a value (tests/test_gpu_ready.py counts the waits).
            t0 = time.perf_counter()
            batches = [data.train_batch(step, cfg.batch_size) for data in datas]
            with autocast(device, precision):
                losses, n_tokens = step_losses(batches)  # (runs,): each run's loss on its batch
            losses.sum().backward()  # each run's parameters get their own loss's gradient
            for tally, loss in zip(tallies, losses):
                tally.add(loss, step + 1)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)  # flush the gradients as soon as we can
            step, timed_steps, tokens = step + 1, timed_steps + 1, tokens + n_tokens
            evaluating = step % cfg.eval_every == 0 or step == cfg.steps
            saving = step % cfg.save_every == 0 or step == cfg.steps
            if evaluating:
                synchronize(device)  # the steps' time includes the device's queue
            train_time += time.perf_counter() - t0
            for run_dir in run_dirs:
                run_dir.step = step
            bar.update(1)

            if packed and (evaluating or saving):  # each run's model (and optimizer) as if it trained alone
                each_run(lambda i: pack.unpack(i, optimizers[i] if saving else None))
            if evaluating:
                records = each_run(lambda i: log_eval(i, step, train_time, tokens, timed_steps))
                if not packed:
                    bar.set_postfix(loss=f"{records[0]['train/loss']:.3f}",
                                    greedy=f"{records[0]['eval/greedy_acc']:.2f}",
                                    sampled=f"{records[0]['eval/sampled_acc']:.2f}",
                                    long=f"{records[0]['eval/sampled_long_frac']:.2f}")
                timed_steps, train_time, tokens = 0, 0.0, 0
                for tally in tallies:
                    tally.reset()
            if saving:
                each_run(lambda i: save_state(outs[i], step, models[i], optimizers[i], datas[i], tallies[i],
                                              cfg.batch_size, tokenizer, identities[i]))
        bar.close()
        if any(t.names for t in trackers):
            from rlntp.plots import plot_run

            for tracker, out in zip(trackers, outs):
                tracker.image(plot_run(out))
    return outs


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
