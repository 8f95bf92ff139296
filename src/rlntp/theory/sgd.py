"""SGD on the L2-regularized next-token logistic loss, all d + 1 predictors at once (paper App. D, Algorithms 2-3).

Each predictor k is a logistic regression on its own examples: every sequence labels position 1
(its first output bit) and position 2a (continue or EOS, after the sequence's own first bit);
only long sequences label positions 2b .. d (bit k, after the sequence's own bit k - 1). With
teacher forcing the d + 1 problems are independent, so one step updates every row of the weight
matrix with the gradient of

    L_k(w) = E[ log(1 + exp(-y_k w . phi(x, z_k))) | position k labelled ] + (reg / 2) |w|^2.

Two deliberate departures from Algorithm 2, both for speed at the same optimum: minibatches instead
of single examples, and a step size decaying linearly from `lr` to 0 with the mean of the last
`average_last` fraction of iterates returned (suffix averaging; Rakhlin, Shamir & Sridharan 2012)
instead of steps 1/(reg t) averaged from the start, which need about reg^-2 iterations to settle.
The decay matters: at a constant step the iterates keep fluctuating, and because the sigmoid is
curved the fluctuations bias the learned probabilities (P(continue | b_1) = 0.0925 instead of 0.0952
at p_cot = 0.05, constant lr = 2), an error that STaR compounds round after round.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rlntp.config import Config
from rlntp.errors import Diverged, check
from rlntp.theory.mixture import DTYPE, MixtureConfig, Sequences, sample_mixture
from rlntp.theory.model import FIRST, STOP, LinearAR, parameter_mask, sigmoid

Batches = Callable[[int, np.random.Generator], Sequences]
"""(n, rng) -> training sequences drawn from n fresh ones (all of them, or those a filter keeps)."""


@dataclass(frozen=True)
class SGDConfig(Config):
    """Minibatch SGD of every predictor on its regularized logistic loss."""

    steps: int = 3000
    """SGD steps of one training run (pre-training, or one STaR round)"""
    sequences_per_step: int = 512
    """fresh sequences per step (STaR: rollouts, trained on if rewarded); positions 2b..d use the long ones only"""
    lr: float = 3.0
    """initial step size, decayed linearly to 0 over the run (stable up to about 4: the features are ±1)"""
    reg: float = 1e-5
    """L2 coefficient; the chain-of-thought margins it allows (~9) exceed what 3000 steps reach (~8)"""
    average_last: float = 0.5
    """fraction of the last iterates averaged into the returned model (1.0: all of them, as in Algorithm 2)"""

    def check(self) -> None:
        check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        check(self.sequences_per_step >= 1, f"sequences_per_step must be >= 1, got {self.sequences_per_step}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(self.reg >= 0, f"reg must be >= 0, got {self.reg}")
        check(0.0 < self.average_last <= 1.0, f"average_last must be in (0, 1], got {self.average_last}")


def targets(seqs: Sequences) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, d + 1) each: the ±1 label y_k, the previous bit z_k, and whether the sequence labels position k."""
    o = seqs.outputs
    n, d = o.shape
    y, z = np.empty((n, d + 1), dtype=DTYPE), np.empty((n, d + 1), dtype=DTYPE)
    y[:, FIRST], z[:, FIRST] = o[:, 0], 0.0
    y[:, STOP], z[:, STOP] = np.where(seqs.long, 1.0, -1.0), o[:, 0]
    y[:, 2:], z[:, 2:] = o[:, 1:], o[:, :-1]
    labelled = np.ones((n, d + 1), dtype=bool)
    labelled[:, 2:] = seqs.long[:, None]
    return y, z, labelled


def loss_gradient(model: LinearAR, seqs: Sequences) -> np.ndarray:
    """(d + 1, 2d + 1) gradient of each position's mean logistic loss over the sequences that label it."""
    y, z, labelled = targets(seqs)
    a, c, bias = model.logit_parts(seqs.x)
    logit = a + z * c + bias
    count = np.maximum(labelled.sum(axis=0), 1).astype(DTYPE)
    g = np.where(labelled, -y * sigmoid(-y * logit), 0.0) / count  # d loss / d logit, (n, d + 1)
    return np.concatenate([g.T @ seqs.x, (g * z).T @ seqs.x, g.sum(axis=0)[:, None]], axis=1)


def fit(batches: Batches, d: int, config: SGDConfig, rng: np.random.Generator,
        init: LinearAR | None = None) -> LinearAR:
    """SGD from `init` (default: the origin) on sequences from `batches`; returns the suffix-averaged iterate."""
    mask = parameter_mask(d)
    w = np.zeros_like(mask) if init is None else init.weights.copy()
    averaged_steps = max(1, round(config.average_last * config.steps))
    total = np.zeros(w.shape)
    for t in range(config.steps):
        lr = config.lr * (1 - t / config.steps)
        grad = loss_gradient(LinearAR(w), batches(config.sequences_per_step, rng))
        w -= lr * (grad + config.reg * w) * mask
        if t >= config.steps - averaged_steps:
            total += w
    if not np.isfinite(total).all():
        raise Diverged(f"SGD diverged (weights became infinite or NaN) at lr = {config.lr:g}, reg = {config.reg:g}; "
                       "lower --lr or --reg")
    return LinearAR((total / averaged_steps).astype(DTYPE))


def pretrain(mixture: MixtureConfig, config: SGDConfig, rng: np.random.Generator) -> LinearAR:
    """Next-token pre-training on fresh samples of D(d, p_cot) (Theorem 1)."""
    return fit(lambda n, g: sample_mixture(n, mixture, g), mixture.d, config, rng)
