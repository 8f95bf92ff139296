"""Criteria that can fail: every claim of every recipe, judged on a small results table built here, comes out
*reproduced* on the paper's picture (a positive control) and *not reproduced* on a plausible failure of the claim (a
negative control: a model at chance, a memorised short-answer model, a length that rises and falls back, STaR that
stays short ...). One table of (recipe, claim, control) cases; a claim without both controls fails the suite. And
every tolerance is smaller than the effect it measures at every setting a preset judges."""

from itertools import pairwise

import pytest
from sweep_tables import run, sweep

from rlntp.experiments import recipes
from rlntp.experiments.claims import (
    APPROX,
    NOT_REPRODUCED,
    PARTLY,
    REPRODUCED,
    Verdict,
    combine,
    discernible,
    partly_needs,
    sampling_margin,
    significant,
)
from rlntp.experiments.summary import SOLVED
from rlntp.tasks.parity import ParityTask
from rlntp.theory import closed_forms as cf

pytestmark = pytest.mark.unit

SEEDS = 3


# --- the recipes' results, built from what each seed (or setting) does ----------------------------------------------

def fig1(ntp=(0.5, 1), early=([0.5] * 4, [1, 6, 12, 12]), late=([0.5, 0.9, 1.0, 1.0], [1, 12, 12, 12]),
         rl_every: int = 3) -> object:
    """d = 12: NTP's last evaluations at greedy accuracy ntp[0] with median length ntp[1]; GRPO from step 300 with
    (greedy accuracy, median length) per evaluation `early`, from step 1,500 `late`; every seed alike."""
    runs = []
    for seed in range(SEEDS):
        config = {"task.d": 12}
        runs.append(run(f"s{seed}/pre", [0.0, 0.5] + [ntp[0]] * 3, seed=seed, config=config,
                        length=[1, 1] + [ntp[1]] * 3))
        for step, (greedy, length) in ((300, early), (1500, late)):
            runs.append(run(f"s{seed}/from{step}", greedy, "posttrain", seed=seed, source_step=step, every=rl_every,
                            config=config, length=length))
    return sweep(*runs)


FIG2_P_COTS = [0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.6, 0.75]  # the cpu preset's


def fig2(greedy=lambda p: 0.5 if p < 1 / 3 else 1.0, sampled=lambda p: (1 + p) / 2, long=lambda p: p):
    """d = 18 at the cpu preset's p_cot: each run's last 6 evaluations at greedy accuracy `greedy(p)` (greedy answers
    long where it is 1), T = 1 accuracy `sampled(p)` and T = 1 long fraction `long(p)`."""
    return sweep(*(run(f"p{p}/s{seed}", [0.0] + [greedy(p)] * 6, seed=seed,
                       config={"task.d": 18, "task.p_cot": p}, sampled=[0.0] + [sampled(p)] * 6, long=long(p),
                       greedy_long=1.0 if greedy(p) == 1.0 else 0.0)
                   for p in FIG2_P_COTS for seed in range(SEEDS)))


def fig3(end=lambda algo, reward, tau: ([0.5, 0.9, 1.0, 1.0], 12), star_hot=(0.5, 1.0, 0.6, 0.6)):
    """d = 12, 3 algorithms x 2 rewards x 3 temperatures from one checkpoint: each run's greedy accuracy per round
    and its final median length `end(...)`; STaR with the end-to-end reward at T = 1.5 per round `star_hot`."""
    runs = []
    for algo in ("star", "reinforce", "grpo"):
        for reward in ("e2e", "cot"):
            for tau in (0.5, 1.0, 1.5):
                greedy, length = (star_hot, 12) if (algo, reward, tau) == ("star", "e2e", 1.5) else \
                    end(algo, reward, tau)
                runs += [run(f"{algo}/{reward}/{tau}/s{seed}", greedy, "posttrain", seed=seed, source_step=1000,
                             every=1, config={"task.d": 12, "post.algo": algo, "post.reward": reward,
                                              "post.temperature": tau}, length=length) for seed in range(SEEDS)]
    return sweep(*runs)


