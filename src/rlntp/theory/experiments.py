"""Simulation next to closed form: the measurements of Theorems 1 and 2, each beside its prediction."""

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rlntp.errors import check
from rlntp.files import check_out_path, check_output
from rlntp.memory import check_fits
from rlntp.theory import closed_forms as cf
from rlntp.theory.evaluation import evaluate
from rlntp.theory.mixture import MixtureConfig
from rlntp.theory.sgd import SGDConfig, pretrain
from rlntp.theory.star import StarConfig, star

FIGURES = ("theorem1_pretraining.png", "theorem2_star.png")
"""The files `write_figures` writes."""
FIGURE_P_COTS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.37, 0.4, 0.45, 0.5, 0.55, 0.6)
"""The mixture weights of the Theorem 1 figure."""
EVAL_SAMPLES = 20_000
"""Fresh inputs per evaluation: sampling error of a measured fraction at most 0.0035 (one standard deviation)."""


def _eval_rng(seed: int, round_: int) -> np.random.Generator:
    """Evaluation inputs depend on (seed, round) only, never on how much training consumed."""
    return np.random.default_rng([seed, 1, round_])


def check_run(seed: int, eval_samples: int, mixture: MixtureConfig, sgd: SGDConfig) -> None:
    """Validate the arguments every report takes, and that its arrays fit in memory, before any work."""
    check(seed >= 0, f"seed must be >= 0, got {seed}")
    check(eval_samples >= 1, f"eval_samples must be >= 1, got {eval_samples}")
    d, n = mixture.d, max(sgd.sequences_per_step, eval_samples)
    needed = 4 * 8 * ((d + 1) * (2 * d + 1) + n * (2 * d + 1))  # float32 weights, batches, a few copies of each
    check_fits(needed, "cpu", f"the linear model at d = {d:,} on {n:,} sequences",
               "reduce --d, --sequences-per-step or --eval-samples")


def pretrain_report(mixture: MixtureConfig, sgd: SGDConfig, seed: int = 0,
                    eval_samples: int = EVAL_SAMPLES) -> dict[str, float]:
    """Pre-train on D(d, p_cot) and measure Theorem 1: calibration and the greedy rule, each with `*_predicted`."""
    check_run(seed, eval_samples, mixture, sgd)
    model = pretrain(mixture, sgd, np.random.default_rng(seed))
    return _with_predictions(evaluate(model, eval_samples, _eval_rng(seed, 0)), mixture.p_cot)


def star_report(mixture: MixtureConfig, sgd: SGDConfig, config: StarConfig, seed: int = 0,
                eval_samples: int = EVAL_SAMPLES) -> Iterator[dict[str, float]]:
    """Pre-train, then STaR; yields one row per round (0 = pre-training) with Theorem 2's prediction.

    `long_frac` is the measured fraction of sampled outputs that are long; `long_frac_predicted` is
    p_t = 2^t p / (1 + (2^t - 1) p); the other columns compare with the Theorem 1 forms at p_t.
    """
    check_run(seed, eval_samples, mixture, sgd)  # here, not in the generator, so that it fails before any output
    return _star_rows(mixture, sgd, config, seed, eval_samples)


def _star_rows(mixture: MixtureConfig, sgd: SGDConfig, config: StarConfig, seed: int,
               eval_samples: int) -> Iterator[dict[str, float]]:
    for r in star(mixture, sgd, config, np.random.default_rng(seed)):
        p_t = cf.star_long_frac(mixture.p_cot, r.round)
        metrics = evaluate(r.model, eval_samples, _eval_rng(seed, r.round))
        row = {"round": r.round, "long_frac": metrics.pop("sampled_long_frac"), "long_frac_predicted": p_t}
        yield row | _with_predictions(metrics, p_t) | {"reward_mean": r.reward_mean}


def _with_predictions(metrics: dict[str, float], p: float) -> dict[str, float]:
    """Each measurement followed by its closed form at mixture weight p."""
    predicted = {
        "greedy_acc": cf.greedy_accuracy(p),
        "greedy_long_frac": cf.greedy_long_frac(p),
        "sampled_acc": cf.sampled_accuracy(p),
        "sampled_long_frac": p,
        "long_correct_prob": cf.long_correct_prob(p),
        "short_correct_prob": cf.short_correct_prob(p),
    }
    row = {}
    for name, value in metrics.items():
        row[name] = value
        row[f"{name}_predicted"] = predicted[name]
    return row


def write_figures(out: Path, d: int = 20, sgd: SGDConfig = SGDConfig(), seed: int = 0,
                  p_cots: tuple[float, ...] = FIGURE_P_COTS, star_p_cots: tuple[float, ...] | None = None,
                  rounds: int = 7, eval_samples: int = EVAL_SAMPLES) -> tuple[list[Path], str, dict]:
    """Theorem 1 (one pre-training per p_cot) and Theorem 2 (STaR rounds per star_p_cot, default 1/d, 0.1 and
    0.25) as two PNGs in `out`, simulation over closed form. Returns their paths, a summary table of both, and
    the measurements as JSON data: {"d", "eval_samples", "theorem1": [`pretrain_report` row with its "p_cot"],
    "theorem2": [{"p_cot", "rounds": [`star_report` rows]}]}. Everything is checked first."""
    from rlntp.theory.figures import plot_theorem1, plot_theorem2

    out = Path(out)
    check_out_path(out)
    for name in FIGURES:  # a file of the user's there is refused now, not after the simulations
        check_output(out / name)
    check(len(p_cots) > 0, "p_cots must list at least one mixture weight")
    mixtures = [MixtureConfig(d, p) for p in p_cots]  # validates d and every weight before any work
    star_p_cots = star_p_cots if star_p_cots is not None else tuple(sorted({1 / d, 0.1, 0.25}))
    check(len(star_p_cots) > 0, "star_p_cots must list at least one mixture weight")
    star_mixtures = [MixtureConfig(d, p) for p in star_p_cots]
    star_config = StarConfig(rounds)
    for m in mixtures + star_mixtures:
        check_run(seed, eval_samples, m, sgd)

    rows = [pretrain_report(m, sgd, seed, eval_samples) for m in mixtures]
    out.mkdir(parents=True, exist_ok=True)
    tables = {m.p_cot: list(star_report(m, sgd, star_config, seed, eval_samples)) for m in star_mixtures}
    paths = [plot_theorem1(p_cots, rows, d, out / FIGURES[0]), plot_theorem2(tables, d, out / FIGURES[1])]
    lines = [f"Theorem 1, linear model, d = {d}: {'p_cot':>6s} {'greedy acc':>10s} {'predicted':>9s} "
             f"{'sampled acc':>11s} {'predicted':>9s}"]
    lines += [f"{'':33s} {p:6.3f} {r['greedy_acc']:10.3f} {r['greedy_acc_predicted']:9.3f} {r['sampled_acc']:11.3f} "
              f"{r['sampled_acc_predicted']:9.3f}" for p, r in zip(p_cots, rows)]
    lines.append("Theorem 2, STaR (chain-of-thought reward): long fraction per round, measured / predicted")
    for p, table in tables.items():
        lines.append(f"  p_cot = {p:.3f}: " + "  ".join(f"{r['long_frac']:.3f}/{r['long_frac_predicted']:.3f}"
                                                     for r in table))
    measured = {"d": d, "eval_samples": eval_samples,
                "theorem1": [{"p_cot": p} | row for p, row in zip(p_cots, rows)],
                "theorem2": [{"p_cot": p, "rounds": table} for p, table in tables.items()]}
    return paths, "\n".join(lines), measured
