"""Accuracy, length and sequence probabilities of the linear model on fresh inputs."""

import numpy as np

from rlntp.theory.mixture import is_correct, sample_inputs
from rlntp.theory.model import LinearAR


def evaluate(model: LinearAR, samples: int, rng: np.random.Generator) -> dict[str, float]:
    """Greedy and sampled (temperature 1) decoding on `samples` fresh inputs.

    `*_acc` and `*_long_frac` are measured on decoded outputs (long = d output bits); `long_correct_prob`
    and `short_correct_prob` are the model's exact probabilities of the input's long and short
    sequences, averaged over the inputs (the two sides of Theorem 1's calibration).
    """
    x = sample_inputs(samples, model.d, rng)
    greedy, sampled = model.generate(x), model.generate(x, rng)
    long_prob, short_prob = model.correct_sequence_probs(x)
    return {
        "greedy_acc": float(is_correct(greedy).mean()),
        "greedy_long_frac": float(greedy.long.mean()),
        "sampled_acc": float(is_correct(sampled).mean()),
        "sampled_long_frac": float(sampled.long.mean()),
        "long_correct_prob": float(long_prob.mean(dtype=np.float64)),
        "short_correct_prob": float(short_prob.mean(dtype=np.float64)),
    }
