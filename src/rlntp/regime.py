"""The regime of a pre-training run: the samples it saw over the distinct inputs of its task ("passes").

A run that saw more samples than its task has distinct inputs (passes > 1) saw each input more than once on
average: a model that answers right there may have memorised a table rather than learned the task. The paper's
parity runs (12.8 M samples of 2^50 inputs) never see an input twice. The results table records each run's passes
(`sweeps.engine.write_results`), a plan shows them before anything runs (`sweeps.plan.pretrain_regime`), and a
claim about generalization is judged only where no run saw more samples than inputs (`experiments.claims`).
"""

MEMORISATION = 1.0
"""Passes (pre-training samples / distinct inputs) above which a run is in the memorisation regime."""


def format_passes(passes: float) -> str:
    """Passes rounded for reading: whole numbers from 10 (47, 12,000), one decimal from 1 (1.3), two significant
    digits below (0.73, 0.0012)."""
    if passes >= 10:
        return f"{passes:,.0f}"
    if passes >= 1:
        return f"{passes:.1f}"
    return f"{passes:.2g}"


def ratio(passes: float | None) -> str:
    """Passes in a few words, as shown beside a verdict: '47 passes over every input', '0.73 passes: fewer samples
    than inputs', or 'distinct inputs unknown' (None)."""
    if passes is None:
        return "distinct inputs unknown"
    if passes > MEMORISATION:
        return f"{format_passes(passes)} passes over every input"
    return f"{format_passes(passes)} passes: {'as many samples as' if passes == MEMORISATION else 'fewer samples than'} inputs"


def describe(samples: int, inputs: int | None) -> str:
    """`ratio` with its numbers: '47 passes over every input (pre-training saw 192,000 samples of 4,096 distinct
    inputs)'; `inputs` None: more than a float holds (2^d beyond d = 1023), a ratio of 0."""
    shown = "more than 2^1023" if inputs is None else f"{inputs:,}"
    return (f"{ratio(samples / inputs if inputs else 0.0)} (pre-training saw {samples:,} samples of {shown} distinct "
            "inputs)")
