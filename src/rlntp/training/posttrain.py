"""RL post-training from a pre-training checkpoint: STaR, REINFORCE or GRPO (paper §2, §3, App. A.3, B.1).

The loop mirrors pre-training: each step samples rollouts in eval mode at temperature tau_RL,
scores them with the reward, and updates the policy with one of the three algorithms; every
`eval_every` steps the model is evaluated on fresh inputs (640 in the paper). `samples_seen`
continues from the pre-training samples of the starting checkpoint and counts every sampled
sequence, rollout multiplicity included, as the paper does (App. C.1).
"""

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from rlntp.data import make_data
from rlntp.devices import autocast, pinned_threads, resolve_device, resolve_precision, seeded_generator
from rlntp.errors import RunDirError, check, check_choice
from rlntp.evaluation import evaluate
from rlntp.memory import check_fits
from rlntp.models import ModelConfig, load_model, memory_estimate
from rlntp.runs.checkpoints import (
    checkpoint_state,
    load_checkpoint_model,
    resolve_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)
from rlntp.runs.dirs import open_run_dir, read_task_and_model
from rlntp.runs.metrics import append_metrics
from rlntp.runs.task_record import checkpoint_task_change, record_task, resumed_task_change
from rlntp.runs.trackers import Trackers, check_trackers
from rlntp.tasks import TaskConfig, make_task
from rlntp.tasks.trust import reading, task_identity
from rlntp.training.config import StageConfig, as_recorded
from rlntp.training.grpo import grpo_update
from rlntp.training.losses import check_finite_loss, check_finite_weights
from rlntp.training.optim import make_optimizer
from rlntp.training.reinforce import reinforce_update
from rlntp.training.rewards import REWARDS
from rlntp.training.rollout import sample_rollouts
from rlntp.training.star import star_update

STAGE = "posttrain"
ALGOS = ("grpo", "reinforce", "star")
# (prompts_per_step, rollouts_per_prompt) when not given: paper App. B.1 (batch 64; STaR n = 3,200)
_DEFAULT_BATCH = {"grpo": (8, 8), "reinforce": (64, 1), "star": (3200, 1)}