def arch(ntp=0.5, rl=1.0, unstable=None):
    """GPT-2 and Mistral at depth 2 and 4, 3 seeds: pre-training ends at greedy `ntp`, GRPO at `rl`; the first
    `unstable[arch]` seeds of each shape see their T = 1 accuracy fall by 0.2 during pre-training."""
    unstable = unstable or {"gpt2": 0, "mistral": 3}
    runs = []
    for name in ("gpt2", "mistral"):
        for layers in (2, 4):
            for seed in range(SEEDS):
                model = {"model.arch": name, "model.layers": layers, "model.width": 64, "model.heads": 4}
                sampled = [0.5, 0.62, 0.42, 0.62] if seed < unstable[name] else [0.5, 0.6, 0.62, 0.61]
                runs.append(run(f"{name}{layers}/s{seed}", [0.0, 0.5, 0.5, ntp], seed=seed, config=model,
                                sampled=sampled, long=0.25))
                runs.append(run(f"{name}{layers}/s{seed}/grpo", [0.5, 0.8, rl], "posttrain", seed=seed,
                                source_step=300, config=model, length=10.0))
    return sweep(*runs)


def rare(solves, seeds: int = 5):
    """The cpu preset's shape: p_cot 0.1 and 0.15, RL from steps 2,000 and 4,000, 3 algorithms x 3 temperatures x
    5 seeds; a run ends at 100% where `solves(p_cot, step, tau, seed)`, at chance otherwise."""
    return sweep(*(run(f"{p}/{step}/{algo}/{tau}/s{seed}", [0.5, 0.7, 1.0 if solves(p, step, tau, seed) else 0.5],
                       "posttrain", seed=seed, source_step=step,
                       config={"task.p_cot": p, "post.algo": algo, "post.temperature": tau}, long=p, length=12.0)
                   for p in (0.1, 0.15) for step in (2000, 4000) for algo in ("star", "reinforce", "grpo")
                   for tau in (0.5, 1.0, 1.5) for seed in range(seeds)))


def paper_rare(p, step, tau, seed):
    """Figs. 9-11: the larger p_cot learns from either checkpoint; the smaller only from the later one at T <= 1."""
    return p == 0.15 or (step == 4000 and tau <= 1)


def small_d(reach: dict[int, list[int | None]]):
    """Pre-training at each d of `reach`, a seed per entry: at chance until evaluation `reach[d][seed]`, 100% from
    there (None: never in 10 evaluations)."""
    return sweep(*(run(f"d{d}/s{seed}", [0.0] + [0.5] * 9 if hit is None else [0.0] + [0.5] * (hit - 1)
                       + [1.0] * (10 - hit), seed=seed, config={"task.d": d, "task.p_cot": 0.25}, length=1.0)
                   for d, hits in reach.items() for seed, hit in enumerate(hits)))


def fig13(ntp: dict[int, int | None], rl: dict[int, int | None]):
    """Per d, 3 seeds: NTP alone reaches 100% at evaluation `ntp[d]` (None: never in 10), GRPO from step 200 at its
    evaluation `rl[d]` (None: never in 5)."""
    runs = []
    for d, hit in ntp.items():
        for seed in range(SEEDS):
            pre = [0.5] * 10 if hit is None else [0.5] * hit + [1.0] * (10 - hit)
            post = [0.5] * 5 if rl[d] is None else [0.5] * rl[d] + [1.0] * (5 - rl[d])
            runs.append(run(f"d{d}/s{seed}", pre, seed=seed, config={"task.d": d}))
            runs.append(run(f"d{d}/s{seed}/grpo", post, "posttrain", seed=seed, source_step=200, config={"task.d": d}))
    return sweep(*runs)


STAIRS = [0.0, 0.5, 0.51, 0.55, 0.56, 0.65, 0.64]
"""T = 1 accuracy in pre-training at d = 8, p_cot 0.1, p_medium 0.2: 1/2, then 0.55, then 0.65 (Fig. 14)."""


