"""Multiplication (paper §5.1, Figs. 4, 5 left, 15-18): NTP at small p_cot stays near 0 greedy; GRPO lifts it.

For each p_cot, a dataset of distinct n x n pairs (the chain of thought kept with probability
p_cot), GPT-2 pre-training over it, and GRPO with the end-to-end reward from several of its
checkpoints (the small p_cot runs; p_cot = 1 is the control that learns by pre-training alone).
One column per p_cot: greedy (solid) and temperature-1 (dashed) test accuracy, and the mean greedy
response length, pre-training (red) and RL (blues) on one axis of samples seen; the last column is
a close-up of RL against RL samples.
"""

from pathlib import Path

import pandas as pd
from matplotlib import colormaps

# MANIFEST is no longer used here, but the registration digests this module's constants, and the published
# confirmation (6f6b6eafe88b) was registered with it: removing it would make that run stale.
from rlntp.data import MANIFEST, make_mult_dataset, read_manifest  # noqa: F401
from rlntp.experiments import provenance as why
from rlntp.experiments.claims import NEAR_ZERO, Claim, Verdict, evaluations, k_of_n, sampling_margin
from rlntp.experiments.provenance import choice, paper
from rlntp.experiments.recipe import Preset, Recipe, make_datasets
from rlntp.experiments.summary import SOLVED, Curve, table_curve
from rlntp.files import figure, save_figure
from rlntp.tasks.multiplication import MultiplicationTask

_RL = "We train with GRPO with an end-to-end reward function"
_RL_BATCH = ("batch size =16, group size (for GRPO) equal to 4, 2 steps of gradient accumulation (which makes the "
             "effective batch size equal to 32)")
_PRETRAIN = ("We use the AdamW (Loshchilov and Hutter,, 2019) optimizer with learning rate =, batch size =32, and "
             "maximum gradient norm equal to 1.0.")
_GRPO = {"algo": paper("grpo", "App. B.2: GRPO", _RL), "reward": paper("e2e", "App. B.2: the end-to-end reward", _RL),
         "optimizer": paper("adamw", "App. B.2: AdamW",
                            "We use the AdamW (Loshchilov and Hutter,, 2019) optimizer with learning rate = (and "
                            "Huggingface’s Transformers’ (Wolf et al.,, 2020) default rest of hyperparameters)"),
         "max_grad_norm": choice(1.0, "clipped as in pre-training; App. B.2 keeps the library's other defaults"),
         "prompts_per_step": paper(8, "App. B.2: batch 16, group size 4, 2 accumulation steps: 32 sequences, 8 "
                                      "prompts of 4", _RL_BATCH),
         "rollouts_per_prompt": paper(4, "App. B.2: group size 4", _RL_BATCH)}
_ADAMW = {"optimizer": paper("adamw", "App. B.2: AdamW", _PRETRAIN),
          "weight_decay": choice(0.01, "not stated; torch's AdamW default 0.01"),
          "max_grad_norm": paper(1.0, "App. B.2: maximum gradient norm 1.0", _PRETRAIN)}
_MULT = paper("mult", "§5.1: multiplication", "we study the task of multiplying n-digit numbers")
_TEST = "Test accuracy is estimated using a set of 1000 unseen pairs of numbers."


