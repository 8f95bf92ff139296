"""What the LLM stages share: their common options, checks of the model and precision before any work, and
their run directories (claimed and locked like every other run's, `runs.dirs`)."""

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from rlntp.config import Config
from rlntp.devices import check_precision
from rlntp.errors import ConfigError, Interrupted, check
from rlntp.runs.dirs import CONFIG, open_run_dir

DONE = "done.json"
ENTRIES = (CONFIG, "checkpoint-*", DONE, "README.md", "runs", "wandb", "mlruns")
"""What an LLM stage's run directory holds: its config, TRL's checkpoints and model card, the record written last,
and the directories of its trackers (`--report-to`)."""
RESUMABLE_CHANGES = frozenset({"report_to"})
"""The options in which a rerun of an SFT or GRPO run may differ from the run in its directory."""


def trl_report_to(names: tuple[str, ...], out: Path) -> list[str] | str:
    """TRL's `report_to` for `--report-to` (`none` for none), with the trackers pointed at `out` and offline unless
    the user's environment says otherwise (W&B offline in OUT/wandb, MLflow's file store in OUT/mlruns; TensorBoard
    writes under OUT/runs, transformers' default). A file store, ours or the user's, is allowed
    (MLFLOW_ALLOW_FILE_STORE, unless set); an MLflow store of the user's that does not open is dropped in one line."""
    import os

    from rlntp.runs.trackers import check_trackers, is_file_store, mlflow_store_opens

    names = check_trackers(names)
    if "wandb" in names:
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(Path(out).resolve()))
        os.environ.setdefault("WANDB_SILENT", "true")
    if "mlflow" in names:
        users = os.environ.get("MLFLOW_TRACKING_URI")
        if not users:
            os.environ["MLFLOW_TRACKING_URI"] = (Path(out) / "mlruns").resolve().as_uri()
        if is_file_store(os.environ["MLFLOW_TRACKING_URI"]):  # MLflow 3's file store is behind this switch
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        if users and not mlflow_store_opens(users):  # a store of the user's that fails: one line, not a traceback
            names = tuple(name for name in names if name != "mlflow")
    return list(names) or "none"


@dataclass(frozen=True)
class LLMStageConfig(Config):
    """The options every LLM stage shares: the model, the data, where and in which precision it runs."""

    model: str
    """a hub name (meta-llama/Llama-3.2-3B), a local directory (save_pretrained, or a checkpoint of a stage), a .gguf
    file, or a named source (smollm2-135m); a GGUF is converted once to safetensors (`llm.sources`)"""
    data: Path
    """a dataset directory made by `rlntp llm data`"""
    precision: str = "auto"
    """auto (bf16 on a CUDA GPU that has it, float32 on the CPU), bf16 or fp32"""
    cpu: bool = False
    """run on the CPU even where a GPU is present"""
    seed: int = 0
    """seed of the data order, the sampling and the trainer"""
    allow_pickle: bool = False
    """load weights from a pickled pytorch_model.bin where the model has no safetensors (only for files you trust)"""
    report_to: tuple[str, ...] = ()
    """also log to these trackers through TRL, offline, in OUT: none, tensorboard, wandb, mlflow (several allowed)"""

    def check(self) -> None:
        from rlntp.runs.trackers import check_trackers

        check_precision(self.precision)
        check_trackers(self.report_to)


def check_weights(model: str, allow_pickle: bool) -> None:
    """ConfigError if the local model directory `model` has pickled weights only and `allow_pickle` is off."""
    path = Path(model)
    if allow_pickle or not path.is_dir() or any(path.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
    check(not pickles, f"{model} holds pickled weights only ({', '.join(pickles)}); rlntp loads safetensors: "
                       "convert them (save_pretrained writes safetensors), or pass --allow-pickle if you trust the file")


def check_model(model: str, allow_pickle: bool) -> None:
    """ConfigError in one line, before any work, unless `model` can be loaded: a GGUF source with its package and file
    (`llm.sources.gguf_source`), or a causal language model's directory or hub name with safetensors weights (or
    `allow_pickle`)."""
    from rlntp.llm.sources import gguf_source

    if gguf_source(model) is None:
        check_causal_lm(model)
        check_weights(model, allow_pickle)


def load_causal_lm(model: str, allow_pickle: bool = False, dtype="auto"):
    """`AutoModelForCausalLM.from_pretrained` from safetensors only, unless `allow_pickle`."""
    from transformers import AutoModelForCausalLM

    check_weights(model, allow_pickle)
    try:
        return AutoModelForCausalLM.from_pretrained(model, dtype=dtype, use_safetensors=not allow_pickle or None)
    except OSError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot load the weights of {model!r}: {reason}") from None


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
              "save_pretrained, an SFT checkpoint, a .gguf file, smollm2-135m, or a hub name such as "
              "meta-llama/Llama-3.2-3B")
    else:  # a hub name: asked once, so a machine without network fails in seconds, not after the retries of a download
        check(not model.startswith((".", "/", "~")) and model.count("/") <= 1,
              f"{model}: no such model directory; pass a directory written by save_pretrained, an SFT checkpoint, "
              "a .gguf file, smollm2-135m, or a hub name such as meta-llama/Llama-3.2-3B")
        check_on_hub(model, "model", "without network access, pass a local directory written by save_pretrained")
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


