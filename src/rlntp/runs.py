"""Run directories: the resolved config, metrics.jsonl, checkpoints; safe creation, a lock, resume.

Layout of a run directory:

    config.json                    the full resolved config ({"stage": ..., "task": ..., ...})
    metrics.jsonl                  one JSON object per evaluation (`step`, `samples_seen`, `eval/...`)
    checkpoints/step_0000500/      one per save, all kept:
        config.json, model.safetensors     a Hugging Face checkpoint (`from_pretrained` loads it)
        tokenizer.json, ...                its word-level tokenizer (`AutoTokenizer.from_pretrained`)
        trainer_state.safetensors          optimizer moments and random-generator states
        trainer_state.json                 step, samples seen, optimizer hyper-parameters, and the
                                           SHA-256 of every other file, verified at every load
    rlntp.lock                     held by the process writing the run (see `files.DirLock`)
    plot.png                       written by `rlntp plot`

A new run goes only into a missing or empty directory, an existing one is continued only with
`--resume`, and one process at a time writes it (`open_run_dir`). Everything is written to a
temporary name and renamed into place, so a kill at any moment leaves either the previous complete
file or the new complete one. Nothing here is ever unpickled. Every reader turns a damaged file into
one line naming the file (and the line of metrics.jsonl).
"""

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from rlntp.errors import CheckpointError, Interrupted, RunDirError, UserError
from rlntp.files import DirLock, atomic_write_text, check_out_path, foreign_entries, make_dirs, sha256_file
from rlntp.models import ModelConfig, load_model, save_model
from rlntp.tasks import TaskConfig

CONFIG, METRICS, CHECKPOINTS = "config.json", "metrics.jsonl", "checkpoints"
STAGES = ("pretrain", "posttrain")
_STATE_TENSORS, _STATE_JSON = "trainer_state.safetensors", "trainer_state.json"


@dataclass
class RunDir:
    """A run directory held by a stage (`open_run_dir`)."""

    path: Path
    new: bool
    """a new run (else a resumed one)"""
    step: int = 0
    """the step the stage's loop is at: a Ctrl-C names it"""


