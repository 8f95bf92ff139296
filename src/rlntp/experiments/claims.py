"""The paper's claims, each with a test in words and the check that decides it from a recipe's results.

A recipe declares `CLAIMS = [Claim(claim, criterion, check), ...]`: the paper's statement in its own
terms, the test in words, and a function of the recipe's results (a sweep's results table, or what a
plan recipe's `run` returns) that gives a `Verdict`. `rlntp.experiments.reproduce` evaluates them into
report.json, from which the report page (`rlntp report`) and the README's results table are drawn, so a
verdict is computed from the data, never written by hand.

A claim about what training generalizes to (`Claim.about_generalization`) is judged only where pre-training saw no
more samples than its task has distinct inputs: where a run saw every input more than once on average (the
memorisation regime, read from the results table's `passes`: `sweeps.engine.write_results`), a model that answers
right may have learned a table rather than the task, and the verdict is 'not evaluated' with the ratio
(`regime_gate`). Every verdict of a sweep recipe is shown beside that ratio (`regime`).

Criteria are written for any number of seeds: most pass a seed (or a setting) at a time and need a
majority of them (`k_of_n`). The rules every recipe's criteria follow, each written once here:

- "approximately equal", "about", "follows" (a measured value against a prediction): within `APPROX`, unless the
  paper gives a number; "at chance", "on par with random guessing": within `sampling_margin` of 1/2.
- a tolerance is smaller than the effect it measures (`discernible`): where the prediction is within the tolerance
  of what a model without the effect gives (1/2 for an accuracy, 0 for a fraction of long answers), the setting is
  not judged and the evidence says so; a test asserts it for every setting of the presets.
- reproduced: the criterion's need (a majority of units by default); partly: short of that, but in at least
  `PARTLY_SHARE` of the units and at least one; not reproduced otherwise (`k_of_n`, and `combine` for units that
  have verdicts of their own).
- a statistical test counts independent units: seeds (or pre-training runs), never runs that share a seed's
  checkpoint; its outcome maps to a verdict one way (`significant`): p < `SIGNIFICANCE` reproduced, otherwise
  not reproduced.
- "for all algorithms" (architectures, settings) is judged per unit and needs every one where the paper's wording
  says so, pooled where it pools; the criterion's text says which.
- where a figure's caption states its curve convention (Fig. 1: "median across 3 seeds"), a criterion read from
  a curve follows it; a per-seed criterion in a majority of seeds is the median's for one threshold on one value.
- the checks see a table's fractions as exact counts over the inputs evaluated (`rlntp.exact`): 608 of 640 reaches
  0.95, whatever the float.
"""

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from rlntp.exact import exact_fractions
from rlntp.regime import COLUMNS, MEMORISATION, describe, format_passes, passes

REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
NOT_EVALUATED = "not evaluated"
"""Not judged, never a finding about the paper: a check that raised (a fault of the check or of the runs, e.g. a
failed run), a claim about generalization in the memorisation regime (`regime_gate`), or the LLM tiny preset (wiring
only)."""
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_EVALUATED)

FINAL_EVALS = 3
"""'final' value of a run where the paper gives no definition: the mean over its last this many evaluations."""
APPROX = 0.05
"""'approximately equal' in the paper's statements (calibration, T = 1 accuracy (1 + p_cot)/2, the STaR recursion,
the staircase's levels), in every recipe unless the paper gives a number: within this absolute difference. It allows
for training noise (a model's long fraction moves between evaluations), which is larger than the sampling error of a
measurement on a few thousand inputs (0.5/sqrt(n) at most)."""
NEAR_ZERO = 0.05
"""'close to 0%' accuracy (multiplication at small p_cot)."""
PARTLY_SHARE = 0.5
"""'partly': short of what the criterion needs, but passed in at least this share of its units (and at least one).
Half, so that a verdict of partly is never given where most units contradict the claim: under the default need (a
majority) an odd number of units gives reproduced or not reproduced and partly is a tie; under need 'all', partly is
at least half of the units but not all. One unit of three that passes (possibly by noise) is not partial support."""


def partly_needs(n: int) -> int:
    """The fewest units of n that make a verdict partly (`PARTLY_SHARE` of them, at least one)."""
    return max(1, math.ceil(PARTLY_SHARE * n))


