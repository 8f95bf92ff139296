"""Results tables of parity sweeps built by hand for the claims' tests: one run's evaluations (`run`; `rows` takes
any column by its full name), a sweep's runs together (`sweep`). The columns are those a sweep's results table has
and the claims read (`sweeps.engine.write_results`); a table without task.task records no regime
(`experiments.claims.regime`), so every claim on it is judged by its check."""

import numpy as np
import pandas as pd

METRICS = {"greedy": "eval/greedy_acc", "sampled": "eval/sampled_acc", "length": "eval/greedy_len_median",
           "mean_length": "eval/greedy_len_mean", "long": "eval/sampled_long_frac",
           "greedy_long": "eval/greedy_long_frac", "hist": "eval/greedy_len_hist"}
"""The short names `run` takes for the evaluation columns."""


def rows(name: str, greedy: list[float], stage: str = "pretrain", *, seed: int = 0, every: int = 100,
         batch: int = 128, source_step: int | None = None, **columns) -> pd.DataFrame:
    """One run's evaluations at steps 0, every, 2 every, ...: greedy accuracy `greedy[i]`; any other column (by its
    name in the results table) a scalar or one value per evaluation. Pre-training counts `batch` samples a step; RL
    64 rollouts a step, after its checkpoint's samples."""
    steps = np.arange(len(greedy)) * every
    frame = {"run": name, "stage": stage, "train.seed": seed, "step": steps, "eval/greedy_acc": list(greedy),
             "train.eval_samples": 1000, "post.eval_samples": 640, "post.logprobs_at_tau": False}
    if stage == "pretrain":
        frame |= {"samples_seen": steps * batch, "rl_samples": np.nan, "source_step": np.nan}
    else:
        frame |= {"rl_samples": steps * 64, "samples_seen": source_step * batch + steps * 64,
                  "source_step": source_step}
    return pd.DataFrame(frame | columns)


def run(name: str, greedy: list[float], stage: str = "pretrain", *, config: dict | None = None,
        **options) -> pd.DataFrame:
    """`rows` with the evaluation columns by their short names (METRICS: one value per evaluation or one for all) and
    `config`, the run's settings (task.d, post.algo, ...); `options`: rows' seed, every, batch, source_step."""
    metrics = {METRICS[key]: options.pop(key) for key in list(options) if key in METRICS}
    return rows(name, greedy, stage, **options, **metrics, **(config or {}))


def sweep(*runs: pd.DataFrame) -> pd.DataFrame:
    """The runs as one results table."""
    return pd.concat(runs, ignore_index=True)
