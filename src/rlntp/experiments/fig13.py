"""Figure 13: samples to >= 95% greedy test accuracy as d grows, next-token prediction alone vs NTP then GRPO.

For each d and seed, one pre-training run (p_cot = 0.25) and GRPO (end-to-end reward) from each
checkpoint of a ladder. NTP alone: the samples seen at the pre-training run's first evaluation with
greedy accuracy >= 95%. NTP + GRPO: the fewest samples over the ladder, each GRPO run counted with
the pre-training samples of its checkpoint and its rollouts with their multiplicity (App. C.1). A run
that never gets there is a lower bound (its last evaluation's samples), drawn as a hollow triangle
and never dropped: the paper discards such seeds, which hides how large the gap can be. Medians
over seeds are lower bounds too when a bound sits at or below them.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from rlntp.experiments import provenance as why
from rlntp.experiments.claims import Claim, Verdict, grows, k_of_n
from rlntp.experiments.provenance import choice, paper
from rlntp.experiments.recipe import Preset, Recipe
from rlntp.experiments.summary import (SOLVED, Column, censored_quantile, quantile_within, reached_within,
                                       solved_within, text_table, within_text)
from rlntp.files import figure, save_figure

_SWITCH = "we consider switching to post-training (GRPO with e2e reward) at several checkpoints"
_GRPO = {"algo": paper("grpo", "App. C.1: GRPO", _SWITCH), "reward": paper("e2e", "App. C.1: the end-to-end reward",
                                                                           _SWITCH)}
_P_COT = paper(0.25, "App. C.1: p_cot = 0.25 (our text lost the symbol)",
               "We fix =0.25 and we vary the input dimension")
_SEEDS = paper([0, 1, 2], "App. C.1: 3 seeds", "only one of three seeds ended up generalizing during pre-training")

_PRESETS = {
    # A 2-layer GPT-2 of width 64 learns parity from the short sequences alone within the budget of
    # 10,000 steps (1.28 M samples) at every d of the sweep (small-d measured ~0.5 M samples at d = 7),
    # so NTP alone is uncensored at 4 values of d and the growth of the gap can be fitted; at d = 8
    # and 10 (the earlier grid) it was censored at 768,000 samples. The ladder starts at 100 steps,
    # where the long path is learned at d <= 7.
    "cpu": Preset("d = 4, 5, 6, 7 x 3 seeds, up to 10,000 steps", {
        "pretrain": {
            "task": {"p_cot": _P_COT},
            "model": {"layers": 2, "width": 64, "heads": 4},
            "train": {"steps": 10_000, "batch_size": 128, "lr": 1e-3, "eval_every": 100, "eval_samples": 500,
                      "save_every": 100},
            "axes": {"task.d": choice([4, 5, 6, 7], "values of d at which NTP alone gets there within the budget, so "
                                                    "its samples are measured rather than bounded (measured: d = 8 "
                                                    "and 10 were censored at 768,000 samples)"),
                     "train.seed": why.confirmation_seeds(3, 'App. C.1, "only one of three seeds ended up '
                                                             'generalizing during pre-training"',
                                                             spent=range(1000, 1003))},
        },
        "posttrain": {"grpo": {"from_steps": choice([100, 200, 500, 1000, 2000],
                                                    "a ladder from the step the long path is learned at d <= 7 (the "
                                                    "paper's starts at 1,000 of batch 256)"),
                               "post": _GRPO | {"steps": 20, "eval_every": 2, "eval_samples": 500,
                                                "save_every": 20}}},
    }, default=why.CPU),
    # The paper's setting (App. C.1): GPT-2 depth 4, 32 heads, width 128; at most 100,000 steps of 256;
    # GRPO from its checkpoint ladder; 3 seeds. Our text of the paper lost the values of d; 12 is the
    # largest it names.
    "paper": Preset("GPT-2 4 x 128, 32 heads, d = 6..12; GPUs", {
        "pretrain": {
            "task": {"p_cot": _P_COT},
            "model": paper({"layers": 4, "width": 128, "heads": 32}, "App. C.1: GPT-2 depth 4, 32 heads, width 128",
                           "We consider a GPT2 architecture of depth 4, number of heads 32 and embedding dimension "
                           "equal to 128."),
            "train": why.parity_train(paper(100_000, "App. C.1: at most 100,000 iterations",
                                            "We train for at most 100,000 iterations (of batch size 256)"), 500,
                                      choice(500, "every 500 steps, so that every checkpoint of the ladder exists"))
            | {"batch_size": paper(256, "App. C.1: batch size 256",
                                   "We train for at most 100,000 iterations (of batch size 256)")},
            "axes": {"task.d": choice([6, 8, 10, 12], "our text lost the values of d; 12 is the largest it names"),
                     "train.seed": _SEEDS},
        },
        "posttrain": {"grpo": {
            "from_steps": paper([1000, 1500, 2000, 2500, 3000, 5000, 10_000, 15_000, 20_000, 30_000, 50_000, 100_000],
                                "App. C.1: checkpoints {1000, 1500, ..., 100000}",
                                "the pre-trained checkpoints from which we consider starting post-training are at "
                                "iterations {1000, 1500, 2000, 2500, 3000, 5000, 10000, 15000, 20000, 30000, 50000, "
                                "100000}"),
            "post": _GRPO | why.PARITY_GRPO | why.rl_cadence(steps=100, eval_every=5, eval_samples=640,
                                                              save_every=50)}},
    }),
}


def per_seed(table: pd.DataFrame) -> pd.DataFrame:
    """Per (d, seed): samples to solve by NTP alone and by NTP + GRPO (best checkpoint), whether reached, and the
    bounds one evaluation interval wide within which each happened (`solved_within`). NTP + GRPO is the fewest over
    the GRPO runs of the ladder that got there within their RL steps (as App. C.1 measures it), so its bounds are the
    smallest low and the smallest high over those runs; where none got there, a lower bound as NTP alone's."""
    results = []
    for (d, seed), rows in table.groupby(["task.d", "train.seed"]):
        pre = rows[rows["stage"] == "pretrain"]
        ntp_low, ntp_high = solved_within(pre)
        ntp, ntp_reached = reached_within(ntp_low, ntp_high)
        runs = [(step, solved_within(run_rows))
                for (_, step), run_rows in rows[rows["stage"] == "posttrain"].groupby(["run", "source_step"])]
        ladder = [(reached_within(*bounds), step) for step, bounds in runs]
        within = [bounds for _, bounds in runs if bounds[1] < float("inf")]
        solved = [(samples, step) for (samples, reached), step in ladder if reached]
        if solved:
            rl, best = min(solved)
            rl_reached = True
        else:  # no checkpoint got there: any would need more than its run saw
            rl, best, rl_reached = min(samples for (samples, _), _ in ladder), None, False
        results.append({"d": d, "seed": seed, "ntp": ntp, "ntp_reached": ntp_reached, "rl": rl,
                        "rl_reached": rl_reached, "rl_from": best, "ntp_low": ntp_low, "ntp_high": ntp_high,
                        "rl_low": min(low for low, _ in within) if within else rl,
                        "rl_high": min(high for _, high in within) if within else float("inf")})
    return pd.DataFrame(results)


