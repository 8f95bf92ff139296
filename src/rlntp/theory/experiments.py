"""Simulation next to closed form: the measurements of Theorems 1 and 2, each beside its prediction."""

from collections.abc import Iterator

import numpy as np

from rlntp.memory import check_fits
from rlntp.errors import check
from rlntp.theory import closed_forms as cf
from rlntp.theory.data import MixtureConfig
from rlntp.theory.evaluation import evaluate
from rlntp.theory.sgd import SGDConfig, pretrain
from rlntp.theory.star import StarConfig, star

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
