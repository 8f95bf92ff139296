"""The claims: the k-of-n verdict by hand, and every recipe's claims on small results tables built here (the
paper's picture, its opposite, and a split between seeds), so each verdict is known before the check runs."""

import sys

import numpy as np
import pandas as pd
import pytest
from sweep_tables import rows, sweep

from rlntp.experiments import provenance, recipes
from rlntp.experiments.claims import (
    APPROX,
    NOT_EVALUATED,
    NOT_REPRODUCED,
    PARTLY,
    REPRODUCED,
    Claim,
    Verdict,
    evaluate,
    grows,
    k_of_n,
    more_often,
    sampling_margin,
)
from rlntp.tasks.parity import ParityTask
from rlntp.theory import closed_forms as cf

pytestmark = pytest.mark.unit


def verdicts(name: str, results) -> list[str]:
    """The verdicts of recipe `name`'s claims on `results`, in order."""
    return [c["verdict"] for c in evaluate(recipes()[name].claims, results)]


def evidence(name: str, results) -> list[str]:
    return [c["evidence"] for c in evaluate(recipes()[name].claims, results)]


# --- the helpers -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("passed, need, expected", [
    ([True], "majority", REPRODUCED),
    ([False], "majority", NOT_REPRODUCED),
    ([True, True, False], "majority", REPRODUCED),
    ([True, False, False], "majority", NOT_REPRODUCED),  # one of three is not partial support (PARTLY_SHARE)
    ([False, False, False], "majority", NOT_REPRODUCED),
    ([True, True, False, False], "majority", PARTLY),  # half is not a majority
    ([True, True, True, False, False], "majority", REPRODUCED),
    ([True, True, False], "all", PARTLY),
    ([True, True, True], "all", REPRODUCED),
    ([True, False, False, False, False], 1, REPRODUCED),
    ([True, False], 3, PARTLY),  # a need above n is never met
    ([True, True, True, False, False, False], "all", PARTLY),  # half: partly
    ([True, True, False, False, False, False], "all", NOT_REPRODUCED),  # fewer than half
])
def test_k_of_n_needs_a_majority_or_what_it_is_told(passed, need, expected):
    outcomes = {f"seed {i}": (ok, f"{0.5 + 0.1 * i:.3f}") for i, ok in enumerate(passed)}
    assert k_of_n(outcomes, need=need).verdict == expected


def test_k_of_n_evidence_lists_every_seed_and_marks_the_failures():
    verdict = k_of_n({"seed 0": (True, "0.493"), "seed 1": (False, "0.612"), "seed 2": (True, "0.488")})
    assert verdict == Verdict(REPRODUCED, "2 of 3 seeds: seed 0 0.493, seed 1 0.612 (fails), seed 2 0.488")
    assert k_of_n({"d = 6": (False, "x")}, unit="values of d").evidence == "0 of 1 values of d: d = 6 x (fails)"
    with pytest.raises(ValueError, match="no seeds"):
        k_of_n({})


def test_sampling_margin_is_three_standard_deviations_at_one_half():
    assert sampling_margin(100) == pytest.approx(3 * 0.5 / 10)
    assert sampling_margin(2500) == pytest.approx(0.03)


def test_grows_decides_only_what_the_bounds_settle():
    exact = {4: (1.0, 1.0, "1"), 6: (2.0, 2.0, "2"), 8: (5.0, 5.0, "5")}
    assert grows(exact).verdict == REPRODUCED
    assert grows({4: (1.0, 1.0, "1"), 6: (0.5, 0.5, "0.5"), 8: (5.0, 5.0, "5")}).verdict == PARTLY
    # 6 -> 8: both lower bounds (not reached), undecided and left out of the count
    bounded = grows({4: (1.0, 1.0, "1"), 6: (3.0, float("inf"), ">3"), 8: (4.0, float("inf"), ">4")})
    assert bounded.verdict == REPRODUCED and "undecided: d = 6 -> 8" in bounded.evidence
    # a lower bound at or below the smaller d's exact value is not growth either way: undecided; above it, growth
    assert grows({6: (3.0, 3.0, "3"), 8: (5.0, float("inf"), ">5")}).verdict == REPRODUCED
    settles_nothing = grows({6: (3.0, float("inf"), ">3"), 8: (2.0, float("inf"), ">2")})
    assert settles_nothing.verdict == NOT_EVALUATED and settles_nothing.evidence.startswith("no step in d is decided")
    with pytest.raises(ValueError, match="two values"):
        grows({6: (3.0, 3.0, "3")})


def test_more_often_is_fishers_exact_test():
    assert more_often(5, 10, 0, 10) == pytest.approx(0.016254, abs=1e-6)  # the textbook one-sided value
    assert more_often(5, 10, 2, 10) == pytest.approx(0.174923, abs=1e-6)
    assert more_often(10, 10, 10, 10) == 1.0 and more_often(0, 10, 5, 10) == 1.0


