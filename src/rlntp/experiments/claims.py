"""The paper's claims, each with a test in words and the check that decides it from a recipe's results.

A recipe declares `CLAIMS = [Claim(claim, criterion, check), ...]`: the paper's statement in its own
terms, the test in words, and a function of the recipe's results (a sweep's results table, or what a
plan recipe's `run` returns) that gives a `Verdict`. `rlntp.experiments.reproduce` evaluates them into
report.json, from which the report page (`rlntp report`) and the README's results table are drawn, so a
verdict is computed from the data, never written by hand.

Criteria are written for any number of seeds: most pass a seed (or a setting) at a time and need a
majority of them (`k_of_n`). A threshold on a measured fraction is set from its sampling error
(`sampling_margin`), or where the paper says "approximately" from `APPROX`.
"""

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
NOT_EVALUATED = "not evaluated"
"""A check that raised: a fault of the check or of the runs (a failed run), never a finding about the paper."""
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_EVALUATED)

FINAL_EVALS = 3
"""'final' value of a run where the paper gives no definition: the mean over its last this many evaluations."""
APPROX = 0.05
"""'approximately equal' in the paper's statements (calibration, the STaR recursion): within this absolute
difference. It allows for training noise (a model's long fraction moves between evaluations), which is
larger than the sampling error of a measurement on a few thousand inputs (0.5/sqrt(n) at most)."""
NEAR_ZERO = 0.05
"""'close to 0%' accuracy (multiplication at small p_cot)."""


@dataclass(frozen=True)
class Verdict:
    """What a claim's check found: the verdict and the numbers it used."""

    verdict: str
    """REPRODUCED, PARTLY, NOT_REPRODUCED, or NOT_EVALUATED (the check could not run)"""
    evidence: str
    """the numbers behind the verdict, per seed where there are seeds ('2 of 3 seeds: seed 0 0.493, ...')"""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"a verdict is one of {', '.join(VERDICTS)}, got {self.verdict!r}")


@dataclass(frozen=True)
class Claim:
    """One statement of the paper and how a recipe's results decide it."""

    claim: str
    """the paper's statement, in the paper's terms, naming its figure or section"""
    criterion: str
    """the test in words, for any number of seeds ('final NTP greedy accuracy ... in a majority of seeds')"""
    check: Callable[[Any], Verdict]
    """the test: the recipe's results (a sweep's results table, or what its plan's `run` returns) -> Verdict"""


