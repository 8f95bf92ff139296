"""What the LLM stages share: checks of the model and precision before any work, their run directories."""

import json
from dataclasses import asdict
from pathlib import Path

from rlntp.errors import ConfigError, check, check_choice
from rlntp.files import atomic_write_text, check_new_dir

OPTIONS, DONE = "options.json", "done.json"


def check_causal_lm(model: str) -> None:
    """ConfigError unless `model` (a local directory or a hub name) holds a causal language model's config.

    Only the config is read (no weights), so a wrong path fails in a second, not after loading.
    """
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = Path(model)
    if path.exists():
        check(path.is_dir() and (path / "config.json").is_file(),
              f"{model} is not a model directory (it has no config.json); pass a directory written by "
              "save_pretrained, an SFT checkpoint, or a hub name such as meta-llama/Llama-3.2-3B")
    from huggingface_hub.utils import logging as hub_logging

    verbosity = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()  # its retry warnings would bury the one-line error below
    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"cannot read the model config of {model!r}: {reason}; without network access, pass a "
                          "local directory written by save_pretrained") from None
    finally:
        hub_logging.set_verbosity(verbosity)
    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    architectures = getattr(config, "architectures", None) or []
    if architectures:
        check(any(a in causal for a in architectures),
              f"{model} is a {', '.join(architectures)}, not a causal language model; SFT and GRPO need one "
              "(for example LlamaForCausalLM)")
    else:
        check(config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
              f"{model} is a {config.model_type} model with no causal language model head")


PRECISIONS = ("auto", "bf16", "fp32")


def use_bf16(precision: str, cpu: bool) -> bool:
    """Whether to train in bf16: `--precision bf16` (a CUDA GPU with bf16 must be in use), fp32, or auto (bf16 on
    CUDA, float32 on the CPU)."""
    import torch

    check_choice("precision", precision, PRECISIONS)
    cuda = torch.cuda.is_available() and not cpu
    if precision == "bf16":
        check(cuda, "--precision bf16 needs a CUDA GPU and none is in use here; use --precision fp32 or auto")
        check(torch.cuda.is_bf16_supported(), "--precision bf16: this GPU does not support bf16; use fp32")
    return precision == "bf16" or (precision == "auto" and cuda)


def claim_run_dir(out: Path, options, what: str) -> bool:
    """Record `options` in OUT/options.json of a new run directory; True if `out` already holds a run of the same
    options with checkpoints to resume from. Another run's directory, or a non-empty one, is refused.
    """
    recorded = out / OPTIONS
    mine = json.loads(json.dumps(asdict(options), default=str))
    if recorded.is_file():
        theirs = json.loads(recorded.read_text())
        changed = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        check(not changed, f"{out} holds a {what} with other options ({', '.join(changed)}); choose a new --out")
        return any(out.glob("checkpoint-*"))
    check_new_dir(out, what)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(recorded, json.dumps(mine, indent=2) + "\n")
    return False


def quiet_trainer(trainer) -> None:
    """Stop a Hugging Face trainer from printing its log dicts (its progress bar is off already)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def distributed():
    """accelerate's view of this process (rank, world size) under `accelerate launch`; one process otherwise."""
    from accelerate import PartialState

    return PartialState()
