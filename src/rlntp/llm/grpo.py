"""`rlntp llm grpo`: GRPO from an SFT checkpoint on a mixture's RL half with TRL's GRPOTrainer (paper App. B.3-B.4).

Every choice the paper's result depends on is set here explicitly rather than left to TRL's
defaults, which change between versions (TRL is pinned in pyproject.toml):

- group size (`num_generations`): the paper's 32 (GSM8K) or 20 (MATH);
- no KL penalty (`beta = 0`), one update per batch of rollouts (`num_iterations = 1`), clip 0.2;
- loss aggregation `grpo`: each response's token losses averaged, then the responses averaged, as in
  DeepSeekMath's GRPO and in torchtune's GRPO loss, which the paper used (TRL's default, `dapo`, weights
  every token equally across the batch);
- rewards scaled by their group's standard deviation (`scale_rewards = "group"`);
- the stepwise reward (`rlntp.llm.reward`): its four components are four reward functions, summed
  with weight 1 and each logged by TRL under `rewards/NAME/mean`;
- sampling temperature, top-p 1, completion length, AdamW with a cosine schedule, dropout off.

Rollouts come from `model.generate` or, with --vllm colocate|server, from vLLM (colocate: one
engine sharing each GPU with training; server: `trl vllm-serve` on GPUs of its own, for many GPUs).

    OUT/config.json, OUT/checkpoint-STEP/ (every --save-every steps), OUT/done.json (the log history)
"""

import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rlntp.errors import ConfigError, check, check_choice
from rlntp.files import atomic_write_text
from rlntp.llm.common import DONE, LLMStageConfig, trl_report_to

VLLM_MODES = ("off", "colocate", "server")
LOSSES = ("grpo", "dr_grpo", "dapo", "bnpo")
SCALINGS = ("group", "batch", "none")