def k_of_n(outcomes: Mapping[str, tuple[bool, str]], need: int | str = "majority", unit: str = "seeds") -> Verdict:
    """The verdict of a criterion tested on each of n seeds (or settings): `outcomes` maps a label ('seed 0')
    to (passed, what was measured).

    Reproduced when at least `need` pass ("majority": more than half; "all"; or a number), partly when
    some but fewer do, not reproduced when none does. The evidence reads '2 of 3 seeds: seed 0 0.493,
    seed 1 0.612 (fails), seed 2 0.488'.
    """
    n = len(outcomes)
    if n == 0:
        raise ValueError(f"no {unit} to evaluate")
    required = {"majority": n // 2 + 1, "all": n}.get(need, need)
    if not (isinstance(required, int) and required >= 1):
        raise ValueError(f"need must be 'majority', 'all' or a count >= 1, got {need!r}")
    passed = sum(bool(ok) for ok, _ in outcomes.values())
    verdict = REPRODUCED if passed >= required else PARTLY if passed else NOT_REPRODUCED
    shown = ", ".join(f"{label} {text}" + ("" if ok else " (fails)") for label, (ok, text) in outcomes.items())
    return Verdict(verdict, f"{passed} of {n} {unit}: {shown}")


def grows(values: Mapping[Any, tuple[float, float, str]], name: str = "d") -> Verdict:
    """Whether a quantity grows from each key of `values` to the next (in the order given), each known only
    within bounds (low, high, shown): equal where it was measured, one side open where a median over seeds is a
    bound because some seed never got there.

    A step is decided when the bounds settle it (grown: the larger key's low above the smaller's high; not
    grown: its high at or below the smaller's low) and counts for `k_of_n` with need "all"; the others are
    listed as undecided. ValueError when fewer than two keys, or no step is decided.
    """
    keys = list(values)
    if len(keys) < 2:
        raise ValueError(f"needs two values of {name}, found {keys}")
    outcomes, undecided = {}, []
    for a, b in pairwise(keys):
        (low_a, high_a, shown_a), (low_b, high_b, shown_b) = values[a], values[b]
        step = f"{name} = {a} -> {b}"
        if low_b > high_a or high_b <= low_a:
            outcomes[step] = (low_b > high_a, f"{shown_a} -> {shown_b}")
        else:
            undecided.append(f"{step} {shown_a} -> {shown_b}")
    if not outcomes:
        raise ValueError(f"no step in {name} is decided by the bounds: {', '.join(undecided)}")
    verdict = k_of_n(outcomes, need="all", unit=f"decided steps in {name}")
    return Verdict(verdict.verdict, verdict.evidence + (f"; undecided: {', '.join(undecided)}" if undecided else ""))


SIGNIFICANCE = 0.05
"""'more often' between two counts of runs: a one-sided Fisher exact test at this level (`more_often`)."""


def more_often(k_more: int, n_more: int, k_less: int, n_less: int) -> float:
    """The p-value of 'k_more of n_more runs succeed more often than k_less of n_less': a one-sided Fisher exact
    test, the chance of k_more or more among n_more when the k_more + k_less successes fall at random over all
    the runs (a hypergeometric tail; a few lines, where scipy would be a dependency for one function)."""
    total, successes = n_more + n_less, k_more + k_less
    tail = sum(math.comb(successes, k) * math.comb(total - successes, n_more - k)
               for k in range(k_more, min(successes, n_more) + 1))
    return tail / math.comb(total, n_more)


def sampling_margin(n: float) -> float:
    """Three standard deviations of a fraction measured on n independent inputs, at its largest (p = 1/2):
    3 * 0.5 / sqrt(n). For the mean of k evaluations pass k * n; for the difference of two, n / 2."""
    return 1.5 / math.sqrt(n)


def evaluate(claims: list[Claim], results: Any) -> list[dict[str, str]]:
    """Each claim with its verdict and evidence, as report.json stores them. A check that fails (a column
    missing because a run failed, no seed to test) gives 'not evaluated' and says why; it never raises."""
    evaluated = []
    for claim in claims:
        try:
            verdict = claim.check(results)
        # one claim that cannot be tested must not cost the report the others
        except Exception as error:  # noqa: BLE001
            verdict = Verdict(NOT_EVALUATED, f"could not be evaluated: {type(error).__name__}: {error}")
        evaluated.append({"claim": claim.claim, "criterion": claim.criterion, "verdict": verdict.verdict,
                          "evidence": verdict.evidence})
    return evaluated


# Helpers for the checks of sweep recipes, which read a results table (one row per run and evaluation).

def evaluations(table, stage: str | None = None):
    """The rows of `table` with an evaluation (greedy accuracy), of one stage if given."""
    rows = table[table["eval/greedy_acc"].notna()]
    return rows if stage is None else rows[rows["stage"] == stage]


def by_seed(table, outcome: Callable[[Any], tuple[bool, str]]) -> dict[str, tuple[bool, str]]:
    """`outcome` of each seed's rows (every stage), labelled 'seed S', for `k_of_n`. A seed whose rows cannot
    be tested (a failed run without evaluations) fails and says why, rather than hiding the other seeds."""
    return {f"seed {seed}": _tested(outcome, rows) for seed, rows in table.groupby("train.seed", sort=True)}


def _tested(outcome: Callable[[Any], tuple[bool, str]], rows) -> tuple[bool, str]:
    try:
        return outcome(rows)
    except (ValueError, KeyError, IndexError) as error:
        return False, f"could not be evaluated ({error})"


def last_evaluation(rows):
    """The last evaluation (by step) of one run's rows; ValueError if it has none."""
    rows = evaluations(rows)
    if rows.empty:
        raise ValueError("a run has no evaluation")
    return rows.sort_values("step").iloc[-1]