def use_bf16(precision: str, cpu: bool) -> bool:
    """Whether to run in bf16: `--precision bf16` (on a CUDA GPU, one with bf16; on the CPU too: SFT and GRPO as
    TRL's trainers default to, autocast, 1.5-1.7x faster SFT steps than float32 on a CPU with AVX512-BF16,
    docs/benchmarks.md; evaluation with bf16 weights), fp32, or auto (bf16 on a CUDA GPU that has it, float32 on the
    CPU)."""
    import torch

    check_precision(precision)
    cuda = torch.cuda.is_available() and not cpu
    if precision == "bf16" and cuda:
        check(torch.cuda.is_bf16_supported(), "--precision bf16: this GPU does not support bf16; use fp32")
    return precision == "bf16" or (precision == "auto" and cuda and torch.cuda.is_bf16_supported())


@contextmanager
def open_stage_dir(out: Path, stage: str, config: LLMStageConfig, state,
                   source: dict | None = None) -> Iterator[bool]:
    """Hold the run directory of an LLM stage while the body runs; yields whether it has checkpoints to resume.

    A new run needs a missing or empty directory; rerunning the same command with the same options
    continues it; another run's directory, or one with other files, is refused (`runs.dirs.open_run_dir`).
    Under `accelerate launch` the main process claims the directory and holds its lock; the others
    wait for it. `source`: the model's GGUF source (`llm.sources.resolve_model`), recorded as `model_source`.
    """
    record = {"stage": stage} | json.loads(json.dumps(asdict(config), default=str))
    if source is not None:
        record["model_source"] = source
    with ExitStack() as stack:
        if state.is_main_process:
            stack.enter_context(open_run_dir(out, record, resume=True, resumable_changes=RESUMABLE_CHANGES, steps=0,
                                             entries=ENTRIES))
        state.wait_for_everyone()
        yield any(Path(out).glob("checkpoint-*"))


def run_trainer(trainer, out: Path, resume: bool) -> None:
    """`trainer.train()`, from the last checkpoint in `out` when `resume`; a Ctrl-C ends it as `Interrupted` at the
    trainer's step (rerunning the command resumes from the last checkpoint)."""
    try:
        trainer.train(resume_from_checkpoint=resume or None)
    except KeyboardInterrupt:
        raise Interrupted(out, trainer.state.global_step) from None


def quiet_trainer(trainer) -> None:
    """Stop a Hugging Face trainer from printing its log dicts (its progress bar is off already)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def distributed():
    """accelerate's view of this process (rank, world size) under `accelerate launch`; one process otherwise."""
    from accelerate import PartialState

    return PartialState()


HUB_TIMEOUT_S = 5.0
"""How long the hub may take to answer whether a model or dataset is there."""


def check_on_hub(repo_id: str, kind: str, hint: str) -> None:
    """ConfigError in one line, within HUB_TIMEOUT_S, unless the hub has the model or dataset `repo_id` (kind
    "model" or "dataset"); with HF_HUB_OFFLINE set, unless the local cache has it. `hint` says what to pass
    instead. Asked once, with no retries, so a machine without network fails in seconds, not after the retries of
    a download."""
    from huggingface_hub import HfApi, constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE:
        if kind == "model":
            cached = isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
        else:
            cached = any(Path(constants.HF_HUB_CACHE).glob(f"datasets--{repo_id.replace('/', '--')}")) or any(
                Path(_datasets_cache()).glob(f"{repo_id.replace('/', '___')}*"))
        check(cached, f"HF_HUB_OFFLINE is set and the {kind} {repo_id!r} is not in the local cache; {hint}")
        return
    api = HfApi()
    info = api.model_info if kind == "model" else api.dataset_info
    try:
        info(repo_id, timeout=HUB_TIMEOUT_S)
    except Exception as e:  # network, not found, gated, rate-limited: each ends the run the same way
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot reach the {kind} {repo_id!r} on the Hugging Face hub ({reason}); {hint} (or set "
                          "HF_HUB_OFFLINE=1 to use a cached copy)") from None


def _datasets_cache() -> str:
    from datasets import config

    return str(config.HF_DATASETS_CACHE)