def discernible(effect: float, tolerance: float = APPROX) -> bool:
    """Whether a comparison within `tolerance` can tell an effect from its absence: the tolerance is smaller than
    the effect, the distance between the prediction and what a model without the effect gives (at T = 1, accuracy
    (1 + p_cot)/2 against a coin flip's 1/2: p_cot/2). A criterion judges only the settings where it is, so that a
    model that learned nothing cannot pass."""
    return tolerance < abs(effect)


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


def with_not_judged(verdict: Verdict, left: list[str]) -> Verdict:
    """`verdict` with the settings (or seeds) a criterion left out because its tolerance could not tell the effect
    from its absence (`discernible`) named in its evidence: a claim judged on fewer units says so."""
    if not left:
        return verdict
    return Verdict(verdict.verdict, f"{verdict.evidence}; not judged (the effect is not larger than {APPROX}): "
                                    f"{', '.join(left)}")


@dataclass(frozen=True)
class Claim:
    """One statement of the paper and how a recipe's results decide it."""

    claim: str
    """the paper's statement, in the paper's terms, naming its figure or section"""
    criterion: str
    """the test in words, for any number of seeds ('final NTP greedy accuracy ... in a majority of seeds')"""
    check: Callable[[Any], Verdict]
    """the test: the recipe's results (a sweep's results table, or what its plan's `run` returns) -> Verdict"""
    about_generalization: bool = False
    """a claim about what next-token prediction or RL learns to do on inputs (accuracy, length, learning), which a
    model that memorised its inputs could pass or fail for the wrong reason: judged only where every pre-training
    run of the results saw no more samples than there are distinct inputs (`regime_gate`); False: judged in any
    regime (calibration of the sampled lengths, a claim about small d by design)"""