def partial_cot(stairs=STAIRS, early_e2e=(1.0, "long"), late_e2e=(1.0, "long and medium"),
                late_length=(1.0, "medium"), early_length=(0.5, "short")):
    """d = 8, p_cot 0.1, p_medium 0.2, 3 seeds: pre-training's T = 1 accuracy per evaluation `stairs`; GRPO from
    steps 1,000 and 4,000 with each reward ends at (greedy accuracy, the length of its greedy answers)."""
    task, config = ParityTask(8, 0.1, 0.2), {"task.d": 8, "task.p_cot": 0.1, "task.p_medium": 0.2}

    def hist(lengths: str) -> list[float]:
        named = {"long": task.long_len, "medium": task.medium_len, "short": 1}
        shares = {named[part]: 1 / len(lengths.split(" and ")) for part in lengths.split(" and ")}
        return [shares.get(length, 0.0) for length in range(task.d + 2)]

    ends = {(1000, "e2e"): early_e2e, (4000, "e2e"): late_e2e, (4000, "length"): late_length,
            (1000, "length"): early_length}
    runs = []
    for seed in range(SEEDS):
        runs.append(run(f"s{seed}", [0.5] * len(stairs), seed=seed, config=config | {"train.eval_samples": 2000},
                        sampled=stairs))
        runs += [run(f"s{seed}/{reward}/{step}", [0.5, acc], "posttrain", seed=seed, source_step=step,
                     config=config | {"post.reward": reward}, hist=[hist("short"), hist(lengths)])
                 for (step, reward), (acc, lengths) in ends.items()]
    return sweep(*runs)


def star_odds(long=lambda p0, t: cf.star_long_frac(p0, t), greedy_long=None, p0s=(0.15, 0.14, 0.16)):
    """STaR rounds 0..6 per seed from p_0 = `p0s[seed]`: T = 1 long fraction `long(p_0, t)`; greedy decoding long
    (and right) where `greedy_long(p_t)`, by default once the long fraction exceeds 1/3."""
    greedy_long = greedy_long or (lambda p: p > 1 / 3)
    runs = []
    for seed, p0 in enumerate(p0s):
        fractions = [long(p0, t) for t in range(7)]
        turned = [1.0 if greedy_long(p) else 0.0 for p in fractions]
        runs.append(run(f"s{seed}/star", [0.5 + g / 2 for g in turned], "posttrain", seed=seed, source_step=2000,
                        every=1, long=fractions, sampled=0.6, greedy_long=turned))
    return sweep(*runs)


def theory(greedy=cf.greedy_accuracy, long=lambda p: p, short=cf.short_correct_prob,
           star=lambda p, t: cf.star_long_frac(p, t), star_greedy=lambda p: cf.greedy_accuracy(p)):
    """What the theory recipe's `run` returns for 3 seeds: Theorem 1 at five p_cot (greedy accuracy `greedy(p)`,
    probabilities of the long and the short correct answer `long(p)`, `short(p)`) and Theorem 2's STaR rounds
    0..7 at three (long fraction `star(p, t)`, greedy accuracy `star_greedy` of it), beside the closed forms."""
    pretrain = [{"p_cot": p, "greedy_acc": greedy(p), "long_correct_prob": long(p), "short_correct_prob": short(p)}
                for p in (0.1, 0.25, 0.3, 0.4, 0.6)]
    def counted(value: float) -> float:  # a fraction of the 20,000 inputs evaluated, as a run measures it
        return round(20_000 * value) / 20_000

    rounds = [{"p_cot": p, "rounds": [{"round": t, "long_frac": counted(star(p, t)),
                                       "long_frac_predicted": cf.star_long_frac(p, t),
                                       "greedy_acc": counted(star_greedy(star(p, t))),
                                       "greedy_acc_predicted": cf.greedy_accuracy(cf.star_long_frac(p, t))}
                                      for t in range(8)]} for p in (0.05, 0.1, 0.25)]
    return {"seeds": [{"seed": seed, "d": 20, "eval_samples": 20_000, "theorem1": pretrain, "theorem2": rounds}
                      for seed in range(SEEDS)]}


