"""GSM8K mixtures (paper §5.2, Figs. 5 right, 19): SFT of a pretrained Llama on long/short mixtures of GSM8K
solutions, then GRPO with the stepwise reward from several SFT epochs (the plan: `llm_math.py`)."""

from rlntp.experiments import Recipe
from rlntp.experiments.llm_math import CLAIMS, LLMRecipeConfig, run_llm, secondary_process, tiny  # noqa: F401

RECIPE = Recipe(
    "gsm8k",
    "GSM8K mixtures (Figs. 5 right, 19): SFT at several p_cot, then GRPO from several SFT epochs",
    order=40,
    presets={"tiny": "a random tiny Llama on records made here, CPU: proves the wiring only",
             "paper": "Llama 3.2 3B from the hub; GPUs (docs/llm.md: accelerate launches)"},
    in_all=False,
)

PRESETS = {
    "tiny": tiny("gsm8k"),
    # App. B.3: Llama 3.2 3B base, SFT batch 256 for 30 epochs, GRPO group 32, one prompt per GPU, 8 GPUs.
    "paper": LLMRecipeConfig("gsm8k", "meta-llama/Llama-3.2-3B", "openai/gsm8k", p_cots=(0.0, 0.1, 0.25, 0.5, 1.0),
                             rl_from_epochs=(1, 5, 30),
                             sft=dict(epochs=30, lr=1e-5, per_device_batch=32, gradient_checkpointing=True),
                             grpo=dict(steps=1000, lr=1e-6, group_size=32, completions_per_device=32, save_every=50,
                                       max_completion_length=512, gradient_checkpointing=True),
                             eval=dict(generations=4, max_new_tokens=512)),
}


run = run_llm
"""The recipe's plan (`llm_math.run_llm`): its summary table and the results its CLAIMS (`llm_math.CLAIMS`) read."""
