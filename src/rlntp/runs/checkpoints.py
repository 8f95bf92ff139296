"""Checkpoints of a run: `checkpoints/step_0000500/`, written atomically, every file checksummed, no pickles.

    config.json, model.safetensors     a Hugging Face checkpoint (`from_pretrained` loads it)
    tokenizer.json, ...                its word-level tokenizer (`AutoTokenizer.from_pretrained`)
    trainer_state.safetensors          optimizer moments and random-generator states
    trainer_state.json                 step, samples seen, optimizer hyper-parameters, and the SHA-256
                                       of every other file, verified at every load

A checkpoint is written into a temporary directory and renamed into place, so a kill leaves either
no checkpoint or a complete one. One without checksums is refused unless the caller allows it.
"""

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from rlntp.errors import CheckpointError, RunDirError
from rlntp.files import atomic_write_text, sha256_file
from rlntp.models import ModelConfig, load_model, save_model

CHECKPOINTS = "checkpoints"
_STATE_TENSORS, _STATE_JSON = "trainer_state.safetensors", "trainer_state.json"


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step_{step:07d}"


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the complete checkpoints of a run, in increasing order."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(int(p.name.removeprefix("step_")) for p in root.glob("step_*")
                  if p.name.removeprefix("step_").isdigit() and (p / _STATE_JSON).is_file())


def resolve_checkpoint(run_dir: Path, step: int | None = None) -> Path:
    """The checkpoint at `step` (default: the last one) of a run; RunDirError if there is none."""
    steps = checkpoint_steps(run_dir)
    if not steps:
        raise RunDirError(f"{run_dir} has no checkpoints yet")
    if step is None:
        step = steps[-1]
    if step not in steps:
        raise RunDirError(f"{run_dir} has no checkpoint at step {step}; available: {', '.join(map(str, steps))}")
    return checkpoint_path(run_dir, step)


def save_checkpoint(run_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    generators: dict[str, torch.Generator], state: dict[str, Any], tokenizer=None) -> Path:
    """Write checkpoint `step` atomically (into a temporary directory, then renamed into place).

    With a `tokenizer` (a Hugging Face one), it is saved beside the weights, so `AutoTokenizer` and
    `AutoModelForCausalLM` both load the checkpoint directory. trainer_state.json records the SHA-256
    of every other file; `verify_checkpoint` checks them.
    """
    final = checkpoint_path(run_dir, step)
    if final.exists():  # never replaced: a run continues only from its last checkpoint
        raise CheckpointError(f"{final} exists already; move it away and resume")
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # a save cut short by a kill
    tmp.mkdir(parents=True)
    save_model(model, tmp)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    opt = optimizer.state_dict()
    tensors = {f"optimizer/{i}/{k}": v.contiguous() for i, s in opt["state"].items() for k, v in s.items()}
    tensors |= {f"rng/{name}": g.get_state() for name, g in generators.items()}
    save_file(tensors, tmp / _STATE_TENSORS)
    files = {}
    for path in sorted(tmp.iterdir()):
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        files[path.name] = sha256_file(path)
    meta = dict(state, step=step, optimizer_param_groups=opt["param_groups"], rng=sorted(generators), sha256=files)
    atomic_write_text(tmp / _STATE_JSON, json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, final)
    return final


_USE_ANOTHER = "delete that checkpoint (--resume then continues from the one before) or use another step"


def verify_checkpoint(checkpoint: Path, allow_unverified: bool = False) -> dict[str, Any]:
    """Check every file of a checkpoint against the SHA-256 recorded when it was written; returns its state.

    CheckpointError names the damaged file. A checkpoint that records no checksums is refused unless
    `allow_unverified` (its files are then loaded as they are).
    """
    checkpoint = Path(checkpoint)
    state = checkpoint_state(checkpoint)
    if "sha256" not in state:
        if allow_unverified:
            return state
        raise CheckpointError(f"checkpoint {checkpoint} records no checksums, so its files cannot be verified; "
                              "pass --allow-unverified to load it anyway")
    for name, digest in state["sha256"].items():
        path = checkpoint / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {checkpoint} is incomplete: {name} is missing; {_USE_ANOTHER}")
        if sha256_file(path) != digest:
            raise CheckpointError(f"checkpoint {checkpoint} is damaged: {name} differs from the checksum recorded "
                                  f"when it was written; {_USE_ANOTHER}")
    return state


def load_checkpoint_model(checkpoint: Path, config: ModelConfig, device: str | torch.device = "cpu",
                          allow_unverified: bool = False) -> nn.Module:
    """The model of a checkpoint, its files verified first (`verify_checkpoint`)."""
    verify_checkpoint(checkpoint, allow_unverified)
    return load_model(checkpoint, config, device)


def load_trainer_state(checkpoint: Path, optimizer: torch.optim.Optimizer, generators: dict[str, torch.Generator],
                       allow_unverified: bool = False) -> dict[str, Any]:
    """Restore optimizer and generators from a verified checkpoint; returns its JSON state (step, ...)."""
    meta = verify_checkpoint(checkpoint, allow_unverified)
    try:
        tensors = load_file(checkpoint / _STATE_TENSORS, device="cpu")
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            kind, *rest = key.split("/")
            if kind == "optimizer":
                state.setdefault(int(rest[0]), {})[rest[1]] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
        for name, g in generators.items():
            g.set_state(tensors[f"rng/{name}"])
    except (OSError, SafetensorError, KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {checkpoint} is corrupt or incomplete ({type(e).__name__}: {e}); "
                              "delete it to resume from an earlier one") from e
    return meta


def checkpoint_state(checkpoint: Path) -> dict[str, Any]:
    """The JSON state of a checkpoint (step, samples_seen, ...); CheckpointError if it is damaged."""
    path = Path(checkpoint) / _STATE_JSON
    try:
        state = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {checkpoint} is corrupt or incomplete ({e}); "
                              "delete it to resume from an earlier one") from e
    if not (isinstance(state, dict) and isinstance(state.get("step"), int) and isinstance(state.get("samples_seen"), int)
            and isinstance(state.get("sha256", {}), dict)):
        raise CheckpointError(f"{path} is not a checkpoint state (step, samples_seen); "
                              "delete the checkpoint to resume from an earlier one")
    return state
