"""Figures of runs, in the style of the paper's figures."""

from pathlib import Path

from rlntp.errors import RunDirError
from rlntp.files import check_output, figure, save_figure
from rlntp.runs.dirs import read_config, read_task_and_model
from rlntp.runs.metrics import METRICS, read_metrics
from rlntp.tasks import make_task

EVAL_KEYS = ("eval/greedy_acc", "eval/sampled_acc", "eval/greedy_long_frac", "eval/sampled_long_frac")
"""What every metrics record of a run holds and the run figure draws."""


def plot_run(run_dir: Path, out: Path | None = None) -> Path:
    """Accuracy and P(long length) against samples, greedy solid and sampled dashed (paper Fig. 2).

    Pre-training runs are drawn against samples seen, post-training runs against RL samples.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    out = check_output(Path(out) if out else run_dir / "plot.png", suffix=".png")
    task_config, model_config = read_task_and_model(run_dir)
    task = make_task(task_config)
    keys = EVAL_KEYS + (("rl_samples",) if config["stage"] == "posttrain" else ("samples_seen",))
    records = read_metrics(run_dir, keys)
    if not records:
        raise RunDirError(f"{run_dir} has no evaluations in {METRICS} yet")
    p_cot = task_config.p_cot
    if config["stage"] == "posttrain":
        x = [r["rl_samples"] for r in records]
        xlabel = f"RL samples (from step {config['source_step']:,}, {config['start_samples_seen']:,} samples seen)"
    else:
        x, xlabel = [r["samples_seen"] for r in records], "samples seen"

    fig, (ax_acc, ax_len) = figure(1, 2, figsize=(10, 3.8))
    ax_acc.plot(x, [r["eval/greedy_acc"] for r in records], "-", color="C3", label="greedy")
    ax_acc.plot(x, [r["eval/sampled_acc"] for r in records], "--", color="C3", label="sampled (T = 1)")
    calibrated = p_cot + (1 - p_cot) * task.guess_acc  # long answers right, short ones guesses
    ax_acc.axhline(task.guess_acc, color="grey", lw=0.8, ls=":")
    ax_acc.axhline(calibrated, color="C0", lw=0.8, ls=":", label=r"calibrated: $p_{cot}$ + $(1 - p_{cot})$ x chance")
    ax_acc.set(xlabel=xlabel, ylabel="test accuracy", ylim=(min(0.3, task.guess_acc) - 0.03, 1.03))
    ax_len.plot(x, [r["eval/greedy_long_frac"] for r in records], "-", color="C3", label="greedy")
    ax_len.plot(x, [r["eval/sampled_long_frac"] for r in records], "--", color="C3", label="sampled (T = 1)")
    ax_len.axhline(p_cot, color="C0", lw=0.8, ls=":", label=r"$p_{cot}$")
    ax_len.set(xlabel=xlabel, ylabel=f"P(long: length = {task.long_len})", ylim=(-0.03, 1.03))
    for ax in (ax_acc, ax_len):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{config['stage']}: {task.title}, $p_{{cot}}$ = {p_cot}, {model_config.arch} "
                 f"{model_config.layers}x{model_config.width}")
    return save_figure(fig, out)