def mult(small=0.01, full=0.97, learned_end=(0.9, 20.0), unlearned_end=0.0):
    """3x3, 3 seeds: at p_cot = 0.25 pre-training's greedy accuracy peaks at `small`; GRPO from step 5,000 (T = 1
    accuracy 0.25 at its start: the trace learned) ends at (greedy accuracy, mean length) `learned_end` from 0.0 and
    10 tokens, from step 1,000 (T = 1 0.02: not learned) at greedy `unlearned_end`; at p_cot = 1 pre-training ends at
    `full`."""
    runs = []
    for seed in range(SEEDS):
        config = {"task.digits": 3, "task.p_cot": 0.25}
        runs.append(run(f"p0.25/s{seed}", [0.0, small, 0.0], seed=seed, every=1000, config=config))
        runs.append(run(f"p0.25/s{seed}/from5000", [0.0, learned_end[0] / 2, learned_end[0]], "posttrain", seed=seed,
                        source_step=5000, every=10, config=config | {"post.eval_samples": 500},
                        sampled=[0.25, 0.3, 0.5], mean_length=[10.0, 15.0, learned_end[1]]))
        runs.append(run(f"p0.25/s{seed}/from1000", [0.0, unlearned_end / 2, unlearned_end], "posttrain", seed=seed,
                        source_step=1000, every=10, config=config | {"post.eval_samples": 500},
                        sampled=[0.02, 0.03, 0.03], mean_length=10.0))
        runs.append(run(f"p1/s{seed}", [0.0, 0.6, full], seed=seed, every=500, config={"task.digits": 3,
                                                                                        "task.p_cot": 1.0}))
    return sweep(*runs)


def llm(sft_small=(0.2, 0.3, 0.31), grpo_final=0.62, grpo_length=240.0, far_final=0.4):
    """What an LLM recipe's `run` returns for one model: SFT at p_cot 0.25 reaches `sft_small` by epoch (40-token
    answers), at p_cot 1 0.5, 0.6, 0.62 (1,000 test questions); GRPO from epochs 1 and 3 ends at `grpo_final` with
    mean length `grpo_length`; of 256 responses, 0.05 of the SFT checkpoint's are far from the SFT data and
    `far_final` of the last GRPO checkpoint's."""
    rows = [{"model": "3B", "stage": "sft", "p_cot": p, "epoch": epoch, "step": 0, "accuracy": acc,
             "mean_length": length, "length_se": 2.0, "questions": 1000, "responses": 1000}
            for p, accs, length in ((0.25, sft_small, 40.0), (1.0, (0.5, 0.6, 0.62), 200.0))
            for epoch, acc in enumerate(accs, 1)]
    rows += [{"model": "3B", "stage": "grpo", "p_cot": 0.25, "epoch": epoch, "step": step, "questions": 1000,
              "responses": 1000, "accuracy": grpo_final if step == 4 else 0.4, "length_se": 2.0,
              "mean_length": grpo_length if step == 4 else 45.0}
             for epoch in (1, 3) for step in (2, 4)]
    analysis = [{"model": "3B", "p_cot": 0.25, "epoch": epoch, "steps": [
        {"step": step, "responses": 256, "far_frac": far} for step, far in ((0, 0.05), (2, 0.1), (4, far_final))]}
        for epoch in (1, 3)]
    return {"tiny": False, "rows": rows, "analysis": analysis}


# --- the controls: (recipe, claim index, the paper's picture, a plausible failure) -----------------------------------

LLM_CONTROLS = [
    (0, llm, lambda: llm(sft_small=(0.4, 0.55, 0.61))),  # SFT on few long demonstrations reaches the baseline
    (1, llm, lambda: llm(grpo_final=0.45)),  # GRPO stays well below the full chain-of-thought baseline
    (2, llm, lambda: llm(grpo_length=30.0)),  # GRPO shortens the answers
    (3, llm, lambda: llm(far_final=0.1)),  # the last responses as near the SFT data as the SFT model's (3 sd)
]

