"""The regime of a pre-training run: the samples it saw over the distinct inputs of its task ("passes").

A run that saw more samples than its task has distinct inputs (passes > 1) saw each input more than once on
average: a model that answers right there may have memorised a table rather than learned the task. The paper's
parity runs (12.8 M samples of 2^50 inputs) never see an input twice. The results table records each run's passes
(`sweeps.engine.write_results`), a plan shows them before anything runs (`sweeps.plan.pretrain_regime`), and a
claim about generalization is judged only where no run saw more samples than inputs (`experiments.claims`).
"""

COLUMNS = ("distinct_inputs", "pretrain_samples", "passes")
"""The regime's columns of a results table, one value per run (`sweeps.engine.write_results`)."""
MEMORISATION = 1.0
"""Passes (pre-training samples / distinct inputs) above which a run is in the memorisation regime."""


def passes(samples: int | float | None, inputs: int | float | None) -> float | None:
    """Pre-training samples over distinct inputs, as a float (2^d may be beyond an int64 or a float: then 0); None
    where either is unknown."""
    if samples is None or inputs is None or (isinstance(inputs, float) and inputs != inputs) or not inputs:
        return None
    try:
        return float(samples) / float(inputs)
    except OverflowError:
        return 0.0


def seen_share(passes: float) -> float:
    """The share of inputs that uniform sampling of `passes` x inputs samples shows at least once, 1 - e^-passes:
    at 0.73 passes about half the inputs were seen once (rarely twice), at 47 every input many times."""
    import math

    return 1 - math.exp(-passes)


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
    fewer = "as many samples as" if passes == MEMORISATION else "fewer samples than"
    return f"{format_passes(passes)} passes: {fewer} inputs"


def describe(samples: int, inputs: int | str | None) -> str:
    """`ratio` with its numbers: '47 passes over every input (pre-training saw 192,000 samples of 4,096 distinct
    inputs)'; `inputs` None or BEYOND_FLOAT: more than a float holds, a ratio of 0."""
    counted = isinstance(inputs, int) and inputs.bit_length() <= 1024
    shown = f"{inputs:,}" if counted else BEYOND_FLOAT
    return (f"{ratio(samples / inputs if counted else 0.0)} (pre-training saw {samples:,} samples of {shown} "
            "distinct inputs)")


BEYOND_FLOAT = "2^1024 or more"
"""A count of inputs beyond what a float holds (parity beyond d = 1023), as JSON records it (`recordable`)."""


def recordable(count: int | None) -> int | str | None:
    """A count of inputs as JSON records it (task.json, a plan): the int, or BEYOND_FLOAT from 2^1024 (an int of
    thousands of digits, which Python refuses to write beyond 4,300 and other readers would not read; every ratio
    of samples to it is 0)."""
    return BEYOND_FLOAT if count is not None and count.bit_length() > 1024 else count
