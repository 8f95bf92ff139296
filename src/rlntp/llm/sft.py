"""`rlntp llm sft`: supervised fine-tuning on a mixture's SFT half with TRL's SFTTrainer (paper App. B.3-B.4).

The loss is next-token prediction on the target only (`<think>..</think> <answer>..</answer>` and the
end of turn), never on the prompt; a text prompt and its target are tokenized apart, as generation sees the
prompt (`tokenized_apart`). A checkpoint is written after every epoch, because RL starts from several of them;
a killed run resumes from its last one.

    OUT/config.json           these options (the run's marker: `runs.dirs`)
    OUT/checkpoint-STEP/      one per epoch: model, tokenizer, optimizer and trainer state (no pickles
                              are loaded from it but the trainer's own on resume)
    OUT/done.json             the final loss history, written last
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlntp.errors import ConfigError, check
from rlntp.files import atomic_write_text
from rlntp.llm.common import DONE, LLMStageConfig, trl_report_to


@dataclass(frozen=True)
class SFTConfig(LLMStageConfig):
    """Supervised fine-tuning of a pretrained causal LM on the SFT half of a mixture."""

    epochs: int = 30
    """passes over the SFT half (paper: 30 for GSM8K, 20 for MATH); one checkpoint each"""
    lr: float = 1e-5
    """AdamW learning rate (the paper's value is lost from our copy of its text)"""
    per_device_batch: int = 32
    """sequences per device per micro-step; the paper's 256 per step is 32 on each of 8 GPUs"""
    grad_accum: int = 1
    """micro-steps per optimizer step"""
    max_length: int = 1024
    """tokens of prompt + target kept (longer rows are cut at the end)"""
    gradient_checkpointing: bool = False
    """recompute activations in backward (needed for 3B/8B models on 80 GB GPUs)"""
    padding_free: bool = False
    """put each batch's sequences end to end in one row, without padding (TRL's padding_free; transformers keeps
    each sequence's attention to itself through the position ids): the same loss, no arithmetic on padding. Off by
    default: measured in docs/benchmarks.md"""

    def check(self) -> None:
        super().check()
        for name in ("epochs", "per_device_batch", "grad_accum", "max_length"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")


def run_sft(options: SFTConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    """Fine-tune `options.model` on the SFT half of `options.data` into `out`; resumes a killed run there.

    Returns the done record: the loss at each logging step and each epoch's checkpoint.
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

    import trl
    from transformers import AutoTokenizer

    try:
        args = trl.SFTConfig(
            output_dir=str(out), num_train_epochs=options.epochs, learning_rate=options.lr,
            per_device_train_batch_size=options.per_device_batch, gradient_accumulation_steps=options.grad_accum,
            max_length=None if options.padding_free else options.max_length,  # padding-free: cut here, below
            completion_only_loss=True, padding_free=options.padding_free,
            optim="adamw_torch",
            bf16=bf16, activation_checkpointing=options.gradient_checkpointing,
            gradient_checkpointing=None, use_cpu=options.cpu,
            save_strategy="epoch", save_only_model=False, logging_steps=1,
            report_to=trl_report_to(options.report_to, out),
            seed=options.seed, data_seed=options.seed, disable_tqdm=not progress, dataset_num_proc=None,
        )
    except ValueError as e:  # TRL's and transformers' own checks of the combination
        raise ConfigError(str(e).splitlines()[0]) from None
    check_model(options.model, options.allow_pickle)
    train = read_split(options.data, "sft").select_columns(["prompt", "completion"])
    text_prompts = isinstance(train[0]["prompt"], str)
    check(text_prompts or not options.padding_free, f"--padding-free needs text prompts (GSM8K's); {options.data}'s "
          "are chat messages, which TRL tokenizes and cannot cut to --max-length in a padding-free batch")
    model_dir, source = resolve_model(options.model)  # a GGUF is converted once (cached)
    state = distributed()
    with open_stage_dir(out, "sft", options, state, source) as resume:
        if (out / DONE).is_file():
            return json.loads((out / DONE).read_text())
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if text_prompts:
            train = tokenized_apart(train, tokenizer, options.max_length)
        model = load_causal_lm(model_dir, options.allow_pickle)
        trainer = trl.SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
        check(len(trainer.train_dataset) > 0, f"no row of {options.data}'s SFT half keeps a target token within "
              f"--max-length {options.max_length} (TRL drops a row whose prompt fills it); raise --max-length or "
              "shorten the records")
        if not progress:
            quiet_trainer(trainer)
        run_trainer(trainer, out, resume)
        done = {"loss": [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h],
                "checkpoints": {str(e): str(p) for e, p in epoch_checkpoints(out).items()},
                "sequences_per_epoch": len(train)}
        if state.is_main_process:
            atomic_write_text(out / DONE, json.dumps(done, indent=2) + "\n")
        state.wait_for_everyone()
    return done


def tokenized_apart(rows, tokenizer, max_length: int | None = None):
    """Text prompt-completion rows as token ids, the prompt and the completion (ending in one EOS) tokenized apart and
    joined, the completion masked in for the loss: the model trains on the prompt's tokens as rollouts and evaluation
    feed them (`llm.evaluate.prompt_ids`). TRL tokenizes prompt + completion as one text, where the paper's prompt,
    which ends in a space ("... Assistant: "), loses that space token to the completion's first one (" <"): the
    model would learn from a context it never sees at inference. `max_length`: each row cut to its first
    `max_length` tokens and a row left without a target token dropped, as TRL does (which it cannot do itself for
    padding-free batches)."""
    from rlntp.llm.evaluate import prompt_ids

    def encode(row):
        prompt = prompt_ids(tokenizer, row["prompt"])
        completion = tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
        if not completion or completion[-1] != tokenizer.eos_token_id:
            completion.append(tokenizer.eos_token_id)
        ids, mask = prompt + completion, [0] * len(prompt) + [1] * len(completion)
        return {"input_ids": ids[:max_length], "completion_mask": mask[:max_length]}

    encoded = rows.map(encode, remove_columns=rows.column_names, keep_in_memory=True)  # no cache file to race for
    return encoded.filter(lambda row: any(row["completion_mask"]), keep_in_memory=True)


def epoch_checkpoints(run_dir: Path) -> dict[int, Path]:
    """Epoch (1, 2, ...) -> its checkpoint directory, read from each checkpoint's trainer_state.json."""
    found = {}
    for path in Path(run_dir).glob("checkpoint-*"):
        state = path / "trainer_state.json"
        if state.is_file():
            found[round(json.loads(state.read_text())["epoch"])] = path
    return dict(sorted(found.items()))
