"""The paper's theory (§4, App. D) as a recipe: the linear autoregressive model, simulated beside its closed forms.

Theorem 1: after pre-training, the model is calibrated (it answers long, and correctly, with probability
p_cot) and greedy decoding is right only when p_cot > 1/3. Theorem 2: STaR with the chain-of-thought
reward doubles the odds of long answers every round. The figures are those of `rlntp theory figure`.
"""

from pathlib import Path

from rlntp.experiments import SUMMARY, Recipe

RECIPE = Recipe(
    "theory",
    "The linear autoregressive model: Theorem 1 (pre-training) and Theorem 2 (STaR), simulation over closed form",
    order=21,
    presets={"cpu": "d = 20, 12 mixture weights, 7 STaR rounds (the linear model is cheap: the same as paper)",
             "paper": "the same settings"},
)

PRESETS = {"cpu": {}, "paper": {}}
"""The arguments of `rlntp.theory.experiments.write_figures` per preset (its defaults)."""


def run(preset: dict, out: Path, device: str = "auto", progress: bool = True) -> tuple[str, list]:
    """Both theorems' figures into `out` (once: a rerun reads them back); the summary table."""
    from rlntp.theory.experiments import FIGURES, write_figures

    if all((out / name).exists() for name in (*FIGURES, SUMMARY)):
        return (out / SUMMARY).read_text().rstrip("\n"), []
    _, summary = write_figures(out, **preset)
    return summary, []
