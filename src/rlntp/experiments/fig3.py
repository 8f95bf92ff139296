"""Figure 3: STaR, REINFORCE and GRPO x end-to-end and chain-of-thought rewards x sampling temperatures.

All runs start from one pre-training checkpoint at p_cot = 0.25. Left panels (one per tau_RL):
greedy test accuracy (solid) and temperature-1 accuracy (dashed) against RL samples; right: the
distribution of response lengths (temperature 1, 640 test inputs) during a GRPO run with the
end-to-end reward, showing the shift from length 1 to length d.
"""

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rlntp import runs  # noqa: E402
from rlntp.experiments.summary import Curve, read_curve, summary_table  # noqa: E402
from rlntp.models import ModelConfig  # noqa: E402
from rlntp.tasks import TaskConfig  # noqa: E402
from rlntp.training.posttrain import PosttrainConfig, PosttrainRun, posttrain  # noqa: E402
from rlntp.training.pretrain import PretrainConfig, PretrainRun, pretrain  # noqa: E402

ALGOS = ("star", "reinforce", "grpo")
REWARD_NAMES = {"e2e": "end-to-end", "cot": "chain of thought"}


@dataclass(frozen=True)
class Fig3Preset:
    """Sizes of the Figure 3 experiment."""

    task: TaskConfig
    model: ModelConfig
    pretrain: PretrainConfig
    """the pre-training whose last checkpoint every RL run starts from"""
    temperatures: tuple[float, ...]
    rl_steps: dict[str, int]
    """RL steps per algorithm (STaR: rounds)"""
    star_samples: int
    """STaR: responses sampled per round"""
    post: PosttrainConfig = field(default_factory=PosttrainConfig)
    """shared post-training settings (evaluation, learning rate)"""
    seeds: tuple[int, ...] = (0,)


PRESETS = {
    "cpu": Fig3Preset(
        task=TaskConfig(d=12, p_cot=0.25),
        model=ModelConfig(layers=2, width=64, heads=4),
        pretrain=PretrainConfig(steps=1000, batch_size=128, lr=1e-3, eval_every=250, eval_samples=1000,
                                save_every=500),
        temperatures=(0.5, 1.0, 1.5),
        rl_steps={"star": 3, "reinforce": 30, "grpo": 30},
        star_samples=1000,
        post=PosttrainConfig(eval_every=3, eval_samples=640, save_every=30),
    ),
    "paper": Fig3Preset(  # d = 50 from 20,000 pre-training steps (paper Fig. 3, App. B.1), 3 seeds
        task=TaskConfig(d=50, p_cot=0.25),
        model=ModelConfig(layers=4, width=256, heads=8),
        pretrain=PretrainConfig(steps=20_000, batch_size=256, lr=1e-4, eval_every=1000, eval_samples=2560,
                                save_every=5000),
        temperatures=(0.5, 1.0, 1.5),
        rl_steps={"star": 10, "reinforce": 200, "grpo": 200},
        star_samples=3200,
        post=PosttrainConfig(eval_every=5, eval_samples=640, save_every=50),
        seeds=(0, 1, 2),
    ),
}


def _run_name(algo: str, reward: str, temperature: float) -> str:
    return f"{algo}_{reward}_T{temperature:g}"


def run_fig3(preset: Fig3Preset, out: Path, device: str = "auto", progress: bool = True) -> str:
    """Run (or resume) every stage under `out`, draw fig3.png, and return the summary table."""
    out = Path(out)
    grid = list(itertools.product(ALGOS, REWARD_NAMES, preset.temperatures))
    for seed in preset.seeds:
        pre = dataclasses.replace(preset.pretrain, seed=seed, device=device)
        pre_dir = pretrain(PretrainRun(preset.task, preset.model, pre), out / f"seed{seed}" / "pretrain",
                           resume=True, progress=progress)
        for algo, reward, temperature in grid:
            post = dataclasses.replace(
                preset.post, algo=algo, reward=reward, temperature=temperature, steps=preset.rl_steps[algo],
                seed=seed, device=device, prompts_per_step=preset.star_samples if algo == "star" else None,
                eval_every=1 if algo == "star" else preset.post.eval_every)
            posttrain(PosttrainRun.starting_from(pre_dir, None, post),
                      out / f"seed{seed}" / _run_name(algo, reward, temperature), resume=True, progress=progress)

    curves = {key: read_curve(f"{key[0]} {key[1]} T={key[2]:g}",
                              [out / f"seed{s}" / _run_name(*key) for s in preset.seeds]) for key in grid}
    histogram_run = out / f"seed{preset.seeds[0]}" / _run_name("grpo", "e2e", 1.0 if 1.0 in preset.temperatures
                                                               else preset.temperatures[0])
    plot_fig3(curves, histogram_run, preset, out / "fig3.png")
    table = summary_table(list(curves.values()), rl=[True] * len(curves))
    (out / "summary.txt").write_text(table + "\n")
    return table


def plot_fig3(curves: dict[tuple, Curve], histogram_run: Path, preset: Fig3Preset, path: Path) -> None:
    """Accuracy against RL samples per temperature, and the length histogram during one GRPO run."""
    temps = preset.temperatures
    fig, axes = plt.subplots(1, len(temps) + 1, figsize=(4.2 * (len(temps) + 1), 4), constrained_layout=True)
    colors = {"star": "C2", "reinforce": "C1", "grpo": "C0"}
    for ax, temperature in zip(axes, temps):
        for (algo, reward, t), curve in curves.items():
            if t != temperature:
                continue
            x = np.maximum(curve.rl_samples, 1)  # log axis: the starting point is drawn at 1
            marker = "o" if reward == "cot" else "s"
            label = f"{algo}, {REWARD_NAMES[reward]}"
            ax.plot(x, curve.greedy_acc, "-", color=colors[algo], marker=marker, ms=3,
                    alpha=1 if reward == "e2e" else 0.6, label=label)
            ax.plot(x, curve.sampled_acc, "--", color=colors[algo], alpha=0.35 if reward == "e2e" else 0.25)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set(xscale="log", ylim=(0.3, 1.03), xlabel="RL samples", title=f"$\\tau_{{RL}}$ = {temperature:g}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (greedy solid, T = 1 dashed)")
    axes[0].legend(fontsize=7, loc="lower right")

    records = [r for r in runs.read_metrics(histogram_run) if "eval/sampled_len_hist" in r]
    hist = np.array([r["eval/sampled_len_hist"] for r in records], dtype=float)
    hist /= hist.sum(axis=1, keepdims=True)
    ax = axes[-1]
    image = ax.imshow(hist.T, origin="lower", aspect="auto", cmap="viridis",
                      extent=(-0.5, len(records) - 0.5, -0.5, hist.shape[1] - 0.5))
    ticks = range(0, len(records), max(1, len(records) // 5))
    ax.set_xticks(list(ticks), [f"{records[i]['rl_samples']:,}" for i in ticks])
    ax.set(xlabel="RL samples", ylabel="response length (T = 1)",
           title=f"GRPO, end-to-end: lengths on {preset.post.eval_samples} test inputs")
    fig.colorbar(image, ax=ax, label="fraction")
    fig.suptitle(f"Post-training from one checkpoint: parity d = {preset.task.d}, $p_{{cot}}$ = {preset.task.p_cot}")
    fig.savefig(path, dpi=120)
    plt.close(fig)
