"""GSM8K mixtures (paper §5.2, Figs. 5 right, 19): SFT of a pretrained Llama on long/short mixtures of GSM8K
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
    "paper": LLMRecipeConfig("gsm8k", "meta-llama/Llama-3.2-3B", "openai/gsm8k",
                             p_cots=(0.05, 0.1, 0.25, 0.5, 1.0), rl_from_epochs=(1, 5, 30),
                             sft=dict(epochs=30, lr=1e-5, per_device_batch=32, gradient_checkpointing=True),
                             grpo=dict(steps=1000, lr=1e-6, group_size=32, completions_per_device=32, save_every=50,
                                       max_completion_length=512, gradient_checkpointing=True),
                             eval=dict(generations=4, max_new_tokens=512)),
}

PROVENANCE = {
    "tiny": {"": TINY},
    "paper": {"dataset": paper("§5.2: GSM8K"), "model": paper("App. B.3: Llama 3.2 3B (base)"),
              "source": choice("the hub's copy of GSM8K, config `main`"), "config_name": choice("the default, `main`"),
              "p_cots": choice("0.05 is the paper's (Fig. 5 right) and 1 its full chain-of-thought baseline (§5.2); "
                               "Fig. 19's other values are lost in our text: 0.1, 0.25, 0.5 are ours"),
              "rl_from_epochs": choice("Fig. 5 right: GRPO from the SFT checkpoints (epochs 1-30), 'even from the "
                                       "first'; which ones is not stated: 1, 5, 30"),
              "sft/epochs": paper("App. B.3: 30 epochs"), "sft/lr": choice("lost in our text; 1e-5"),
              "sft/per_device_batch": paper("App. B.3: batch 256 on 8 GPUs"),
              "sft/gradient_checkpointing": choice("memory: a 3B model's activations at batch 32"),
              "grpo/steps": choice("not stated; App. B.3: 20-35 h on 8 A100s"), "grpo/lr": choice("lost; 1e-6"),
              "grpo/group_size": paper("App. B.3: group size 32"),
              "grpo/completions_per_device": paper("App. B.3: batch 1 per device, group 32"),
              "grpo/max_completion_length": choice("not stated; GSM8K solutions fit in 512 tokens"),
              "eval/generations": paper("App. B.3: 4 generations per test question"),
              "more_models": paper("App. B.3: Llama 3.2 3B base only"),
              **PAPER_PRESET_SOURCES},
}

run = run_llm
"""The recipe's plan (`llm_math.run_llm`): its summary table and the results its CLAIMS (`llm_math.CLAIMS`) read."""
plan = plan_llm
"""What `run` would do and cost, writing nothing (`rlntp reproduce NAME --plan`)."""
INPUTS = LLMInputs
"""--source, --test-source, --data: the records to read in place of the preset's (`llm_math.with_inputs`)."""