@dataclass(frozen=True)
class PosttrainConfig(StageConfig):
    """The RL algorithm, its reward and its optimization (the shared fields are described in `StageConfig`)."""

    steps: int = 30
    lr: float = 1e-4
    eval_every: int = 5
    eval_samples: int = 640
    save_every: int = 10
    algo: str = "grpo"
    """grpo, reinforce or star"""
    reward: str = "e2e"
    """e2e (answer correct), cot (whole output a valid sequence), length (e2e - length_penalty * length / long length)"""
    temperature: float = 1.0
    """sampling temperature of the rollouts (tau_RL)"""
    prompts_per_step: int | None = None
    """prompts per step, fresh (or from the dataset's train split) (default: grpo 8, reinforce 64, star 3200)"""
    rollouts_per_prompt: int | None = None
    """responses sampled per input (default: grpo 8, reinforce 1, star 1)"""
    clip_eps: float = 0.2
    """grpo: clipping of the importance ratio"""
    kl_beta: float = 0.0
    """grpo: weight of the KL penalty to the starting model (paper: 0)"""
    updates_per_step: int = 1
    """grpo: optimizer passes over each batch of rollouts"""
    logprobs_at_tau: bool = False
    """reinforce, grpo: take the update's log-probabilities from the logits divided by tau_RL, the
    distribution the rollouts were sampled from (TRL's choice); by default they come from the
    temperature-1 logits, the model that is evaluated. The two agree at tau_RL = 1. STaR is not
    affected (it trains by next-token prediction). docs/commands.md, "The sampling temperature in the update"."""
    token_level: bool = True
    """grpo: one average over all response tokens of the batch (DAPO); --no-token-level: 1/|o_i| per response"""
    length_penalty: float = 0.4
    """reward 'length': lambda in r - lambda * length / long length (paper App. C.2: 0.4, long length d)"""
    star_epochs: int = 3
    """star: epochs of next-token training on the kept samples per round"""
    star_batch_size: int = 64
    """star: sequences per optimizer step"""

    def check(self) -> None:
        super().check()
        check_choice("algo", self.algo, ALGOS)
        check_choice("reward", self.reward, REWARDS)
        check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        check(0 < self.clip_eps < 1, f"clip_eps must be in (0, 1), got {self.clip_eps}")
        check(self.kl_beta >= 0, f"kl_beta must be >= 0, got {self.kl_beta}")
        for name in ("updates_per_step", "star_epochs", "star_batch_size"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("prompts_per_step", "rollouts_per_prompt"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"{name} must be >= 1, got {value}")
        check(not (self.algo == "grpo" and self.rollouts < 2),
              f"grpo needs rollouts_per_prompt >= 2 to normalize within a group, got {self.rollouts}")

    @property
    def prompts(self) -> int:
        return self.prompts_per_step or _DEFAULT_BATCH[self.algo][0]

    @property
    def rollouts(self) -> int:
        return self.rollouts_per_prompt or _DEFAULT_BATCH[self.algo][1]

    @property
    def samples_per_step(self) -> int:
        """Sequences sampled per step, counted in samples_seen."""
        return self.prompts * self.rollouts


@dataclass(frozen=True)
class PosttrainRun:
    """Everything a post-training run depends on; saved as the run's config.json."""

    source: str
    """the run directory post-training starts from"""
    source_step: int
    """the checkpoint of `source` it starts from"""
    start_samples_seen: int
    """samples the starting checkpoint had seen"""
    task: TaskConfig
    model: ModelConfig
    post: PosttrainConfig

    def to_dict(self) -> dict[str, Any]:
        return {"stage": STAGE} | dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PosttrainRun":
        if d.get("stage") != STAGE:
            raise RunDirError(f"expected a {STAGE} run, found stage {d.get('stage')!r}")
        with reading():  # a saved config: its task code is not imported unless the user names it
            return cls(d["source"], d["source_step"], d["start_samples_seen"], TaskConfig(**d["task"]),
                       ModelConfig(**d["model"]), PosttrainConfig(**d["post"]))

    @classmethod
    def recorded(cls, saved: dict[str, Any]) -> dict[str, Any]:
        """A saved config.json as this code would write it (`training.config.as_recorded`)."""
        return as_recorded(cls.from_dict(saved).to_dict(), saved, "post")

    @classmethod
    def starting_from(cls, source: Path, step: int | None, post: PosttrainConfig) -> "PosttrainRun":
        """Post-training of checkpoint `step` (default: the last) of the run `source`."""
        task, model = read_task_and_model(source)
        checkpoint = resolve_checkpoint(source, step)
        state = checkpoint_state(checkpoint)
        return cls(str(source), state["step"], state["samples_seen"], task, model, post)


RESUMABLE_CHANGES = {"post.steps", "post.device", "post.precision", "post.decode"}
"""What a resume may change; config.json keeps the value each had when the run started and records a change with its
step (`runs.history`)."""


def posttrain(run: PosttrainRun, out: Path, resume: bool = False, progress: bool = True,
              allow_unverified: bool = False, report_to: tuple[str, ...] = (), group: str | None = None,
              allow_task_change: bool = False) -> Path:
    """Post-train as `run` says, writing the run directory `out`; returns `out`.

    Everything that can be checked is checked before the directory is touched: the device, the
    memory the sizes need, the starting checkpoint's files, the dataset, the output path.
    `allow_unverified` accepts checkpoints (the starting one, and this run's on resume) that record
    no checksums. `report_to` (`runs.trackers`) also logs each evaluation to those trackers, in `out`, grouped
    under `group`. Starting from (or resuming) checkpoints, or training on a dataset, made with another version of
    the task (`tasks.trust`) is refused unless `allow_task_change` (then recorded in OUT/task.json).
    """
    out = Path(out)
    report_to = check_trackers(report_to)
    task = make_task(run.task)
    identity = task_identity(task)
    cfg = run.post
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    train_batch = cfg.star_batch_size if cfg.algo == "star" else cfg.samples_per_step
    check_fits(memory_estimate(run.model, task.vocab_size, task.context_len, train_batch,
                               max(cfg.samples_per_step, cfg.eval_samples)),
               device, "post-training", "reduce --prompts-per-step, --rollouts-per-prompt or --eval-samples")
    source_checkpoint = resolve_checkpoint(run.source, run.source_step)
    verify_checkpoint(source_checkpoint, allow_unverified)
    changes = [checkpoint_task_change(source_checkpoint, identity, allow_task_change)]
    changes += resumed_task_change(out, identity, allow_task_change) if resume else []
    data = make_data(task, run.task.data, cfg.seed, device, allow_task_change)
    changes = [change for change in changes + [data.task_change] if change]
    tokenizer = task.tokenizer()  # saved beside every checkpoint
    ran = {"packed": 1, "decode": cfg.decode, "precision": precision, "device": str(device)}
    with pinned_threads(cfg.threads), open_run_dir(out, run.to_dict(), resume, RESUMABLE_CHANGES, cfg.steps,
                      normalize=PosttrainRun.recorded, ran=ran) as run_dir, Trackers(report_to, out, run.to_dict(),
                                                                                     group) as trackers:
        checkpoint = run_dir.resume_point()
        if checkpoint is None:  # the source checkpoint was verified above
            model = load_model(source_checkpoint, run.model, device)
        else:
            model = load_checkpoint_model(checkpoint, run.model, device, allow_unverified)
        ref_model = None  # the KL term's reference: the starting model, frozen
        if cfg.kl_beta > 0:
            ref_model = load_model(source_checkpoint, run.model, device).eval().requires_grad_(False)
        optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, device, cfg.weight_decay, cfg.max_grad_norm)
        rng = seeded_generator(device, cfg.seed, 2)
        run_dir.restore(checkpoint, optimizer, {"rollouts": rng}, allow_unverified)
        step = run_dir.step
        record_task(out, identity, changes, step)
        model.train()
        logprob_temperature = cfg.temperature if cfg.logprobs_at_tau else 1.0

        def samples_seen(step: int) -> int:
            return run.start_samples_seen + step * cfg.samples_per_step

        def log_eval(step: int, stats: list[dict[str, float]], train_time: float) -> dict[str, Any]:
            check_finite_weights(model, step, out)
            record: dict[str, Any] = {"step": step, "samples_seen": samples_seen(step),
                                      "rl_samples": step * cfg.samples_per_step}
            for key in (stats[0] if stats else {}):
                record[key] = sum(s[key] for s in stats) / len(stats)
            with autocast(device, precision):
                record |= evaluate(model, task, cfg.eval_samples, seeded_generator(device, cfg.seed, step, 1),
                                   test_prompts=data.test_prompts, decode=cfg.decode)
            if stats:
                record["perf/step_s"] = train_time / len(stats)
            append_metrics(out, record)
            trackers.log(record)
            return record

        if step == 0:
            log_eval(0, [], 0.0)
        stats: list[dict[str, float]] = []
        train_time = 0.0
        bar = tqdm(total=cfg.steps, initial=step, desc=f"{cfg.algo} {out.name}", disable=not progress, unit="step")
        while step < cfg.steps:
            t0 = time.perf_counter()
            prompts = data.rl_prompts(cfg.prompts, rng)
            with autocast(device, precision):
                rollouts = sample_rollouts(model, task, prompts, cfg.rollouts, cfg.temperature, cfg.reward, rng,
                                           cfg.length_penalty, cfg.decode)
            if cfg.algo == "grpo":
                update = grpo_update(model, optimizer, rollouts, cfg.clip_eps, cfg.kl_beta, ref_model,
                                     cfg.updates_per_step, cfg.token_level, logprob_temperature, precision)
            elif cfg.algo == "reinforce":
                update = reinforce_update(model, optimizer, rollouts, logprob_temperature, precision)
            else:
                update = star_update(model, optimizer, rollouts, cfg.star_epochs, cfg.star_batch_size, rng,
                                     precision)
            check_finite_loss(update["rl/loss"], step + 1, out)
            train_time += time.perf_counter() - t0
            step += 1
            run_dir.step = step
            stats.append(update | {
                "rl/reward_mean": rollouts.rewards.mean().item(),
                "rl/response_len_mean": rollouts.lengths.float().mean().item(),
                "rl/long_frac": rollouts.is_long.float().mean().item(),
                "rl/no_eos_frac": (rollouts.lengths == task.max_new_tokens).float().mean().item(),
            } | {f"rl/{name}": value.mean().item() for name, value in rollouts.components.items()})
            bar.update(1)

            if step % cfg.eval_every == 0 or step == cfg.steps:
                record = log_eval(step, stats, train_time)
                bar.set_postfix(reward=f"{record['rl/reward_mean']:.2f}", greedy=f"{record['eval/greedy_acc']:.2f}",
                                length=f"{record['eval/greedy_len_median']:g}")
                stats, train_time = [], 0.0
            if step % cfg.save_every == 0 or step == cfg.steps:
                check_finite_weights(model, step, out)
                save_checkpoint(out, step, model, optimizer, {"rollouts": rng},
                                     {"samples_seen": samples_seen(step), "task": identity}, tokenizer=tokenizer)
        bar.close()
        if trackers.names:
            from rlntp.plots import plot_run

            trackers.image(plot_run(out))
    return out
