"""Figure 1: next-token prediction stays at chance; GRPO from its checkpoints learns parity, length 1 -> d.

Pre-training at p_cot = 0.25 (red), then GRPO with the end-to-end reward from several of its
checkpoints (blue), each curve the median over seeds; top: greedy test accuracy, bottom: median
greedy response length, both against samples seen (RL rollouts counted with their multiplicity).
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from rlntp.experiments import Recipe  # noqa: E402
from rlntp.experiments.summary import Curve, summary_table, table_curve  # noqa: E402
from rlntp.files import save_figure  # noqa: E402

_GRPO = {"algo": "grpo", "reward": "e2e"}

RECIPE = Recipe(
    "fig1",
    "Figure 1: pre-training at p_cot = 0.25, then GRPO from several of its checkpoints",
    order=1,
    presets={"cpu": "d = 12, GPT-2 2 x 64, 1,500 steps, GRPO from 3 checkpoints",
             "paper": "d = 50, GPT-2 4 x 256, 50,000 steps of 256, 3 seeds; for a GPU"},
)

PRESETS = {
    # d = 12 is past the point where a 2-layer GPT-2 learns parity from the
    # short sequences within a few thousand steps, and its long path is learned by ~1,000 steps.
    "cpu": {
        "pretrain": {
            "task": {"d": 12, "p_cot": 0.25},
            "model": {"layers": 2, "width": 64, "heads": 4},
            "train": {"steps": 1500, "batch_size": 128, "lr": 1e-3, "eval_every": 125, "eval_samples": 1000,
                      "save_every": 250},
            "axes": {"train.seed": [0]},
        },
        "posttrain": {"grpo": {"from_steps": [500, 1000, 1500],
                               "post": _GRPO | {"steps": 30, "eval_every": 3, "eval_samples": 640, "save_every": 30}}},
    },
    # The paper's setting (d = 50, 50,000 steps of batch 256, 3 seeds): for a GPU.
    "paper": {
        "pretrain": {
            "task": {"d": 50, "p_cot": 0.25},
            "model": {"layers": 4, "width": 256, "heads": 8},
            "train": {"steps": 50_000, "batch_size": 256, "lr": 1e-4, "eval_every": 1000, "eval_samples": 2560,
                      "save_every": 2500},
            "axes": {"train.seed": [0, 1, 2]},
        },
        "posttrain": {"grpo": {"from_steps": [5000, 10_000, 20_000, 30_000, 50_000],
                               "post": _GRPO | {"steps": 100, "eval_every": 5, "eval_samples": 640, "save_every": 50}}},
    },
}


def report(table: pd.DataFrame, spec: dict, out: Path) -> str:
    """fig1.png (NTP and GRPO-from-each-checkpoint curves, medians over seeds) and the summary table."""
    pre = table[table["stage"] == "pretrain"]
    post = table[table["stage"] == "posttrain"]
    ntp = table_curve("NTP (pre-training)", pre)
    rl = [table_curve(f"NTP -> GRPO from step {int(step):,}", rows) for step, rows in post.groupby("source_step")]
    seeds = pre["train.seed"].nunique()
    plot_fig1(ntp, rl, pre.iloc[0], seeds, out / "fig1.png")
    return summary_table([ntp, *rl], rl=[False] + [True] * len(rl))


def plot_fig1(ntp: Curve, rl: list[Curve], config: pd.Series, seeds: int, path: Path) -> None:
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
        ax_len.set(ylim=(0, config["task.d"] + 2), ylabel="median greedy length",
                   xlabel="samples seen" if col == 0 else "RL samples (close-up of post-training)")
        for ax in (ax_acc, ax_len):
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="lower right")
    who = f"median of {seeds} seeds" if seeds > 1 else f"seed {config['train.seed']}"
    fig.suptitle(f"Parity d = {config['task.d']}, $p_{{cot}}$ = {config['task.p_cot']:g}: next-token prediction vs. "
                 f"NTP then GRPO (e2e reward) — {config['model.arch']} {config['model.layers']}x{config['model.width']}, "
                 f"{who}")
    save_figure(fig, path)
    plt.close(fig)


def paper(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The paper's claims for Fig. 1 beside this run's numbers (medians over seeds)."""
    pre = table_curve("NTP", table[table["stage"] == "pretrain"])
    post = table[table["stage"] == "posttrain"]
    rl = {int(step): table_curve(str(step), rows) for step, rows in post.groupby("source_step")}
    best = max(rl, key=lambda step: (rl[step].greedy_acc[-1], step))
    earliest = min(rl)
    return [
        ("NTP alone, final greedy accuracy and median length", "stays at 50%, responses short",
         f"{pre.greedy_acc[-1]:.3f}, length {pre.greedy_len_median[-1]:g}"),
        ("GRPO from a later checkpoint, final greedy accuracy and length", "100%, length grows from 1 to d",
         f"{rl[best].greedy_acc[-1]:.3f} (from step {best:,}), length {rl[best].greedy_len_median[-1]:g}"),
        ("GRPO from the earliest checkpoint", "may not generalize despite the length increase",
         f"{rl[earliest].greedy_acc[-1]:.3f} (from step {earliest:,}), length {rl[earliest].greedy_len_median[-1]:g}"),
    ]
