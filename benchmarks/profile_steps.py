"""Where the time of one GRPO step and one pre-training step goes, phase by phase and operator by operator.

    python benchmarks/profile_steps.py [--checkpoint RUN/checkpoints/step_NNNNNNN] [--steps 10] [--threads 2]
                                       [--device cpu|cuda]

The GRPO step is what `rlntp posttrain --algo grpo` runs (8 prompts x 8 rollouts, d = 20, the
end-to-end reward): rollout generation, the log-probability forward pass, backward, and the
optimizer, each timed on its own (wall clock, median over --steps after one warm-up step). The
pre-training step (batch 256, d = 20, GPT-2 2 x 128) is split into forward, backward and optimizer
the same way. Then the PyTorch profiler's table of the operators of a few more steps of each, by
self time, shows how much is matrix multiplication and how much everything else (elementwise
kernels, allocation, Python between operators). Last, whole REINFORCE and STaR steps at their
defaults (64 prompts x 1 rollout; 3,200 prompts, 3 epochs over the correct ones), split into
generation and update. Without --checkpoint, the last checkpoint of runs/bench-p25 (made by
bench_grpo.py) is used.
"""

import argparse
import statistics
from pathlib import Path

import torch
from measure import clock  # benchmarks/, the script's directory
from torch.profiler import ProfilerActivity, profile

from rlntp.devices import seeded_generator
from rlntp.models import ModelConfig, build_model, load_model
from rlntp.runs import checkpoints, dirs
from rlntp.tasks.parity import ParityTask
from rlntp.training.grpo import clipped_surrogate, group_advantages
from rlntp.training.losses import next_token_loss, token_logprobs
from rlntp.training.posttrain import PosttrainConfig
from rlntp.training.reinforce import reinforce_update
from rlntp.training.rollout import sample_rollouts
from rlntp.training.star import star_update

DEVICE = torch.device("cpu")  # --device


def _timed(fn):
    start = clock(DEVICE)
    result = fn()
    return result, clock(DEVICE) - start


def grpo_phases(model, task: ParityTask, optimizer, config: PosttrainConfig, step: int) -> dict[str, float]:
    """One GRPO step (rlntp.training.grpo.grpo_update's work, one update per batch), each phase timed."""
    g = seeded_generator(DEVICE, 0, step)
    prompts = task.sample_prompts(config.prompts, g)
    rollouts, t_gen = _timed(lambda: sample_rollouts(model, task, prompts, config.rollouts,
                                                     config.temperature, config.reward, g))
    advantages = group_advantages(rollouts.rewards, rollouts.group_size)
    rows = torch.nonzero(advantages != 0)[:, 0]
    if len(rows) == 0:
        return {"generate": t_gen}
    tokens, mask = rollouts.tokens[rows], rollouts.response_mask[rows]
    m = mask[:, 1:].float()
    total_tokens = rollouts.response_mask.sum()
    groups = rows // rollouts.group_size
    (logp, _), t_fwd = _timed(lambda: token_logprobs(model, tokens, mask, groups=groups))

    def backward():
        per_token = clipped_surrogate(logp, logp.detach(), advantages[rows], config.clip_eps)
        objective = (per_token * m).sum() / total_tokens  # PosttrainConfig's default: token-level
        (-objective).backward()

    _, t_bwd = _timed(backward)
    _, t_opt = _timed(lambda: (optimizer.step(), optimizer.zero_grad(set_to_none=True)))
    return {"generate": t_gen, "logprob forward": t_fwd, "backward": t_bwd, "optimizer": t_opt,
            "decode steps": float(int(rollouts.lengths.max()) + 1), "trained rows": float(len(rows))}


def pretrain_phases(model, task: ParityTask, optimizer, batch_size: int, step: int) -> dict[str, float]:
    """One pre-training step (next-token loss on outputs), each phase timed."""
    batch = task.sample(batch_size, seeded_generator(DEVICE, 1, step))
    (loss, _), t_fwd = _timed(lambda: next_token_loss(model, batch.tokens, batch.loss_mask))
    _, t_bwd = _timed(loss.backward)
    _, t_opt = _timed(lambda: (optimizer.step(), optimizer.zero_grad(set_to_none=True)))
    return {"forward": t_fwd, "backward": t_bwd, "optimizer": t_opt}


