"""Run directories: the resolved config, metrics.jsonl, checkpoints; atomic writes and resume.

Layout of a run directory:

    config.json                    the full resolved config ({"stage": ..., "task": ..., ...})
    metrics.jsonl                  one JSON object per evaluation (`step`, `samples_seen`, `eval/...`)
    checkpoints/step_0000500/      one per save, all kept:
        config.json, model.safetensors     a Hugging Face checkpoint (`from_pretrained` loads it)
        tokenizer.json, ...                its word-level tokenizer (`AutoTokenizer.from_pretrained`)
        trainer_state.safetensors          optimizer moments and random-generator states
        trainer_state.json                 step, samples seen, optimizer hyper-parameters
    plot.png                       written by `rlntp plot`

Everything is written to a temporary name and renamed into place, so a kill at any moment leaves
either the previous complete file or the new complete one. Nothing here is ever unpickled.
"""

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from rlntp.errors import CheckpointError, RunDirError
from rlntp.models import ModelConfig, save_model
from rlntp.tasks import TaskConfig

CONFIG, METRICS, CHECKPOINTS = "config.json", "metrics.jsonl", "checkpoints"
_STATE_TENSORS, _STATE_JSON = "trainer_state.safetensors", "trainer_state.json"


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see either the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG, json.dumps(config, indent=2) + "\n")


def read_config(run_dir: Path) -> dict[str, Any]:
    """The config of a run directory; RunDirError if `run_dir` is not one."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a run directory (no {CONFIG}); pass the --out of an rlntp run")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path} is not valid JSON ({e}); restore it or start a new run") from e


def read_task_and_model(run_dir: Path) -> tuple[TaskConfig, ModelConfig]:
    """The task and model configs of any run directory (validated)."""
    config = read_config(run_dir)
    try:
        return TaskConfig(**config["task"]), ModelConfig(**config["model"])
    except (KeyError, TypeError) as e:
        raise RunDirError(f"{run_dir}/{CONFIG} has no valid task and model sections ({e})") from e


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one evaluation as a JSON line, flushed to disk before returning."""
    with open(run_dir / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All complete metric records (a line cut short by a kill is ignored)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(run_dir: Path, last_step: int) -> None:
    """Keep only records up to `last_step`: the ones a resumed run would otherwise write twice."""
    kept = [r for r in read_metrics(run_dir) if r["step"] <= last_step]
    atomic_write_text(run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in kept))


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
    `AutoModelForCausalLM` both load the checkpoint directory.
    """
    final = checkpoint_path(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, tmp)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    opt = optimizer.state_dict()
    tensors = {f"optimizer/{i}/{k}": v.contiguous() for i, s in opt["state"].items() for k, v in s.items()}
    tensors |= {f"rng/{name}": g.get_state() for name, g in generators.items()}
    save_file(tensors, tmp / _STATE_TENSORS)
    meta = dict(state, step=step, optimizer_param_groups=opt["param_groups"], rng=sorted(generators))
    (tmp / _STATE_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    for path in tmp.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def load_trainer_state(checkpoint: Path, optimizer: torch.optim.Optimizer,
                       generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Restore optimizer and generators from a checkpoint; returns its JSON state (step, ...)."""
    try:
        meta = json.loads((checkpoint / _STATE_JSON).read_text())
        tensors = load_file(checkpoint / _STATE_TENSORS, device="cpu")
    except (OSError, json.JSONDecodeError, SafetensorError) as e:
        raise CheckpointError(f"checkpoint {checkpoint} is corrupt or incomplete ({e}); "
                              "delete it to resume from an earlier one") from e
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        kind, *rest = key.split("/")
        if kind == "optimizer":
            state.setdefault(int(rest[0]), {})[rest[1]] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
    for name, g in generators.items():
        g.set_state(tensors[f"rng/{name}"])
    return meta


def prepare_run_dir(out: Path, config: dict[str, Any], resume: bool, resumable_changes: set[str],
                    normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
    """Create the run directory `out` for `config`, or check that resuming it continues the same run.

    `--resume` on a directory with no run in it starts one, so a command with --resume can simply be
    repeated until its run is complete. Resuming may change only the keys in `resumable_changes`
    (dotted paths such as "train.steps"). `normalize` rewrites the saved config as the current code
    would write it (options added since the run started take their defaults), so that older runs resume.
    """
    out = Path(out)
    if not resume or not (out / CONFIG).exists():
        if (out / CONFIG).exists():
            raise RunDirError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
        write_config(out, config)
        return
    saved = read_config(out)
    if normalize is not None:
        try:
            saved = normalize(saved)
        except (KeyError, TypeError) as e:
            raise RunDirError(f"{out}/{CONFIG} is not a valid run config ({e}); restore it or start a new run") from e
    diffs = [f"{k} (run: {a}, given: {b})" for k, (a, b) in sorted(_flat_diff(saved, config).items())
             if k not in resumable_changes]
    if diffs:
        raise RunDirError(f"--resume must repeat the run's options; {out}/{CONFIG} differs in " + "; ".join(diffs))
    write_config(out, config)


def _flat_diff(a: dict, b: dict, prefix: str = "") -> dict[str, tuple]:
    diffs = {}
    for key in a.keys() | b.keys():
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diffs |= _flat_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            diffs[f"{prefix}{key}"] = (va, vb)
    return diffs


def checkpoint_state(checkpoint: Path) -> dict[str, Any]:
    """The JSON state of a checkpoint (step, samples_seen, ...)."""
    try:
        return json.loads((Path(checkpoint) / _STATE_JSON).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {checkpoint} is corrupt or incomplete ({e})") from e