CONTROLS = [
    ("fig1", 0, fig1, lambda: fig1(ntp=(0.75, 1))),  # memorised short answers: 0.75 at length 1
    ("fig1", 1, fig1, lambda: fig1(late=([0.5, 0.9, 1.0, 1.0], [1] * 4))),  # right but short: memorised
    ("fig1", 2, fig1, lambda: fig1(late=([0.5] * 12 + [1.0], [1] * 12 + [12]))),  # 95% only after 1.2% of samples
    ("fig1", 3, fig1, lambda: fig1(early=([0.5] * 4, [1, 12, 7, 1]))),  # a length that rises and falls back
    ("fig2", 0, fig2, lambda: fig2(greedy=lambda p: 0.68 if p < 1 / 3 else 1.0)),  # memorised half the short answers
    ("fig2", 1, fig2, lambda: fig2(greedy=lambda p: 0.5)),  # at chance above the threshold too
    ("fig2", 2, fig2, lambda: fig2(sampled=lambda p: 0.5)),  # a model at chance at T = 1: learned nothing
    ("fig2", 3, fig2, lambda: fig2(long=lambda p: 0.0)),  # never long: not calibrated
    ("fig3", 0, fig3, lambda: fig3(end=lambda *_: ([0.5, 0.9, 1.0, 1.0], 1))),  # right but short: memorised
    ("fig3", 1, fig3, lambda: fig3(star_hot=(0.5, 0.9, 1.0, 1.0))),  # STaR at T = 1.5 stable
    ("arch", 0, arch, lambda: arch(ntp=1.0)),  # pre-training alone generalizes
    ("arch", 1, arch, lambda: arch(rl=0.5)),  # GRPO stays at chance
    ("arch", 2, arch, lambda: arch(unstable={"gpt2": 0, "mistral": 1})),  # 2 of 6 vs 0 of 6: the paper's way, p 0.23
    ("rare", 0, lambda: rare(paper_rare), lambda: rare(lambda p, step, tau, seed: step == 4000)),  # early fails
    ("rare", 1, lambda: rare(paper_rare), lambda: rare(lambda *_: True)),  # RL reliable from the early checkpoint
    ("rare", 2, lambda: rare(paper_rare),  # per seed 2 of 5 -> 4 of 5 (issue 36): the paper's way, p = 0.26
     lambda: rare(lambda p, step, tau, seed: p == 0.15 or seed in ((2, 3) if step == 2000 else (1, 2, 3, 4)))),
    ("small-d", 0, lambda: small_d({6: [3, 4, 5], 7: [8, None, None]}),
     lambda: small_d({6: [None] * 3, 7: [None] * 3})),  # never generalizes
    ("small-d", 1, lambda: small_d({6: [3, 4, 5], 7: [8, None, None]}),
     lambda: small_d({6: [5, 6, 7], 7: [2, 3, 3]})),  # the larger d is learned sooner
    ("fig13", 0, lambda: fig13({4: 1, 6: 4, 8: None}, {4: 1, 6: 1, 8: 2}),
     lambda: fig13({4: 1, 6: 4, 8: None}, {4: None, 6: None, 8: None})),  # GRPO never gets there
    ("fig13", 1, lambda: fig13({4: 1, 6: 4, 8: None}, {4: 1, 6: 1, 8: 2}),
     lambda: fig13({4: 5, 6: 3, 8: 2}, {4: 1, 6: 1, 8: 1})),  # the gap shrinks with d
    ("partial-cot", 0, partial_cot, lambda: partial_cot(stairs=[0.0, 0.5, 0.5, 0.65, 0.65, 0.65])),  # no middle step
    ("partial-cot", 1, partial_cot, lambda: partial_cot(early_e2e=(1.0, "medium"))),  # medium answers, not long
    ("partial-cot", 2, partial_cot, lambda: partial_cot(late_e2e=(1.0, "long"))),  # long answers only
    ("partial-cot", 3, partial_cot, lambda: partial_cot(late_length=(1.0, "long"))),  # the penalty leaves them long
    ("partial-cot", 4, partial_cot, lambda: partial_cot(early_length=(1.0, "medium"))),  # the early one works too
    ("star-odds", 0, star_odds, lambda: star_odds(long=lambda p0, t: p0, greedy_long=lambda p: False)),  # stays short
    ("star-odds", 1, star_odds, lambda: star_odds(greedy_long=lambda p: False)),  # greedy decoding stays short
    ("theory", 0, theory, lambda: theory(greedy=lambda p: 1.0)),  # no threshold: greedy right at every p_cot
    ("theory", 1, theory, lambda: theory(long=lambda p: 0.0, short=lambda p: 0.5)),  # never long, short a coin flip
    ("theory", 2, theory, lambda: theory(star=lambda p, t: p)),  # STaR leaves the long fraction where it was
    ("theory", 3, theory, lambda: theory(star_greedy=lambda p: 0.5)),  # greedy decoding never turns long
    ("mult", 0, mult, lambda: mult(small=0.6)),  # small p_cot learns in pre-training
    ("mult", 1, mult, lambda: mult(full=0.3)),  # the full trace is not learned
    ("mult", 2, mult, lambda: mult(learned_end=(0.0, 10.0))),  # GRPO from a learned checkpoint does nothing
    ("mult", 3, mult, lambda: mult(unlearned_end=0.9)),  # GRPO succeeds from a checkpoint without the trace
    *((name, index, good, bad) for name in ("gsm8k", "math") for index, good, bad in LLM_CONTROLS),
]


