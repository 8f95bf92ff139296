"""Aggregation over seeds: curves, samples to solve (with lower bounds), and the recipes' summary tables.

The recipes read a sweep's results table (`rlntp.sweeps.engine.write_results`, one row per run and
evaluation) and never a run's own files.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rlntp.exact import exact_fractions, exact_median

SOLVED = 0.95
"""Greedy accuracy from which a run counts as having learned the task; an accuracy meets it as an exact fraction
(`rlntp.exact.Exact`: 608 of 640 does, 607 does not)."""


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
    """fraction of temperature-1 responses with no EOS within the budget"""
    greedy_acc_band: np.ndarray
    """the spread over seeds of greedy accuracy: its 25th and 75th percentiles (2 x evaluations)"""
    greedy_len_band: np.ndarray
    """the same of the median greedy length"""
    greedy_solved: np.ndarray
    """at each evaluation, whether the median over seeds of greedy accuracy, taken exactly, is >= SOLVED"""
    per_seed: dict[str, np.ndarray] = field(default_factory=dict)
    """every evaluation metric of every seed: seeds x evaluations (the figures that draw means and standard
    deviations, as the paper's captions say, read these)"""

    def mean_std(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """The mean over seeds of metric `key` (e.g. "eval/greedy_acc") at each evaluation, and its standard
        deviation over seeds (population, ddof 0: with 3 seeds the band the paper's captions describe)."""
        values = self.per_seed[key]
        return values.mean(axis=0), values.std(axis=0)


def table_curve(label: str, rows: pd.DataFrame) -> Curve:
    """The median over the runs in `rows` (rows of a results table: seeds of one configuration)."""
    rows = exact_fractions(rows[rows["eval/greedy_acc"].notna()]) if "eval/greedy_acc" in rows else rows.iloc[:0]
    per_run = [group.sort_values("step").to_dict("records") for _, group in rows.groupby("run", sort=False)]
    if not per_run:
        raise ValueError(f"no evaluations for curve {label!r}")
    return _median_curve(label, [[{k: v for k, v in r.items() if _present(v)} for r in records] for records in per_run])


def _present(value) -> bool:
    return not (value is None or isinstance(value, float) and np.isnan(value))


def _median_curve(label: str, per_seed: list[list[dict]]) -> Curve:
    n = min(len(records) for records in per_seed)

    def values(key: str) -> np.ndarray:
        return np.array([[r.get(key, 0) for r in records[:n]] for records in per_seed], dtype=float)

    def median(key: str) -> np.ndarray:
        return np.median(values(key), axis=0)

    def band(key: str) -> np.ndarray:
        return np.percentile(values(key), [25, 75], axis=0)

    return Curve(label, median("samples_seen"), median("rl_samples"), median("eval/greedy_acc"),
                 median("eval/sampled_acc"), median("eval/greedy_len_median"), median("eval/sampled_long_frac"),
                 seeds=len(per_seed), greedy_len_mean=median("eval/greedy_len_mean"),
                 greedy_long_frac=median("eval/greedy_long_frac"), sampled_no_eos_frac=median("eval/sampled_no_eos_frac"),
                 greedy_acc_band=band("eval/greedy_acc"), greedy_len_band=band("eval/greedy_len_median"),
                 greedy_solved=np.array([exact_median(records[i]["eval/greedy_acc"] for records in per_seed) >= SOLVED
                                         for i in range(n)], dtype=bool),
                 per_seed={key: values(key) for key in _PER_SEED})


_PER_SEED = ("eval/greedy_acc", "eval/sampled_acc", "eval/greedy_long_frac", "eval/sampled_long_frac",
             "eval/greedy_len_median")


def first_solved(rows: pd.DataFrame, samples: str = "samples_seen") -> tuple[float, bool]:
    """Samples (column `samples`: all seen, or `rl_samples`) at a run's first evaluation with greedy accuracy
    >= SOLVED (exactly: `rlntp.exact.exact_fractions`), and True; if it never got there, those of its last evaluation (a
    lower bound) and False."""
    rows = exact_fractions(rows[rows["eval/greedy_acc"].notna()]).sort_values("step")
    hits = rows[rows["eval/greedy_acc"] >= SOLVED]
    if len(hits):
        return float(hits[samples].iloc[0]), True
    return float(rows[samples].iloc[-1]), False


def solved_within(rows: pd.DataFrame, samples: str = "samples_seen") -> tuple[float, float]:
    """Bounds (low, high] on the samples (column `samples`) at which a run's greedy accuracy first reached SOLVED,
    from its evaluations: it was not there at the evaluation before its first hit (low) and was at the hit (high), so
    a measured wait is known within one evaluation interval. Where the first evaluation is the hit, low = high. A run
    that never got there: (its last evaluation's samples, inf)."""
    rows = exact_fractions(rows[rows["eval/greedy_acc"].notna()]).sort_values("step")
    hits = np.nonzero((rows["eval/greedy_acc"] >= SOLVED).to_numpy())[0]
    seen = rows[samples].to_numpy(dtype=float)
    if len(hits) == 0:
        return float(seen[-1]), float("inf")
    first = hits[0]
    return float(seen[max(first - 1, 0)]), float(seen[first])


def reached_within(low: float, high: float) -> tuple[float, bool]:
    """`solved_within`'s bounds as `first_solved` reads them: (samples at the first hit, True), or (samples at the
    last evaluation, a lower bound, and False) where the run never got there."""
    return (high, True) if high < float("inf") else (low, False)


def quantile_within(lows: list[float], highs: list[float], q: float) -> tuple[float, float]:
    """Bounds on the q-quantile (nearest rank, as `censored_quantile`) of values each known only within (low, high]:
    a quantile is monotone in every value, so it lies between the quantile of the lows and that of the highs."""
    k = max(0, int(np.ceil(q * len(lows))) - 1)
    return float(np.sort(lows)[k]), float(np.sort(highs)[k])


def within_text(low: float, high: float, digits: str = ",.0f") -> str:
    """A value known within (low, high]: `N` where exact, `>low` where unbounded above, `low-high` otherwise."""
    if high == low:
        return f"{high:{digits}}"
    return f">{low:{digits}}" if high == float("inf") else f"{low:{digits}}-{high:{digits}}"


def censored_quantile(values: list[float], reached: list[bool], q: float) -> tuple[float, bool]:
    """The q-quantile (lower order statistic) of values of which some are only lower bounds (reached False).

    Returns the quantile and whether it is exact; it is a lower bound when a bound sits at or below it,
    since that run's true value may lie above it and move the quantile up.
    """
    order = np.argsort(values, kind="stable")
    k = max(0, int(np.ceil(q * len(values))) - 1)  # nearest rank: of 3 seeds, the 1st, 2nd, 3rd for q = 1/4, 1/2, 3/4
    exact = all(reached[i] for i in order[: k + 1])
    return float(np.asarray(values)[order[k]]), exact


def samples_to_solve(curve: Curve, rl: bool) -> float | None:
    """Samples (RL samples if `rl`, else all) at the first evaluation whose median greedy accuracy is >= SOLVED."""
    hits = np.nonzero(curve.greedy_solved)[0]
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


@dataclass(frozen=True)
class Column:
    """One right-aligned column of a text table (`text_table`)."""

    name: str
    """its heading"""
    width: int
    """its width in characters"""
    format: str = ""
    """the format of its values after the width (".3f", ",d", "g"; "" for text)"""
    gap: int = 1
    """spaces before it (none before the first column)"""


def text_table(columns: list[Column], rows, notes: list[str] = ()) -> list[str]:
    """A fixed-width text table as lines: the `notes`, the header, a rule as long as the header, then one line per
    row of `rows` (one value per column)."""
    def line(values, formats) -> str:
        return "".join(f"{' ' * column.gap if i else ''}{value:>{column.width}{fmt}}"
                       for i, (column, value, fmt) in enumerate(zip(columns, values, formats)))

    header = line([column.name for column in columns], ["s"] * len(columns))
    return [*notes, header, "-" * len(header), *(line(row, [c.format for c in columns]) for row in rows)]