def growth_fits(medians: dict) -> dict[str, dict[str, float]] | None:
    """Least-squares fits of the log of the gap (NTP alone / NTP + GRPO, medians over seeds) against d, over the
    values of d where both medians are measured (not bounds): exponential, log gap = a + b d, and polynomial,
    log gap = a + b log d. Per model: a, b, the residuals' root mean square (in log units) and the d it was
    fitted on; None with fewer than 3 such d (two points fit any two-parameter model exactly)."""
    ds = [d for d in sorted(medians) if medians[d]["ntp"][1] and medians[d]["rl"][1]]
    if len(ds) < 3:
        return None
    x = np.array(ds, dtype=float)
    y = np.log([medians[d]["ntp"][0] / medians[d]["rl"][0] for d in ds])
    fits = {}
    for model, features in (("exponential", x), ("polynomial", np.log(x))):
        b, a = np.polyfit(features, y, 1)
        residuals = y - (a + b * features)
        fits[model] = {"a": float(a), "b": float(b), "rms": float(np.sqrt(np.mean(residuals ** 2))), "d": ds}
    return fits


def report(table: pd.DataFrame, spec: dict, out: Path) -> str:
    """fig13.png and the per-d table: medians over seeds, lower bounds marked '>', their ratio, and the fits of its
    growth (`growth_fits`)."""
    seeds = per_seed(table)
    medians = {}
    for d, rows in seeds.groupby("d"):
        medians[d] = {kind: censored_quantile(rows[kind].tolist(), rows[f"{kind}_reached"].tolist(), 0.5)
                      for kind in ("ntp", "rl")}
    budget = table.loc[table["stage"] == "pretrain", "samples_seen"].max()
    fits = growth_fits(medians)
    plot_fig13(seeds, medians, budget, table.iloc[0], fits, out / "fig13.png")

    def shown(value: float, exact: bool) -> str:
        return f"{'' if exact else '>'}{value:,.0f}"

    columns = [Column("d", 3, "d"), Column("NTP alone: median", 18), Column("per seed", 34),
               Column("NTP + GRPO: median", 18, gap=3), Column("per seed (from checkpoint)", 44),
               Column("ratio", 7, gap=3)]
    table_rows = []
    for d, rows in seeds.groupby("d"):
        (ntp, ntp_exact), (rl, rl_exact) = medians[d]["ntp"], medians[d]["rl"]
        bound = {(True, True): "", (False, True): ">", (True, False): "<", (False, False): "?"}[(ntp_exact, rl_exact)]
        ratio = f"{bound}{ntp / rl:.1f}x"
        ntp_seeds = " ".join(shown(r.ntp, r.ntp_reached) for r in rows.itertuples())
        rl_seeds = " ".join(shown(r.rl, r.rl_reached) + (f" ({r.rl_from:g})" if r.rl_reached else "")
                            for r in rows.itertuples())
        table_rows.append((d, shown(ntp, ntp_exact), ntp_seeds, shown(rl, rl_exact), rl_seeds, ratio))
    lines = text_table(columns, table_rows, [f"samples to >= {SOLVED:.0%} greedy test accuracy ('>': not reached, a "
                                             "lower bound)"])
    lines.append("ratio: NTP alone / NTP + GRPO ('>': NTP alone not reached, '<': NTP + GRPO not reached, '?': neither)")
    if fits is None:
        lines.append("growth of the ratio: not fitted (fewer than 3 values of d with both medians measured)")
    else:
        exp, poly = fits["exponential"], fits["polynomial"]
        over = ", ".join(map(str, exp["d"]))
        lines.append(f"growth of the ratio over d = {over}: exponential x{np.exp(exp['b']):.2f} per unit of d "
                     f"(residuals rms {exp['rms']:.3f} in log units); polynomial d^{poly['b']:.2f} "
                     f"(rms {poly['rms']:.3f})")
    return "\n".join(lines)