@pytest.mark.parametrize("name, index, results, expected", [
    pytest.param(name, index, results, expected, id=f"{name}-{index}-{expected.replace(' ', '-')}")
    for name, index, good, bad in CONTROLS for results, expected in ((good, REPRODUCED), (bad, NOT_REPRODUCED))])
def test_control(name, index, results, expected):
    verdict = recipes()[name].claims[index].check(results())
    assert verdict.verdict == expected, verdict.evidence


def test_every_claim_has_a_positive_and_a_negative_control():
    declared = [(name, index) for name, recipe in recipes().items() for index in range(len(recipe.claims))]
    controlled = [(name, index) for name, index, _, _ in CONTROLS]
    assert sorted(controlled) == sorted(declared)  # each claim once: a positive and a negative control


# --- every tolerance is smaller than the effect it measures, at every setting judged -------------------------------

def _preset_p_cots(name: str) -> set[float]:
    found = set()
    for preset in recipes()[name].presets.values():
        axes = preset.settings["pretrain"]["axes"]
        found |= set(axes.get("task.p_cot", [])) | {p for _, p in axes.get("task.d, task.p_cot", [])}
    return found


def test_fig2_judges_the_t1_accuracy_only_where_the_tolerance_is_smaller_than_its_effect():
    from rlntp.experiments.fig2 import _below, sampled_effect

    below = sorted(p for p in _preset_p_cots("fig2") if _below(p))
    judged = [p for p in below if discernible(sampled_effect(p))]
    assert judged == [0.2, 0.25] and 0.1 in below  # at p_cot = 0.1 the effect, 0.05, is the tolerance: not judged
    assert all(APPROX < (1 + p) / 2 - 1 / 2 - 1e-12 for p in judged)
    calibrated = sorted(p for p in _preset_p_cots("fig2") if discernible(p))
    assert calibrated == sorted(_preset_p_cots("fig2")) and all(APPROX < p for p in calibrated)
    # the control that learned nothing (0.50 at every p_cot) fails where the old criterion passed it at p_cot = 0.1
    evidence = recipes()["fig2"].claims[2].check(fig2(sampled=lambda p: 0.5)).evidence
    assert "not judged (the effect is not larger than 0.05): p_cot = 0.1" in evidence


def test_the_theory_recipe_judges_where_the_tolerance_is_smaller_than_the_effect():
    from rlntp.experiments.theory import _calibrated_judged
    from rlntp.theory.experiments import FIGURE_P_COTS

    judged = [p for p in FIGURE_P_COTS if _calibrated_judged(p)]
    assert judged == [p for p in FIGURE_P_COTS if p > 2 * APPROX] and all(APPROX < p / 2 for p in judged)
    star_p_cots = sorted({1 / 20, 0.1, 0.25})  # write_figures' default at the presets' d = 20
    assert all(APPROX < max(cf.star_long_frac(p, t) for t in range(8)) - p for p in star_p_cots)


def test_the_other_tolerances_are_smaller_than_their_effects():
    from rlntp.experiments.partial_cot import stair_levels

    # 'at chance': 3 sd of the presets' measurements, against a learned model's 1 (the effect 1/2) and SOLVED
    assert sampling_margin(500) < SOLVED - 0.5
    # the staircase: a level is held within half the distance to the next, less than the step it measures
    for preset in recipes()["partial-cot"].presets.values():
        task = preset.settings["pretrain"]["task"]
        levels = stair_levels(task["p_cot"], task["p_medium"])
        assert all(min(APPROX, (b - a) / 2) < b - a for a, b in pairwise(levels))
    # star-odds: over each preset's rounds the recursion moves by more than APPROX from any p_0 up to 0.9 (the seeds
    # measured 0.12-0.20); a seed beyond that is not judged
    for preset in recipes()["star-odds"].presets.values():
        rounds = preset.settings["posttrain"]["star"]["post"]["steps"]
        assert all(discernible(cf.star_long_frac(p0 / 100, rounds) - p0 / 100) for p0 in range(1, 91))


