"""Exact accuracies: evaluations count their answers, and a results table's fractions are read back as the exact
counts they are, so that 608 of 640 reaches 0.95 whatever float stored it (issue 36)."""

import pickle
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch

from rlntp.evaluation import decode_stats
from rlntp.exact import Exact, exact_fractions, exact_mean, exact_median, recover, written
from rlntp.experiments.summary import SOLVED, first_solved, samples_to_solve, table_curve
from rlntp.tasks.parity import LONG, SHORT, ParityTask

pytestmark = pytest.mark.unit


def f32(count: int, n: int) -> float:
    """count / n as a float32 mean stores it (a sum that is exact, divided once), read back as a float64."""
    return float(np.float32(count) / np.float32(n))


def test_exactly_95_percent_reaches_solved_and_one_answer_fewer_does_not():
    assert f32(608, 640) < 0.95  # the float32 mean of 608 of 640: 0.9499999881, the bug
    assert Exact(608, 640) >= SOLVED and not Exact(607, 640) >= SOLVED
    assert SOLVED <= Exact(608, 640) and np.float64(SOLVED) <= Exact(608, 640)  # either side, a numpy float too
    assert Exact(96, 640) - 0.1 <= 0.05 and abs(Exact(96, 640) - 0.1) == 0.05  # a config value read as written
    assert not Exact(1, 3) > 1 / 3 and Exact(1, 3) == 1 / 3 and written(1 / 3) == Fraction(1, 3)  # not 0.333...
    margin = 1.5 / 1920**0.5
    assert written(margin) == Fraction(repr(margin))  # a sampling margin: no simpler fraction, its shortest decimal
    assert isinstance(Exact(1, 3) - 0.5, Exact) and isinstance(abs(Exact(1, 3) - 0.5) * 2, Exact)


def test_exact_prints_its_value_rounded_half_up_and_survives_pickling():
    assert f"{Exact(1753, 2000):.3f}" == "0.877" and f"{Exact(608, 640):.0%}" == "95%"
    assert f"{Exact(1, 3):.3f}" == "0.333" and f"{Exact(19, 20)}" == "0.95"
    assert pickle.loads(pickle.dumps(Exact(1, 3))) == Fraction(1, 3)


def test_recovery_from_a_float32_mean_is_the_count_for_every_count():
    for n in (500, 640, 1000, 2000, 2560):
        stored = np.arange(n + 1, dtype=np.float32) / np.float32(n)
        assert [recover(float(value), n) for value in stored] == [Fraction(k, n) for k in range(n + 1)]
    assert recover(0.4999, 20_000) == Fraction(9998, 20_000)  # a float64 mean (the theory's) recovers too
    with pytest.raises(ValueError, match="not a count over the 640 inputs"):
        recover(0.9499, 640)  # 607.94 of 640: not a mean of 640 answers
    with pytest.raises(ValueError, match="not a count"):
        recover(f32(333, 1000), 640)  # the wrong number of inputs
    with pytest.raises(ValueError, match="not a count"):
        recover(0.5, 2**23)  # too many inputs for a float32 to tell the counts apart


def test_means_and_medians_are_exact():
    values = [f32(599, 1000), f32(601, 1000), f32(600, 1000)]
    assert sum(values) / 3 != 0.6  # the float mean misses the value at the band's edge
    assert exact_mean(recover(v, 1000) for v in values) == Fraction(3, 5)
    assert exact_median([Exact(1, 2), Exact(3, 4)]) == Fraction(5, 8) and exact_median([0.2, 0.9, 0.5]) == 0.5
    with pytest.raises(ValueError, match="no values"):
        exact_mean([])