@dataclass(frozen=True)
class GRPOConfig(LLMStageConfig):
    """GRPO with the stepwise reward from an SFT checkpoint (`model`: OUT/checkpoint-STEP of `rlntp llm sft`, or a hub
    name), on the RL half of a mixture (its prompts and gold answers)."""

    steps: int = 300
    """optimizer steps (paper, MATH: 300)"""
    lr: float = 1e-6
    """AdamW learning rate, cosine schedule (the paper's value is lost from our copy of its text)"""
    group_size: int = 32
    """rollouts per prompt, whose rewards are normalized together (paper: 32 GSM8K, 20 MATH)"""
    completions_per_device: int = 32
    """rollouts per device per micro-step (TRL's per_device_train_batch_size); paper: one prompt's group"""
    grad_accum: int = 1
    """micro-steps per optimizer step (paper, MATH: 2)"""
    temperature: float = 1.0
    """sampling temperature of the rollouts"""
    max_completion_length: int = 512
    """tokens a rollout may generate; a longer one is cut and scored as it stands"""
    loss: str = "grpo"
    """how token losses are aggregated: grpo (per response, then mean), dr_grpo, dapo, bnpo (TRL's names)"""
    scale_rewards: str = "group"
    """divide advantages by the std of the group, the batch, or none"""
    beta: float = 0.0
    """KL coefficient to the starting model (paper: none)"""
    epsilon: float = 0.2
    """clipping range of the probability ratio"""
    save_every: int = 50
    """steps between checkpoints (the recipe evaluates each)"""
    verify_timeout_s: float = 5.0
    """wall-clock limit of one math-verify check; a response that exceeds it scores 0 for that component"""
    vllm: str = "off"
    """rollouts through vLLM: off, colocate (shares each training GPU) or server (`trl vllm-serve` elsewhere)"""
    vllm_server: str = "http://localhost:8000"
    """--vllm server: the base URL of `trl vllm-serve`"""
    gradient_checkpointing: bool = False
    """recompute activations in backward (needed for 3B/8B models)"""

    def check(self) -> None:
        super().check()
        for name in ("steps", "group_size", "completions_per_device", "grad_accum", "max_completion_length",
                     "save_every"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        check(self.group_size >= 2, f"group_size must be >= 2 (advantages compare rollouts of one prompt), "
              f"got {self.group_size}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        check(self.verify_timeout_s > 0, f"verify_timeout_s must be > 0, got {self.verify_timeout_s}")
        check_choice("loss", self.loss, LOSSES)
        check_choice("scale_rewards", self.scale_rewards, SCALINGS)
        check_choice("vllm mode", self.vllm, VLLM_MODES)


def trl_config(options: GRPOConfig, out: Path, bf16: bool, progress: bool):
    """TRL's GRPOConfig for `options`: the paper's choices set explicitly (module docstring)."""
    import trl

    server = options.vllm == "server"
    try:
        return trl.GRPOConfig(
            output_dir=str(out), max_steps=options.steps, learning_rate=options.lr, lr_scheduler_type="cosine",
            optim="adamw_torch", per_device_train_batch_size=options.completions_per_device,
            gradient_accumulation_steps=options.grad_accum, num_generations=options.group_size,
            temperature=options.temperature, top_p=1.0, top_k=0, max_completion_length=options.max_completion_length,
            loss_type=options.loss, scale_rewards=options.scale_rewards, beta=options.beta,
            epsilon=options.epsilon, num_iterations=1, reward_weights=None, mask_truncated_completions=False,
            disable_dropout=True, bf16=bf16, activation_checkpointing=options.gradient_checkpointing,
            gradient_checkpointing=None,
            use_cpu=options.cpu, save_strategy="steps", save_steps=options.save_every, save_only_model=False,
            logging_steps=1, report_to=trl_report_to(options.report_to, out), seed=options.seed,
            data_seed=options.seed, disable_tqdm=not progress,
            use_vllm=options.vllm != "off", vllm_mode="server" if server else "colocate",
            vllm_server_base_url=options.vllm_server if server else None,
        )
    except ValueError as e:  # TRL's own checks, e.g. the batch not divisible by the group size
        raise ConfigError(str(e).strip().splitlines()[0]) from None


def run_grpo(options: GRPOConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    """GRPO from `options.model` on the RL half of `options.data` into `out`; resumes a killed run there.

    Returns the done record: TRL's log history (reward components, lengths, clip fractions per step).
    """
    from rlntp.llm.common import (
        check_model,
        distributed,
        load_causal_lm,
        open_stage_dir,
        quiet_trainer,
        run_trainer,
        use_bf16,
    )
    from rlntp.llm.dataset import read_split
    from rlntp.llm.sources import resolve_model

    out = Path(out)
    bf16 = use_bf16(options.precision, options.cpu)
    if options.vllm != "off":
        check(not options.cpu, f"--vllm {options.vllm} generates on GPUs; drop --cpu or use --vllm off")
        check(importlib.util.find_spec("vllm") is not None,
              f"--vllm {options.vllm} needs vLLM: pip install 'rlntp[vllm]' (on a CUDA machine)")
    args = trl_config(options, out, bf16, progress)
    check_model(options.model, options.allow_pickle)
    train = read_split(options.data, "rl").select_columns(["prompt", "answer"])
    model_dir, source = resolve_model(options.model)  # a GGUF is converted once (cached)
    state = distributed()
    with open_stage_dir(out, "grpo", options, state, source) as resume:
        done_path = out / DONE
        if done_path.is_file():
            return json.loads(done_path.read_text())

        from transformers import AutoTokenizer
        from trl import GRPOTrainer

        from rlntp.llm.reward import reward_functions, shared_verifier

        tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = load_causal_lm(model_dir, options.allow_pickle)
        trainer = GRPOTrainer(model=model, reward_funcs=reward_functions(shared_verifier(options.verify_timeout_s)),
                              args=args, train_dataset=train, processing_class=tokenizer)
        if not progress:
            quiet_trainer(trainer)
        run_trainer(trainer, out, resume)
        done = {"log": trainer.state.log_history, "options": json.loads(json.dumps(asdict(options), default=str)),
                "completions_per_step": options.completions_per_device * options.grad_accum * args.world_size}
        if state.is_main_process:
            atomic_write_text(done_path, json.dumps(done, indent=2) + "\n")
        state.wait_for_everyone()
    return done


def step_checkpoints(run_dir: Path) -> dict[int, Path]:
    """Step -> checkpoint directory of a GRPO run."""
    found = {int(p.name.split("-")[1]): p for p in Path(run_dir).glob("checkpoint-*") if p.name.split("-")[1].isdigit()}
    return dict(sorted(found.items()))