def plot_fig13(seeds: pd.DataFrame, medians: dict, budget: float, config: pd.Series, fits: dict | None,
               path: Path) -> None:
    """Samples to solve against d on a log axis (filled markers reached, hollow triangles lower bounds), and the
    gap's growth with its exponential and polynomial fits."""
    fig, (ax, ax_gap) = figure(1, 2, figsize=(12, 4.5))
    ax.axhline(budget, color="grey", lw=0.8, ls=":", label=f"pre-training budget ({budget:,.0f} samples)")
    for kind, color, label in (("ntp", "C3", "NTP alone"), ("rl", "C0", "NTP + GRPO (best checkpoint)")):
        for reached, marker in ((True, "o"), (False, "^")):
            part = seeds[seeds[f"{kind}_reached"] == reached]
            ax.scatter(part["d"], part[kind], s=18, marker=marker, alpha=0.35,
                       facecolors=color if reached else "none", edgecolors=color)
        ds = sorted(medians)
        values = [medians[d][kind][0] for d in ds]
        ax.plot(ds, values, "-", color=color, lw=1.6, label=f"{label}: median over seeds")
        for d, value in zip(ds, values):
            exact = medians[d][kind][1]
            ax.scatter([d], [value], s=50, marker="o" if exact else "^", facecolors=color if exact else "none",
                       edgecolors=color, zorder=3)
    ax.set(yscale="log", xlabel="input bits d", ylabel=f"samples to >= {SOLVED:.0%} greedy accuracy",
           xticks=sorted(medians))
    ax.scatter([], [], marker="^", facecolors="none", edgecolors="grey", label="not reached: lower bound")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"Parity, $p_{{cot}}$ = {config['task.p_cot']:g}: {config['model.arch']} "
                 f"{config['model.layers']}x{config['model.width']}, {config['model.heads']} heads, "
                 f"{seeds['seed'].nunique()} seeds", fontsize=10)

    ds = sorted(medians)
    for d in ds:
        (ntp, ntp_exact), (rl, rl_exact) = medians[d]["ntp"], medians[d]["rl"]
        exact = ntp_exact and rl_exact
        ax_gap.scatter([d], [ntp / rl], s=50, marker="o" if exact else "^" if rl_exact else "v",
                       facecolors="C4" if exact else "none", edgecolors="C4", zorder=3)
    if fits is not None:
        grid = np.linspace(min(ds), max(ds), 100)
        exp, poly = fits["exponential"], fits["polynomial"]
        ax_gap.plot(grid, np.exp(exp["a"] + exp["b"] * grid), color="C3", lw=1.2,
                    label=f"exponential: x{np.exp(exp['b']):.2f} per unit d (rms {exp['rms']:.2f})")
        ax_gap.plot(grid, np.exp(poly["a"] + poly["b"] * np.log(grid)), color="C2", lw=1.2, ls="--",
                    label=f"polynomial: d^{poly['b']:.1f} (rms {poly['rms']:.2f})")
    ax_gap.scatter([], [], marker="o", color="C4", label="median ratio (measured)")
    ax_gap.scatter([], [], marker="^", facecolors="none", edgecolors="C4", label="lower bound (NTP alone not reached)")
    ax_gap.set(yscale="log", xlabel="input bits d", ylabel="gap: samples of NTP alone / NTP + GRPO", xticks=ds,
               title="the gap; fits where both medians are measured" if fits else
               "the gap (fewer than 3 measured values of d: no fit)")
    ax_gap.legend(fontsize=8, loc="upper left")
    ax_gap.grid(alpha=0.3, which="both")
    save_figure(fig, path)


