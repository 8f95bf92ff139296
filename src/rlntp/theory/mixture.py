"""The parity mixture D(d, p_cot) in the ±1 encoding of the theory (paper §2, App. D.1.1).

A bit b in {0, 1} is encoded as s = (-1)^b, so xor becomes a product and the prefix parities of
`rlntp.tasks.parity` are b_i = x_1 x_2 ... x_i. Example, d = 4, x = 1 0 1 1 as bits:

    x        = -1 +1 -1 -1
    long     = -1 -1 +1 -1  EOS    (b_1 .. b_d, probability p_cot)
    short    = -1           EOS    (b_d only, probability 1 - p_cot)

Outputs are stored as an (n, d) array whose columns after a short sequence's only bit are 0, so
that a feature z * x built from them vanishes where there is no label.
"""

from dataclasses import dataclass

import numpy as np

from rlntp.config import Config
from rlntp.errors import check


@dataclass(frozen=True)
class MixtureConfig(Config):
    """The mixture the linear model learns from (paper §2, eq. 18)."""

    d: int = 20
    """number of input bits; the closed forms need d >= 3 (at d = 2, whether b_d = x_1 is the linear feature x_2)"""
    p_cot: float = 0.25
    """probability of a long (chain-of-thought) sequence; strictly between 0 and 1, as in Theorems 1-2"""

    def check(self) -> None:
        check(isinstance(self.d, int) and self.d >= 2, f"d must be an integer >= 2, got {self.d!r}")
        check(0.0 < self.p_cot < 1.0,
              f"p_cot must be strictly between 0 and 1 (the theory needs both long and short sequences), "
              f"got {self.p_cot}")


@dataclass(frozen=True)
class Sequences:
    """A batch of sequences `x  outputs  EOS` in the ±1 encoding."""

    x: np.ndarray
    """(n, d) inputs, ±1"""
    outputs: np.ndarray
    """(n, d) output bits, ±1; a short sequence has its single bit in column 0 and zeros after it"""
    long: np.ndarray
    """(n,) bool: the output has d bits (else 1)"""

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, rows: np.ndarray) -> "Sequences":
        return Sequences(self.x[rows], self.outputs[rows], self.long[rows])


DTYPE = np.float32
"""Inputs, outputs and weights are float32: exact for ±1 values, and twice as fast as float64."""


def sample_inputs(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """(n, d) uniform ±1 bits."""
    return (1 - 2 * rng.integers(0, 2, size=(n, d), dtype=np.int8)).astype(DTYPE)


def prefix_parities(x: np.ndarray) -> np.ndarray:
    """(n, d) b_i = x_1 ... x_i, the ±1 form of `rlntp.tasks.parity.prefix_parities`."""
    return np.cumprod(x, axis=1)


def short_outputs(x: np.ndarray) -> np.ndarray:
    """(n, d) the short output: b_d in column 0, zeros after it."""
    out = np.zeros_like(x)
    out[:, 0] = np.prod(x, axis=1)
    return out


def sample_mixture(n: int, mixture: MixtureConfig, rng: np.random.Generator) -> Sequences:
    """n fresh sequences of D(d, p_cot)."""
    x = sample_inputs(n, mixture.d, rng)
    long = rng.random(n) < mixture.p_cot
    outputs = np.where(long[:, None], prefix_parities(x), short_outputs(x))
    return Sequences(x, outputs, long)


def cot_reward(seqs: Sequences) -> np.ndarray:
    """(n,) bool: the whole output is this input's long or short sequence (chain-of-thought reward, eq. 23)."""
    b = prefix_parities(seqs.x)
    long_ok = seqs.long & (seqs.outputs == b).all(axis=1)
    short_ok = ~seqs.long & (seqs.outputs[:, 0] == b[:, -1])
    return long_ok | short_ok


def is_correct(seqs: Sequences) -> np.ndarray:
    """(n,) bool: the last output bit (the answer, right before EOS) is the parity b_d."""
    answer = np.where(seqs.long, seqs.outputs[:, -1], seqs.outputs[:, 0])
    return answer == np.prod(seqs.x, axis=1)


def to_tokens(seqs: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (n, d) and outputs (n, d + 1) as token ids of `rlntp.tasks.parity` (0, 1, EOS = 2)."""
    from rlntp.tasks.parity import EOS

    n, d = seqs.x.shape
    outputs = np.full((n, d + 1), EOS, dtype=np.int64)
    bits = ((1 - seqs.outputs) // 2).astype(np.int64)
    outputs[:, :d] = np.where(seqs.long[:, None], bits, EOS)
    outputs[:, 0] = bits[:, 0]
    return ((1 - seqs.x) // 2).astype(np.int64), outputs
