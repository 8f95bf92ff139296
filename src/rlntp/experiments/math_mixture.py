"""MATH mixtures (paper §5.2, Figs. 20-21): SFT of a pretrained Llama instruct model on long/short mixtures of MATH
solutions, then GRPO with the stepwise reward from several SFT epochs (the plan: `llm_math.py`)."""

from rlntp.experiments import Recipe
from rlntp.experiments.llm_math import CLAIMS, LLMRecipeConfig, run_llm, secondary_process, tiny  # noqa: F401

RECIPE = Recipe(
    "math",
    "MATH mixtures (Figs. 20, 21): SFT at several p_cot, then GRPO from several SFT epochs",
    order=41,
    presets={"tiny": "a random tiny Llama on records made here, CPU: proves the wiring only",
             "paper": "Llama 3.2 3B instruct from the hub; GPUs (docs/llm.md: accelerate launches)"},
    in_all=False,
)

PRESETS = {
    "tiny": tiny("math"),
    # App. B.4: Llama 3.2 3B instruct, SFT batch 24 for 20 epochs; GRPO group 20, 2 accumulation steps, 300 steps.
    "paper": LLMRecipeConfig("math", "meta-llama/Llama-3.2-3B-Instruct", "DigitalLearningGmbH/MATH-lighteval",
                             p_cots=(0.0, 0.1, 0.25, 0.5, 1.0), rl_from_epochs=(1, 5, 20),
                             sft=dict(epochs=20, lr=1e-5, per_device_batch=3, gradient_checkpointing=True),
                             grpo=dict(steps=300, lr=1e-6, group_size=20, completions_per_device=20, grad_accum=2,
                                       save_every=25, max_completion_length=1024, gradient_checkpointing=True),
                             eval=dict(generations=4, max_new_tokens=1024)),
}


run = run_llm
"""The recipe's plan (`llm_math.run_llm`): its summary table and the results its CLAIMS (`llm_math.CLAIMS`) read."""
