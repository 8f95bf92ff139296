"""STaR with the chain-of-thought reward on the linear model (paper §4 Theorem 2, App. D.1.1 and D.3).

Round t minimizes the next-token loss on the previous model's own samples that earn the reward (LIN-RL):

    x ~ uniform,  y ~ h_{t-1}(x),  train h_t on (x, y) if r_cot(x, y) = 1,

r_cot = 1 when the whole output is this input's long or short sequence. If h_{t-1} is calibrated, a
fraction p_{t-1} of its samples is long and correct and (1 - p_{t-1}) / 2 short and correct, so round t
is pre-training on D(d, p_t) with p_t = 2 p_{t-1} / (1 + p_{t-1}): the odds of the long path double.
Each round draws `SGDConfig.sequences_per_step` fresh rollouts per SGD step and uses each once, so
a round samples steps x sequences_per_step outputs in all.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from rlntp.config import Config
from rlntp.errors import check
from rlntp.theory.mixture import MixtureConfig, Sequences, cot_reward, sample_inputs
from rlntp.theory.model import LinearAR
from rlntp.theory.sgd import SGDConfig, fit, pretrain


@dataclass(frozen=True)
class StarConfig(Config):
    """Rounds of STaR after pre-training, each running the SGD of `SGDConfig` on rewarded rollouts."""

    rounds: int = 6
    """STaR rounds after pre-training"""
    warm_start: bool = False
    """start each round's SGD from the previous model instead of the origin (the paper restarts from the origin)"""

    def check(self) -> None:
        check(self.rounds >= 1, f"rounds must be >= 1, got {self.rounds}")


@dataclass(frozen=True)
class StarRound:
    """The model after one round (round 0: pre-training)."""

    round: int
    model: LinearAR
    reward_mean: float | None
    """fraction of the round's rollouts that earned the reward and were trained on (None for pre-training)"""


class RewardedRollouts:
    """The training batches of one STaR round: samples of `policy` that earn the chain-of-thought reward."""

    def __init__(self, policy: LinearAR):
        self.policy = policy
        self.rollouts = 0
        self.rewarded = 0

    def __call__(self, n: int, rng: np.random.Generator) -> Sequences:
        """The rewarded ones among n rollouts on fresh inputs (temperature 1)."""
        rollouts = self.policy.generate(sample_inputs(n, self.policy.d, rng), rng)
        keep = cot_reward(rollouts)
        self.rollouts += n
        self.rewarded += int(keep.sum())
        return rollouts.subset(keep)

    @property
    def reward_mean(self) -> float:
        return self.rewarded / max(self.rollouts, 1)


def star(mixture: MixtureConfig, sgd: SGDConfig, config: StarConfig, rng: np.random.Generator) -> Iterator[StarRound]:
    """Pre-train on D(d, p_cot), then run `config.rounds` STaR rounds; yields the model after each."""
    model = pretrain(mixture, sgd, rng)
    yield StarRound(0, model, None)
    for t in range(1, config.rounds + 1):
        batches = RewardedRollouts(model)
        model = fit(batches, mixture.d, sgd, rng, init=model if config.warm_start else None)
        yield StarRound(t, model, batches.reward_mean)