def k_of_n(outcomes: Mapping[str, tuple[bool, str]], need: int | str = "majority", unit: str = "seeds") -> Verdict:
    """The verdict of a criterion tested on each of n seeds (or settings): `outcomes` maps a label ('seed 0')
    to (passed, what was measured).

    Reproduced when at least `need` pass ("majority": more than half; "all"; or a number), partly when fewer
    do but at least `partly_needs(n)` (half of them, at least one), not reproduced otherwise. The evidence reads
    '2 of 3 seeds: seed 0 0.493, seed 1 0.612 (fails), seed 2 0.488'.
    """
    n = len(outcomes)
    if n == 0:
        raise ValueError(f"no {unit} to evaluate")
    required = {"majority": n // 2 + 1, "all": n}.get(need, need)
    if not (isinstance(required, int) and required >= 1):
        raise ValueError(f"need must be 'majority', 'all' or a count >= 1, got {need!r}")
    passed = sum(bool(ok) for ok, _ in outcomes.values())
    verdict = REPRODUCED if passed >= required else PARTLY if passed >= partly_needs(n) else NOT_REPRODUCED
    shown = ", ".join(f"{label} {text}" + ("" if ok else " (fails)") for label, (ok, text) in outcomes.items())
    return Verdict(verdict, f"{passed} of {n} {unit}: {shown}")


def combine(verdicts: Mapping[str, Verdict], need: int | str = "majority", unit: str = "seeds") -> Verdict:
    """The verdict of a claim judged on each of n units that have verdicts of their own (a seed's simulation, a
    model, an algorithm's test): reproduced where at least `need` units are reproduced (as `k_of_n`), partly where
    fewer are but at least `partly_needs(n)` are reproduced or partly, not reproduced otherwise. The evidence is
    `k_of_n`'s, each unit's verdict and evidence in brackets."""
    counted = k_of_n({label: (v.verdict == REPRODUCED, f"[{v.verdict}: {v.evidence}]")
                      for label, v in verdicts.items()}, need=need, unit=unit)
    if counted.verdict == REPRODUCED:
        return counted
    some = sum(v.verdict in (REPRODUCED, PARTLY) for v in verdicts.values())
    return Verdict(PARTLY if some >= partly_needs(len(verdicts)) else NOT_REPRODUCED, counted.evidence)


def grows(values: Mapping[Any, tuple[float, float, str]], name: str = "d") -> Verdict:
    """Whether a quantity grows from each key of `values` to the next (in the order given), each known only
    within bounds (low, high, shown): equal where it was measured, one side open where a median over seeds is a
    bound because some seed never got there.

    A step is decided when the bounds settle it (grown: the larger key's low above the smaller's high; not
    grown: its high at or below the smaller's low) and counts for `k_of_n` with need "all"; the others are
    listed as undecided. Not evaluated where no step is decided (the bounds settle nothing); ValueError when there
    are fewer than two keys.
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
        return Verdict(NOT_EVALUATED, f"no step in {name} is decided by the bounds: {', '.join(undecided)}")
    verdict = k_of_n(outcomes, need="all", unit=f"decided steps in {name}")
    return Verdict(verdict.verdict, verdict.evidence + (f"; undecided: {', '.join(undecided)}" if undecided else ""))


SIGNIFICANCE = 0.05
"""'more often' between two counts of independent units (seeds, pre-training runs; never runs that share a seed's
checkpoint): a one-sided Fisher exact test at this level (`more_often`, `significant`)."""


def significant(p: float, evidence: str) -> Verdict:
    """The verdict of one one-sided test of the paper's direction with p-value `p`: reproduced where p <
    SIGNIFICANCE, not reproduced otherwise. A difference in the paper's direction that is not significant is no
    partial support: with no effect at all, about half of the outcomes point that way. A claim made of several
    tests (one per algorithm) combines their verdicts (`combine`)."""
    return Verdict(REPRODUCED if p < SIGNIFICANCE else NOT_REPRODUCED, f"{evidence} (one-sided Fisher p = {p:.3f})")


def check_attainable(n_more: int, n_less: int) -> None:
    """ValueError (the claim is then not evaluated) where no outcome of `more_often` over n_more and n_less units can be
    significant: even all of n_more against none of n_less gives p >= SIGNIFICANCE (3 seeds against 3: p = 0.05), so a
    'not reproduced' would be no finding."""
    smallest = more_often(n_more, n_more, 0, n_less)
    if smallest >= SIGNIFICANCE:
        raise ValueError(f"{n_more} against {n_less} units can never differ significantly (the smallest one-sided "
                         f"Fisher p is {smallest:.3f}, not below {SIGNIFICANCE}): more units are needed")


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


def evaluate(claims: list[Claim], results: Any) -> list[dict[str, Any]]:
    """Each claim with its verdict and evidence, as report.json stores them, and the regime of the results
    (`regime`, for a results table that records it). The checks read a results table's fractions (accuracies, long
    fractions) as exact fractions (`rlntp.exact.exact_fractions`), so a threshold never meets a float's rounding. A
    claim about generalization in the memorisation regime is 'not evaluated' and says why (`regime_gate`). A check
    that fails (a column missing because a run failed, no seed to test, a fraction that is not a count) gives 'not
    evaluated' and says why; it never raises."""
    found = regime(results)
    gate = regime_gate(found)
    try:
        exact, unreadable = exact_fractions(results), None
    except ValueError as error:
        exact, unreadable = None, error
    evaluated = []
    for claim in claims:
        if claim.about_generalization and gate is not None:
            verdict = gate
        else:
            try:
                if unreadable is not None:
                    raise unreadable
                verdict = claim.check(exact)
            # one claim that cannot be tested must not cost the report the others
            except Exception as error:  # noqa: BLE001
                verdict = Verdict(NOT_EVALUATED, f"could not be evaluated: {type(error).__name__}: {error}")
        evaluated.append({"claim": claim.claim, "criterion": claim.criterion, "verdict": verdict.verdict,
                          "evidence": verdict.evidence} | ({} if found is None else {"regime": found}))
    return evaluated


_JUDGED_ONLY = ("a claim about generalization is judged only where pre-training saw no more samples than there are "
                "distinct inputs")


