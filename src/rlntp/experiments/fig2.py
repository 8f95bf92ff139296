"""Figure 2: next-token prediction learns parity only when long sequences are common enough (p_cot > 1/3).

Pre-training at several p_cot over seeds, drawn as the paper's caption says. Left: greedy (solid) and
temperature-1 (dashed) test accuracy against samples seen, one colour per p_cot; centre: the
probability that the generation length equals d, greedy (solid) and temperature 1 (dashed); both the
mean and 1 standard deviation over seeds. Right: final greedy accuracy against p_cot, "final" as the
paper defines it (the mean of the last 5 evaluations), each seed a dot and the median of the seeds a
bullet, beside Theorem 1's prediction (1/2 up to p_cot = 1/3, 1 above) and the critical threshold;
beside it, the final sampled P(long) against its prediction p_cot. The paper draws the left and centre
panels at d = 50 and the right one at d = 25: a preset may hold both (the curves are drawn at the
largest d, the right panels at the d with the most values of p_cot).
"""

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps

from rlntp.exact import exact_fractions, exact_mean, exact_median, written
from rlntp.experiments import provenance as why
from rlntp.experiments.claims import APPROX, Claim, Verdict, discernible, k_of_n, sampling_margin, with_not_judged
from rlntp.experiments.provenance import choice, paper
from rlntp.experiments.recipe import Preset, Recipe
from rlntp.experiments.summary import SOLVED, censored_quantile, table_curve
from rlntp.files import figure, save_figure
from rlntp.theory import closed_forms

FINAL_EVALS = 5
"""'final' accuracy: the mean over a run's last this many evaluations (paper: its last 5 checkpoints)."""

_RIGHT_P_COTS = [0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.75]
_CURVE_P_COTS = [0.1, 0.25, 0.35, 0.5, 0.75]

def _small(d: int, eval_every: int, save_every: int, seeds: why.Sourced) -> dict:
    """A preset for 2 CPU cores: GPT-2 2 x 64, 2,000 steps of 128 at parity d, nine p_cot x `seeds` (3)."""
    return {
        "pretrain": {
            "task": {"d": d},
            "model": {"layers": 2, "width": 64, "heads": 4},
            "train": {"steps": 2000, "batch_size": 128, "lr": 1e-3, "eval_every": eval_every, "eval_samples": 1000,
                      "save_every": save_every},
            "axes": {"task.p_cot": choice([0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.6, 0.75],
                                          "nine values spanning the threshold 1/3, as the paper's right panel (its "
                                          "values are lost in our text)"),
                     "train.seed": seeds},
        },
    }


_PRESETS = {
    # d = 18: 2,000 steps of 128 are 256,000 samples of 262,144 inputs (0.98 passes); the long path is learned
    # within ~1,100 steps at p_cot = 0.25 (fig1's exploration seeds). It runs confirmation seeds 1000-1002.
    "cpu": Preset("d = 18, 2,000 steps of 128 (0.98 passes over the inputs), 9 p_cot x 3 seeds", _small(
        18, 200, 2000, why.confirmation_seeds(3, 'the Fig. 2 caption, "Figure shows average and 1 standard deviation '
                                                 'across 3 seeds."')), default=why.REGIME),
    # d = 12: the memorisation regime (62 passes over the 4,096 inputs), for tests and demos. d = 12 is out of reach
    # of the short sequences alone in 2,000 steps (Fig. 1's setting), while the long path is learned within ~1,000.
    "quick": Preset("memorisation regime (62 passes over every input): d = 12, 9 p_cot x 3 seeds; for tests and "
                    "demos", _small(12, 100, 1000, why.THREE_SEEDS([0, 1, 2])), default=why.QUICK),
    # The caption's two settings: the left and centre panels at d = 50, the right panel at d = 25
    # (50,000 steps of batch 256, 3 seeds, final = the mean of the evaluations at 47,500-49,500 and the last).
    "paper": Preset("curves at d = 50 (5 p_cot), final accuracy at d = 25 (9 p_cot); 50,000 steps of 256, "
                    "3 seeds; GPUs", {
        "pretrain": {
            "model": why.PARITY_MODEL,
            "train": why.parity_train(paper(50_000, "§3.1, Fig. 2 caption: 50,000 iterations",
                                            "256 sequences per iteration for 50,000 iterations"),
                                      eval_every=paper(500, "App. B.1: final = the last 5 checkpoints, iterations "
                                                            "47,500 to 49,500, so one every 500",
                                                       "the average accuracy from the last 5 checkpoints of the "
                                                       "pre-trained run (that is, average accuracy at iterations "
                                                       "47,500 to 49,500)"),
                                      save_every=5000),
            "axes": {"task.d, task.p_cot": choice(
                [[50, p] for p in _CURVE_P_COTS] + [[25, p] for p in _RIGHT_P_COTS],
                "d = 50 for the left and centre panels and d = 25 for the right are the paper's (§3.1, Fig. 2 "
                "caption); the p_cot values are lost in our text: five for the curves, nine spanning 1/3 for the "
                "right panel"),
                     "train.seed": why.THREE_SEEDS([0, 1, 2])},
        },
    }),
}