# --- the rules themselves -------------------------------------------------------------------------------------------

def test_one_mapping_from_a_test_to_a_verdict():
    assert significant(0.01, "x").verdict == REPRODUCED
    assert significant(0.05, "x").verdict == NOT_REPRODUCED  # not below the level
    in_the_papers_direction = significant(0.5, "1 of 9 vs 0 of 9")  # arch's published case: not partly
    assert in_the_papers_direction == Verdict(NOT_REPRODUCED, "1 of 9 vs 0 of 9 (one-sided Fisher p = 0.500)")


def test_partly_needs_half_of_the_units_and_combine_follows_it():
    assert [partly_needs(n) for n in (1, 2, 3, 4, 5, 17)] == [1, 1, 2, 2, 3, 9]
    seeds = {f"seed {i}": Verdict(v, "") for i, v in enumerate((REPRODUCED, PARTLY, NOT_REPRODUCED))}
    assert combine(seeds).verdict == PARTLY  # 1 reproduced of 3 is not a majority; 2 of 3 reproduced or partly
    seeds["seed 1"] = Verdict(NOT_REPRODUCED, "")
    assert combine(seeds).verdict == NOT_REPRODUCED  # 1 of 3: no partial support
    assert combine(seeds, need=1).verdict == REPRODUCED


def test_a_tolerance_equal_to_the_effect_does_not_judge():
    assert not discernible(0.05) and discernible(0.0500001) and not discernible(0.1, tolerance=0.1)


@pytest.mark.xfail(strict=True, reason="known gap: the staircase criterion (2 evaluations within 0.025 of each level) "
                                       "cannot tell a steady rise of <= 0.02 an evaluation from a staircase")
def test_a_steady_rise_is_no_staircase():
    ramp = [0.0] + [round(0.5 + 0.01 * i, 3) for i in range(16)] + [0.65, 0.65]
    assert recipes()["partial-cot"].claims[0].check(partial_cot(stairs=ramp)).verdict == NOT_REPRODUCED


def test_a_run_still_rising_has_not_failed():
    """fig1's 'too early ... fails': a run still rising at its end (0.85, 0.87, 0.894, 0.931: issue 36's seed 2) may
    still generalize; one stuck at 0.85 has failed."""
    rising = ([0.5, 0.85, 0.87, 0.894, 0.931], [1, 12, 12, 12, 12])
    assert recipes()["fig1"].claims[3].check(fig1(early=rising)).verdict == NOT_REPRODUCED
    stuck = ([0.5, 0.85, 0.85, 0.85, 0.85], [1, 12, 12, 12, 12])
    assert recipes()["fig1"].claims[3].check(fig1(early=stuck)).verdict == REPRODUCED


def test_too_early_needs_a_checkpoint_that_generalizes():
    """fig1's 'too early': a seed where GRPO generalizes from no checkpoint shows no contrast (confirmation seed 1000
    of the first registration: every start lengthens and fails, so every start was 'earlier than the first
    generalizing' one); it fails, whatever its early runs do."""
    never = ([0.5, 0.85, 0.85, 0.85], [1, 12, 12, 12])
    assert recipes()["fig1"].claims[3].check(fig1(early=never, late=never)).verdict == NOT_REPRODUCED


def test_slow_is_not_unstable():
    """fig3's 'unstable': STaR at T = 1.5 that ends low without ever falling (confirmation seed 1000 of the first
    registration: 0.895, largest fall 0) is slow, not unstable; one that rises and falls back is unstable, even where
    it recovers to the end."""
    assert recipes()["fig3"].claims[1].check(fig3(star_hot=(0.5, 0.6, 0.7, 0.8))).verdict == NOT_REPRODUCED
    assert recipes()["fig3"].claims[1].check(fig3(star_hot=(0.5, 0.9, 0.6, 0.9))).verdict == REPRODUCED
    assert recipes()["fig3"].claims[1].check(fig3(star_hot=(0.5, 1.0, 0.7, 1.0))).verdict == REPRODUCED
