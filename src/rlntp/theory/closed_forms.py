"""The theory's predictions in closed form (paper §3.2, §4 Theorems 1-2 and Remark 2, App. D.3).

A calibrated model that has learned the long path but cannot compute the parity in one step:
- emits b_1 = x_1 first with probability p + (1 - p)/2 = (1 + p)/2, the short answer b_d otherwise
  (a coin flip, independent of x_1);
- after b_1 continues with probability p / ((1 + p)/2) = 2p / (1 + p), which is above 1/2 exactly
  when p > 1/3, and after the other bit always stops.
So P(long, correct) = p, P(short, correct) = (1 - p)/2, sampled accuracy (1 + p)/2, and greedy
decoding goes long and correct (accuracy 1) if p > 1/3, short with a coin-flip answer (1/2) if not.
STaR with the chain-of-thought reward keeps the long and short correct samples, in proportion
p : (1 - p)/2, so the next round learns from D(d, p') with p' = 2p / (1 + p): the odds p / (1 - p)
double every round.
"""

from rlntp.errors import check

CRITICAL_P_COT = 1 / 3
"""Above it greedy decoding of the calibrated model is long and correct; at or below it, short."""


def _check_p(p: float) -> None:
    check(0.0 < p < 1.0, f"p_cot must be strictly between 0 and 1, got {p}")


def long_correct_prob(p_cot: float) -> float:
    """P(long and correct) of the calibrated model: p_cot (Theorem 1, eq. 1)."""
    return p_cot


def short_correct_prob(p_cot: float) -> float:
    """P(short and correct) of the calibrated model: (1 - p_cot) / 2 (Theorem 1, eq. 1)."""
    return (1 - p_cot) / 2


def sampled_accuracy(p_cot: float) -> float:
    """Accuracy at temperature 1: p_cot + (1 - p_cot) / 2 = (1 + p_cot) / 2 (§3.2)."""
    return (1 + p_cot) / 2


def continue_prob(p_cot: float) -> float:
    """P(no EOS after the first output bit b_1 = x_1) = 2 p_cot / (1 + p_cot) (Remark 2)."""
    return 2 * p_cot / (1 + p_cot)


def greedy_accuracy(p_cot: float) -> float:
    """Greedy accuracy: 1 if p_cot > 1/3 (continue_prob > 1/2), else 1/2 (Theorem 1, eq. 2).

    At exactly 1/3 the continue probability is exactly 1/2 and the greedy decision is a tie; it is
    counted as stopping.
    """
    return 1.0 if p_cot > CRITICAL_P_COT else 0.5


def greedy_long_frac(p_cot: float) -> float:
    """Fraction of greedy outputs that are long: all of them above 1/3, none at or below."""
    return 1.0 if p_cot > CRITICAL_P_COT else 0.0


def star_step(p: float) -> float:
    """One STaR round: p' = p / (p + (1 - p)/2) = 2p / (1 + p) (Theorem 2, eq. 3)."""
    return 2 * p / (1 + p)


def star_long_frac(p_cot: float, rounds: int) -> float:
    """p_t after t = `rounds` STaR rounds in closed form: the odds double, p_t = 2^t p / (1 + (2^t - 1) p) (eq. 127)."""
    check(rounds >= 0, f"rounds must be >= 0, got {rounds}")
    growth = 2.0**rounds
    return growth * p_cot / (1 + (growth - 1) * p_cot)


def odds(p: float) -> float:
    """p / (1 - p)."""
    return p / (1 - p)


def rounds_until_greedy_long(p_cot: float) -> int:
    """The first round t with p_t > 1/3, i.e. odds 2^t p / (1 - p) > 1/2: t = floor(log2((1 - p) / (2p))) + 1, or 0.

    Greedy decoding is long and correct from this round on; it is O(log(1 / p_cot)) (Theorem 2, eq. 4).
    """
    _check_p(p_cot)
    if p_cot > CRITICAL_P_COT:
        return 0
    # Counting doublings is exact where floor(log2(...)) would be off by one at powers of two.
    t, o = 0, odds(p_cot)
    while o <= 0.5:
        t, o = t + 1, 2 * o
    return t