def _epochs(train: int, batch: int, epochs: int) -> int:
    return -(-train * epochs // batch)


def _data(digits: int, p_cot: float) -> str:
    """The dataset of one (n, p_cot), relative to the recipe's directory (`prepare` makes it there)."""
    return f"data/n{digits}-p{p_cot:g}"


_PRESETS = {
    # 3x3 products, where a 2-layer GPT-2 learns the grade-school trace at p_cot = 0.25 but not the product
    # in one step. When the trace is learned varies from seed to seed (docs/recipes.md), hence 5 seeds,
    # medians and one summary row per seed. GRPO from step 1,000 (trace not yet learned) and from the last
    # step. 700,000 of the 810,000 pairs, so that pre-training's 640,000 samples never repeat a pair (the paper's
    # regime; the exploration runs had 500,000: 1.28 passes); with 100,000, a run memorized the short answers
    # instead. (Measured on exploration seeds; it runs confirmation seeds 1000-1004.)
    "cpu": Preset("3x3 products, p_cot 0.25 and 1, 700,000 training pairs, 5 seeds", {
        "pretrain": {
            "task": {"task": _MULT, "digits": 3},
            "model": {"layers": 2, "width": 128, "heads": 4},
            "train": {"steps": 5000, "batch_size": 128, "lr": 3e-3, **_ADAMW, "weight_decay": 0.01,
                      "eval_every": 500, "eval_samples": 1000, "save_every": 1000},
            "axes": {"task.p_cot, task.data, train.steps": [[0.25, _data(3, 0.25), 5000], [1.0, _data(3, 1.0), 1000]],
                     "train.seed": why.confirmation_seeds(5, "when the trace is learned varies from seed to seed "
                                                             "(docs/recipes.md)")},
        },
        "posttrain": {"grpo": {"from_steps": [1000, 5000], "where": {"task.p_cot": [0.25]},
                               "post": _GRPO | {"max_grad_norm": 1.0, "prompts_per_step": 8, "steps": 100,
                                                "lr": 1e-4, "eval_every": 10, "eval_samples": 500, "save_every": 60}}},
    }, default=why.chose("a small analogue for 2 CPU cores: 3 x 3 products, a 2-layer GPT-2 of width 128, batch 128, "
                         "700,000 pairs (more than the 640,000 samples seen), a few thousand steps")),
    # The paper's setting (App. B.2): 808,000 pairs, AdamW, batch 32, clip 1.0, 15 epochs for one n and 50 for
    # the two others (its values of n are lost in our text: 4, 5, 7 here), GRPO group 4 x 8 prompts (batch 16,
    # 2 accumulation steps), 3 seeds. For GPUs. The learning rates and the model size are lost in our text of the
    # paper: these are the defaults of Deng et al.'s training script (GPT-2 small, lr 5e-5).
    "paper": Preset("n = 4, 5, 7, p_cot 0.1, 0.25, 0.5 and 1, 808,000 pairs, GPT-2 small, 3 seeds; GPUs", {
        "pretrain": {
            "task": {"task": _MULT},
            "model": choice({"layers": 12, "width": 768, "heads": 12},
                            "lost in our text; Deng et al.'s default, GPT-2 small (12 x 768, 12 heads)"),
            "train": {"batch_size": paper(32, "App. B.2: batch size 32", _PRETRAIN),
                      "lr": choice(5e-5, "lost in our text; Deng et al.'s default 5e-5"), **_ADAMW,
                      "eval_every": choice(25_250, "every 25,250 steps (one epoch of n = 4 is 25,250 steps of 32)"),
                      "eval_samples": paper(1000, "App. B.2: test accuracy on 1,000 unseen pairs", _TEST),
                      "save_every": choice(25_250, "every 25,250 steps (one epoch of n = 4 is 25,250 steps of 32)")},
            "axes": {"task.digits, task.p_cot, task.data, train.steps": choice(
                [[n, p, _data(n, p), _epochs(808_000, 32, 15 if n == 4 else 50)]
                 for n in (4, 5, 7) for p in (0.1, 0.25, 0.5, 1.0)],
                "steps: 15 epochs of 808,000 pairs for one n and 50 for the two others (App. B.2: 'We train for 15 "
                "epochs for the task and 50 epochs for and .', which n lost in our text): 15 for the smallest; "
                "p_cot 0.1, 0.25, 1 (§5.1) and 0.5; n = 4, 5, 7: Deng et al.'s sizes, our text lost the paper's "
                "(Fig. 5 left names 5 x 5, at p_cot = 0.25)"),
                "train.seed": paper([0, 1, 2], "App. B.2: 3 random seeds per task",
                                    "We train each model (3 random seeds per task)")},
        },
        "posttrain": {"grpo": {
            "from_steps": choice([101_000, 202_000, 303_000, "last"], "checkpoints at 4, 8, 12 epochs of n = 4 and "
                                                                      "the last (§5.1: 'At various checkpoints, we "
                                                                      "switch to reinforcement learning')"),
            "where": {"task.p_cot": choice([0.1, 0.25, 0.5], "RL from every mixture but the full chain of thought")},
            "post": _GRPO | {"steps": choice(1000, "not stated; App. B.2: about 3.5 h on one A100"),
                             "lr": choice(1e-5, "lost in our text; 1e-5"),
                             "eval_every": choice(50, "how often to evaluate: not stated"),
                             "eval_samples": paper(1000, "App. B.2: test accuracy on 1,000 unseen pairs", _TEST),
                             "save_every": choice(250, "how often to checkpoint: not stated")}}},
    }),
}


DATASETS = {
    "cpu": {"train": 700_000, "valid": 1000, "test": 1000},
    "paper": {"train": 808_000, "valid": 1000, "test": 1000},
}
"""Pairs per split of every dataset of a preset (all drawn with seed 0: the same pairs at every p_cot)."""


def prepare(preset: str, spec: dict, out: Path, progress: bool = True) -> None:
    """Make every dataset the sweep's pre-training runs read (once: a rerun finds them, made alike)."""
    make_datasets(spec, out, lambda task: {"digits": task.digits, "p_cot": task.p_cot, "seed": 0},
                  lambda task, path: make_mult_dataset(path, task.digits, task.p_cot, DATASETS[preset], seed=0))


def _label(p_cot: float) -> str:
    return f"p={p_cot:g}"


def report(table: pd.DataFrame, spec: dict, out: Path) -> str:
    """One figure per n (mult_nN.png) and the summary table: medians over seeds, then each seed."""
    tables = []
    pre_all = table[table["stage"] == "pretrain"]
    for digits, pre_n in pre_all.groupby("task.digits"):
        curves: dict[float, tuple[Curve, list[Curve]]] = {}
        per_seed: dict[float, list[Curve]] = {}
        seeds = sorted(pre_n["train.seed"].unique())
        for p_cot, pre in pre_n.groupby("task.p_cot"):
            post = table[(table["stage"] == "posttrain") & table["source"].isin(pre["run"].unique())]
            groups = [("NTP", pre)] + [(f"GRPO from {int(step):,}", rows) for step, rows in post.groupby("source_step")]
            median = [table_curve(f"{_label(p_cot)} {name}", rows) for name, rows in groups]
            curves[p_cot] = (median[0], median[1:])
            if len(seeds) > 1:
                per_seed[p_cot] = [table_curve(f"{_label(p_cot)} {name} s{seed}", rows[rows["train.seed"] == seed])
                                   for name, rows in groups for seed in seeds]
        task = MultiplicationTask(digits=int(digits), p_cot=min(curves))
        plot_mult(curves, per_seed, task.long_len, pre_n.iloc[0], int(digits), seeds, out / f"mult_n{int(digits)}.png")
        tables.append(summary(curves, int(digits), per_seed))
    return "\n\n".join(tables)


def _ntp_near_zero(table: pd.DataFrame) -> Verdict:
    pre = evaluations(table, "pretrain")
    outcomes = {}
    for digits, rows in pre.groupby("task.digits"):
        small = rows[rows["task.p_cot"] == rows["task.p_cot"].min()]
        for seed, run in small.groupby("train.seed"):
            best = run["eval/greedy_acc"].max()
            outcomes[f"{digits:g}x{digits:g} p_cot={run['task.p_cot'].iloc[0]:g} seed {seed}"] = (
                best <= NEAR_ZERO, f"{best:.3f}")
    return k_of_n(outcomes, unit="runs")


def _full_cot_learns(table: pd.DataFrame) -> Verdict:
    pre = evaluations(table, "pretrain")
    full = pre[pre["task.p_cot"] == 1.0]
    if full.empty:
        raise ValueError("no pre-training run at p_cot = 1")
    outcomes = {}
    for (digits, seed), run in full.groupby(["task.digits", "train.seed"]):
        final = run.sort_values("step")["eval/greedy_acc"].iloc[-1]
        outcomes[f"{digits:g}x{digits:g} seed {seed}"] = (final >= SOLVED, f"{final:.3f}")
    return k_of_n(outcomes, unit="runs")


def _grpo_runs(table: pd.DataFrame, learned: bool) -> dict[str, tuple[bool, str]]:
    """GRPO runs at p_cot < 1 whose checkpoint had (or had not) learned the trace, i.e. whose temperature-1
    accuracy at the start was at least p_cot / 2 (the paper: it jumps to about p_cot once the trace is learned):
    whether greedy accuracy rose by more than the sampling margin of a difference and the mean greedy length grew."""
    post = evaluations(table, "posttrain")
    outcomes = {}
    for _, run in post[post["task.p_cot"] < 1].groupby("run", sort=False):
        run = run.sort_values("step")
        start, end = run.iloc[0], run.iloc[-1]
        if (start["eval/sampled_acc"] >= start["task.p_cot"] / 2) != learned:
            continue
        rise = end["eval/greedy_acc"] - start["eval/greedy_acc"]
        improved = rise > sampling_margin(end["post.eval_samples"] / 2)
        longer = end["eval/greedy_len_mean"] > start["eval/greedy_len_mean"]
        label = (f"{start['task.digits']:g}x{start['task.digits']:g} p_cot={start['task.p_cot']:g} seed "
                 f"{start['train.seed']:g} from {start['source_step']:,.0f}")
        outcomes[label] = ((improved and longer) if learned else not improved,
                           f"T = 1 {start['eval/sampled_acc']:.3f} at the start; greedy {start['eval/greedy_acc']:.3f} "
                           f"-> {end['eval/greedy_acc']:.3f}, mean length {start['eval/greedy_len_mean']:.1f} -> "
                           f"{end['eval/greedy_len_mean']:.1f}")
    if not outcomes:
        raise ValueError(f"no GRPO run started from a checkpoint that had {'' if learned else 'not '}learned the trace "
                         "(temperature-1 accuracy >= p_cot / 2)")
    return outcomes


CLAIMS = [
    Claim("§5.1, Figs. 15-17: when p_cot is small, performance under greedy decoding remains close to 0% "
          "throughout pre-training",
          f"per n, at the sweep's smallest p_cot, the best greedy accuracy over pre-training is <= {NEAR_ZERO}; in a "
          "majority of runs (n x seeds)",
          _ntp_near_zero, about_generalization=True),
    Claim("§5.1, Figs. 15-17: when p_cot = 1 (the trace in every sample), models quickly learn during pre-training "
          "to answer correctly with long responses",
          f"per n and seed, pre-training at p_cot = 1 ends at greedy accuracy >= {SOLVED}; in a majority of runs",
          _full_cot_learns, about_generalization=True),
    Claim("§5.1, Figs. 5 (left), 18: after switching to GRPO, accuracy improves rapidly and the average response "
          "length increases, provided the pre-training checkpoint has developed some correlation with the target",
          "per GRPO run from a checkpoint whose temperature-1 accuracy is >= p_cot / 2 (it has learned the trace): "
          "greedy accuracy rises by more than 3 standard deviations of a difference (1.5/sqrt(eval inputs / 2)) and "
          "the mean greedy length grows; in a majority of such runs",
          lambda table: k_of_n(_grpo_runs(table, learned=True), unit="runs"), about_generalization=True),
    Claim("§5.1: where the model failed to learn from the long sequences, post-training is not successful",
          "per GRPO run from a checkpoint whose temperature-1 accuracy is < p_cot / 2: greedy accuracy does not rise "
          "by more than 3 standard deviations of a difference (1.5/sqrt(eval inputs / 2)); in a majority of such runs",
          lambda table: k_of_n(_grpo_runs(table, learned=False), unit="runs"), about_generalization=True),
]


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
              config: pd.Series, digits: int, seed_list: list[int], path: Path) -> None:
    """One column per p_cot (pre-training and RL against samples seen), and a close-up of RL for the smallest
    p_cot: medians over seeds, and in the close-up each seed as a thin line."""
    columns = len(curves) + 1
    fig, axes = figure(2, columns, figsize=(4.3 * columns, 6.5), sharex="col", squeeze=False)
    for col, (p_cot, (ntp, rl)) in enumerate(curves.items()):
        blues = colormaps["Blues"]([0.45 + 0.5 * i / max(1, len(rl) - 1) for i in range(len(rl))])
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
    blues = colormaps["Blues"]([0.45 + 0.5 * i / max(1, len(rl) - 1) for i in range(len(rl))])
    seeds = len(seed_list)
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
    seed_text = f"median of {seeds} seeds" if seeds > 1 else f"seed {seed_list[0]}"
    pairs = read_manifest(Path(config["task.data"]))["splits"]["train"]["rows"]
    fig.suptitle(f"{digits}x{digits} multiplication: next-token prediction vs. NTP then GRPO (e2e reward)\n"
                 f"{config['model.arch']} {config['model.layers']}x{config['model.width']}, {pairs:,} training pairs, "
                 f"{seed_text}")
    save_figure(fig, path)

RECIPE = Recipe(
    "mult", "Multiplication (Figs. 4, 5 left, 15-18): datasets at several p_cot, pre-training, GRPO from its checkpoints",
    _PRESETS, CLAIMS, report=report, prepare=prepare, in_all=False,
)
