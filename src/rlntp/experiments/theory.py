"""The paper's theory (§4, App. D) as a recipe: the linear autoregressive model, simulated beside its closed forms.

Theorem 1: after pre-training, the model is calibrated (it answers long, and correctly, with probability
p_cot) and greedy decoding is right only when p_cot > 1/3. Theorem 2: STaR with the chain-of-thought
reward doubles the odds of long answers every round. The figures are those of `rlntp theory figure`.
"""

import json
from pathlib import Path

from rlntp.exact import Exact, recover
from rlntp.experiments.claims import APPROX, Claim, Verdict, combine, discernible, k_of_n, sampling_margin, with_not_judged
from rlntp.experiments.provenance import choice, confirmation_seeds
from rlntp.experiments.recipe import OwnPlan, Preset, Recipe
from rlntp.experiments.summary import SOLVED
from rlntp.files import atomic_write_text
from rlntp.theory import closed_forms as cf

_SIMULATION_SEEDS = choice([0, 1, 2], "3 seeds of the simulation: the paper proves Theorems 1 and 2, it does not "
                                      "simulate them (the simulation's settings: docs/theory.md)")
_PRESETS = {"cpu": Preset("d = 20, 12 mixture weights, 7 STaR rounds, 3 seeds (the linear model is cheap: the same as "
                          "paper, on confirmation seeds)",
                          {"seeds": confirmation_seeds(3, "the paper proves Theorems 1 and 2, it does not "
                                                          "simulate them; 3, as the paper preset's (the simulation's "
                                                          "settings: docs/theory.md)", spent=range(1000, 1003))}),
            "paper": Preset("the same settings, on seeds 0-2", {"seeds": _SIMULATION_SEEDS})}
"""Per preset: the simulation's seeds, and any other argument of `rlntp.theory.experiments.write_figures` (its
defaults otherwise). The first seed's figures go into the recipe's directory, the others' into seed=S/."""

MEASURED = "theory.json"
"""The simulations' measurements ({"seeds": [`write_figures`' third result with its "seed"]}), which the claims
read."""


def run(preset: dict, out: Path, device: str = "auto", progress: bool = True, executor=None) -> tuple[str, dict]:
    """Both theorems' figures for every seed, one job of the engine per seed (`recipe_jobs`; `executor`: where they
    run, default one at a time here); a rerun reads back the seeds done. The summary tables and the measurements."""
    from rlntp.sweeps.engine import run_jobs
    from rlntp.sweeps.executors import one_at_a_time

    out = Path(out)
    jobs = recipe_jobs(preset, out)
    run_jobs(jobs, out, one_at_a_time(executor), out, json.loads(json.dumps(preset, default=str)), "the theory recipe",
             progress)
    records = [json.loads((out / f"{job.name}.json").read_text()) for job in jobs]
    results = {"seeds": [record["measured"] for record in records]}
    atomic_write_text(out / MEASURED, json.dumps(results, indent=2) + "\n")
    return "\n\n".join(f"seed {job.config.seed}\n{record['summary']}" for job, record in zip(jobs, records)), results


def recipe_jobs(preset: dict, out: Path, device: str = "auto") -> list:
    """One simulation job per seed of `preset` (`sweeps.stages`, stage theory): the first seed's figures into `out`,
    the others' into seed=S/; each job's record is OUT/theory/seed=S.json."""
    from rlntp.sweeps.spec import Job
    from rlntp.sweeps.stages import Simulation

    seeds, arguments = preset.get("seeds", [0]), tuple(sorted((k, v) for k, v in preset.items() if k != "seeds"))
    return [Job(f"theory/seed={seed}", "theory", config=Simulation(seed, "" if seed == seeds[0] else f"seed={seed}",
                                                                     arguments)) for seed in seeds]


def plan(preset: dict) -> dict:
    """What `run(preset)` simulates, writing nothing; its cost as measured on this project's 2-core machines."""
    from rlntp.theory.experiments import FIGURE_P_COTS

    seeds = preset.get("seeds", [0])
    return {"runs": {"simulations": len(recipe_jobs(preset, Path("runs/theory")))},
            "cost": {"estimate": f"about {45 * len(seeds)} s on one CPU core (measured: 46 s per seed)"},
            "lines": [f"{len(seeds)} seeds of the linear model: Theorem 1 at {len(FIGURE_P_COTS)} p_cot, Theorem 2's "
                      "STaR rounds at 3 p_cot (d = 20; docs/theory.md)",
                      f"cost: about {45 * len(seeds)} s on one CPU core (measured: 46 s per seed)"]}


def _over_seeds(check):
    """A check of one simulation, made over every seed's (`combine`): reproduced in a majority of seeds, partly
    where fewer are but at least half are reproduced or partly; each seed's own verdict and evidence shown."""
    def over(results: dict) -> Verdict:
        return combine({f"seed {m['seed']}": check(m) for m in results["seeds"]})

    return over


def _greedy_matches(acc: Exact, predicted: float, margin: float) -> bool:
    """Greedy accuracy as Theorem 1 predicts: learned (>= SOLVED) where it predicts 1, at chance where 1/2."""
    return acc >= SOLVED if predicted == 1.0 else abs(acc - 0.5) <= margin


def _counted(measured: dict, row: dict, key: str) -> Exact:
    """`key` of a row of one simulation (a fraction of its eval_samples inputs) as the exact fraction it is."""
    return recover(row[key], measured["eval_samples"], key)


