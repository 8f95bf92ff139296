"""Exact fractions of a results table, so that no verdict depends on how a float rounds.

An evaluation's accuracy is a count over the inputs evaluated; stored as a float32 mean, exactly 95% (608 of 640)
reads 0.9499999881 and fails `>= 0.95`. Evaluations record their counts (`eval/greedy_correct`,
`eval/greedy_total`, ...: `rlntp.evaluation.DecodeStats`), and `exact_fractions` gives a table's fractions as `Exact`
values: each accuracy from its counts, and each other fraction (and an accuracy of a table written before counts
were recorded) recovered as round(value x n) / n, with n the inputs evaluated, checked to be a count
(`recover`). The claims' checks read these (`rlntp.experiments.claims.evaluate` converts the table once), so their
thresholds compare exact fractions.
"""

import math
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from typing import Any

MODES = ("greedy", "sampled")
FRACTIONS = ("acc", "long_frac", "no_eos_frac")
"""the fractions of an evaluation (`eval/{mode}_{name}`): the accuracy is counted (`eval/{mode}_correct`), the others
read from its length histogram"""
_STAGE_SAMPLES = {"pretrain": "train.eval_samples", "posttrain": "post.eval_samples"}


def _as_written(value: Any) -> Any:
    """A float as the fraction it is written as: the one of smallest denominator (up to a million) whose nearest
    float it is (0.95 -> 19/20, 1 / 3 -> 1/3), else its shortest decimal (repr); anything else unchanged."""
    if not (isinstance(value, float) and math.isfinite(value)):
        return value
    simple = Fraction(value).limit_denominator(10**6)
    return simple if float(simple) == value else Fraction(repr(float(value)))


class Exact(Fraction):
    """An exact fraction that prints like a float (`f"{x:.3f}"`, `f"{x:.0%}"`: its exact value rounded half up, 1753
    of 2000 is 0.877) and reads a float it meets in arithmetic or a comparison as the fraction the float is written
    as (`written`): `Exact(608, 640) >= 0.95` is True (0.95 is 19/20), `Exact(96, 640) - 0.1 <= 0.05` is True,
    `Exact(1, 3) > 1 / 3` is False. So a threshold, a tolerance or a config value compares as written, never by its
    binary rounding; results of arithmetic stay `Exact`."""

    __slots__ = ()
    __hash__ = Fraction.__hash__

    def __format__(self, spec: str) -> str:
        if "." not in spec:  # no precision to round to: as the float nearest to it
            return format(float(self), spec)
        with localcontext(prec=40, rounding=ROUND_HALF_UP):
            return format(Decimal(self.numerator) / Decimal(self.denominator), spec)

    def __reduce__(self):
        return type(self), (self.numerator, self.denominator)


def _lifted(name: str):
    method = getattr(Fraction, name)

    def lifted(self, *other):
        result = method(self, *map(_as_written, other))
        return Exact(result) if type(result) is Fraction else result

    lifted.__name__ = name
    return lifted


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
              "__neg__", "__pos__", "__abs__", "__lt__", "__le__", "__gt__", "__ge__", "__eq__"):
    setattr(Exact, _name, _lifted(_name))


def written(value: float) -> Exact:
    """A config value or a threshold (a float) as the fraction it is written as: the simplest whose float it is
    (denominator up to a million: 0.1 -> 1/10, 1 / 3 -> 1/3), else its shortest decimal; so that what is computed
    from it (a closed form, a level) is exact too."""
    return Exact(_as_written(value))


def recover(value: float, n: int, what: str = "a fraction") -> Exact:
    """The count over `n` inputs that `value` (their mean, stored as a float32 or a float64) is: round(value x n) / n.

    A float32 mean of n answers (a sum that is exact, divided once) lies within n x 2^-24 of the count; ValueError
    where `value` is further from every count (a wrong n, a value that is not such a mean) or where n is too large
    for the count to be told apart (n x 2^-23 not below 1/2).
    """
    count = round(value * n)
    tolerance = n * 2.0**-23
    if not (n >= 1 and tolerance < 0.5 and abs(value * n - count) <= tolerance):
        raise ValueError(f"{what} = {value!r} is not a count over the {n} inputs evaluated "
                         f"({value * n!r} of them): a table that is not float means of its evaluations' answers")
    return Exact(count, n)


def _inputs(row: dict[str, Any], mode: str) -> int | None:
    """How many inputs an evaluation (a results-table row) decoded in `mode`: its recorded total, else the sum of its
    length histogram, else its stage's eval_samples where it has no dataset (whose test split may cap it)."""
    total, hist = row.get(f"eval/{mode}_total"), row.get(f"eval/{mode}_len_hist")
    if _present(total):
        return int(total)
    if _present(hist):
        return int(sum(hist))
    samples, data = row.get(_STAGE_SAMPLES.get(row.get("stage"), "train.eval_samples")), row.get("task.data")
    if _present(samples) and not (isinstance(data, str) and data):
        return int(samples)
    return None


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _exact_value(row: dict[str, Any], mode: str, name: str) -> Any:
    column = f"eval/{mode}_{name}"
    value = row.get(column)
    if not _present(value) or isinstance(value, Exact):
        return value
    correct, total = row.get(f"eval/{mode}_correct"), row.get(f"eval/{mode}_total")
    if name == "acc" and _present(correct) and _present(total):
        return Exact(int(correct), int(total))
    n = _inputs(row, mode)
    where = f"{column} of {row.get('run', 'a run')} at step {row.get('step', '?')}"
    if n is None:
        raise ValueError(f"{where}: the table records no count of the inputs evaluated "
                         f"(eval/{mode}_total, eval/{mode}_len_hist or eval_samples)")
    return recover(float(value), n, where)


def exact_fractions(results: Any) -> Any:
    """A results table with every fraction of its evaluations (`eval/greedy_acc`, `eval/sampled_long_frac`, ...:
    `FRACTIONS`) as `Exact` values, rows without an evaluation left empty; anything else (what a plan recipe's
    `run` returns) unchanged. An accuracy comes from its counts where the row records them, every other fraction
    is recovered from its float over the inputs evaluated (`recover`: ValueError where it is not a count)."""
    columns = getattr(results, "columns", None)
    wanted = [] if columns is None else [(mode, name) for mode in MODES for name in FRACTIONS
                                         if f"eval/{mode}_{name}" in columns]
    if not wanted:
        return results
    records = results.to_dict("records")
    exact = results.copy()
    for mode, name in wanted:
        exact[f"eval/{mode}_{name}"] = [_exact_value(row, mode, name) for row in records]
    return exact


def exact_mean(values: Iterable[Any]) -> Exact:
    """The exact mean of fractions (`Exact` values, or floats read as written); ValueError if there are none."""
    values = [written(v) for v in values]
    if not values:
        raise ValueError("a mean of no values")
    return sum(values, Exact(0)) / len(values)


def exact_median(values: Iterable[Any]) -> Exact:
    """The exact median (the mean of the two middle values of an even count), as `numpy.median` defines it."""
    ordered = sorted(written(v) for v in values)
    if not ordered:
        raise ValueError("a median of no values")
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