def regime(results: Any) -> dict[str, Any] | None:
    """The regime of a results table's pre-training runs (its columns distinct_inputs, pretrain_samples, passes:
    `sweeps.engine.write_results`): the run with the most passes over its inputs, as {"passes", "distinct_inputs",
    "pretrain_samples" (that run's), "fewest_passes", "runs" (pre-training runs), "unknown" (runs whose task does
    not say its distinct inputs), "text" (`describe_regime`)}; a sweep's table written before runs recorded their
    regime, from its config columns (`_regime_from_config`). None where `results` is not a sweep's table (what a
    plan recipe returns: the theory, the LLM path) or holds no run."""
    columns = getattr(results, "columns", None)
    if columns is not None and not all(column in columns for column in COLUMNS):
        results = _regime_from_config(results)
        columns = None if results is None else results.columns
    if columns is None or len(results) == 0:
        return None
    rows = results
    if "stage" in columns and (results["stage"] == "pretrain").any():
        rows = results[results["stage"] == "pretrain"]
    runs = rows.drop_duplicates("run") if "run" in columns else rows
    known = runs[runs["passes"].notna()].reset_index(drop=True)
    found: dict[str, Any] = {"passes": None, "distinct_inputs": None, "pretrain_samples": None,
                             "fewest_passes": None, "runs": len(runs), "unknown": len(runs) - len(known)}
    if len(known):
        top = known.loc[known["passes"].idxmax()]
        inputs = float(top["distinct_inputs"])
        found |= {"passes": float(top["passes"]), "fewest_passes": float(known["passes"].min()),
                  "distinct_inputs": int(inputs) if math.isfinite(inputs) else None,
                  "pretrain_samples": int(top["pretrain_samples"])}
    return found | {"text": describe_regime(found)}


def _regime_from_config(table: Any) -> Any:
    """A sweep's table written before runs recorded their regime, with its columns made from what it does record:
    each pre-training run's built-in task (its task.* columns, `tasks.builtin_distinct_inputs`) and its samples seen
    at its last evaluation; distinct inputs unknown for a dataset or a task of your own. None where the table is not a
    sweep's (no task.task, stage, run or samples_seen column)."""
    import pandas as pd

    from rlntp.tasks import builtin_distinct_inputs

    if not {"task.task", "run", "stage", "samples_seen"} <= set(table.columns):
        return None
    task_columns = [c for c in table.columns if c.startswith("task.")]

    def value(cell: Any) -> Any:  # pandas stores an int column with a gap as floats
        return int(cell) if isinstance(cell, float) and cell.is_integer() else cell

    pre = table[table["stage"] == "pretrain"]
    samples = pre.groupby("run")["samples_seen"].max()
    inputs = {run: builtin_distinct_inputs({c.removeprefix("task."): value(row[c]) for c in task_columns
                                            if not pd.isna(row[c])})
              for run, row in pre.drop_duplicates("run").set_index("run").iterrows()}
    pre = pre.assign(distinct_inputs=pre["run"].map(lambda run: None if inputs[run] is None else float(inputs[run])
                                                    if inputs[run].bit_length() <= 1024 else math.inf),
                     pretrain_samples=pre["run"].map(samples))
    return pre.assign(passes=[passes(int(s), inputs[run]) for s, run in zip(pre["pretrain_samples"], pre["run"])])


def describe_regime(found: dict[str, Any]) -> str:
    """The regime in words (`rlntp.regime.describe`), with the fewest passes where the runs differ, or that the
    task does not say how many distinct inputs it has."""
    if found.get("passes") is None:
        return "the task does not say how many distinct inputs it has (Task.distinct_inputs)"
    text = describe(found["pretrain_samples"], found["distinct_inputs"])
    runs, fewest = found.get("runs", 1), found.get("fewest_passes")
    if runs > 1 and fewest is not None and format_passes(fewest) != format_passes(found["passes"]):
        text += f"; the most of {runs} pre-training runs, the fewest {format_passes(fewest)}"
    if found.get("unknown"):
        text += f"; {found['unknown']} run(s) whose task does not say its distinct inputs"
    return text


def regime_gate(found: dict[str, Any] | None) -> Verdict | None:
    """The verdict of every claim about generalization in the regime `found` (`regime`), or None where such claims
    are judged by their checks: every pre-training run saw no more samples than its task has distinct inputs, or
    the results record no regime (a plan recipe's). Not evaluated where a run saw more (the memorisation regime)
    or where a run's task does not say how many distinct inputs it has (`Task.distinct_inputs`: override it in a
    task of your own to have such claims judged)."""
    if found is None:
        return None
    if found["passes"] is not None and found["passes"] > MEMORISATION:
        return Verdict(NOT_EVALUATED, f"memorisation regime: {found['text']}; {_JUDGED_ONLY}")
    if found["unknown"]:
        return Verdict(NOT_EVALUATED, f"not evaluated: {found['text']}; {_JUDGED_ONLY}")
    return None


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