def _rl_reaches(table: pd.DataFrame) -> Verdict:
    return k_of_n({f"d = {d}": (rows["rl_reached"].sum() > len(rows) / 2,
                                f"{rows['rl_reached'].sum()}/{len(rows)} seeds")
                   for d, rows in per_seed(table).groupby("d")}, need="all", unit="values of d")


def _gap_grows(table: pd.DataFrame) -> Verdict:
    ratios = {}  # d -> (low, high, shown): NTP alone / NTP + GRPO of the medians over seeds, within its bounds
    for d, rows in per_seed(table).groupby("d"):
        ntp_low, ntp_high = quantile_within(rows["ntp_low"].tolist(), rows["ntp_high"].tolist(), 0.5)
        rl_low, rl_high = quantile_within(rows["rl_low"].tolist(), rows["rl_high"].tolist(), 0.5)
        low = ntp_low / rl_high  # 0 where NTP + GRPO never got there
        high = ntp_high / rl_low if rl_low else float("inf")  # inf where NTP alone never got there
        ratios[d] = (low, high, within_text(low, high, ".1f") + "x")
    return grows(ratios)


CLAIMS = [
    Claim("Fig. 13: pre-training followed by GRPO, switched to at some checkpoint, reaches more than 95% test "
          "accuracy at every input dimension d",
          f"for every d of the sweep, GRPO from some checkpoint of the ladder reaches greedy accuracy >= {SOLVED} in a "
          "majority of seeds",
          _rl_reaches),
    Claim("Fig. 13: the gap between the samples next-token prediction alone and NTP + GRPO need to reach 95% test "
          "accuracy grows with d (seemingly exponentially fast)",
          f"the ratio of the medians over seeds, samples to greedy accuracy >= {SOLVED} of NTP alone / of NTP + GRPO "
          "(its checkpoint's samples included, rollouts with multiplicity), is larger at each d than at the next "
          "smaller d. Each seed's samples are known within one evaluation interval (after the last evaluation below, "
          "at the first one at or above), or only from below where the seed never gets there; the ratio's bounds "
          "follow from the medians', and a step they leave open is undecided. This tests growth, which a few values "
          "of d cannot tell from exponential",
          _gap_grows),
]

RECIPE = Recipe(
    "fig13", "Figure 13: samples to >= 95% greedy accuracy as d grows, NTP alone vs NTP + GRPO from a ladder "
             "of checkpoints",
    _PRESETS, CLAIMS, report=report,
)
