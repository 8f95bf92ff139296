"""`rlntp theory ...`: the linear autoregressive model of the paper's theory, simulated next to its closed forms."""

import json
import math
import time
from pathlib import Path
from typing import Annotated

import tyro

from rlntp.cli.parsing import Flat
from rlntp.exact import recover
from rlntp.theory import closed_forms as cf
from rlntp.theory.experiments import EVAL_SAMPLES, FIGURE_P_COTS, pretrain_report, star_report, write_figures
from rlntp.theory.mixture import MixtureConfig
from rlntp.theory.sgd import SGDConfig
from rlntp.theory.star import StarConfig

Json = Annotated[bool, tyro.conf.arg(name="json")]

GREEDY_SOLVED = 0.95
"""Greedy accuracy from which a round counts as long and correct (the theory's 1, up to sampling); an accuracy meets
it as the exact fraction of the inputs evaluated (`rlntp.exact`)."""


def pretrain(mixture: Annotated[MixtureConfig, Flat], sgd: Annotated[SGDConfig, Flat], seed: int = 0,
             eval_samples: int = EVAL_SAMPLES, json_out: Json = False) -> None:
    """Pre-train the linear model on D(d, p_cot) and compare it with Theorem 1.

    Args:
        mixture: the mixture distribution
        sgd: the SGD of every predictor
        seed: seeds the training data; evaluation inputs are seeded by it too, separately
        eval_samples: fresh inputs to evaluate on
        json_out: print one JSON object (measured `name` and closed form `name_predicted`) instead of a table
    """
    started = time.perf_counter()
    report = pretrain_report(mixture, sgd, seed, eval_samples)
    if json_out:
        print(json.dumps({"d": mixture.d, "p_cot": mixture.p_cot, "steps": sgd.steps, "seed": seed} | report))
        return
    print(f"linear model, parity d = {mixture.d}, p_cot = {mixture.p_cot:g}: {sgd.steps} SGD steps x "
          f"{sgd.sequences_per_step} sequences, seed {seed}, {time.perf_counter() - started:.1f} s")
    print(f"{'':20s} {'measured':>9s} {'theory':>9s}")
    for name in (k for k in report if not k.endswith("_predicted")):
        print(f"{name:20s} {report[name]:9.4f} {report[name + '_predicted']:9.4f}")
    print(f"(greedy: long and correct iff p_cot > 1/3; {eval_samples} fresh inputs)")
    if mixture.d == 2:
        print("note: the theory assumes d >= 3; at d = 2 the EOS predictor sees whether b_2 = x_1 (it is x_2)")


def star(mixture: Annotated[MixtureConfig, Flat], sgd: Annotated[SGDConfig, Flat],
         config: Annotated[StarConfig, Flat], seed: int = 0, eval_samples: int = EVAL_SAMPLES,
         json_out: Json = False) -> None:
    """Pre-train, then STaR with the chain-of-thought reward; compare each round with Theorem 2.

    Args:
        mixture: the mixture distribution
        sgd: the SGD of pre-training and of every STaR round
        config: the STaR rounds
        seed: seeds training and rollouts; evaluation inputs are seeded by it and the round
        eval_samples: fresh inputs to evaluate each round on
        json_out: print JSON Lines, one object per round (0 = pre-training), as each round finishes
    """
    predicted_round = cf.rounds_until_greedy_long(mixture.p_cot)
    columns = ("round", "long_frac", "long_frac_predicted", "greedy_acc", "greedy_acc_predicted",
               "long_correct_prob", "short_correct_prob", "reward_mean")
    rows = star_report(mixture, sgd, config, seed, eval_samples)
    if not json_out:
        print(f"STaR on the linear model, parity d = {mixture.d}, p_cot = {mixture.p_cot:g}, seed {seed}: "
              f"{sgd.steps} SGD steps x {sgd.sequences_per_step} rollouts per round, "
              f"{'warm start' if config.warm_start else 'restart from the origin'}")
        print("  ".join(f"{c:>{max(len(c), 7)}s}" for c in columns))
    measured_round = None
    for row in rows:
        if measured_round is None and recover(row["greedy_acc"], eval_samples, "greedy_acc") >= GREEDY_SOLVED:
            measured_round = row["round"]
        if json_out:
            print(json.dumps(row), flush=True)
            continue
        cells = [f"{row['round']:5d}"] + [_cell(row[c], max(len(c), 7)) for c in columns[1:]]
        print("  ".join(cells), flush=True)
    if not json_out:
        print(f"greedy decoding long and correct (accuracy >= {GREEDY_SOLVED}) from round: measured "
              f"{measured_round if measured_round is not None else f'> {config.rounds}'}, "
              f"predicted {predicted_round} (first t with p_t > 1/3)")


def figure(out: Path, d: int = 20, sgd: Annotated[SGDConfig, Flat] = SGDConfig(), seed: int = 0,
           p_cots: tuple[float, ...] = FIGURE_P_COTS, star_p_cots: tuple[float, ...] | None = None, rounds: int = 7,
           eval_samples: int = EVAL_SAMPLES) -> None:
    """Write the theory's two figures (PNG) into a directory: Theorem 1 and Theorem 2, simulation over closed form.

    Args:
        out: the directory to write theorem1_pretraining.png and theorem2_star.png into (created if missing)
        d: number of input bits
        sgd: the SGD of pre-training and of every STaR round
        seed: seeds every simulation
        p_cots: mixture weights of the Theorem 1 panel (one pre-training each)
        star_p_cots: mixture weights of the Theorem 2 panel (default: 1/d, 0.1 and 0.25)
        rounds: STaR rounds per mixture weight
        eval_samples: fresh inputs per evaluation
    """
    started = time.perf_counter()
    paths, _, _ = write_figures(out, d, sgd, seed, p_cots, star_p_cots, rounds, eval_samples)
    print(f"wrote {', '.join(map(str, paths))} ({time.perf_counter() - started:.0f} s)")


def _cell(value: float | None, width: int) -> str:
    return f"{'-':>{width}s}" if value is None or math.isnan(value) else f"{value:{width}.4f}"


DESCRIPTION = "The linear autoregressive model of the paper's theory (§4, App. D), simulated beside its closed forms"


def commands() -> dict:
    return {"pretrain": pretrain, "star": star, "figure": figure}