def final_values(table: pd.DataFrame) -> pd.DataFrame:
    """Per pre-training run: d, p_cot, seed, and the mean over its last FINAL_EVALS evaluations of each metric (an
    exact fraction: `rlntp.exact.exact_mean`)."""
    rows = exact_fractions(table[(table["stage"] == "pretrain") & table["eval/greedy_acc"].notna()])
    keys = ["eval/greedy_acc", "eval/sampled_acc", "eval/sampled_long_frac", "eval/greedy_long_frac"]
    finals = []
    for run, group in rows.groupby("run", sort=False):
        last = group.sort_values("step").tail(FINAL_EVALS)
        finals.append({"run": run, "d": int(last["task.d"].iloc[0]), "p_cot": last["task.p_cot"].iloc[0],
                       "seed": last["train.seed"].iloc[0], "evals": len(last)}
                      | {key: exact_mean(last[key]) for key in keys})
    return pd.DataFrame(finals)


def panel_dims(finals: pd.DataFrame) -> tuple[int, int]:
    """(d of the curves, d of the final-accuracy panels): the largest d, and the d with the most p_cot values
    (the paper: 50 and 25; a preset with one d draws every panel at it)."""
    counts = finals.groupby("d")["p_cot"].nunique()
    return int(counts.index.max()), int(counts.sort_values(kind="stable").index[-1])


def report(table: pd.DataFrame, spec: dict, out: Path) -> str:
    """fig2.png and the table of final accuracies per (d, p_cot) beside Theorem 1's predictions."""
    finals = final_values(table)
    finals = finals.astype({key: float for key in finals.columns if key.startswith("eval/")})
    curve_d, final_d = panel_dims(finals)
    pre = table[table["stage"] == "pretrain"]
    at_curve_d = pre[pre["task.d"] == curve_d]
    curves = {p: table_curve(f"p_cot = {p:g}", rows) for p, rows in at_curve_d.groupby("task.p_cot")}
    plot_fig2(curves, finals[finals["d"] == final_d], at_curve_d.iloc[0], final_d, out / "fig2.png")

    header = (f"{'d':>3s} {'p_cot':>6s} {'final greedy acc: median [IQR]':>31s} {'per seed':>20s} {'theory':>7s}   "
              f"{'sampled acc':>11s} {'theory':>7s}   {'sampled P(long)':>15s} {'greedy P(long)':>14s}")
    lines = [f"final = mean of each run's last {FINAL_EVALS} evaluations; medians over seeds", header, "-" * len(header)]
    for (d, p), rows in finals.groupby(["d", "p_cot"]):
        acc = rows["eval/greedy_acc"].tolist()
        q = [censored_quantile(acc, [True] * len(acc), level)[0] for level in (0.25, 0.5, 0.75)]
        lines.append(f"{d:3d} {p:6g} {q[1]:14.3f} [{q[0]:.3f}, {q[2]:.3f}] {' '.join(f'{a:.3f}' for a in acc):>20s} "
                     f"{closed_forms.greedy_accuracy(p):7.2f}   {rows['eval/sampled_acc'].median():11.3f} "
                     f"{closed_forms.sampled_accuracy(p):7.3f}   {rows['eval/sampled_long_frac'].median():15.3f} "
                     f"{rows['eval/greedy_long_frac'].median():14.3f}")
    return "\n".join(lines)