def _greedy_threshold(measured: dict) -> Verdict:
    margin = sampling_margin(measured["eval_samples"])
    return k_of_n({f"p_cot = {r['p_cot']:g}": (_greedy_matches(_counted(measured, r, "greedy_acc"),
                                                               cf.greedy_accuracy(r["p_cot"]), margin),
                                               f"{r['greedy_acc']:.3f} (predicted {cf.greedy_accuracy(r['p_cot']):g})")
                   for r in measured["theorem1"]}, need="all", unit="p_cot")


def _calibrated_judged(p: float) -> bool:
    """Whether APPROX can tell calibration at p_cot = p from a model without the long path: long correct p against
    0, short correct (1 - p)/2 against a coin flip's 1/2 (the smaller effect, p/2)."""
    return discernible(p) and discernible(p / 2)


def _calibrated(measured: dict) -> Verdict:
    outcomes, left = {}, []
    for r in measured["theorem1"]:
        p = r["p_cot"]
        if not _calibrated_judged(p):
            left.append(f"p_cot = {p:g}")
            continue
        long_gap, short_gap = abs(r["long_correct_prob"] - p), abs(r["short_correct_prob"] - cf.short_correct_prob(p))
        outcomes[f"p_cot = {p:g}"] = (max(long_gap, short_gap) <= APPROX,
                                      f"long {r['long_correct_prob']:.3f}, short {r['short_correct_prob']:.3f}")
    return with_not_judged(k_of_n(outcomes, need="all", unit="p_cot"), left)


def _odds_double(measured: dict) -> Verdict:
    outcomes, left = {}, []
    for star in measured["theorem2"]:
        if not discernible(max(r["long_frac_predicted"] for r in star["rounds"]) - star["p_cot"]):
            left.append(f"p_cot = {star['p_cot']:g}")  # a recursion that stays within APPROX of p_cot cannot tell
            continue                                     # doubling odds from a stuck model
        gap = max(abs(_counted(measured, r, "long_frac") - r["long_frac_predicted"]) for r in star["rounds"])
        outcomes[f"p_cot = {star['p_cot']:g}"] = (gap <= APPROX, f"largest |measured - recursion| {gap:.3f} over "
                                                                  f"{len(star['rounds']) - 1} rounds")
    return with_not_judged(k_of_n(outcomes, need="all", unit="p_cot"), left)


def _greedy_turns_long(measured: dict) -> Verdict:
    margin = sampling_margin(measured["eval_samples"])
    outcomes = {}
    for star in measured["theorem2"]:
        rounds = star["rounds"]
        matches = all(_greedy_matches(_counted(measured, r, "greedy_acc"), r["greedy_acc_predicted"], margin)
                      for r in rounds)
        learned = [r["round"] for r in rounds if _counted(measured, r, "greedy_acc") >= SOLVED]
        outcomes[f"p_cot = {star['p_cot']:g}"] = (
            matches, f"greedy >= {SOLVED} from round {learned[0] if learned else '-'} "
                     f"(predicted {cf.rounds_until_greedy_long(star['p_cot'])})")
    return k_of_n(outcomes, need="all", unit="p_cot")


_CHANCE = "within 3 standard deviations of 1/2 (1.5/sqrt(eval inputs))"
_SEEDS = "in a majority of the simulation's seeds"

CLAIMS = [
    Claim("Theorem 1 (failure of greedy decoding): after pre-training, greedy test accuracy is on par with random "
          "chance if p_cot < 1/3 and perfect otherwise",
          f"for every simulated p_cot, greedy accuracy {_CHANCE} where p_cot < 1/3 and >= {SOLVED} where p_cot > 1/3; "
          f"{_SEEDS}",
          _over_seeds(_greedy_threshold)),
    Claim("Theorem 1 (length calibration): the pre-trained model generates a long, correct sequence with probability "
          "about p_cot and a short, correct one with probability about (1 - p_cot)/2",
          f"for every simulated p_cot, the model's probabilities of the long and of the short correct sequence "
          f"(means over the test inputs) within {APPROX} of p_cot and (1 - p_cot)/2; judged where {APPROX} is smaller "
          f"than both effects (p_cot against a model that is never long, p_cot/2 against a coin flip's 1/2), i.e. "
          f"p_cot > {2 * APPROX:g}; {_SEEDS}",
          _over_seeds(_calibrated)),
    Claim("Theorem 2 (length increases): under STaR with the chain-of-thought reward the probability of a long "
          "generation follows p_{t+1} = 2 p_t / (1 + p_t): its odds double every round",
          f"for every simulated p_cot, the sampled fraction of long answers after every round within {APPROX} of the "
          f"recursion from p_cot (judged where the recursion moves by more than {APPROX} from p_cot); {_SEEDS}",
          _over_seeds(_odds_double)),
    Claim("Theorem 2 (perfect generalization): after O(log(1/p_cot)) rounds, once p_t > 1/3, greedy decoding only "
          "generates long responses and generalizes perfectly",
          f"for every simulated p_cot and every round, greedy accuracy >= {SOLVED} where the recursion's p_t > 1/3 and "
          f"{_CHANCE} before; {_SEEDS}",
          _over_seeds(_greedy_turns_long)),
]

RECIPE = Recipe(
    "theory", "The linear autoregressive model: Theorem 1 (pre-training) and Theorem 2 (STaR), simulation over closed "
              "form",
    _PRESETS, CLAIMS, own_plan=OwnPlan(run=run, plan=plan, jobs=recipe_jobs),
)