def test_a_claim_that_cannot_be_checked_is_not_evaluated_and_says_why():
    def broken(table):
        return table["no such column"]

    fine = Claim("the paper says", "a test", lambda results: Verdict(REPRODUCED, "1 of 1 seeds: seed 0 1.000"))
    evaluated = evaluate([Claim("a claim", "its test", broken), fine], pd.DataFrame({"x": [1]}))
    assert evaluated[0] == {"claim": "a claim", "criterion": "its test", "verdict": NOT_EVALUATED,
                            "evidence": "could not be evaluated: KeyError: 'no such column'"}
    assert evaluated[1]["verdict"] == REPRODUCED
    with pytest.raises(ValueError, match="verdict is one of"):
        Verdict("probably", "")


def test_every_recipe_declares_its_claims():
    for name, recipe in recipes().items():
        assert isinstance(recipe.claims, list) and recipe.claims, name
        for claim in recipe.claims:
            assert isinstance(claim, Claim) and claim.claim.strip() and claim.criterion.strip(), (name, claim)
            # no hand-written `paper()` rows of earlier versions (the name is now provenance's `paper`, if any)
            module = sys.modules[claim.check.__module__]
            assert callable(claim.check) and getattr(module, "paper", provenance.paper) is provenance.paper, name


# --- results tables built by hand (tests/sweep_tables.py) ---------------------------------------------------------

def fig1_table(learns: list[bool]) -> pd.DataFrame:
    """d = 12: NTP at chance and short; GRPO from step 1,500 to 100% and length d where `learns[seed]`, at chance
    otherwise; GRPO from step 500 lengthens (median greedy length 1 -> 12) but stays at chance."""
    runs = []
    for seed, learn in enumerate(learns):
        common = {"seed": seed, "task.d": 12}
        runs.append(rows(f"s{seed}/pre", [0.0, 0.5, 0.49, 0.51, 0.5, 0.5], eval_samples=1000,
                             **{"eval/greedy_len_median": 1.0}, **common))
        runs.append(rows(f"s{seed}/from500", [0.5, 0.5, 0.5, 0.5], "posttrain", source_step=500, every=3,
                             **{"eval/greedy_len_median": [1.0, 1.0, 12.0, 12.0],
                                "eval/sampled_long_frac": [0.2, 0.3, 0.4, 0.5]}, **common))
        accs, lengths = ([0.5, 0.8, 1.0, 1.0], [1.0, 1.0, 12.0, 12.0]) if learn else ([0.5] * 4, [1.0] * 4)
        runs.append(rows(f"s{seed}/from1500", accs, "posttrain", source_step=1500, every=3,
                             **{"eval/greedy_len_median": lengths, "eval/sampled_long_frac": 0.25}, **common))
    return sweep(*runs)


def test_fig1_claims():
    assert verdicts("fig1", fig1_table([True, True, True])) == [REPRODUCED] * 4
    assert verdicts("fig1", fig1_table([False, False, False]))[1:3] == [NOT_REPRODUCED] * 2
    assert verdicts("fig1", fig1_table([True, False, False]))[1:3] == [NOT_REPRODUCED] * 2  # 1 of 3: not partly
    assert verdicts("fig1", fig1_table([True, True, False, False]))[1:3] == [PARTLY] * 2  # half
    assert evidence("fig1", fig1_table([True]))[1] == "1 of 1 seeds: seed 0 1.000, length 12 of 12 (from step 1,500)"
    failed_run = fig1_table([True] * 3)  # seed 2's GRPO runs failed before any evaluation: seed 2 fails, not the claim
    failed_run = failed_run[(failed_run["train.seed"] != 2) | (failed_run["stage"] == "pretrain")]
    assert verdicts("fig1", failed_run)[1] == REPRODUCED
    assert "seed 2 could not be evaluated (no GRPO evaluation) (fails)" in evidence("fig1", failed_run)[1]
    learned_by_ntp = fig1_table([True] * 3)
    learned_by_ntp.loc[learned_by_ntp["stage"] == "pretrain", "eval/greedy_acc"] = 1.0
    assert verdicts("fig1", learned_by_ntp)[0] == NOT_REPRODUCED


def f32(count: int, n: int) -> float:
    """count / n as an evaluation's float32 mean stores it: 608 of 640 is 0.9499999881."""
    return float(np.float32(count) / np.float32(n))