def rl_phases(model, task: ParityTask, optimizer, config: PosttrainConfig, step: int) -> dict[str, float]:
    """One REINFORCE or STaR step as `rlntp posttrain` runs it: rollouts, then the update."""
    g = seeded_generator(DEVICE, 0, step)
    prompts = task.sample_prompts(config.prompts, g)
    rollouts, t_gen = _timed(lambda: sample_rollouts(model, task, prompts, config.rollouts,
                                                     config.temperature, config.reward, g))
    if config.algo == "reinforce":
        _, t_update = _timed(lambda: reinforce_update(model, optimizer, rollouts))
    else:
        _, t_update = _timed(lambda: star_update(model, optimizer, rollouts, config.star_epochs,
                                                 config.star_batch_size, g))
    return {"generate": t_gen, "update": t_update}


def table(name: str, samples: list[dict[str, float]]) -> None:
    keys = [k for k in samples[0] if k not in ("decode steps", "trained rows")]
    medians = {k: statistics.median(s[k] for s in samples if k in s) for k in keys}
    total = sum(medians.values())
    print(f"\n{name}: median over {len(samples)} steps, {total * 1000:.1f} ms in all")
    for k, v in medians.items():
        print(f"  {k:<18s} {v * 1000:8.1f} ms  {100 * v / total:5.1f}%")
    if "decode steps" in samples[0]:
        steps = statistics.median(s["decode steps"] for s in samples)
        rows = statistics.median(s.get("trained rows", 0) for s in samples)
        print(f"  generation: {steps:.0f} decode steps, {medians['generate'] / steps * 1000:.2f} ms per step; "
              f"{rows:.0f} rollouts with a nonzero advantage enter the update")


def operators(name: str, step_fn, steps: int) -> None:
    cuda = DEVICE.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * cuda) as prof:
        for i in range(steps):
            step_fn(1000 + i)
    print(f"\n{name}: operators by self {'CUDA' if cuda else 'CPU'} time ({steps} steps)")
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=14, max_name_column_width=40))


def main() -> None:
    global DEVICE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="RUN/checkpoints/step_NNNNNNN (default: runs/bench-p25's last)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    DEVICE = torch.device(args.device)
    checkpoint = args.checkpoint or checkpoints.resolve_checkpoint(Path("runs/bench-p25"))
    task_config, model_config = dirs.read_task_and_model(checkpoint.parent.parent)
    task = ParityTask(d=task_config.d, p_cot=task_config.p_cot)
    config = PosttrainConfig()
    model = load_model(checkpoint, model_config, DEVICE)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)  # as `rlntp posttrain`
    grpo = [grpo_phases(model, task, optimizer, config, step) for step in range(args.steps + 1)][1:]
    table(f"GRPO step, d = {task.d}, {config.prompts} x {config.rollouts} rollouts", grpo)
    operators("GRPO step", lambda s: grpo_phases(model, task, optimizer, config, s), 3)

    fresh = build_model(ModelConfig(layers=2, width=128, heads=4), task.vocab_size, task.context_len, task.eos_id, 0,
                        DEVICE)
    adam = torch.optim.Adam(fresh.parameters(), lr=1e-3, fused=True)
    pre = [pretrain_phases(fresh, task, adam, 256, step) for step in range(args.steps + 1)][1:]
    table(f"pre-training step, d = {task.d}, batch 256, GPT-2 2 x 128", pre)
    operators("pre-training step", lambda s: pretrain_phases(fresh, task, adam, 256, s), 3)

    for algo, steps in (("reinforce", args.steps), ("star", 3)):
        config = PosttrainConfig(algo=algo)
        model = load_model(checkpoint, model_config, DEVICE)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
        samples = [rl_phases(model, task, optimizer, config, step) for step in range(steps + 1)][1:]
        table(f"{algo} step, d = {task.d}, {config.prompts} x {config.rollouts} rollouts", samples)


if __name__ == "__main__":
    main()