def run_table(greedy_counts: list[int], n: int = 640, counts: bool = False, hist: bool = False) -> pd.DataFrame:
    """One pre-training run's evaluations with `greedy_counts` of `n` right, every 100 steps of 128 samples: its
    accuracies as float32 means, with the counts (`counts`), the length histograms (`hist`) or neither (then n is the
    stage's eval_samples)."""
    steps = np.arange(len(greedy_counts)) * 100
    table = pd.DataFrame({"run": "s0/pre", "stage": "pretrain", "step": steps, "samples_seen": steps * 128,
                          "train.eval_samples": n, "eval/greedy_acc": [f32(k, n) for k in greedy_counts],
                          "eval/sampled_long_frac": [f32(k // 2, n) for k in greedy_counts]})
    if counts:
        table = table.assign(**{"eval/greedy_correct": greedy_counts, "eval/greedy_total": n})
    if hist:
        table["eval/greedy_len_hist"] = [[k, n - k] for k in greedy_counts]
        table["eval/sampled_len_hist"] = [[n, 0] for _ in greedy_counts]
        table["train.eval_samples"] = 10 * n  # the histogram, not the config, says how many were evaluated
    return table


@pytest.mark.parametrize("recorded", ["counts", "histogram", "config"])
def test_a_table_with_counts_and_one_without_read_the_same(recorded):
    counts = [320, 500, 607, 608, 640]
    table = run_table(counts, counts=recorded == "counts", hist=recorded == "histogram")
    exact = exact_fractions(table)
    assert exact["eval/greedy_acc"].tolist() == [Fraction(k, 640) for k in counts]
    assert exact["eval/sampled_long_frac"].tolist() == [Fraction(k // 2, 640) for k in counts]
    assert all(isinstance(v, Exact) for v in exact["eval/greedy_acc"])
    assert exact_fractions(exact)["eval/greedy_acc"].tolist() == exact["eval/greedy_acc"].tolist()  # idempotent
    assert table["eval/greedy_acc"].dtype == float  # the table itself is left as it was


def test_a_table_that_does_not_say_how_many_inputs_or_holds_no_count_is_not_read():
    with pytest.raises(ValueError, match="records no count of the inputs"):
        exact_fractions(run_table([608]).drop(columns="train.eval_samples"))
    dataset = run_table([608]).assign(**{"task.data": "my.jsonl"})  # its test split may hold fewer than eval_samples
    with pytest.raises(ValueError, match="records no count"):
        exact_fractions(dataset)
    with pytest.raises(ValueError, match="eval/greedy_acc of s0/pre at step 0 = 0.9499 is not a count"):
        exact_fractions(run_table([608]).assign(**{"eval/greedy_acc": 0.9499}))
    assert exact_fractions({"seeds": []}) == {"seeds": []}  # a plan recipe's results pass through


@pytest.mark.parametrize("recorded", ["counts", "config"])
def test_first_solved_counts_608_of_640_as_solved(recorded):
    table = run_table([320, 500, 607, 608, 640], counts=recorded == "counts")
    assert first_solved(table) == (3 * 100 * 128, True)
    assert first_solved(run_table([320, 607, 607], counts=recorded == "counts")) == (2 * 100 * 128, False)
    assert table["eval/greedy_acc"].iloc[3] < 0.95  # the float misses it
    curve = table_curve("one seed", table)
    assert curve.greedy_solved.tolist() == [False, False, False, True, True]
    assert samples_to_solve(curve, rl=False) == 3 * 100 * 128


def test_decode_stats_counts_the_answers():
    task = ParityTask(4, 0.5)
    x = task.sample_prompts(640, torch.Generator().manual_seed(0))
    outputs = torch.cat([task.outputs(x[:600], LONG), task.outputs(x[600:], SHORT)])
    outputs[608:, 0] = 1 - outputs[608:, 0]  # the last 32 short answers wrong
    stats = decode_stats(task, x, outputs)
    assert (stats.correct, stats.total) == (608, 640) and isinstance(stats.correct, int)
    assert stats.acc < 0.95 and Exact(stats.correct, stats.total) >= SOLVED
    assert recover(stats.long_frac, stats.total) == Fraction(600, 640)
    row = pd.DataFrame([{f"eval/greedy_{k}": v for k, v in vars(stats).items()} | {"run": "r", "step": 0}])
    assert exact_fractions(row)["eval/greedy_acc"].iloc[0] == Fraction(608, 640)
