"""MATH mixtures (paper §5.2, Figs. 20-21): SFT of a pretrained Llama instruct model on long/short mixtures of MATH
solutions, then GRPO with the stepwise reward from several SFT epochs (the plan: `llm_math.py`)."""

from rlntp.experiments import Recipe
from rlntp.experiments.llm_math import (  # noqa: F401
    CLAIMS,
    PAPER_PRESET_SOURCES,
    LLMInputs,
    LLMRecipeConfig,
    check_inputs,
    plan_llm,
    run_llm,
    secondary_process,
    tiny,
    with_inputs,
)
from rlntp.experiments.provenance import TINY, choice, paper

RECIPE = Recipe(
    "math",
    "MATH mixtures (Figs. 20, 21): SFT at several p_cot, then GRPO from several SFT epochs",
    order=41,
    presets={"tiny": "a random tiny Llama on records made here, CPU: proves the wiring only",
             "paper": "Llama 3.2 3B and 3.1 8B instruct from the hub; GPUs (docs/llm.md: accelerate launches)"},
    in_all=False,
)

PRESETS = {
    "tiny": tiny("math"),
    # App. B.4: Llama 3.2 3B instruct (SFT batch 24) and 3.1 8B instruct (batch 16), 20 epochs; GRPO group 20,
    # 2 accumulation steps, 300 steps.
    "paper": LLMRecipeConfig("math", "meta-llama/Llama-3.2-3B-Instruct", "DigitalLearningGmbH/MATH-lighteval",
                             p_cots=(0.0, 0.1, 0.25, 0.5, 1.0), rl_from_epochs=(1, 5, 20),
                             sft=dict(epochs=20, lr=1e-5, per_device_batch=3, gradient_checkpointing=True),
                             grpo=dict(steps=300, lr=1e-6, group_size=20, completions_per_device=20, grad_accum=2,
                                       save_every=25, max_completion_length=1024, gradient_checkpointing=True),
                             eval=dict(generations=4, max_new_tokens=1024),
                             more_models=({"model": "meta-llama/Llama-3.1-8B-Instruct",
                                           "sft": {"per_device_batch": 2}},)),
}

PROVENANCE = {
    "tiny": {"": TINY},
    "paper": {"dataset": paper("§5.2: MATH"), "model": paper("App. B.4: Llama 3.2 3B instruct"),
              "more_models": paper("App. B.4: Llama 3.1 8B instruct with SFT batch 16 (2 per GPU on 8 GPUs)"),
              "source": choice("a hub mirror of MATH with its solutions"),
              "config_name": choice("the mirror's default"),
              "p_cots": choice("our text lost the values; 1 is the full chain-of-thought baseline (§5.2)"),
              "rl_from_epochs": choice("App. B.4: several SFT epochs 'including the first'; which, is lost"),
              "sft/epochs": paper("App. B.4: 20 epochs"), "sft/lr": choice("lost in our text; 1e-5"),
              "sft/per_device_batch": paper("App. B.4: batch 24 for the 3B model on 8 GPUs"),
              "sft/gradient_checkpointing": choice("memory"),
              "grpo/steps": paper("App. B.4: 300 steps"), "grpo/lr": choice("lost; 1e-6"),
              "grpo/group_size": paper("App. B.4: group size 20"),
              "grpo/completions_per_device": paper("App. B.4: batch 1 per device, group 20"),
              "grpo/grad_accum": paper("App. B.4: 2 accumulation steps"),
              "grpo/max_completion_length": choice("not stated; MATH solutions are longer than GSM8K's"),
              "eval/generations": paper("App. B.4: 4 generations per test question"),
              **PAPER_PRESET_SOURCES},
}

run = run_llm
"""The recipe's plan (`llm_math.run_llm`): its summary table and the results its CLAIMS (`llm_math.CLAIMS`) read."""
plan = plan_llm
"""What `run` would do and cost, writing nothing (`rlntp reproduce NAME --plan`)."""
INPUTS = LLMInputs
"""--source, --test-source, --data: the records to read in place of the preset's (`llm_math.with_inputs`)."""
