"""Figure 14: a partial chain of thought. The mixture holds long, medium and short sequences.

Long sequences carry every prefix parity b_1 .. b_d, medium ones b_i for odd i and b_d (each step
a parity of three bits instead of two), short ones b_d alone (`tasks.parity`). The paper's claims:
pre-training learns the long path first and the medium path later, so temperature-1 accuracy climbs a
staircase: 1/2, then 1/2 + p_cot / 2, then 1/2 + (p_cot + p_medium) / 2. GRPO from an early checkpoint
(only the long path learned) generalizes with long answers only; from a late one with long and medium
answers. With the length-penalized reward (r - lambda length / d, lambda = 0.4) the late checkpoint
turns to accurate, shorter answers, while the early one has no accurate short path and fails. The
report shows which of these hold (docs/recipes.md: on the cpu preset the early checkpoint answers medium too).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from rlntp.exact import written
from rlntp.experiments import provenance as why
from rlntp.experiments.claims import APPROX, Claim, Verdict, by_seed, evaluations, k_of_n
from rlntp.experiments.provenance import choice, paper
from rlntp.experiments.recipe import Preset, Recipe
from rlntp.experiments.summary import SOLVED, Column, text_table
from rlntp.files import figure, save_figure
from rlntp.tasks.parity import ParityTask

REWARD_NAMES = {"e2e": "end-to-end", "length": "length-penalized"}


def _preset(task, model, train: dict, seeds, from_steps, grpo: dict) -> dict:
    """Pre-training on the mixture `task` (d, p_cot, p_medium), then GRPO from `from_steps` with the end-to-end and
    the length-penalized reward."""
    return {
        "pretrain": {"task": task, "model": model, "train": train, "axes": {"train.seed": seeds}},
        "posttrain": {"grpo": {"from_steps": from_steps,
                               "axes": {"post.reward": choice(list(REWARD_NAMES), "App. C.2 names the "
                                                              "length-penalized reward ('we consider reinforcement "
                                                              "learning with a length-penalized reward'), not the one "
                                                              "of the runs without the penalty: the end-to-end one, "
                                                              "as Figs. 1 and 6-8")},
                               "post": {"algo": choice("grpo", "our text of App. C.2 does not name the RL algorithm; "
                                                               "GRPO, as Figs. 1 and 6-8"),
                                        "temperature": choice(1.0, "not stated for Fig. 14; 1, as Figs. 6-8"),
                                        "length_penalty": paper(0.4, "App. C.2: lambda = 0.4 (our text lost the "
                                                                     "symbol)", "We use =0.4.")} | grpo}},
    }


_PRESETS = {
    # At d = 8 with p_cot = 0.1 and p_medium = 0.2 the T = 1 accuracy climbs from
    # 1/2 to ~0.55 by ~1,500 steps and to ~0.64 by ~2,000. Measured alternatives: at 0.2 and 0.1 the medium
    # path is not learned within 4,000 steps (GRPO answers long from every checkpoint); at 0.15 and 0.15,
    # GRPO for 40 steps generalizes from no checkpoint up to 5,000. p_cot + p_medium = 0.3, under 1/3:
    # greedy decoding mostly stops after b_1 and guesses. (Measured on exploration seeds 0-2; it runs confirmation
    # seeds 1000-1002.)
    "cpu": Preset("d = 8, 3 seeds", _preset(
        choice({"d": 8, "p_cot": 0.1, "p_medium": 0.2},
               "d = 8, p_cot = 0.1, p_medium = 0.2: the mixture whose two paths are learned at separate times within "
               "4,000 steps (measured alternatives in the preset's comment); the paper's weights are lost in our "
               "text"),
        {"layers": 2, "width": 64, "heads": 4},
        {"steps": 4000, "batch_size": 128, "lr": 1e-3, "eval_every": 100, "eval_samples": 2000, "save_every": 500},
        why.confirmation_seeds(3, "as the captions of Figs. 2 and 3 ('across 3 seeds'); Fig. 14 shows single "
                                  "runs"), [1000, 1500, "last"],
        {"steps": 40, "eval_every": 4, "eval_samples": why.POST_EVAL(640), "save_every": 40}), default=why.CPU),
    # The paper's text does not keep its p_cot and p_medium; d = 50 and its checkpoints at 5k and 50k steps.
    "paper": Preset("d = 50; GPUs", _preset(
        {"d": choice(50, "d = 50, as the paper's main setting; Fig. 14's d is lost"),
         "p_cot": choice(0.1, "our text lost Fig. 14's p_cot and p_medium; their sum below 1/3 keeps greedy decoding "
                              "short"),
         "p_medium": choice(0.2, "our text lost Fig. 14's p_cot and p_medium")},
        why.PARITY_MODEL,
        why.parity_train(paper(50_000, "App. C.2: the later checkpoint RL starts from, at 50k iterations",
                               "after 50k pre-training iterations the model has learned to generate correct "
                               "medium-sized responses"), 500, 5000),
        choice([0], "one seed: Fig. 14 shows single runs"),
        paper([5000, "last"], "App. C.2: post-training at 5k and at 50k iterations",
              "Post-training at 5k iterations yields a model that generalizes … Post-training at 50k iterations, on "
              "the other hand"),
        why.PARITY_GRPO | why.rl_cadence(steps=100, eval_every=5, eval_samples=640, save_every=50))),
}


def length_fractions(rows: pd.DataFrame, mode: str, task: ParityTask) -> pd.DataFrame:
    """Per evaluation: the fraction of `mode` (greedy or sampled) answers of long, medium and short length."""
    hist = np.array([list(h) for h in rows[f"eval/{mode}_len_hist"]], dtype=float)
    hist /= hist.sum(axis=1, keepdims=True)
    return pd.DataFrame({"long": hist[:, task.long_len], "medium": hist[:, task.medium_len], "short": hist[:, 1],
                         "other": 1 - hist[:, [task.long_len, task.medium_len, 1]].sum(axis=1)}, index=rows.index)


def _task(config: pd.Series) -> ParityTask:
    return ParityTask(int(config["task.d"]), float(config["task.p_cot"]), float(config["task.p_medium"]))


def stair_levels(p_cot: float, p_medium: float) -> list[float]:
    """Temperature-1 accuracy with nothing, the long path, and the long and medium paths learned."""
    return [0.5, 0.5 + p_cot / 2, 0.5 + (p_cot + p_medium) / 2]


def report(table: pd.DataFrame, spec: dict, out: Path) -> str:
    """partial_cot.png and the table of each GRPO run's end: accuracy and the mix of answer lengths."""
    evals = table[table["eval/greedy_acc"].notna()]
    config = evals.iloc[0]
    task = _task(config)
    plot_partial_cot(evals, task, out / "partial_cot.png")
    pre = evals[evals["stage"] == "pretrain"]
    levels = stair_levels(task.p_cot, task.p_medium)
    lines = [f"pre-training: T = 1 accuracy levels predicted {', '.join(f'{v:.3f}' for v in levels)} "
             "(nothing, long path, long and medium paths learned); measured (median over seeds) at "
             + ", ".join(f"step {int(s)}: {a:.3f}" for s, a in
                         pre.groupby("step")["eval/sampled_acc"].median().iloc[:: max(1, pre["step"].nunique() // 8)]
                         .items()), ""]
    columns = [Column("GRPO run", 28), Column("seed", 4, "d"), Column("greedy acc", 10, ".3f", gap=2),
               Column("greedy: long", 12, ".3f", gap=2), Column("medium", 6, ".3f"), Column("short", 6, ".3f"),
               Column("T=1 acc", 7, ".3f", gap=2), Column("T=1: long", 9, ".3f", gap=2), Column("medium", 6, ".3f"),
               Column("short", 6, ".3f")]
    rows = []
    post = evals[evals["stage"] == "posttrain"]
    for (step, reward, seed), runs in post.groupby(["source_step", "post.reward", "train.seed"]):
        last = runs.sort_values("step").tail(1)
        g, s = length_fractions(last, "greedy", task).iloc[0], length_fractions(last, "sampled", task).iloc[0]
        rows.append((f"{REWARD_NAMES[reward]} from {int(step):,}", seed, last["eval/greedy_acc"].iloc[0], g["long"],
                     g["medium"], g["short"], last["eval/sampled_acc"].iloc[0], s["long"], s["medium"], s["short"]))
    return "\n".join(lines + text_table(columns, rows, [f"lengths: long = {task.long_len}, medium = {task.medium_len}, "
                                                         "short = 1; the last evaluation of each run"]))


def plot_partial_cot(evals: pd.DataFrame, task: ParityTask, path: Path) -> None:
    """Pre-training staircase (left), GRPO accuracy per checkpoint and reward (centre), final length histograms (right)."""
    fig, axes = figure(1, 3, figsize=(17, 4.3))
    pre = evals[evals["stage"] == "pretrain"].sort_values("step")
    ax = axes[0]
    for seed, rows in pre.groupby("train.seed"):
        fractions = length_fractions(rows, "sampled", task)
        first = seed == pre["train.seed"].min()
        ax.plot(rows["samples_seen"], rows["eval/sampled_acc"], "-", color="C0", label="T = 1 accuracy" if first else None)
        ax.plot(rows["samples_seen"], rows["eval/greedy_acc"], "-", color="k", lw=0.8, alpha=0.6,
                label="greedy accuracy" if first else None)
        ax.plot(rows["samples_seen"], fractions["long"], ":", color="C1", label="T = 1: P(long)" if first else None)
        ax.plot(rows["samples_seen"], fractions["medium"], ":", color="C2", label="T = 1: P(medium)" if first else None)
    for level in stair_levels(task.p_cot, task.p_medium):
        ax.axhline(level, color="grey", lw=0.7, ls="--")
    ax.set(xlabel="samples seen", ylim=(0, 1.02),
           title="pre-training: the staircase (dashed: 1/2, +p_cot/2, +p_medium/2)")
    ax.legend(fontsize=7)

    post = evals[evals["stage"] == "posttrain"]
    ax = axes[1]
    styles = {"e2e": "-", "length": "--"}
    sources = sorted(post["source_step"].unique())
    for (step, reward, seed), rows in post.groupby(["source_step", "post.reward", "train.seed"]):
        rows = rows.sort_values("step")
        ax.plot(np.maximum(rows["rl_samples"], 1), rows["eval/greedy_acc"], styles[reward],
                color=f"C{sources.index(step)}", label=f"{REWARD_NAMES[reward]} from {int(step):,}" if seed ==
                post["train.seed"].min() else None)
    ax.set(xscale="log", xlabel="RL samples", ylabel="greedy test accuracy", ylim=(0.3, 1.03),
           title="GRPO from an early and a late checkpoint")
    ax.legend(fontsize=7)

    ax = axes[2]
    runs = list(post.groupby(["source_step", "post.reward"]))
    width = 0.8 / max(1, len(runs))
    for k, ((step, reward), rows) in enumerate(runs):
        last = rows[rows["step"] == rows["step"].max()]
        hist = np.array([list(h) for h in last["eval/greedy_len_hist"]], dtype=float).sum(axis=0)
        hist /= hist.sum()
        ax.bar(np.arange(len(hist)) + (k - (len(runs) - 1) / 2) * width, hist, width=width,
               color=f"C{sources.index(step)}", hatch="//" if reward == "length" else None, alpha=0.8,
               label=f"{REWARD_NAMES[reward]} from {int(step):,}")
    ax.set_xticks([1, task.medium_len, task.long_len], ["short", f"medium ({task.medium_len})", f"long ({task.long_len})"])
    ax.set(ylabel="fraction of greedy answers", title="greedy answer lengths after GRPO")
    ax.legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"Partial chain of thought: parity d = {task.d}, p_cot = {task.p_cot:g}, p_medium = {task.p_medium:g}")
    save_figure(fig, path)


MOSTLY = 0.9
"""'almost exclusively' long answers: at least this fraction of greedy answers."""
SOME = 0.1
"""'both long and medium' answers: at least this fraction of greedy answers each."""


PLATEAU = 2
"""A step of the staircase: this many consecutive evaluations at its level (a steady rise passes through)."""


def _staircase(table: pd.DataFrame) -> Verdict:
    def outcome(rows: pd.DataFrame) -> tuple[bool, str]:
        pre = evaluations(rows, "pretrain").sort_values("step")
        task = _task(pre.iloc[0])
        levels = stair_levels(written(task.p_cot), written(task.p_medium))
        acc, steps = pre["eval/sampled_acc"].to_numpy(), pre["step"].to_numpy()
        found, start = [], 0
        for i, level in enumerate(levels):  # each plateau after the last one's
            # at the level: within APPROX, and nearer to it than to the next level below or above
            gaps = [abs(level - other) / 2 for j, other in enumerate(levels) if j != i]
            margin = min([APPROX, *gaps])
            near = np.abs(acc - level) <= margin
            held = [k for k in range(start, len(acc) - PLATEAU + 1) if near[k:k + PLATEAU].all()]
            if not held:
                return False, ", ".join([*found, f"{level:.3f} ± {margin:.3f} not held after"])
            found.append(f"{level:.3f} ± {margin:.3f} from step {steps[held[0]]:,}")
            start = held[0] + PLATEAU
        return True, ", ".join(found)

    return k_of_n(by_seed(table, outcome))


def _grpo_end(rows: pd.DataFrame, which, reward: str) -> tuple[float, pd.Series, str]:
    """Greedy accuracy and length fractions at the last evaluation of one seed's GRPO run with `reward` from its
    earliest or latest (`which`: min or max) checkpoint, and the two as text."""
    post = evaluations(rows, "posttrain")
    post = post[post["post.reward"] == reward]
    if post.empty:
        raise ValueError(f"no GRPO evaluation with the {reward} reward")
    last = post[post["source_step"] == which(post["source_step"])].sort_values("step").tail(1)
    acc, f = last["eval/greedy_acc"].iloc[0], length_fractions(last, "greedy", _task(last.iloc[0])).iloc[0]
    return acc, f, (f"greedy {acc:.3f}; long {f['long']:.2f}, medium {f['medium']:.2f}, short {f['short']:.2f} "
                    f"(from step {last['source_step'].iloc[0]:,.0f})")


def _grpo_claim(which, reward: str, passes):
    """The check of a claim about GRPO with `reward` from the earliest or latest checkpoint (`which`): per seed,
    `passes(greedy accuracy, length fractions)` at the run's last evaluation."""
    def check(table: pd.DataFrame) -> Verdict:
        def outcome(rows: pd.DataFrame) -> tuple[bool, str]:
            acc, fractions, shown = _grpo_end(rows, which, reward)
            return passes(acc, fractions), shown

        return k_of_n(by_seed(table, outcome))

    return check


CLAIMS = [
    Claim("Fig. 14 (pre-training staircase): temperature-1 accuracy sits around 1/2, jumps to 1/2 + p_cot/2 as the "
          "model learns from the long demonstrations, and later to 1/2 + (p_cot + p_medium)/2 as it learns the "
          "medium-sized sequences",
          f"per seed, pre-training's temperature-1 accuracy holds each of the three levels in turn for {PLATEAU} "
          "consecutive evaluations, each plateau after the previous one's; 'at a level' ('sits around'): within "
          f"{APPROX} and within half the distance to the other levels; in a majority of seeds",
          _staircase, about_generalization=True),
    Claim("Fig. 14 (top left): post-training from the early checkpoint (5k iterations) yields a model that "
          "generalizes, yet almost exclusively generates long responses",
          f"per seed, GRPO with the end-to-end reward from the earliest checkpoint ends at greedy accuracy >= {SOLVED} "
          f"with at least {MOSTLY:.0%} of greedy answers long; in a majority of seeds",
          _grpo_claim(min, "e2e", lambda acc, f: acc >= SOLVED and f["long"] >= MOSTLY), about_generalization=True),
    Claim("Fig. 14 (top right): post-training from the late checkpoint (50k iterations) generalizes with diversity "
          "in its length distribution, generating both long and medium-sized responses",
          f"per seed, GRPO with the end-to-end reward from the latest checkpoint ends at greedy accuracy >= {SOLVED} "
          f"with at least {SOME:.0%} of greedy answers long and at least {SOME:.0%} medium; in a majority of seeds",
          _grpo_claim(max, "e2e", lambda acc, f: acc >= SOLVED and f["long"] >= SOME and f["medium"] >= SOME),
          about_generalization=True),
    Claim("Fig. 14 (bottom): a length penalty (lambda = 0.4) applied during post-training of a late checkpoint leads "
          "to a model that is both accurate and fast",
          f"per seed, GRPO with the length-penalized reward from the latest checkpoint ends at greedy accuracy >= "
          f"{SOLVED} with most greedy answers (more than half) shorter than long; in a majority of seeds",
          _grpo_claim(max, "length", lambda acc, f: acc >= SOLVED and f["long"] < 0.5), about_generalization=True),
    Claim("Fig. 14 (bottom): the same length penalty applied at an earlier checkpoint makes post-training fail",
          f"per seed, GRPO with the length-penalized reward from the earliest checkpoint ends below greedy accuracy "
          f"{SOLVED}; in a majority of seeds",
          _grpo_claim(min, "length", lambda acc, f: acc < SOLVED), about_generalization=True),
]

RECIPE = Recipe(
    "partial-cot", "Figure 14: long, medium and short sequences; the staircase in pre-training, GRPO from an "
                   "early and a late checkpoint with the end-to-end and the length-penalized reward",
    _PRESETS, CLAIMS, report=report,
)
