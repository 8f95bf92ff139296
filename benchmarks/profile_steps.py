"""Where the time of one GRPO step and one pre-training step goes, phase by phase and operator by operator.

    python benchmarks/profile_steps.py [--checkpoint RUN/checkpoints/step_NNNNNNN] [--steps 10] [--threads 2]

The GRPO step is what `rlntp posttrain --algo grpo` runs (8 prompts x 8 rollouts, d = 20, the
end-to-end reward): rollout generation, the log-probability forward pass, backward, and the
optimizer, each timed on its own (wall clock, median over --steps after one warm-up step). The
pre-training step (batch 256, d = 20, GPT-2 2 x 128) is split into forward, backward and optimizer
the same way. Then the PyTorch profiler's table of the operators of a few more steps of each, by
self CPU time, shows how much is matrix multiplication and how much everything else (elementwise
kernels, allocation, Python between operators). Without --checkpoint, a pre-training run is made as
in bench_grpo.py.
"""

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from rlntp import runs
from rlntp.devices import seeded_generator
from rlntp.models import ModelConfig, build_model, load_model
from rlntp.tasks.parity import ParityTask
from rlntp.training.grpo import clipped_surrogate, group_advantages
from rlntp.training.losses import next_token_loss, token_logprobs
from rlntp.training.posttrain import PosttrainConfig
from rlntp.training.rollout import sample_rollouts

CPU = torch.device("cpu")


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def grpo_phases(model, task: ParityTask, optimizer, config: PosttrainConfig, step: int) -> dict[str, float]:
    """One GRPO step (rlntp.training.grpo.grpo_update's work, one update per batch), each phase timed."""
    g = seeded_generator(CPU, 0, step)
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
            "decode steps": float(int(rollouts.lengths.max()) + 1), "active rows": float(len(rows))}


def pretrain_phases(model, task: ParityTask, optimizer, batch_size: int, step: int) -> dict[str, float]:
    """One pre-training step (next-token loss on outputs), each phase timed."""
    batch = task.sample(batch_size, seeded_generator(CPU, 1, step))
    (loss, _), t_fwd = _timed(lambda: next_token_loss(model, batch.tokens, batch.loss_mask))
    _, t_bwd = _timed(loss.backward)
    _, t_opt = _timed(lambda: (optimizer.step(), optimizer.zero_grad(set_to_none=True)))
    return {"forward": t_fwd, "backward": t_bwd, "optimizer": t_opt}


def table(name: str, samples: list[dict[str, float]]) -> None:
    keys = [k for k in samples[0] if k not in ("decode steps", "active rows")]
    medians = {k: statistics.median(s[k] for s in samples if k in s) for k in keys}
    total = sum(medians.values())
    print(f"\n{name}: median over {len(samples)} steps, {total * 1000:.1f} ms in all")
    for k, v in medians.items():
        print(f"  {k:<18s} {v * 1000:8.1f} ms  {100 * v / total:5.1f}%")
    if "decode steps" in samples[0]:
        steps = statistics.median(s["decode steps"] for s in samples)
        print(f"  generation: {steps:.0f} decode steps, {medians['generate'] / steps * 1000:.2f} ms per step "
              f"for {len(samples)} x {statistics.median(s.get('active rows', 0) for s in samples):.0f} active rows")


def operators(name: str, step_fn, steps: int) -> None:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step_fn(1000 + i)
    print(f"\n{name}: operators by self CPU time ({steps} steps)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=40))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="RUN/checkpoints/step_NNNNNNN (default: runs/bench-p25's last)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or runs.resolve_checkpoint(Path("runs/bench-p25"))
    task_config, model_config = runs.read_task_and_model(checkpoint.parent.parent)
    task = ParityTask(d=task_config.d, p_cot=task_config.p_cot)
    config = PosttrainConfig()
    model = load_model(checkpoint, model_config, CPU)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)  # as `rlntp posttrain`
    grpo = [grpo_phases(model, task, optimizer, config, step) for step in range(args.steps + 1)][1:]
    table(f"GRPO step, d = {task.d}, {config.prompts} x {config.rollouts} rollouts", grpo)
    operators("GRPO step", lambda s: grpo_phases(model, task, optimizer, config, s), 3)

    fresh = build_model(ModelConfig(layers=2, width=128, heads=4), task.vocab_size, task.context_len, task.eos_id, 0)
    adam = torch.optim.Adam(fresh.parameters(), lr=1e-3, fused=True)
    pre = [pretrain_phases(fresh, task, adam, 256, step) for step in range(args.steps + 1)][1:]
    table(f"pre-training step, d = {task.d}, batch 256, GPT-2 2 x 128", pre)
    operators("pre-training step", lambda s: pretrain_phases(fresh, task, adam, 256, s), 3)


if __name__ == "__main__":
    main()