@contextmanager
def open_run_dir(out: Path, config: dict[str, Any], resume: bool, resumable_changes: set[str], steps: int,
                 normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Iterator[RunDir]:
    """Hold the run directory `out` for `config` while the body runs.

    A new run needs a missing or empty directory; one that holds a run is continued only with
    `resume`, and only with the same options except those in `resumable_changes` (dotted paths such as
    "train.steps") and never with fewer `steps` than its last checkpoint. `--resume` on a directory
    with no run starts one, so a command with --resume can be repeated until its run is complete.
    `normalize` rewrites the saved config as the current code would write it (options added since
    the run started take their defaults), so that older runs resume.

    The directory is locked for the whole body. If the body fails before the new run wrote any
    metrics or checkpoint, what this function created is removed, so a plain retry is not blocked.
    A Ctrl-C (KeyboardInterrupt) in the body becomes `Interrupted` at the yielded handle's `step`.
    """
    out = Path(out)
    with _locked_dir(out) as undo:
        try:
            new = _claim(out, config, resume, resumable_changes, steps, normalize)
        except BaseException:  # refused: leave the directory as it was found
            undo()
            raise
        handle = RunDir(out, new)
        try:
            yield handle
        except BaseException as e:
            if new and not (out / METRICS).exists() and not (out / CHECKPOINTS).exists():
                (out / CONFIG).unlink(missing_ok=True)
                undo()
            if isinstance(e, KeyboardInterrupt):
                raise Interrupted(out, handle.step) from None
            raise


@contextmanager
def _locked_dir(out: Path) -> Iterator[Callable[[], None]]:
    """Create `out` if missing and hold its lock while the body runs.

    Yields `undo`, which removes what this created (the lock file, the directories) for a start
    that was refused or failed before it wrote anything of value.
    """
    check_out_path(out)
    created = make_dirs(out)
    lock = DirLock(out, "--out")
    lock_existed = lock.path.exists()
    try:
        lock.acquire()
    except BaseException:
        _remove_dirs(created)
        raise

    def undo() -> None:
        lock.release(remove=not lock_existed)
        _remove_dirs(created)

    try:
        yield undo
    finally:
        lock.release()


RECIPE, SWEEP = "recipe.json", "sweep.json"


@contextmanager
def open_recipe_dir(out: Path, recipe: str, preset: dict[str, Any]) -> Iterator[Path]:
    """Hold the directory of a recipe (its runs, figures, summary) while the body runs.

    The directory must be missing or empty, or hold this recipe with this preset (recipe.json), so a
    rerun resumes it and a recipe never writes its figures into a directory it did not create.
    """
    with _marked_dir(out, RECIPE, {"recipe": recipe, "preset": preset}, "recipe", same=True):
        yield Path(out)


@contextmanager
def open_sweep_dir(out: Path, spec: dict[str, Any]) -> Iterator[Path]:
    """Hold the directory of a sweep while the body runs: a missing or empty one, or one holding a sweep.

    sweep.json holds the sweep itself (`rlntp sweep DIR/sweep.json` reads it). A changed sweep may
    continue in its directory (sweep.json is updated): its new runs are added, and a run that already
    exists under another config is refused by that run's own resume check.
    """
    with _marked_dir(out, SWEEP, spec, "pretrain", same=False):
        yield Path(out)


@contextmanager
def _marked_dir(out: Path, marker_name: str, marker: dict[str, Any], key: str, same: bool) -> Iterator[None]:
    """Hold `out`, whose file `marker_name` (a JSON object with `key`) says it is ours.

    The marker is written into an empty directory; an existing one must equal `marker` if `same`.
    """
    out = Path(out)
    marker = json.loads(json.dumps(marker))
    with _locked_dir(out) as undo:
        try:
            _claim_marked(out, marker_name, marker, key, same)
        except BaseException:
            undo()
            raise
        yield


def _claim_marked(out: Path, marker_name: str, marker: dict[str, Any], key: str, same: bool) -> None:
    """Under the lock: mark an empty directory as ours, or check that it already is."""
    path = out / marker_name
    what = marker_name.removesuffix(".json")
    if path.exists():
        try:
            saved = json.loads(path.read_bytes())
        except (OSError, ValueError) as e:
            raise RunDirError(f"{path} is not valid JSON ({e}); restore it or choose another --out") from e
        if not isinstance(saved, dict) or key not in saved:
            raise RunDirError(f"{path} is not an rlntp {what} file; restore it or choose another --out")
        if saved == marker:
            return
        if same:
            raise RunDirError(f"{out} holds the {saved[key]!r} {what} with other settings; "
                              "choose another --out (or rerun the command that made it)")
    elif foreign := foreign_entries(out, set()):
        raise RunDirError(f"{out} holds files that are not this {what}'s ({', '.join(foreign[:3])}); "
                          "choose a new or empty directory for --out")
    atomic_write_text(path, json.dumps(marker, indent=2) + "\n")


def _claim(out: Path, config: dict[str, Any], resume: bool, resumable_changes: set[str], steps: int,
           normalize: Callable[[dict[str, Any]], dict[str, Any]] | None) -> bool:
    """Under the lock: write a new run's config, or check that resuming continues the same run."""
    foreign = foreign_entries(out, {CONFIG, METRICS, CHECKPOINTS, "plot.png"})
    if foreign or (out / METRICS).exists() and not (out / CONFIG).exists():
        raise RunDirError(f"{out} holds files that are not an rlntp run ({', '.join(foreign[:3] or [METRICS])}"
                          f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty directory for --out")
    if not (out / CONFIG).exists():
        write_config(out, config)
        return True
    if not resume:
        raise RunDirError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    saved = read_config(out)
    if normalize is not None:
        try:
            saved = normalize(saved)
        except (KeyError, TypeError, UserError) as e:
            raise RunDirError(f"{out / CONFIG} is not a valid run config ({e}); restore it or start a new run") from e
    diffs = [f"{k} (run: {a}, given: {b})" for k, (a, b) in sorted(_flat_diff(saved, config).items())
             if k not in resumable_changes]
    if diffs:
        raise RunDirError(f"--resume must repeat the run's options; {out / CONFIG} differs in " + "; ".join(diffs))
    done = checkpoint_steps(out)
    if done and steps < done[-1]:
        raise RunDirError(f"the run in {out} already reached step {done[-1]}; --steps {steps} would discard "
                          f"training; pass --steps {done[-1]} or more")
    write_config(out, config)
    return False


def _remove_dirs(created: list[Path]) -> None:
    """Remove the directories a failed start created, deepest first, each only if still empty."""
    for directory in created:
        try:
            directory.rmdir()
        except OSError:
            return


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / CONFIG, json.dumps(config, indent=2) + "\n")


def read_config(run_dir: Path) -> dict[str, Any]:
    """The config of a run directory (its stage, task and model sections checked); RunDirError if it is not one."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a run directory (no {CONFIG}); pass the --out of an rlntp run")
    try:
        config = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:  # ValueError: invalid JSON or UTF-8
        raise RunDirError(f"{path} is not valid JSON ({e}); restore it or start a new run") from e
    if not isinstance(config, dict) or config.get("stage") not in STAGES:
        raise RunDirError(f"{path} is not an rlntp run config (no stage {' or '.join(STAGES)}); restore it")
    for key, kind in (("task", dict), ("model", dict)) + (
            (("source", str), ("source_step", int), ("start_samples_seen", int)) if config["stage"] == "posttrain" else ()):
        if not isinstance(config.get(key), kind):
            raise RunDirError(f"{path} has no valid {key!r} entry; restore it or start a new run")
    return config


def read_task_and_model(run_dir: Path) -> tuple[TaskConfig, ModelConfig]:
    """The task and model configs of any run directory (validated)."""
    config = read_config(run_dir)
    try:
        return TaskConfig(**config["task"]), ModelConfig(**config["model"])
    except (TypeError, UserError) as e:
        raise RunDirError(f"{Path(run_dir) / CONFIG} has no valid task and model sections ({e})") from e


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one evaluation as a JSON line, flushed to disk before returning."""
    with open(run_dir / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(run_dir: Path, keys: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """All metric records of a run, each holding an integer `step` and a number for each of `keys`.

    A last line without its newline (cut short by a kill) is ignored; any other damaged line is a
    RunDirError naming the file and the line.
    """
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    *lines, _ = path.read_bytes().split(b"\n")  # the part after the last newline: a torn write or nothing
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise RunDirError(f"{path}, line {number}: not a JSON record ({e}); fix or delete that line") from e
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise RunDirError(f"{path}, line {number}: not a metrics record (an object with an integer step); "
                              "fix or delete that line")
        missing = [k for k in keys if not isinstance(record.get(k), (int, float))]
        if missing:
            raise RunDirError(f"{path}, line {number}: no number for {', '.join(missing)}; fix or delete that line")
        records.append(record)
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


def verify_checkpoint(checkpoint: Path) -> dict[str, Any]:
    """Check every file of a checkpoint against the SHA-256 recorded when it was written; returns its state.

    CheckpointError names the damaged file. Checkpoints written before checksums existed pass unchecked.
    """
    checkpoint = Path(checkpoint)
    state = checkpoint_state(checkpoint)
    for name, digest in state.get("sha256", {}).items():
        path = checkpoint / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint {checkpoint} is incomplete: {name} is missing; {_USE_ANOTHER}")
        if sha256_file(path) != digest:
            raise CheckpointError(f"checkpoint {checkpoint} is damaged: {name} differs from the checksum recorded "
                                  f"when it was written; {_USE_ANOTHER}")
    return state


def load_checkpoint_model(checkpoint: Path, config: ModelConfig, device: str | torch.device = "cpu") -> nn.Module:
    """The model of a checkpoint, its files verified first (`verify_checkpoint`)."""
    verify_checkpoint(checkpoint)
    return load_model(checkpoint, config, device)


def load_trainer_state(checkpoint: Path, optimizer: torch.optim.Optimizer,
                       generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Restore optimizer and generators from a verified checkpoint; returns its JSON state (step, ...)."""
    meta = verify_checkpoint(checkpoint)
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
