"""The linear autoregressive model of the theory: one logistic regression per output position (paper §4, App. D.1.1).

Every predictor sees the features phi(x, z) = (x, z * x, 1), z the previous output bit, through its own
row of a (d + 1, 2d + 1) weight matrix; a fixed mask keeps the parameters each position is allowed:

    row 0       position 1,  next bit      w . x                      (no z: there is no previous bit)
    row 1       position 2a, EOS or not    w . (x, z x) + c           (+1 = continue, -1 = EOS)
    row 2       position 2b, next bit      w . (x, z x)               (after "continue")
    row k       position k,  next bit      w . (x, z x),  k = 3 .. d

Position 1 can represent b_1 = x_1 but not the parity of all d bits; positions 2b .. d represent
b_k = z x_k exactly, and position 2a can tell the long path (z = x_1) from the short one through the
feature z x_1. Position d + 1 (EOS after a long output) is a constant and is not learned.
"""

from dataclasses import dataclass

import numpy as np

from rlntp.theory.mixture import DTYPE, Sequences, prefix_parities

FIRST, STOP = 0, 1
"""Rows of the first-bit predictor and of the EOS-or-continue predictor; row k >= 2 predicts output bit k."""


def parameter_mask(d: int) -> np.ndarray:
    """(d + 1, 2d + 1) 1 where a predictor has a parameter: columns are [x (d), z x (d), bias]."""
    mask = np.zeros((d + 1, 2 * d + 1), dtype=DTYPE)
    mask[FIRST, :d] = 1
    mask[STOP, :] = 1
    mask[2:, : 2 * d] = 1
    return mask


def sigmoid(s: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-s), the probability of label +1 for logit s."""
    return 0.5 * (1.0 + np.tanh(0.5 * s))  # the same, without overflow warnings at large |s|


@dataclass(frozen=True)
class LinearAR:
    """d + 1 linear predictors; `weights[k]` = [w_x, w_zx, bias] of the predictor in row k (see the module)."""

    weights: np.ndarray
    """(d + 1, 2d + 1) weights, zero outside `parameter_mask(d)`"""

    @property
    def d(self) -> int:
        return self.weights.shape[0] - 1

    @classmethod
    def zeros(cls, d: int) -> "LinearAR":
        """The model at the origin, where SGD starts."""
        return cls(np.zeros((d + 1, 2 * d + 1), dtype=DTYPE))

    def logit_parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, d + 1) w_x . x and w_zx . x, and (d + 1,) biases: row k's logit is a_k + z c_k + bias_k."""
        d = self.d
        return x @ self.weights[:, :d].T, x @ self.weights[:, d : 2 * d].T, self.weights[:, 2 * d]

    def generate(self, x: np.ndarray, rng: np.random.Generator | None = None) -> Sequences:
        """Outputs for inputs x: greedy (the sign of each logit) if rng is None, else sampled with temperature 1."""
        n, d = x.shape
        a, c, bias = self.logit_parts(x)
        u = None if rng is None else rng.random((n, d + 1), dtype=DTYPE)

        def decide(logit: np.ndarray, k: slice | int) -> np.ndarray:
            return np.where(logit >= 0 if u is None else u[:, k] < sigmoid(logit), DTYPE(1), DTYPE(-1))

        outputs = np.zeros((n, d), dtype=DTYPE)
        outputs[:, 0] = decide(a[:, FIRST], FIRST)
        long = decide(a[:, STOP] + outputs[:, 0] * c[:, STOP] + bias[STOP], STOP) > 0
        # Bit k depends on the past only through z = bit k - 1, so decide it for both values of z at
        # once; the chain of thought is then one lookup per position.
        after_plus = decide(a[:, 2:] + c[:, 2:], slice(2, None))
        after_minus = decide(a[:, 2:] - c[:, 2:], slice(2, None))
        for k in range(1, d):
            outputs[:, k] = np.where(outputs[:, k - 1] > 0, after_plus[:, k - 1], after_minus[:, k - 1])
        outputs[~long, 1:] = 0.0
        return Sequences(x, outputs, long)

    def correct_sequence_probs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n,) each, the model's probabilities of this input's long sequence and of its short one.

        P(long, correct | x)  = s(b_1 a_1) s(a_2a + b_1 c_2a + bias_2a) prod_{k=2..d} s(b_k (a_k + b_{k-1} c_k))
        P(short, correct | x) = s(b_d a_1) s(-(a_2a + b_d c_2a + bias_2a))

        with s the sigmoid and a, c, bias as in `logit_parts`.
        """
        a, c, bias = self.logit_parts(x)
        b = prefix_parities(x)
        first = sigmoid(b[:, 0] * a[:, FIRST])
        go_on = sigmoid(a[:, STOP] + b[:, 0] * c[:, STOP] + bias[STOP])
        bits = sigmoid(b[:, 1:] * (a[:, 2:] + b[:, :-1] * c[:, 2:])).prod(axis=1)
        short_first = sigmoid(b[:, -1] * a[:, FIRST])
        stop = sigmoid(-(a[:, STOP] + b[:, -1] * c[:, STOP] + bias[STOP]))
        return first * go_on * bits, short_first * stop