def plot_fig2(curves: dict, finals: pd.DataFrame, config: pd.Series, final_d: int, path: Path) -> None:
    """Curves per p_cot (left, centre: mean and 1 std over seeds) and final accuracy and P(long) against p_cot."""
    fig, axes = figure(1, 4, figsize=(19, 4.3), gridspec_kw={"width_ratios": [1.3, 1.3, 1, 1]})
    colors = colormaps["viridis"](np.linspace(0, 0.9, len(curves)))
    ax_acc, ax_len, ax_final, ax_long = axes
    for (p, curve), color in zip(curves.items(), colors):
        for ax, greedy, sampled in ((ax_acc, "eval/greedy_acc", "eval/sampled_acc"),
                                    (ax_len, "eval/greedy_long_frac", "eval/sampled_long_frac")):
            for key, style, width, alpha in ((greedy, "-", 1.5, 0.15), (sampled, "--", 1, 0.08)):
                mean, std = curve.mean_std(key)
                ax.plot(curve.samples_seen, mean, style, color=color, lw=width,
                        label=f"p = {p:g}" if ax is ax_acc and key == greedy else None)
                if curve.seeds > 1:
                    ax.fill_between(curve.samples_seen, mean - std, mean + std, color=color, alpha=alpha, lw=0)
    seeds = next(iter(curves.values())).seeds
    spread = f"mean and 1 std over {seeds} seeds" if seeds > 1 else "one seed"
    ax_acc.set(ylim=(0.3, 1.03), xlabel="samples seen", ylabel="test accuracy (greedy solid, T = 1 dashed)",
               title=f"d = {config['task.d']}: {spread}")
    ax_acc.legend(fontsize=7, ncol=2, loc="lower right")
    ax_len.set(ylim=(-0.02, 1.02), xlabel="samples seen",
               ylabel="P(generation length = d) (greedy solid, T = 1 dashed)",
               title=f"d = {config['task.d']}: {spread}")

    grid = np.linspace(0.01, 0.99, 393)
    ax_final.plot(grid, [closed_forms.greedy_accuracy(p) for p in grid], color="grey", lw=1.2,
                  label="Theorem 1: greedy accuracy")
    ax_final.plot(grid, [closed_forms.sampled_accuracy(p) for p in grid], color="grey", lw=1, ls="--",
                  label="Theorem 1: T = 1 accuracy (1 + p)/2")
    ax_final.axvline(closed_forms.CRITICAL_P_COT, color="C3", lw=0.9, ls="--", label="critical threshold 1/3")
    for key, color, label in (("eval/greedy_acc", "C0", "greedy (final)"), ("eval/sampled_acc", "C1", "T = 1 (final)")):
        ax_final.scatter(finals["p_cot"], finals[key], s=12, color=color, alpha=0.45)
        medians = finals.groupby("p_cot")[key].median()
        ax_final.plot(medians.index, medians.values, "o-", color=color, ms=5, lw=1.2, label=f"{label}: median")
    ax_final.set(xlim=(0, 1), ylim=(0.3, 1.03), xlabel="$p_{cot}$", ylabel="final test accuracy",
                 title=f"d = {final_d}: each dot a seed")
    ax_final.legend(fontsize=7, loc="lower right")

    ax_long.plot([0, 1], [0, 1], color="grey", lw=1, label="Theorem 1: P(long) = p")
    ax_long.scatter(finals["p_cot"], finals["eval/sampled_long_frac"], s=12, color="C2", alpha=0.45)
    medians = finals.groupby("p_cot")["eval/sampled_long_frac"].median()
    ax_long.plot(medians.index, medians.values, "o-", color="C2", ms=4, label="T = 1 P(long) (final): median")
    ax_long.set(xlim=(0, 1), ylim=(0, 1), xlabel="$p_{cot}$", ylabel="fraction of long answers at T = 1",
                title=f"d = {final_d}")
    ax_long.legend(fontsize=7, loc="upper left")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"Parity: pre-training at several $p_{{cot}}$ — {config['model.arch']} "
                 f"{config['model.layers']}x{config['model.width']}")
    save_figure(fig, path)


def _medians(table: pd.DataFrame, key: str) -> dict[str, tuple[float, float]]:
    """Per (d, p_cot), labelled, the p_cot and the median over seeds of each run's final value (the mean of its
    last FINAL_EVALS evaluations) of `key`."""
    medians = final_values(table).groupby(["d", "p_cot"])[key].agg(exact_median)
    several = medians.index.get_level_values("d").nunique() > 1
    return {(f"d = {d}, " if several else "") + f"p_cot = {p:g}": (p, value) for (d, p), value in medians.items()}


NEAR_THRESHOLD = 0.05
"""p_cot within this of 1/3 is left out of the claims about either side: the paper puts the transformers'
threshold 'around 1/3' and reports unstable greedy behaviour close to it."""


def _below(p: float) -> bool:
    return p <= closed_forms.CRITICAL_P_COT - NEAR_THRESHOLD


def _above(p: float) -> bool:
    return p >= closed_forms.CRITICAL_P_COT + NEAR_THRESHOLD


def _chance_margin(table: pd.DataFrame) -> float:
    return sampling_margin(FINAL_EVALS * table["train.eval_samples"].min())