def with_counts(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with the counts an evaluation now records beside its greedy accuracy (of its stage's eval_samples)."""
    n = np.where(table["stage"] == "pretrain", table["train.eval_samples"], table["post.eval_samples"])
    return table.assign(**{"eval/greedy_correct": np.round(table["eval/greedy_acc"] * n).astype(int),
                           "eval/greedy_total": n})


@pytest.mark.parametrize("counted", [False, True])
def test_exactly_95_percent_passes_a_check_and_one_answer_fewer_fails(counted):
    def ending_at(count: int) -> pd.DataFrame:  # GRPO from step 1,500 ends at count of 640, its first >= 0.95
        results = fig1_table([True] * 3)
        results.loc[results["run"].str.endswith("from1500"), "eval/greedy_acc"] = [0.5, 0.8, 0.9, f32(count, 640)] * 3
        return with_counts(results) if counted else results

    assert verdicts("fig1", ending_at(608))[1:3] == [REPRODUCED] * 2  # ends >= 0.95; reaches it within 1%
    assert evidence("fig1", ending_at(608))[1].startswith("3 of 3 seeds: seed 0 0.950, length 12 of 12")
    assert verdicts("fig1", ending_at(607))[1:3] == [NOT_REPRODUCED] * 2


@pytest.mark.parametrize("counted", [False, True])
def test_a_mean_of_final_evaluations_at_a_bands_edge_is_within_it(counted):
    def sampled(extra: int) -> pd.DataFrame:  # T = 1 accuracy: the mean of the last 5 is (1 + p)/2 + 0.05 + extra
        results = fig2_table()
        for _, one_run in results.groupby("run"):
            target = round(1000 * ((1 + one_run["task.p_cot"].iloc[0]) / 2 + APPROX))
            counts = [0, target, target - 1, target + 1, target, target, target + 5 * extra]
            results.loc[one_run.index, "eval/sampled_acc"] = [f32(c, 1000) for c in counts]
        return with_counts(results) if counted else results

    assert verdicts("fig2", sampled(0))[2] == REPRODUCED  # 0.6 against 0.55 at p_cot = 0.1: within 0.05
    assert verdicts("fig2", sampled(1))[2] == NOT_REPRODUCED  # one answer more per evaluation: 0.601


P_COTS = [0.1, 0.2, 0.25, 0.3, 0.4, 0.6, 0.75]


def fig2_table(greedy=lambda p, seed: 0.5 if p < 1 / 3 else 1.0, long=lambda p: p, d: int = 12,
               p_cots=None) -> pd.DataFrame:
    """Theorem 1's picture at every p_cot and 3 seeds, unless `greedy` or `long` say otherwise."""
    return sweep(*(rows(f"d{d}/p{p}/s{seed}", [0.0] + [greedy(p, seed)] * 6, seed=seed,
                            **{"task.d": d, "task.p_cot": p, "eval/sampled_acc": [0.0] + [(1 + p) / 2] * 6,
                               "eval/sampled_long_frac": long(p),
                               "eval/greedy_long_frac": 1.0 if greedy(p, seed) == 1.0 else 0.0})
                   for p in p_cots or P_COTS for seed in range(3)))


def test_fig2_claims():
    assert verdicts("fig2", fig2_table()) == [REPRODUCED] * 4
    # p_cot = 0.4 stays at chance in every seed: the threshold sits higher than 1/3 (+ 0.05)
    late = fig2_table(greedy=lambda p, seed: 0.5 if p < 0.5 else 1.0)
    assert verdicts("fig2", late)[:2] == [REPRODUCED, PARTLY]
    # learning below 1/3 in two of three seeds (the median) at 0.25
    early = fig2_table(greedy=lambda p, seed: 1.0 if p > 0.24 and seed else 0.5 if p < 1 / 3 else 1.0)
    assert verdicts("fig2", early)[0] == PARTLY
    # near 1/3 (0.3, 0.35) either way: the paper's unstable region, in neither claim
    assert verdicts("fig2", fig2_table(greedy=lambda p, seed: 1.0 if p > 0.29 else 0.5))[:2] == [REPRODUCED] * 2
    # a third of p_cot, as a count over the 1000 inputs evaluated
    assert verdicts("fig2", fig2_table(long=lambda p: round(p / 3, 3)))[3] == NOT_REPRODUCED


def test_fig2_with_the_papers_two_dimensions_judges_each_and_draws_the_curves_at_the_larger():
    from rlntp.experiments.fig2 import final_values, panel_dims

    # at d = 25, p_cot = 0.25 is learned in two of three seeds; d = 50 follows Theorem 1
    learns_early = fig2_table(d=25, greedy=lambda p, seed: 1.0 if p > 0.24 and seed else 0.5 if p < 1 / 3 else 1.0)
    both = sweep(fig2_table(d=50, p_cots=[0.1, 0.75]), learns_early)
    assert panel_dims(final_values(both)) == (50, 25)
    assert verdicts("fig2", both)[0] == PARTLY
    shown = evidence("fig2", both)[0]
    assert "d = 25, p_cot = 0.25 1.000 (fails)" in shown and "d = 50, p_cot = 0.1 0.500" in shown


def fig3_table(star_hot=(1.0, 0.6, 0.6), failing=()) -> pd.DataFrame:
    """Every (algorithm, reward, temperature) learns parity d = 12 in 3 seeds, except STaR (e2e) at T = 1.5,
    whose greedy accuracy per round is `star_hot`, and the settings in `failing`."""
    runs = []
    for algo in ("star", "reinforce", "grpo"):
        for reward in ("e2e", "cot"):
            for tau in (0.5, 1.0, 1.5):
                for seed in range(3):
                    if (algo, reward, tau) == ("star", "e2e", 1.5):
                        accs, lengths = [0.5, *star_hot], 12.0
                    elif (algo, reward, tau) in failing:
                        accs, lengths = [0.5] * 4, 1.0
                    else:
                        accs, lengths = [0.5, 0.9, 1.0, 1.0], 12.0
                    runs.append(rows(f"{algo}/{reward}/{tau}/s{seed}", accs, "posttrain", seed=seed,
                                         source_step=1000, every=1, **{
                                             "task.d": 12, "post.algo": algo, "post.reward": reward,
                                             "post.temperature": tau, "eval/greedy_len_median": lengths}))
    at_tau = rows("grpo-at-tau", [0.5] * 4, "posttrain", source_step=1000, **{
        "task.d": 12, "post.algo": "grpo", "post.reward": "e2e", "post.temperature": 1.5,
        "post.logprobs_at_tau": True, "eval/greedy_len_median": 1.0})
    return sweep(*runs, at_tau)  # a run with log-probabilities at tau, which the paper's claims leave out


def test_fig3_claims():
    assert verdicts("fig3", fig3_table()) == [REPRODUCED, REPRODUCED]
    assert verdicts("fig3", fig3_table(star_hot=(0.9, 1.0, 1.0))) == [REPRODUCED, NOT_REPRODUCED]
    robust, _ = verdicts("fig3", fig3_table(failing={("grpo", "cot", 0.5)}))
    assert robust == PARTLY
    assert "16 of 17 settings" in evidence("fig3", fig3_table(failing={("grpo", "cot", 0.5)}))[0]


def arch_table(unstable: dict[str, int], ntp=0.5, rl=1.0) -> pd.DataFrame:
    """GPT-2 and Mistral at depth 2 and 4, 3 seeds each: NTP ends at `ntp`, GRPO at `rl`; the first
    `unstable[arch]` seeds of each architecture see their T = 1 accuracy fall by 0.2 in pre-training."""
    runs = []
    for arch in ("gpt2", "mistral"):
        for layers in (2, 4):
            for seed in range(3):
                model = {"model.arch": arch, "model.layers": layers, "model.width": 64, "model.heads": 4}
                sampled = [0.5, 0.62, 0.42, 0.62] if seed < unstable[arch] else [0.5, 0.6, 0.62, 0.61]
                runs.append(rows(f"{arch}{layers}/s{seed}", [0.0, 0.5, 0.5, ntp], seed=seed, **model, **{
                    "eval/sampled_acc": sampled, "eval/sampled_long_frac": 0.25}))
                runs.append(rows(f"{arch}{layers}/s{seed}/grpo", [0.5, 0.8, rl], "posttrain", seed=seed,
                                     source_step=300, **model, **{"eval/greedy_len_median": 10.0}))
    return sweep(*runs)


def test_arch_claims():
    assert verdicts("arch", arch_table({"gpt2": 0, "mistral": 2})) == [REPRODUCED] * 3
    assert verdicts("arch", arch_table({"gpt2": 2, "mistral": 2}, ntp=1.0, rl=0.5)) == [NOT_REPRODUCED] * 3
    assert "Mistral 4 of 6, GPT-2 0 of 6" in evidence("arch", arch_table({"gpt2": 0, "mistral": 2}))[2]


def rare_table(success, seeds: int = 5) -> pd.DataFrame:
    """p_cot 0.1 and 0.15, RL from steps 1,000 and 4,000, 3 algorithms x 3 temperatures x `seeds` seeds; a run ends
    at 100% where `success(p_cot, step, algo, tau, seed)`, at chance otherwise."""
    runs = []
    for p in (0.1, 0.15):
        for step in (1000, 4000):
            for algo in ("star", "reinforce", "grpo"):
                for tau in (0.5, 1.0, 1.5):
                    for seed in range(seeds):
                        final = 1.0 if success(p, step, algo, tau, seed) else 0.5
                        runs.append(rows(f"{p}/{step}/{algo}/{tau}/s{seed}", [0.5, 0.7, final], "posttrain",
                                             seed=seed, source_step=step, **{
                                                 "task.p_cot": p, "post.algo": algo, "post.temperature": tau,
                                                 "eval/sampled_long_frac": p, "eval/greedy_len_median": 8.0}))
    return sweep(*runs)


def test_rare_claims():
    def paper(p, step, algo, tau, seed):  # Figs. 9-11
        return p == 0.15 or (step == 4000 and tau <= 1)

    assert verdicts("rare", rare_table(paper)) == [REPRODUCED] * 3
    # 3 seeds: the seed is the unit of Fig. 11's test, and even 0 of 3 -> 3 of 3 gives Fisher p = 1/20, not below
    # 0.05: no outcome could be a finding, so the claim is not evaluated and says why
    three = evaluate(recipes()["rare"].claims, rare_table(paper, seeds=3))[2]
    assert three["verdict"] == "not evaluated" and "can never differ significantly" in three["evidence"]
    assert verdicts("rare", rare_table(lambda *_: True))[1:] == [NOT_REPRODUCED] * 2
    # STaR fails at the larger p_cot from the early checkpoint: one of three algorithms short
    assert verdicts("rare", rare_table(lambda p, step, algo, tau, seed: paper(p, step, algo, tau, seed)
                                       and not (algo == "star" and step == 1000)))[0] == PARTLY


def small_d_table(reach: dict[int, list[int | None]]) -> pd.DataFrame:
    """Pre-training at each d of `reach`, one seed per entry: at chance until evaluation `reach[d][seed]`, then
    100% (None: never, within 10 evaluations)."""
    runs = []
    for d, evaluations in reach.items():
        for seed, hit in enumerate(evaluations):
            accs = [0.0] + [0.5] * 9 if hit is None else [0.0] + [0.5] * (hit - 1) + [1.0] * (10 - hit)
            runs.append(rows(f"d{d}/s{seed}", accs, seed=seed, **{"task.d": d, "task.p_cot": 0.25,
                                                                       "eval/greedy_len_median": 1.0}))
    return sweep(*runs)


def test_small_d_claims():
    assert verdicts("small-d", small_d_table({6: [3, 4, 5], 7: [8, None, None]})) == [REPRODUCED, REPRODUCED]
    assert verdicts("small-d", small_d_table({6: [5, 6, 7], 7: [2, 3, 3]}))[1] == NOT_REPRODUCED
    assert verdicts("small-d", small_d_table({6: [3, None, None], 7: [None, None, None]}))[0] == PARTLY
    # learned at the first evaluation after initialization: no wait at chance, not the paper's picture
    assert verdicts("small-d", small_d_table({6: [1, 1, 1], 7: [1, 1, 1]}))[0] == NOT_REPRODUCED


def test_small_d_growth_needs_more_than_one_evaluation_interval():
    # a wait is only known between the evaluation before the hit and the hit: one evaluation later at the larger d
    # leaves the two intervals touching, which `grows` leaves undecided; two later settles it
    one_later = evidence("small-d", small_d_table({6: [3, 4, 5], 7: [4, 5, 6], 8: [6, 7, 8]}))[1]
    assert "d = 7 -> 8" in one_later and "undecided: d = 6 -> 7" in one_later
    assert verdicts("small-d", small_d_table({6: [3, 4, 5], 7: [4, 5, 6]})) == [REPRODUCED, NOT_EVALUATED]


def fig13_table(ntp: dict[int, int | None], rl: dict[int, int | None]) -> pd.DataFrame:
    """Per d, 3 seeds: NTP alone reaches 100% at evaluation `ntp[d]` (None: never in 10), and GRPO from step 200
    at its evaluation `rl[d]` (None: never in 5)."""
    runs = []
    for d in ntp:
        for seed in range(3):
            pre = [0.5] * 10 if ntp[d] is None else [0.5] * ntp[d] + [1.0] * (10 - ntp[d])
            post = [0.5] * 5 if rl[d] is None else [0.5] * rl[d] + [1.0] * (5 - rl[d])
            common = {"seed": seed, "task.d": d}
            runs.append(rows(f"d{d}/s{seed}", pre, **common))
            runs.append(rows(f"d{d}/s{seed}/grpo", post, "posttrain", source_step=200, **common))
    return sweep(*runs)


def test_fig13_claims():
    assert verdicts("fig13", fig13_table({4: 1, 6: 4, 8: None}, {4: 1, 6: 1, 8: 2})) == [REPRODUCED] * 2
    assert verdicts("fig13", fig13_table({4: 5, 6: 3, 8: 2}, {4: 1, 6: 1, 8: 1}))[1] == NOT_REPRODUCED
    rl_fails = fig13_table({4: 1, 6: 4, 8: None}, {4: 1, 6: 1, 8: None})
    assert verdicts("fig13", rl_fails)[0] == PARTLY
    assert "undecided: d = 6 -> 8" in evidence("fig13", rl_fails)[1]
    # NTP alone one evaluation later at the larger d, GRPO unchanged: the ratios' bounds overlap
    assert "undecided: d = 4 -> 6" in evidence("fig13", fig13_table({4: 2, 6: 3, 8: 6}, {4: 1, 6: 1, 8: 1}))[1]


def test_fig13_bounds_come_from_the_ladder_runs_that_got_there():
    from rlntp.experiments import fig13

    common = {"seed": 0, "task.d": 6}
    table = sweep(rows("pre", [0.5] * 10, **common),  # NTP alone never: a lower bound at its last evaluation
                  rows("g200", [0.5, 0.5, 0.5, 1.0], "posttrain", source_step=200, **common),  # there at step 300
                  rows("g500", [1.0] * 4, "posttrain", source_step=500, **common),  # there at once
                  rows("g100", [0.5] * 4, "posttrain", source_step=100, **common))  # never: no bound of its own
    seed = fig13.per_seed(table).iloc[0]
    assert (seed["ntp_low"], seed["ntp_high"]) == (900 * 128, float("inf"))
    # the fewest: from 200, between its evaluations at steps 200 and 300 (its low) and at step 300 (its high), and
    # from 500 exactly at its checkpoint; g100's last evaluation (12,800 + 192) is no lower bound of the best
    assert (seed["rl_low"], seed["rl_high"]) == (200 * 128 + 200 * 64, 200 * 128 + 300 * 64)
    assert seed["rl_reached"] and seed["rl"] == 200 * 128 + 300 * 64


def test_samples_to_solve_are_known_within_one_evaluation_interval():
    from rlntp.experiments.summary import first_solved, quantile_within, reached_within, solved_within

    reached, never, at_once = (rows(name, accs) for name, accs in (("a", [0.5, 0.5, 1.0]), ("b", [0.5] * 3),
                                                                   ("c", [1.0, 1.0, 1.0])))
    assert solved_within(reached) == tuple(float(x) for x in reached["samples_seen"].iloc[1:3])
    assert reached["samples_seen"].iloc[1] < reached["samples_seen"].iloc[2]
    assert solved_within(never) == (float(never["samples_seen"].iloc[-1]), float("inf"))
    assert solved_within(at_once)[0] == solved_within(at_once)[1]
    assert quantile_within([1, 5, 3], [2, float("inf"), 4], 0.5) == (3, 4)
    # the bounds read as `first_solved` reads a run: the first hit and True, or the last evaluation and False
    for run in (reached, never, at_once):
        assert reached_within(*solved_within(run)) == first_solved(run)


def _hist(task: ParityTask, long: float = 0, medium: float = 0, short: float = 0) -> list[float]:
    """A length histogram: how many answers of each length."""
    hist = np.zeros(task.d + 2)
    hist[task.long_len], hist[task.medium_len], hist[1] = long, medium, short
    return list(hist)


def partial_cot_table(stairs: list[float], early_e2e=(1.0, "long"), late_length=(1.0, "medium"),
                      early_length=(0.5, "short")) -> pd.DataFrame:
    """d = 8, p_cot 0.1, p_medium 0.2, 3 seeds: pre-training's T = 1 accuracy per evaluation `stairs`; GRPO
    from steps 1,000 and 4,000 with each reward ends at (greedy accuracy, the length of every greedy answer)."""
    task = ParityTask(8, 0.1, 0.2)
    config = {"task.d": 8, "task.p_cot": 0.1, "task.p_medium": 0.2}
    ends = {(1000, "e2e"): early_e2e, (4000, "e2e"): (1.0, "long and medium"), (4000, "length"): late_length,
            (1000, "length"): early_length}
    runs = []
    for seed in range(3):
        runs.append(rows(f"s{seed}", [0.5] * len(stairs), seed=seed, **config, **{
            "eval/sampled_acc": stairs, "train.eval_samples": 2000}))
        for (step, reward), (acc, length) in ends.items():
            fractions = {"long and medium": {"long": 0.5, "medium": 0.5}}.get(length, {length: 1.0})
            hists = [_hist(task, short=640), _hist(task, **{k: 640 * f for k, f in fractions.items()})]
            runs.append(rows(f"s{seed}/{reward}/{step}", [0.5, acc], "posttrain", seed=seed, source_step=step,
                                 **config, **{"post.reward": reward, "eval/greedy_len_hist": hists}))
    return sweep(*runs)


def test_partial_cot_claims():
    stairs = [0.0, 0.5, 0.51, 0.55, 0.56, 0.65, 0.64]
    assert verdicts("partial-cot", partial_cot_table(stairs)) == [REPRODUCED] * 5
    stuck = partial_cot_table([0.0, 0.5, 0.5, 0.55, 0.55, 0.56], early_e2e=(1.0, "medium"), late_length=(1.0, "long"),
                              early_length=(1.0, "medium"))
    assert verdicts("partial-cot", stuck) == [NOT_REPRODUCED, NOT_REPRODUCED, REPRODUCED, NOT_REPRODUCED,
                                              NOT_REPRODUCED]
    assert "0.650 ± " in evidence("partial-cot", stuck)[0] and "not held after" in evidence("partial-cot", stuck)[0]
    once = partial_cot_table([0.0, 0.5, 0.5, 0.55, 0.65, 0.65])  # 0.55 touched once: not a step of the staircase
    assert verdicts("partial-cot", once)[0] == NOT_REPRODUCED


def star_odds_table(p0s: list[float], follows: bool = True) -> pd.DataFrame:
    """STaR rounds 0..6 per seed (p_0 = `p0s[seed]`): the long fraction on Theorem 2's recursion (or stuck at
    p_0), greedy decoding long and correct once it exceeds 1/3."""
    runs = []
    for seed, p0 in enumerate(p0s):
        long = [round(640 * (cf.star_long_frac(p0, t) if follows else p0)) / 640 for t in range(7)]  # of 640 inputs
        greedy_long = [1.0 if p > 1 / 3 else 0.0 for p in long]
        runs.append(rows(f"s{seed}/star", [0.5 + g / 2 for g in greedy_long], "posttrain", seed=seed,
                             source_step=2000, every=1, **{"eval/sampled_long_frac": long, "eval/sampled_acc": 0.6,
                                                           "eval/greedy_long_frac": greedy_long}))
    return sweep(*runs)


def test_star_odds_claims():
    assert verdicts("star-odds", star_odds_table([0.15, 0.14, 0.16])) == [REPRODUCED] * 2
    assert verdicts("star-odds", star_odds_table([0.15, 0.14, 0.16], follows=False)) == [NOT_REPRODUCED] * 2
    mixed = sweep(star_odds_table([0.15]), star_odds_table([0.15, 0.14], follows=False).query("`train.seed` == 1"))
    assert verdicts("star-odds", mixed) == [PARTLY] * 2


def theory_results(greedy=cf.greedy_accuracy, seeds: int = 3) -> dict:
    """The simulations' measurements exactly as the closed forms predict, unless `greedy` says otherwise."""
    pretrain = [{"p_cot": p, "greedy_acc": greedy(p), "long_correct_prob": p, "short_correct_prob": (1 - p) / 2}
                for p in (0.1, 0.25, 0.3, 0.4, 0.6)]
    star = [{"p_cot": p, "rounds": [{"round": t, "long_frac": round(20_000 * cf.star_long_frac(p, t)) / 20_000,
                                     "long_frac_predicted": cf.star_long_frac(p, t),
                                     "greedy_acc": cf.greedy_accuracy(cf.star_long_frac(p, t)),
                                     "greedy_acc_predicted": cf.greedy_accuracy(cf.star_long_frac(p, t))}
                                    for t in range(8)]} for p in (0.05, 0.1, 0.25)]
    one = {"d": 20, "eval_samples": 20_000, "theorem1": pretrain, "theorem2": star}
    return {"seeds": [one | {"seed": seed} for seed in range(seeds)]}


def test_theory_claims():
    assert verdicts("theory", theory_results()) == [REPRODUCED] * 4
    assert verdicts("theory", theory_results(greedy=lambda p: 1.0 if p > 0.2 else 0.5))[0] == PARTLY
    split = theory_results()
    split["seeds"][1] = theory_results(greedy=lambda p: 0.5)["seeds"][1]  # one seed of 3 never learns: a majority
    assert verdicts("theory", split)[0] == REPRODUCED and "seed 1 [partly" in evidence("theory", split)[0]
    assert verdicts("theory", {"theorem1": []})[0] == NOT_EVALUATED  # an incomplete file: evaluated, never raised


def mult_table(full_cot: bool = True) -> pd.DataFrame:
    """3x3, 3 seeds: at p_cot = 0.25 greedy near 0 in pre-training; GRPO from step 1,000 (T = 1 accuracy 0.02: the
    trace not learned) stays at 0, from step 5,000 (T = 1 0.25: learned) rises to 0.9 with longer answers; at
    p_cot = 1 pre-training learns."""
    runs = []
    for seed in range(3):
        common = {"seed": seed, "task.digits": 3}
        pre = rows(f"p0.25/s{seed}", [0.0, 0.0, 0.01, 0.0], every=1000, **common, **{"task.p_cot": 0.25})
        runs.append(pre)
        for step, sampled, final in ((1000, 0.02, 0.0), (5000, 0.25, 0.9)):
            runs.append(rows(f"p0.25/s{seed}/from{step}", [0.0, final / 2, final], "posttrain", source_step=step,
                                 every=10, **common, **{"task.p_cot": 0.25, "eval/sampled_acc": [sampled, 0.3, 0.5],
                                                        "eval/greedy_len_mean": [10.0, 15.0 if final else 10.0, 20.0
                                                                                 if final else 10.0],
                                                        "post.eval_samples": 500}))
        if full_cot:
            runs.append(rows(f"p1/s{seed}", [0.0, 0.6, 0.97], every=500, **common, **{"task.p_cot": 1.0}))
    return sweep(*runs)


def test_mult_claims():
    assert verdicts("mult", mult_table()) == [REPRODUCED] * 4
    no_control = evaluate(recipes()["mult"].claims, mult_table(full_cot=False))[1]
    assert no_control["verdict"] == NOT_EVALUATED and "no pre-training run at p_cot = 1" in no_control["evidence"]


def llm_results(tiny: bool = False, grpo_final: float = 0.62, far_final: float = 0.4, model: str = "3B") -> dict:
    """SFT at p_cot 0.25 saturates at 0.31, at p_cot 1 reaches 0.62 (1,000 test questions); GRPO from epochs 1 and
    3 ends at `grpo_final` with longer responses; of 256 responses, 0.05 of the SFT checkpoint's are far from the
    SFT data and `far_final` of the last GRPO checkpoint's."""
    rows = [{"model": model, "stage": "sft", "p_cot": p, "epoch": e, "step": 0, "accuracy": a, "mean_length": length,
             "length_se": 2.0, "questions": 1000, "responses": 1000}
            for p, accs, length in ((0.25, (0.2, 0.3, 0.31), 40.0), (1.0, (0.5, 0.6, 0.62), 200.0))
            for e, a in enumerate(accs, 1)]
    rows += [{"model": model, "stage": "grpo", "p_cot": 0.25, "epoch": e, "step": s, "mean_length": 60.0 * s,
              "length_se": 2.0,
              "accuracy": grpo_final if s == 4 else 0.4, "questions": 1000, "responses": 1000}
             for e in (1, 3) for s in (2, 4)]
    analysis = [{"model": model, "p_cot": 0.25, "epoch": e, "steps": [
        {"step": s, "responses": 256, "far_frac": far} for s, far in ((0, 0.05), (2, 0.1), (4, far_final))]}
        for e in (1, 3)]
    return {"tiny": tiny, "rows": rows, "analysis": analysis}


@pytest.mark.parametrize("name", ["gsm8k", "math"])
def test_llm_claims(name):
    assert verdicts(name, llm_results()) == [REPRODUCED] * 4
    assert verdicts(name, llm_results(grpo_final=0.45))[1] == NOT_REPRODUCED
    assert verdicts(name, llm_results(far_final=0.1))[3] == NOT_REPRODUCED  # within 3 sd of the SFT model's 0.05
    tiny = evaluate(recipes()[name].claims, llm_results(tiny=True))
    assert [c["verdict"] for c in tiny] == ["not evaluated"] * 4  # the tiny preset never judges the paper
    assert all(c["evidence"].startswith("wiring only: ") and "the check found: reproduced" in c["evidence"]
               for c in tiny)


def test_llm_accuracy_claims_are_not_evaluated_at_floor():
    """A model at floor (the full chain-of-thought baseline within the sampling margin of 0) can neither stay below
    the baseline nor fail to reach it: both accuracy claims say so, with the numbers; the length claim is judged."""
    results = llm_results()
    for row in results["rows"]:
        row["accuracy"] = 0.0 if row["p_cot"] == 0.25 else 0.02
        row["questions"] = row["responses"] = 50
    claims = evaluate(recipes()["gsm8k"].claims, results)
    assert [c["verdict"] for c in claims] == [NOT_EVALUATED, NOT_EVALUATED, REPRODUCED, REPRODUCED]
    assert all(c["evidence"].startswith("accuracy at floor: the full chain-of-thought baseline's best accuracy 0.020 ")
               and "margin 0.300" in c["evidence"] for c in claims[:2])


def test_llm_length_claim_needs_a_rise_beyond_three_standard_errors():
    results = llm_results()
    for row in results["rows"]:
        if row["stage"] == "grpo":
            row["mean_length"] = 48.0  # from 40: within 3 * sqrt(2^2 + 2^2) = 8.5 tokens of no change
    claim = evaluate(recipes()["gsm8k"].claims, results)[2]
    assert claim["verdict"] == NOT_REPRODUCED and "40.0 -> 48.0 tokens (margin 8.5)" in claim["evidence"]
    for row in results["rows"]:
        row.pop("length_se", None)
    claim = evaluate(recipes()["gsm8k"].claims, results)[2]
    for row in results["rows"]:
        row.pop("length_se", None)
    claim = evaluate(recipes()["gsm8k"].claims, results)[2]
    assert claim["verdict"] == NOT_EVALUATED and "no length_se" in claim["evidence"]


def test_llm_claims_judge_each_model_and_hold_when_every_one_does():
    both, one = llm_results(model="3B"), llm_results(model="8B", grpo_final=0.45)
    merged = {"tiny": False, "rows": both["rows"] + one["rows"], "analysis": both["analysis"] + one["analysis"]}
    claims = evaluate(recipes()["math"].claims, merged)
    assert [c["verdict"] for c in claims] == [REPRODUCED, PARTLY, REPRODUCED, REPRODUCED]
    assert claims[1]["evidence"].startswith("1 of 2 models: 3B [reproduced") and "8B [not reproduced" in claims[1][
        "evidence"]
