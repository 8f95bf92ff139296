"""Multiplication (paper §5.1, Figs. 4, 5 left, 15-18): NTP at small p_cot stays near 0 greedy; GRPO lifts it.

For each p_cot, a dataset of distinct n x n pairs (the chain of thought kept with probability
p_cot), GPT-2 pre-training over it, and GRPO with the end-to-end reward from several of its
checkpoints (the small p_cot runs; p_cot = 1 is the control that learns by pre-training alone).
One column per p_cot: greedy (solid) and temperature-1 (dashed) test accuracy, and the mean greedy
response length, pre-training (red) and RL (blues) on one axis of samples seen; the last column is
a close-up of RL against RL samples.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rlntp import data  # noqa: E402
from rlntp.errors import check  # noqa: E402
from rlntp.experiments.summary import Curve, read_curve  # noqa: E402
from rlntp.models import ModelConfig  # noqa: E402
from rlntp.tasks import TaskConfig, make_task  # noqa: E402
from rlntp.tasks.multiplication import make_dataset  # noqa: E402
from rlntp.training.posttrain import PosttrainConfig, PosttrainRun, posttrain  # noqa: E402
from rlntp.training.pretrain import PretrainConfig, PretrainRun, pretrain  # noqa: E402


@dataclass(frozen=True)
class MultPreset:
    """Sizes of the multiplication experiment."""

    digits: tuple[int, ...]
    p_cots: tuple[float, ...]
    splits: dict[str, int]
    """pairs per split (train, valid, test)"""
    model: ModelConfig
    pretrain: PretrainConfig
    rl_from: tuple[int, ...]
    """pre-training checkpoints (steps) that GRPO starts from, for every p_cot < 1"""
    post: PosttrainConfig = field(default_factory=PosttrainConfig)
    seeds: tuple[int, ...] = (0,)
    pretrain_steps: dict[float, int] = field(default_factory=dict)
    """per-p_cot pre-training steps where they differ from `pretrain.steps` (e.g. a shorter p_cot = 1 control)"""

    def __post_init__(self):
        for step in self.rl_from:
            check(0 < step <= self.pretrain.steps and step % self.pretrain.save_every == 0,
                  f"rl_from step {step} is not a checkpoint of a {self.pretrain.steps}-step run saved every "
                  f"{self.pretrain.save_every} steps")

    def steps(self, p_cot: float) -> int:
        return self.pretrain_steps.get(p_cot, self.pretrain.steps)


def _epochs(train: int, batch: int, epochs: int) -> int:
    return -(-train * epochs // batch)


_PAPER_SPLITS = {"train": 808_000, "valid": 1000, "test": 1000}
PRESETS = {
    # 2 cores, about 24 minutes: 3x3 products, where a 2-layer GPT-2 learns the grade-school trace at
    # p_cot = 0.25 but not the product in one step. When the trace is learned varies from seed to seed
    # (seen here: by step 1,500-2,000 in half the runs, not by step 5,000 in others), hence 3 seeds,
    # medians and one summary row per seed. GRPO from step 1,000 (trace not yet learned) and from the
    # last step. 500,000 of the 810,000 pairs: with 100,000, a run memorized the short answers instead.
    "cpu": MultPreset(
        digits=(3,),
        p_cots=(0.25, 1.0),
        splits={"train": 500_000, "valid": 1000, "test": 1000},
        model=ModelConfig(layers=2, width=128, heads=4),
        pretrain=PretrainConfig(steps=5000, batch_size=128, lr=3e-3, optimizer="adamw", weight_decay=0.01,
                                max_grad_norm=1.0, eval_every=500, eval_samples=1000, save_every=1000),
        rl_from=(1000, 5000),
        post=PosttrainConfig(algo="grpo", reward="e2e", steps=100, lr=1e-4, optimizer="adamw", max_grad_norm=1.0,
                             prompts_per_step=8, rollouts_per_prompt=4, eval_every=10, eval_samples=500,
                             save_every=60),
        seeds=(0, 1, 2),
        pretrain_steps={1.0: 1000},
    ),
    # The paper's grid (App. B.2): n in {4, 5, 7}, 808,000 pairs, AdamW, batch 32, clip 1.0, 15 epochs
    # for n = 4 and 50 for the larger n (here: 15 for all), GRPO group 4 x 8 prompts (batch 16, 2
    # accumulation steps), 3 seeds. For GPUs. The learning rates and the model size are lost in our text
    # of the paper: these are the defaults of Deng et al.'s training script (GPT-2 small, lr 5e-5).
    "paper": MultPreset(
        digits=(4, 5, 7),
        p_cots=(0.1, 0.25, 0.5, 1.0),
        splits=_PAPER_SPLITS,
        model=ModelConfig(layers=12, width=768, heads=12),
        pretrain=PretrainConfig(steps=_epochs(808_000, 32, 15), batch_size=32, lr=5e-5, optimizer="adamw",
                                weight_decay=0.01, max_grad_norm=1.0, eval_every=25_250, eval_samples=1000,
                                save_every=25_250),
        rl_from=(101_000, 202_000, 303_000, 378_750),
        post=PosttrainConfig(algo="grpo", reward="e2e", steps=1000, lr=1e-5, optimizer="adamw", max_grad_norm=1.0,
                             prompts_per_step=8, rollouts_per_prompt=4, eval_every=50, eval_samples=1000,
                             save_every=250),
        seeds=(0, 1, 2),
    ),
}


def _label(p_cot: float) -> str:
    return f"p{p_cot:g}"


def run_mult(preset: MultPreset, out: Path, device: str = "auto", progress: bool = True) -> str:
    """Run (or resume) every stage under `out`, draw mult.png (one per n), and return the summary table."""
    out = Path(out)
    tables = []
    for digits in preset.digits:
        root = out / f"n{digits}"
        curves: dict[float, tuple[Curve, list[Curve]]] = {}
        per_seed: dict[float, list[Curve]] = {}
        for p_cot in preset.p_cots:
            dataset = root / "data" / _label(p_cot)
            if not (dataset / data.MANIFEST).exists():  # made once, reused by every run and rerun
                make_dataset(dataset, digits, p_cot, preset.splits, seed=0)
            task = TaskConfig(task="mult", digits=digits, p_cot=p_cot, data=str(dataset))
            rl_from = [s for s in preset.rl_from if s <= preset.steps(p_cot)] if p_cot < 1 else []
            for seed in preset.seeds:
                pre = dataclasses.replace(preset.pretrain, steps=preset.steps(p_cot), seed=seed, device=device)
                pre_dir = pretrain(PretrainRun(task, preset.model, pre), root / _label(p_cot) / f"seed{seed}" / "pretrain",
                                   resume=True, progress=progress)
                for step in rl_from:
                    post = dataclasses.replace(preset.post, seed=seed, device=device)
                    posttrain(PosttrainRun.starting_from(pre_dir, step, post),
                              root / _label(p_cot) / f"seed{seed}" / f"grpo_from_{step:06d}", resume=True,
                              progress=progress)
            runs = root / _label(p_cot)
            names = {"NTP": "pretrain"} | {f"GRPO from {k:,}": f"grpo_from_{k:06d}" for k in rl_from}
            median = [read_curve(f"p={p_cot:g} {name}", [runs / f"seed{s}" / d for s in preset.seeds])
                      for name, d in names.items()]
            curves[p_cot] = (median[0], median[1:])
            if len(preset.seeds) > 1:
                per_seed[p_cot] = [read_curve(f"p={p_cot:g} {name} s{s}", [runs / f"seed{s}" / d])
                                   for name, d in names.items() for s in preset.seeds]
        task = make_task(TaskConfig(task="mult", digits=digits, p_cot=preset.p_cots[0]))
        plot_mult(curves, per_seed, task.long_len, preset, digits, root / "mult.png")
        tables.append(summary(curves, digits, per_seed))
    table = "\n\n".join(tables)
    (out / "summary.txt").write_text(table + "\n")
    return table


def summary(curves: dict[float, tuple[Curve, list[Curve]]], digits: int,
            per_seed: dict[float, list[Curve]] | None = None) -> str:
    """Per curve (medians over seeds, then each seed): greedy accuracy at start, end and best, final
    temperature-1 accuracy, mean greedy length, greedy P(long), no-EOS fraction at T = 1, samples seen."""
    header = (f"{digits}x{digits}: {'curve':28s} {'start greedy':>12s} {'final greedy':>12s} {'best greedy':>11s} "
              f"{'final T=1':>9s} {'mean len':>8s} {'P(long)':>7s} {'no EOS':>6s} {'samples seen':>12s}")
    lines = [header, "-" * len(header)]
    rows = [c for ntp, rl in curves.values() for c in (ntp, *rl)]
    for section, group in (("median over seeds", rows), ("each seed", [c for cs in (per_seed or {}).values() for c in cs])):
        if group and per_seed:
            lines.append(f"      {section}")
        for c in group:
            lines.append(f"      {c.label:28s} {c.greedy_acc[0]:12.3f} {c.greedy_acc[-1]:12.3f} "
                         f"{c.greedy_acc.max():11.3f} {c.sampled_acc[-1]:9.3f} {c.greedy_len_mean[-1]:8.1f} "
                         f"{c.greedy_long_frac[-1]:7.2f} {c.sampled_no_eos_frac[-1]:6.2f} {c.samples_seen[-1]:12,.0f}")
    return "\n".join(lines)


def plot_mult(curves: dict[float, tuple[Curve, list[Curve]]], per_seed: dict[float, list[Curve]], long_len: int,
              preset: MultPreset, digits: int, path: Path) -> None:
    """One column per p_cot (pre-training and RL against samples seen), and a close-up of RL for the smallest
    p_cot: medians over seeds, and in the close-up each seed as a thin line."""
    columns = len(curves) + 1
    fig, axes = plt.subplots(2, columns, figsize=(4.3 * columns, 6.5), sharex="col", constrained_layout=True,
                             squeeze=False)
    for col, (p_cot, (ntp, rl)) in enumerate(curves.items()):
        blues = plt.cm.Blues([0.45 + 0.5 * i / max(1, len(rl) - 1) for i in range(len(rl))])
        ax_acc, ax_len = axes[0, col], axes[1, col]
        for curve, color, lw in ((ntp, "C3", 2.0), *((c, b, 1.5) for c, b in zip(rl, blues))):
            ax_acc.plot(curve.samples_seen, curve.greedy_acc, "-", color=color, lw=lw, label=curve.label)
            ax_acc.plot(curve.samples_seen, curve.sampled_acc, "--", color=color, lw=1, alpha=0.7)
            ax_len.plot(curve.samples_seen, curve.greedy_len_mean, "-", color=color, lw=lw)
        ax_acc.set(title=f"$p_{{cot}}$ = {p_cot:g}", ylim=(-0.03, 1.03))
        ax_len.set(ylim=(0, long_len + 3), xlabel="samples seen")
        ax_len.xaxis.set_major_formatter(lambda x, _: f"{x / 1000:g}k")
        ax_acc.legend(fontsize=7, loc="upper left")
    smallest = min(curves)
    ntp, rl = curves[smallest]
    blues = plt.cm.Blues([0.45 + 0.5 * i / max(1, len(rl) - 1) for i in range(len(rl))])
    seeds = len(preset.seeds)
    for k, (curve, color) in enumerate(zip(rl, blues)):
        for single in per_seed.get(smallest, [])[seeds * (k + 1) : seeds * (k + 2)]:  # [NTP seeds, RL 1 seeds, ...]
            axes[0, -1].plot(single.rl_samples, single.greedy_acc, "-", color=color, lw=0.8, alpha=0.5)
            axes[1, -1].plot(single.rl_samples, single.greedy_len_mean, "-", color=color, lw=0.8, alpha=0.5)
        axes[0, -1].plot(curve.rl_samples, curve.greedy_acc, "-", marker=".", color=color, label=curve.label)
        axes[0, -1].plot(curve.rl_samples, curve.sampled_acc, "--", color=color, alpha=0.7)
        axes[1, -1].plot(curve.rl_samples, curve.greedy_len_mean, "-", marker=".", color=color)
    axes[0, -1].set(title=f"GRPO close-up, $p_{{cot}}$ = {smallest:g}" + (" (thin: each seed)" if seeds > 1 else ""),
                    ylim=(-0.03, 1.03))
    axes[1, -1].set(ylim=(0, long_len + 3), xlabel="RL samples")
    axes[0, -1].legend(fontsize=7, loc="upper left")
    axes[0, 0].set_ylabel("test accuracy (greedy solid, T = 1 dashed)")
    axes[1, 0].set_ylabel(f"mean greedy length (long = {long_len})")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    m = preset.model
    seed_text = f"median of {seeds} seeds" if seeds > 1 else f"seed {preset.seeds[0]}"
    fig.suptitle(f"{digits}x{digits} multiplication: next-token prediction vs. NTP then GRPO (e2e reward)\n"
                 f"{m.arch} {m.layers}x{m.width}, {preset.splits['train']:,} training pairs, {seed_text}")
    fig.savefig(path, dpi=120)
    plt.close(fig)
