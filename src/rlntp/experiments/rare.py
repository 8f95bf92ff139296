"""Figures 9-11: rarer long demonstrations. STaR, REINFORCE and GRPO x temperatures at two smaller p_cot.

Pre-training at two p_cot below Fig. 3's 0.25, then each algorithm (end-to-end reward) at several
sampling temperatures from an early and a late checkpoint. The paper's claims: from the early
checkpoint RL works for the larger p_cot but not reliably for the smaller; from the late one it
works for all three algorithms at reasonable temperatures. REINFORCE and GRPO also run at tau != 1
with the update's log-probabilities taken at the sampling temperature (`--logprobs-at-tau`), to
show what that choice changes.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from rlntp.experiments import provenance as why
from rlntp.experiments.claims import (
    NOT_REPRODUCED,
    SIGNIFICANCE,
    Claim,
    Verdict,
    check_attainable,
    combine,
    k_of_n,
    more_often,
    significant,
)
from rlntp.experiments.provenance import choice, paper
from rlntp.experiments.recipe import Preset, Recipe
from rlntp.experiments.summary import SOLVED, Column, first_solved, table_curve, text_table
from rlntp.files import figure, save_figure

ALGOS = ("star", "reinforce", "grpo")
TEMPERATURES = [0.5, 1.0, 1.5]


def rl_groups(from_steps, rl_steps: dict[str, int], star_samples: int, eval_every: int, eval_samples: int,
              temperatures: list[float] = TEMPERATURES, stated: dict[str, dict] | None = None,
              at_tau: bool = True) -> dict:
    """Post-training groups: each algorithm x temperatures (e2e reward) from `from_steps`, and (`at_tau`) REINFORCE
    and GRPO at the temperatures other than 1 with log-probabilities at tau (groups named ALGO-at-tau, which no claim
    reads: the figure draws them dotted); `stated`: per algorithm, settings written out (the paper preset's, whose RL
    cadence is then a choice too)."""
    cadence = why.rl_cadence if stated else dict
    groups = {}
    for algo in ALGOS:
        post = (stated or {}).get(algo, {}) | {
            "algo": paper(algo, "App. C.1: STaR, REINFORCE and GRPO",
                          "the learning behaviors of STaR, REINFORCE and GRPO are similar in our simple setting"),
            "reward": choice("e2e", "App. C.1 does not name Figs. 9-11's reward; it shows them as Fig. 3's comparison "
                                    "at rarer long data, and Fig. 3 shows both rewards: the end-to-end one"),
            **cadence(steps=rl_steps[algo]), "eval_samples": why.POST_EVAL(eval_samples),
            **cadence(save_every=rl_steps[algo])}
        # STaR: a round is a step, each samples star_samples prompts and is evaluated
        if algo == "star":
            samples = why.STAR_SAMPLES(star_samples) if stated else star_samples
            post |= {"prompts_per_step": samples, **cadence(eval_every=1)}
        else:
            post |= cadence(eval_every=eval_every)
        groups[algo] = {"from_steps": from_steps, "post": post, "axes": {"post.temperature": choice(
            temperatures, "Fig. 3's temperatures, lost in our text: 0.5, 1, 1.5")}}
        off_one = [t for t in temperatures if t != 1.0]
        if at_tau and algo != "star" and off_one:
            groups[f"{algo}-at-tau"] = why.AT_TAU({"from_steps": why.plain(from_steps),
                                                   "post": why.plain(post) | {"logprobs_at_tau": True},
                                                   "axes": {"post.temperature": off_one}})
    return groups


_P_COTS = choice([0.1, 0.15], "two p_cot below Fig. 3's 0.25; our text lost the paper's values")

_PRESETS = {
    # d = 20: 8,000 steps of 128 are 1,024,000 samples of 1,048,576 inputs (0.98 passes), the paper's regime. Pilots
    # (exploration seed 0, T = 1 accuracy every 250 steps): p_cot = 0.2 learns the long path by ~1,000 steps, 0.15
    # between ~2,000 and ~5,000, 0.1 not clearly within 8,000. An exploration run at p_cot = 0.1 and 0.15 from 3,200
    # and 8,000 (seeds 0-2; docs/notes/recipes-history.md) had both learned enough by 3,200 for REINFORCE and GRPO
    # to generalize in most runs (p_cot = 0.1 in 2 of 3 seeds, 0.15 in 3 of 3), leaving the early checkpoint no
    # contrast with the late one. So p_cot = 0.15 and 0.2, and the early checkpoint at 1,600: after p_cot = 0.2
    # has learned the long path, before 0.15 has. 5 seeds: single seeds flip between outcomes here. Every algorithm
    # gets about the same RL samples: STaR 8 rounds of 1,000, REINFORCE and GRPO 120 steps of 64 (7,680). The runs
    # with log-probabilities at tau, which no claim reads, are left out (80 of 260 RL runs): the exploration run
    # took 49 min for 3 seeds with them, on 2 cores partly shared. It runs confirmation seeds 1000-1004.
    "cpu": Preset("d = 20, 8,000 steps of 128 (0.98 passes over the inputs), p_cot = 0.15 and 0.2, 5 seeds", {
        "pretrain": {"task": {"d": choice(20, "the smallest d whose 2^d inputs outnumber the 8,000 x 128 samples "
                                              "pre-training needs for p_cot = 0.15 to learn the long path (pilots "
                                              "in the preset's comment)")},
                     "model": {"layers": 2, "width": 64, "heads": 4},
                     "train": {"steps": choice(8000, "the most steps of 128 within one pass over the 2^20 inputs"),
                               "batch_size": 128, "lr": 1e-3, "eval_every": 250, "eval_samples": 1000,
                               "save_every": 1600},
                     "axes": {"task.p_cot": choice([0.15, 0.2], "two p_cot below Fig. 3's 0.25 (our text lost the "
                                                                "paper's values) whose long paths are learned at "
                                                                "d = 20 before and after the early checkpoint "
                                                                "(pilots in the preset's comment)"),
                              "train.seed": why.confirmation_seeds(5, "single seeds flip between outcomes here")}},
        "posttrain": rl_groups(choice([1600, "last"], "the early checkpoint after p_cot = 0.2 has learned the long "
                                                      "path and before 0.15 has (the paper's is at 20k of 50k "
                                                      "steps), and the last"),
                               {"star": 8, "reinforce": 120, "grpo": 120}, 1000, 20, 640, at_tau=False),
    }, default=why.REGIME),
    # d = 12: the memorisation regime (4,000 steps of 128 are 125 passes over the 4,096 inputs), for tests and demos.
    "quick": Preset("memorisation regime (125 passes over every input): d = 12, p_cot = 0.1 and 0.15, 5 seeds; for "
                    "tests and demos", {
        "pretrain": {"task": {"d": 12}, "model": {"layers": 2, "width": 64, "heads": 4},
                     "train": {"steps": 4000, "batch_size": 128, "lr": 1e-3, "eval_every": 250, "eval_samples": 1000,
                               "save_every": 500},
                     "axes": {"task.p_cot": _P_COTS, "train.seed": [0, 1, 2, 3, 4]}},
        "posttrain": rl_groups([2000, "last"], {"star": 8, "reinforce": 120, "grpo": 120}, 1000, 10, 640),
    }, default=why.QUICK),
    # The paper (App. C.1): RL after 20k and after 50k pre-training steps; d = 50 as Figs. 1-3 (not stated).
    "paper": Preset("d = 50, from 20k and 50k steps; GPUs", {
        "pretrain": {"task": {"d": why.D_50(50)}, "model": why.PARITY_MODEL,
                     "train": why.parity_train(paper(50_000, "App. C.1: 50k iterations before the late "
                                                             "post-training",
                                                     "If, instead, we consider more pre-training iterations (50k) "
                                                     "before the start of post-training"), 1000, 10_000),
                     "axes": {"task.p_cot": _P_COTS, "train.seed": why.AS_FIGS_2_3([0, 1, 2])}},
        "posttrain": rl_groups(paper([20_000, 50_000], "App. C.1: post-training after 20k and after 50k pre-training "
                                                       "iterations",
                                     "post-training starts after 20k pre-training iterations … more pre-training "
                                     "iterations (50k) before the start of post-training"),
                               {"star": 10, "reinforce": 200, "grpo": 200}, 3200, 5, 640, stated=why.PARITY_RL),
    }),
}


def per_run(table: pd.DataFrame) -> pd.DataFrame:
    """One row per RL run: its setting, RL samples to >= 95% greedy (or a lower bound), and its last evaluation."""
    post = table[(table["stage"] == "posttrain") & table["eval/greedy_acc"].notna()]
    results = []
    for run, rows in post.groupby("run", sort=False):
        rows = rows.sort_values("step")
        samples, reached = first_solved(rows, "rl_samples")
        last = rows.iloc[-1]
        results.append({"run": run, "p_cot": last["task.p_cot"], "seed": last["train.seed"],
                        "from_step": int(last["source_step"]), "algo": last["post.algo"], "tau": last["post.temperature"],
                        "at_tau": bool(last["post.logprobs_at_tau"]), "start_greedy": rows["eval/greedy_acc"].iloc[0],
                        "start_long": rows["eval/sampled_long_frac"].iloc[0],
                        "greedy": last["eval/greedy_acc"], "length": last["eval/greedy_len_median"],
                        "samples": samples, "reached": reached})
    return pd.DataFrame(results).sort_values(["p_cot", "from_step", "at_tau", "algo", "tau", "seed"], kind="stable")


def report(table: pd.DataFrame, spec: dict, out: Path) -> str:
    """rare.png and the table of every RL run."""
    runs = per_run(table)
    plot_rare(table, runs, out / "rare.png")
    columns = [Column("p_cot", 5, "g"), Column("from", 6, ",d"), Column("algo", 10), Column("tau", 4, "g"),
               Column("logp at", 7), Column("seed", 4, "d"), Column("start: T=1 P(long)", 18, ".3f", gap=3),
               Column("final greedy", 12, ".3f", gap=3), Column("length", 6, "g"), Column("RL samples to 95%", 17)]
    lines = text_table(columns, [(r.p_cot, r.from_step, r.algo, r.tau, "tau" if r.at_tau else "1", r.seed, r.start_long,
                                  r.greedy, r.length, f"{'' if r.reached else '>'}{r.samples:,.0f}")
                                 for r in runs.itertuples()],
                       ["RL with the end-to-end reward from an early and a late checkpoint; 'logp at': the temperature "
                        "of the update's log-probabilities (1, or tau with --logprobs-at-tau)"])
    lines.append("")
    default = runs[~runs["at_tau"]]
    for (p, step), rows in default.groupby(["p_cot", "from_step"]):
        ok = rows[rows["greedy"] >= SOLVED]
        lines.append(f"p_cot = {p:g} from step {step:,}: {len(ok)} of {len(rows)} runs end at >= {SOLVED:.0%} greedy ("
                     + ", ".join(f"{a} {len(ok[ok['algo'] == a])}/{len(rows[rows['algo'] == a])}" for a in ALGOS) + ")")
    return "\n".join(lines)


def plot_rare(table: pd.DataFrame, runs: pd.DataFrame, path: Path) -> None:
    """Rows: p_cot; columns: early and late checkpoint; greedy accuracy against RL samples per algorithm and tau
    (the median over seeds, with its inter-quartile band for log-probabilities at temperature 1)."""
    post = table[(table["stage"] == "posttrain") & table["eval/greedy_acc"].notna()]
    ps, steps = sorted(runs["p_cot"].unique()), sorted(runs["from_step"].unique())
    fig, axes = figure(len(ps), len(steps), figsize=(6 * len(steps), 3.8 * len(ps)), squeeze=False,
                             sharey=True)
    colors = {"star": "C2", "reinforce": "C1", "grpo": "C0"}
    alphas = {0.5: 0.45, 1.0: 1.0, 1.5: 0.7}
    for (p, step, algo, tau, at_tau), group in runs.groupby(["p_cot", "from_step", "algo", "tau", "at_tau"]):
        ax = axes[ps.index(p), steps.index(step)]
        curve = table_curve(algo, post[post["run"].isin(group["run"])])
        x = np.maximum(curve.rl_samples, 1)
        ax.plot(x, curve.greedy_acc, ":" if at_tau else "-", color=colors[algo], alpha=alphas.get(tau, 0.8),
                marker={0.5: "v", 1.0: "o", 1.5: "^"}.get(tau, "s"), ms=3,
                label=f"{algo} T={tau:g}" + (" (logp at T)" if at_tau else ""))
        if curve.seeds > 1 and not at_tau:
            ax.fill_between(x, *curve.greedy_acc_band, color=colors[algo], alpha=0.08 * alphas.get(tau, 0.8), lw=0)
    for i, p in enumerate(ps):
        for j, step in enumerate(steps):
            ax = axes[i, j]
            ax.axhline(0.5, color="grey", lw=0.6, ls=":")
            ax.set(xscale="log", ylim=(0.3, 1.03), title=f"$p_{{cot}}$ = {p:g}, RL from step {step:,}")
            ax.grid(alpha=0.3)
            ax.set_xlabel("RL samples")
        axes[i, 0].set_ylabel("greedy test accuracy")
    axes[0, -1].legend(fontsize=6, ncol=2, loc="lower right")
    config = table.iloc[0]
    fig.suptitle(f"Rarer long demonstrations: parity d = {config['task.d']}; STaR, REINFORCE, GRPO (end-to-end) "
                 f"from an early and a late checkpoint; medians of {runs['seed'].nunique()} seeds")
    save_figure(fig, path, dpi=110)


def _paper_runs(table: pd.DataFrame) -> tuple[pd.DataFrame, list[float], list[int]]:
    """The RL runs with log-probabilities at temperature 1 (the paper's), the two p_cot and the two checkpoints."""
    runs = per_run(table)
    runs = runs[~runs["at_tau"]]
    ps, steps = sorted(runs["p_cot"].unique()), sorted(runs["from_step"].unique())
    if len(ps) < 2 or len(steps) < 2:
        raise ValueError(f"needs two p_cot and two checkpoints, found p_cot {ps} and checkpoints {steps}")
    return runs, ps, steps


def _solved(rows: pd.DataFrame) -> str:
    return f"{(rows['greedy'] >= SOLVED).sum()}/{len(rows)}"


def _where(p_cot: float, step: int, verdict: Verdict) -> Verdict:
    return Verdict(verdict.verdict, f"p_cot = {p_cot:g} from step {step:,}: {verdict.evidence}")


def _early_larger_p_works(table: pd.DataFrame) -> Verdict:
    runs, ps, steps = _paper_runs(table)
    rows = runs[(runs["p_cot"] == ps[-1]) & (runs["from_step"] == steps[0])]
    outcomes = {}
    for algo in ALGOS:
        temperatures = [((t["greedy"] >= SOLVED).sum() > len(t) / 2, f"T={tau:g} {_solved(t)}")
                        for tau, t in rows[rows["algo"] == algo].groupby("tau")]
        works = sum(ok for ok, _ in temperatures)
        outcomes[algo] = (works > len(temperatures) / 2, ", ".join(text for _, text in temperatures) or "no runs")
    return _where(ps[-1], steps[0], k_of_n(outcomes, need="all", unit="algorithms"))


def _early_smaller_p_unreliable(table: pd.DataFrame) -> Verdict:
    runs, ps, steps = _paper_runs(table)
    rows = runs[(runs["p_cot"] == ps[0]) & (runs["from_step"] == steps[0])]
    outcomes = {}
    for algo in ALGOS:
        algo_rows = rows[rows["algo"] == algo]
        outcomes[algo] = (len(algo_rows) > 0 and (algo_rows["greedy"] >= SOLVED).sum() <= len(algo_rows) / 2,
                          f"{_solved(algo_rows)} runs")
    return _where(ps[0], steps[0], k_of_n(outcomes, need="all", unit="algorithms"))


def _seeds_solved(rows: pd.DataFrame) -> pd.Series:
    """Per seed of `rows` (RL runs from one checkpoint of that seed's pre-training), whether more than half of its
    runs end at greedy accuracy >= SOLVED: the seed's checkpoint decides all of them, so the seed is the unit."""
    return rows.groupby("seed")["greedy"].agg(lambda greedy: (greedy >= SOLVED).sum() > len(greedy) / 2)


def _later_checkpoint_helps(table: pd.DataFrame) -> Verdict:
    runs, ps, steps = _paper_runs(table)
    rows = runs[(runs["p_cot"] == ps[0]) & (runs["tau"] <= 1)]
    verdicts = {}
    for algo in ALGOS:
        early, late = (_seeds_solved(rows[(rows["algo"] == algo) & (rows["from_step"] == step)])
                       for step in (steps[0], steps[-1]))
        if early.empty or late.empty:
            verdicts[algo] = Verdict(NOT_REPRODUCED, "no runs")
            continue
        check_attainable(len(late), len(early))
        verdicts[algo] = significant(more_often(int(late.sum()), len(late), int(early.sum()), len(early)),
                                     f"seeds {int(early.sum())}/{len(early)} -> {int(late.sum())}/{len(late)}")
    verdict = combine(verdicts, need="all", unit="algorithms")
    return Verdict(verdict.verdict, f"p_cot = {ps[0]:g}, T <= 1, seeds with most runs at >= {SOLVED} from step "
                                    f"{steps[0]:,} -> {steps[-1]:,}: {verdict.evidence}")


CLAIMS = [
    Claim("Fig. 9: with post-training after the earlier checkpoint (20k steps), at the larger of the two small p_cot "
          "all RL algorithms (STaR, REINFORCE, GRPO) induce generalization for most sampling temperatures",
          f"at the larger p_cot from the early checkpoint, per algorithm (the paper: 'all RL algorithms'), a majority "
          f"of its temperatures have a majority of seeds ending at greedy accuracy >= {SOLVED}; every algorithm",
          _early_larger_p_works, about_generalization=True),
    Claim("Fig. 10: at the smaller p_cot, post-training after the earlier checkpoint does not reliably lead to "
          "well-generalizing models for any of the RL algorithms",
          f"at the smaller p_cot from the early checkpoint, per algorithm (the paper: 'for any of the RL algorithms'), "
          f"at most half of its runs (temperatures x seeds) end at greedy accuracy >= {SOLVED}; every algorithm",
          _early_smaller_p_unreliable, about_generalization=True),
    Claim("Fig. 11: with more pre-training (50k steps) before post-training, the smaller p_cot sees a greater "
          "probability of success with all RL algorithms for reasonable sampling temperatures (<= 1)",
          f"at the smaller p_cot and temperatures <= 1, per algorithm (the paper: 'with all RL algorithms'), the "
          f"share of seeds (the independent unit: a seed's checkpoint decides all its runs) with more than half of "
          f"their runs ending at greedy accuracy >= {SOLVED} is larger from the late checkpoint than from the early "
          f"one by a one-sided Fisher exact test, p < {SIGNIFICANCE}; every algorithm",
          _later_checkpoint_helps, about_generalization=True),
]

RECIPE = Recipe(
    "rare", "Figures 9-11: STaR / REINFORCE / GRPO x temperatures at two smaller p_cot, from an early and a "
            "late checkpoint",
    _PRESETS, CLAIMS, report=report,
)
