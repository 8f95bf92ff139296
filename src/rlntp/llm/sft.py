"""`rlntp llm sft`: supervised fine-tuning on a mixture's SFT half with TRL's SFTTrainer (paper App. B.3-B.4).

The loss is next-token prediction on the target only (`<think>..</think> <answer>..</answer>` and the
end of turn), never on the prompt. A checkpoint is written after every epoch, because RL starts from
several of them; a killed run resumes from its last one.

    OUT/options.json          these options
    OUT/checkpoint-STEP/      one per epoch: model, tokenizer, optimizer and trainer state (no pickles
                              are loaded from it but the trainer's own on resume)
    OUT/done.json             the final loss history, written last
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlntp.config import Config
from rlntp.errors import ConfigError, check, check_choice
from rlntp.files import atomic_write_text
from rlntp.llm.common import DONE, PRECISIONS


@dataclass(frozen=True)
class SFTOptions(Config):
    """Supervised fine-tuning of a pretrained causal LM on the SFT half of a mixture."""

    model: str
    """the pretrained model: a hub name (meta-llama/Llama-3.2-3B) or a local directory"""
    data: Path
    """a dataset directory made by `rlntp llm data`"""
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
    precision: str = "auto"
    """auto (bf16 on CUDA, float32 on the CPU), bf16 or fp32"""
    gradient_checkpointing: bool = False
    """recompute activations in backward (needed for 3B/8B models on 80 GB GPUs)"""
    cpu: bool = False
    """train on the CPU even where a GPU is present"""
    seed: int = 0
    """seed of the data order and of the trainer"""

    def check(self) -> None:
        for name in ("epochs", "per_device_batch", "grad_accum", "max_length"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check_choice("precision", self.precision, PRECISIONS)


def run_sft(options: SFTOptions, out: Path, progress: bool = True) -> dict[str, Any]:
    """Fine-tune `options.model` on the SFT half of `options.data` into `out`; resumes a killed run there.

    Returns the done record: the loss at each logging step and each epoch's checkpoint.
    """
    from rlntp.llm.data import read_split
    from rlntp.llm.common import check_causal_lm, claim_run_dir, distributed, quiet_trainer, use_bf16

    out = Path(out)
    bf16 = use_bf16(options.precision, options.cpu)

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    try:
        args = SFTConfig(
            output_dir=str(out), num_train_epochs=options.epochs, learning_rate=options.lr,
            per_device_train_batch_size=options.per_device_batch, gradient_accumulation_steps=options.grad_accum,
            max_length=options.max_length, completion_only_loss=True, optim="adamw_torch",
            bf16=bf16, activation_checkpointing=options.gradient_checkpointing,
            gradient_checkpointing=None, use_cpu=options.cpu,
            save_strategy="epoch", save_only_model=False, logging_steps=1, report_to="none",
            seed=options.seed, data_seed=options.seed, disable_tqdm=not progress, dataset_num_proc=None,
        )
    except ValueError as e:  # TRL's and transformers' own checks of the combination
        raise ConfigError(str(e).splitlines()[0]) from None
    check_causal_lm(options.model)
    train = read_split(options.data, "sft").select_columns(["prompt", "completion"])
    state = distributed()
    with state.main_process_first():  # one process creates the directory, the others then find it
        resume = claim_run_dir(out, options, "SFT run")
    if (out / DONE).is_file():
        return json.loads((out / DONE).read_text())
    tokenizer = AutoTokenizer.from_pretrained(options.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(options.model, dtype="auto")
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    if not progress:
        quiet_trainer(trainer)
    trainer.train(resume_from_checkpoint=resume or None)
    done = {"loss": [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h],
            "checkpoints": {str(e): str(p) for e, p in epoch_checkpoints(out).items()},
            "sequences_per_epoch": len(train)}
    if state.is_main_process:
        atomic_write_text(out / DONE, json.dumps(done, indent=2) + "\n")
    state.wait_for_everyone()
    return done


def epoch_checkpoints(run_dir: Path) -> dict[int, Path]:
    """Epoch (1, 2, ...) -> its checkpoint directory, read from each checkpoint's trainer_state.json."""
    found = {}
    for path in Path(run_dir).glob("checkpoint-*"):
        state = path / "trainer_state.json"
        if state.is_file():
            found[round(json.loads(state.read_text())["epoch"])] = path
    return dict(sorted(found.items()))
