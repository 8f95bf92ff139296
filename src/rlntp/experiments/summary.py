"""Curves read from run directories, medians over seeds, and the summary table printed by every recipe."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlntp import runs

SOLVED = 0.95
"""Greedy accuracy from which a run counts as having learned the task."""


@dataclass(frozen=True)
class Curve:
    """One metric-vs-samples curve: the median over seeds of runs with identical schedules."""

    label: str
    samples_seen: np.ndarray
    """total samples seen (pre-training + RL) at each evaluation"""
    rl_samples: np.ndarray
    """RL samples at each evaluation (0 for pre-training)"""
    greedy_acc: np.ndarray
    sampled_acc: np.ndarray
    greedy_len_median: np.ndarray
    sampled_long_frac: np.ndarray
    seeds: int
    greedy_len_mean: np.ndarray
    greedy_long_frac: np.ndarray
    sampled_no_eos_frac: np.ndarray
    """fraction of temperature-1 responses with no EOS within the budget (older runs: 0)"""


def read_curve(label: str, run_dirs: list[Path]) -> Curve:
    """The median over `run_dirs` (seeds of one configuration) of their evaluation records."""
    keys = ("samples_seen", "eval/greedy_acc", "eval/sampled_acc", "eval/greedy_len_median", "eval/sampled_long_frac")
    per_seed = [runs.read_metrics(d, keys) for d in run_dirs]
    n = min(len(records) for records in per_seed)

    def median(key: str) -> np.ndarray:
        return np.median(np.array([[r.get(key, 0) for r in records[:n]] for records in per_seed]), axis=0)

    return Curve(label, median("samples_seen"), median("rl_samples"), median("eval/greedy_acc"),
                 median("eval/sampled_acc"), median("eval/greedy_len_median"), median("eval/sampled_long_frac"),
                 seeds=len(run_dirs), greedy_len_mean=median("eval/greedy_len_mean"),
                 greedy_long_frac=median("eval/greedy_long_frac"), sampled_no_eos_frac=median("eval/sampled_no_eos_frac"))


def samples_to_solve(curve: Curve, rl: bool) -> float | None:
    """Samples (RL samples if `rl`, else all) at the first evaluation with greedy accuracy >= SOLVED."""
    hits = np.nonzero(curve.greedy_acc >= SOLVED)[0]
    if len(hits) == 0:
        return None
    return float((curve.rl_samples if rl else curve.samples_seen)[hits[0]])


def summary_table(curves: list[Curve], rl: list[bool]) -> str:
    """A fixed-width table: per curve, start and final greedy accuracy, samples to solve, final median length."""
    header = (f"{'curve':28s} {'start acc':>9s} {'final acc':>9s} {'samples to >=95% greedy':>24s} "
              f"{'(of which RL)':>14s} {'final median len':>16s}")
    lines = [header, "-" * len(header)]
    for curve, is_rl in zip(curves, rl):
        total = samples_to_solve(curve, rl=False)
        rl_part = samples_to_solve(curve, rl=True) if is_rl else None
        lines.append(
            f"{curve.label:28s} {curve.greedy_acc[0]:9.3f} {curve.greedy_acc[-1]:9.3f} "
            f"{'not reached' if total is None else f'{total:,.0f}':>24s} "
            f"{'' if rl_part is None else f'{rl_part:,.0f}':>14s} {curve.greedy_len_median[-1]:16g}")
    return "\n".join(lines)