def _at_chance_below_threshold(table: pd.DataFrame) -> Verdict:
    margin = _chance_margin(table)
    medians = _medians(table, "eval/greedy_acc")
    return k_of_n({label: (abs(acc - 0.5) <= margin, f"{acc:.3f}")
                   for label, (p, acc) in medians.items() if _below(p)},
                  need="all", unit="p_cot below 1/3")


def _learns_above_threshold(table: pd.DataFrame) -> Verdict:
    medians, long = _medians(table, "eval/greedy_acc"), _medians(table, "eval/greedy_long_frac")
    return k_of_n({label: (acc >= SOLVED and long[label][1] > 0.5, f"{acc:.3f}, {long[label][1]:.2f} long")
                   for label, (p, acc) in medians.items() if _above(p)},
                  need="all", unit="p_cot above 1/3")


def sampled_effect(p: float) -> float:
    """What T = 1 accuracy (1 + p)/2 measures: its distance from a coin flip's 1/2, p/2 (written so, not as a
    difference of floats, which puts (1 + 0.1)/2 - 1/2 above 0.05)."""
    return p / 2


def _not_judged(medians: dict, judged) -> list[str]:
    return [label for label, (p, _) in medians.items() if not judged(p)]


def _sampled_accuracy(table: pd.DataFrame) -> Verdict:
    medians = {label: value for label, value in _medians(table, "eval/sampled_acc").items() if _below(value[0])}

    def judged(p: float) -> bool:
        return discernible(sampled_effect(p))

    verdict = k_of_n({label: (abs(acc - closed_forms.sampled_accuracy(written(p))) <= APPROX,
                              f"{acc:.3f} vs {closed_forms.sampled_accuracy(p):.3f}")
                      for label, (p, acc) in medians.items() if judged(p)},
                     need="all", unit="p_cot below 1/3")
    return with_not_judged(verdict, _not_judged(medians, judged))


def _calibrated(table: pd.DataFrame) -> Verdict:
    medians = _medians(table, "eval/sampled_long_frac")
    verdict = k_of_n({label: (abs(long - p) <= APPROX, f"{long:.3f}") for label, (p, long) in medians.items()
                      if discernible(p)}, need="all", unit="p_cot")
    return with_not_judged(verdict, _not_judged(medians, discernible))


_FINAL = f"final = the mean of a run's last {FINAL_EVALS} evaluations (the paper's definition), median over seeds"

CLAIMS = [
    Claim("Fig. 2: when long sequences are under-represented (p_cot below the critical threshold 1/3), next-token "
          "prediction performs on par with random guessing under greedy decoding",
          f"for every p_cot of the sweep at most 1/3 - {NEAR_THRESHOLD}, final greedy accuracy within 3 standard "
          "deviations of 1/2 "
          f"(1.5/sqrt({FINAL_EVALS} x eval inputs)); {_FINAL}",
          _at_chance_below_threshold, about_generalization=True),
    Claim("Fig. 2: when the share of long sequences is large enough (above the critical threshold around 1/3), "
          "next-token prediction learns to predict the parity correctly, with long responses",
          f"for every p_cot of the sweep at least 1/3 + {NEAR_THRESHOLD}, final greedy accuracy >= {SOLVED} with most "
          f"greedy answers (more than half) long; {_FINAL}",
          _learns_above_threshold, about_generalization=True),
    Claim("Fig. 2 (left), §3.2: at temperature 1 the accuracy at the end of pre-training is (1 + p_cot)/2 for every "
          "p_cot < 1/3",
          f"for every p_cot of the sweep at most 1/3 - {NEAR_THRESHOLD} where {APPROX} is smaller than the effect "
          f"p_cot/2 (the distance of (1 + p_cot)/2 from a coin flip's 1/2, so p_cot > {2 * APPROX:g}), final "
          f"temperature-1 accuracy within {APPROX} of (1 + p_cot)/2; {_FINAL}",
          _sampled_accuracy, about_generalization=True),
    Claim("Fig. 2 (centre), §3.2: the models are calibrated with respect to length: they generate long responses "
          "with probability p_cot",
          f"for every p_cot of the sweep larger than {APPROX} (the effect: p_cot against a model that is never "
          f"long), the final fraction of long answers at temperature 1 within {APPROX} of p_cot; {_FINAL}",
          _calibrated),
]

RECIPE = Recipe(
    "fig2", "Figure 2: pre-training at several p_cot over seeds; final greedy accuracy against p_cot beside "
            "Theorem 1 (threshold 1/3)",
    _PRESETS, CLAIMS, report=report,
)
