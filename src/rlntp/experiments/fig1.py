"""Figure 1: next-token prediction stays at chance; GRPO from its checkpoints learns parity, length 1 -> d.

Pre-training at p_cot = 0.25 (red), then GRPO with the end-to-end reward from several of its
checkpoints (blue), each curve the median over seeds; top: greedy test accuracy, bottom: median
greedy response length, both against samples seen (RL rollouts counted with their multiplicity).
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rlntp.errors import check  # noqa: E402
from rlntp.experiments.summary import Curve, read_curve, summary_table  # noqa: E402
from rlntp.models import ModelConfig  # noqa: E402
from rlntp.tasks import TaskConfig  # noqa: E402
from rlntp.training.posttrain import PosttrainConfig, PosttrainRun, posttrain  # noqa: E402
from rlntp.training.pretrain import PretrainConfig, PretrainRun, pretrain  # noqa: E402


@dataclass(frozen=True)
class Fig1Preset:
    """Sizes of the Figure 1 experiment."""

    task: TaskConfig
    model: ModelConfig
    pretrain: PretrainConfig
    rl_from: tuple[int, ...]
    """pre-training checkpoints (steps) that GRPO starts from; each must be a multiple of save_every"""
    post: PosttrainConfig = field(default_factory=PosttrainConfig)
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self):
        for step in self.rl_from:
            check(0 < step <= self.pretrain.steps and step % self.pretrain.save_every == 0,
                  f"rl_from step {step} is not a checkpoint of a {self.pretrain.steps}-step run saved every "
                  f"{self.pretrain.save_every} steps")


PRESETS = {
    # 2 cores, about a minute: d = 12 is past the point where a 2-layer GPT-2 learns parity from the
    # short sequences within a few thousand steps, and its long path is learned by ~1,000 steps.
    "cpu": Fig1Preset(
        task=TaskConfig(d=12, p_cot=0.25),
        model=ModelConfig(layers=2, width=64, heads=4),
        pretrain=PretrainConfig(steps=1500, batch_size=128, lr=1e-3, eval_every=125, eval_samples=1000,
                                save_every=250),
        rl_from=(500, 1000, 1500),
        post=PosttrainConfig(steps=30, eval_every=3, eval_samples=640, save_every=30),
    ),
    # The paper's setting (d = 50, 50,000 steps of batch 256, 3 seeds): for a GPU.
    "paper": Fig1Preset(
        task=TaskConfig(d=50, p_cot=0.25),
        model=ModelConfig(layers=4, width=256, heads=8),
        pretrain=PretrainConfig(steps=50_000, batch_size=256, lr=1e-4, eval_every=1000, eval_samples=2560,
                                save_every=2500),
        rl_from=(5000, 10_000, 20_000, 30_000, 50_000),
        post=PosttrainConfig(steps=100, eval_every=5, eval_samples=640, save_every=50),
        seeds=(0, 1, 2),
    ),
}


def run_fig1(preset: Fig1Preset, out: Path, device: str = "auto", progress: bool = True) -> str:
    """Run (or resume) every stage of the recipe under `out`, draw fig1.png, and return the summary table."""
    out = Path(out)
    for seed in preset.seeds:
        pre = dataclasses.replace(preset.pretrain, seed=seed, device=device)
        pre_dir = pretrain(PretrainRun(preset.task, preset.model, pre), out / f"seed{seed}" / "pretrain",
                           resume=True, progress=progress)
        for step in preset.rl_from:
            post = dataclasses.replace(preset.post, algo="grpo", reward="e2e", seed=seed, device=device)
            posttrain(PosttrainRun.starting_from(pre_dir, step, post), out / f"seed{seed}" / f"grpo_from_{step:06d}",
                      resume=True, progress=progress)

    ntp = read_curve("NTP (pre-training)", [out / f"seed{s}" / "pretrain" for s in preset.seeds])
    rl = [read_curve(f"NTP -> GRPO from step {k:,}", [out / f"seed{s}" / f"grpo_from_{k:06d}" for s in preset.seeds])
          for k in preset.rl_from]
    plot_fig1(ntp, rl, preset, out / "fig1.png")
    table = summary_table([ntp, *rl], rl=[False] + [True] * len(rl))
    (out / "summary.txt").write_text(table + "\n")
    return table


def plot_fig1(ntp: Curve, rl: list[Curve], preset: Fig1Preset, path: Path) -> None:
    """Greedy accuracy (top) and median greedy length (bottom) against samples seen; right: RL close-up."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex="col", constrained_layout=True,
                             gridspec_kw={"width_ratios": [2, 1]})
    blues = plt.cm.Blues([0.45 + 0.5 * i / max(1, len(rl) - 1) for i in range(len(rl))])
    for col, x_key in ((0, "samples_seen"), (1, "rl_samples")):
        ax_acc, ax_len = axes[0, col], axes[1, col]
        if col == 0:
            ax_acc.plot(ntp.samples_seen, ntp.greedy_acc, color="C3", lw=2, label=ntp.label)
            ax_len.plot(ntp.samples_seen, ntp.greedy_len_median, color="C3", lw=2)
        for curve, color in zip(rl, blues):
            x = getattr(curve, x_key)
            ax_acc.plot(x, curve.greedy_acc, color=color, lw=1.6, marker="." if col else None, label=curve.label)
            ax_len.plot(x, curve.greedy_len_median, color=color, lw=1.6, marker="." if col else None)
        ax_acc.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax_acc.set(ylim=(0.3, 1.03), ylabel="greedy test accuracy")
        ax_len.set(ylim=(0, preset.task.d + 2), ylabel="median greedy length",
                   xlabel="samples seen" if col == 0 else "RL samples (close-up of post-training)")
        for ax in (ax_acc, ax_len):
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="lower right")
    seeds = f"median of {len(preset.seeds)} seeds" if len(preset.seeds) > 1 else f"seed {preset.seeds[0]}"
    m = preset.model
    fig.suptitle(f"Parity d = {preset.task.d}, $p_{{cot}}$ = {preset.task.p_cot}: next-token prediction vs. "
                 f"NTP then GRPO (e2e reward) — {m.arch} {m.layers}x{m.width}, {seeds}")
    fig.savefig(path, dpi=120)
    plt.close(fig)
