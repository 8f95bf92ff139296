"""Claiming a directory before writing it: one mechanism for runs, sweeps and recipes, with a lock.

rlntp writes into a directory only if it is new (missing or empty) or already holds the marker that
rlntp wrote there for the same kind of work:

    a run (pretrain, posttrain, llm sft, llm grpo)   config.json, with its "stage"
    a sweep (rlntp sweep)                            status.json, the sweep's run states
    a recipe (rlntp reproduce NAME)                  report.json, the recipe, its preset and settings

Anything else (a user's folder, another kind's directory, a recipe with other settings) is refused
with one line naming what is in the way, before anything is written. One process at a time holds a
claimed directory (`DirLock`); a start that is refused or fails before writing anything of value
leaves the directory as it was found.
"""

import fcntl
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import torch

from rlntp.errors import Interrupted, RunDirError, UserError
from rlntp.files import atomic_write_text, check_out_path, make_dirs
from rlntp.runs import history
from rlntp.runs.checkpoints import CHECKPOINTS, checkpoint_steps, load_trainer_state, resolve_checkpoint
from rlntp.runs.metrics import METRICS, truncate_metrics
from rlntp.runs.trackers import TRACKER_DIRS, TRACKER_STATE

CONFIG, LOCK, TASK = "config.json", "rlntp.lock", "task.json"
STATUS, REPORT = "status.json", "report.json"
STAGES = ("pretrain", "posttrain")
RUN_ENTRIES = (CONFIG, TASK, METRICS, CHECKPOINTS, "plot.png", *TRACKER_DIRS.values(), TRACKER_STATE)
"""What a pre- or post-training run directory holds (task.json: its task's identity, `runs.task_record`; `rlntp plot`
writes plot.png into it; `--report-to` its trackers' directories and trackers.json, `runs.trackers`)."""
_STARTED = (CONFIG, TASK, TRACKER_STATE, *TRACKER_DIRS.values())
"""What a new run writes before its first metrics: removed when its start fails, so a plain retry is not blocked."""


class DirLock:
    """An advisory lock on DIRECTORY/rlntp.lock that says which process holds it.

    flock(2) rather than the `filelock` package: `filelock` opens the lock file with O_TRUNC on every
    attempt, which erases the holder's description that a refused process should print. The kernel
    drops an flock when its process dies, so a lock left by a killed run never blocks the next one.
    """

    def __init__(self, directory: Path, what: str = "--out"):
        self.path = Path(directory) / LOCK
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "DirLock":
        """Take the lock, or raise RunDirError naming the process that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "a process that has not said which"
            os.close(fd)
            raise RunDirError(f"{self.path.parent} is in use by another rlntp process ({holder}); "
                              f"wait for it to finish, or choose another {self.what}") from None
        command = " ".join(["rlntp", *sys.argv[1:]]) if sys.argv and "rlntp" in sys.argv[0] else " ".join(sys.argv)
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}: {command}\n".encode())
        self._fd = fd
        return self

    def release(self, remove: bool = False) -> None:
        """Release the lock; `remove` also deletes the lock file (when the directory is being removed)."""
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def foreign_entries(directory: Path, ours: tuple[str, ...] = ()) -> list[str]:
    """Names in `directory` matching none of the glob patterns `ours` (the lock file is always ours)."""
    if not directory.is_dir():
        return []
    return sorted(name for name in os.listdir(directory) if name != LOCK and not _temporary(name)
                  and not any(fnmatch(name, pattern) for pattern in ours))


def _temporary(name: str) -> bool:
    """A file `files.atomic_write_bytes` was writing when its process was killed."""
    return name.startswith(".") and name.endswith(".tmp")


@contextmanager
def _locked_dir(out: Path) -> Iterator[Callable[[], None]]:
    """Create `out` if missing and hold its lock while the body runs.

    Yields `undo`, which removes what this created (the lock file, the directories) for a start
    that was refused or failed before it wrote anything of value.
    """
    check_out_path(out)
    created = make_dirs(out)
    lock = DirLock(out)
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


def _remove_dirs(created: list[Path]) -> None:
    """Remove the directories a failed start created, deepest first, each only if still empty."""
    for directory in created:
        try:
            directory.rmdir()
        except OSError:
            return


@contextmanager
def claim_dir(out: Path, claim: Callable[[], bool], markers: tuple[str, ...]) -> Iterator[bool]:
    """The one way rlntp claims a directory (a run's, a sweep's, a recipe's): lock `out` (created if missing) while
    the body runs; yield whether the claim made it new.

    `claim()` runs under the lock: it refuses (raises) what is in the way, or writes the kind's marker and returns
    whether the directory is new. A refused claim leaves the directory as it was found; so does a body that fails
    while a new directory holds nothing but `markers` (glob patterns: what the claim and the start of the work
    write), which are then removed with what the claim created.
    """
    out = Path(out)
    with _locked_dir(out) as undo:
        try:
            new = claim()
        except BaseException:
            undo()
            raise
        try:
            yield new
        except BaseException:
            if new and not foreign_entries(out, markers):
                for name in foreign_entries(out):
                    if (out / name).is_dir():
                        shutil.rmtree(out / name, ignore_errors=True)
                    else:
                        (out / name).unlink(missing_ok=True)
                undo()
            raise


def _listed(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


# --- runs ----------------------------------------------------------------------------------------------


@dataclass
class RunDir:
    """A run directory held by a stage (`open_run_dir`)."""

    path: Path
    new: bool
    """a new run (else a resumed one)"""
    step: int = 0
    """the step the stage's loop is at: a Ctrl-C names it"""

    def resume_point(self) -> Path | None:
        """The checkpoint a resumed run continues from (its last); None for a new run or one with no checkpoint."""
        if self.new or not checkpoint_steps(self.path):
            return None
        return resolve_checkpoint(self.path)

    def restore(self, checkpoint: Path | None, optimizer: torch.optim.Optimizer,
                generators: dict[str, torch.Generator], allow_unverified: bool = False) -> dict[str, Any]:
        """Continue from `checkpoint` (None: from the start): its optimizer and generator states, and metrics
        past it dropped (the resumed run writes them again). Returns the checkpoint's state ({}: none)."""
        state = {} if checkpoint is None else load_trainer_state(checkpoint, optimizer, generators, allow_unverified)
        if not self.new:
            truncate_metrics(self.path, state.get("step", -1))
        self.step = state.get("step", 0)
        return state


@contextmanager
def open_run_dir(out: Path, config: dict[str, Any], resume: bool, resumable_changes: set[str], steps: int,
                 normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 entries: tuple[str, ...] = RUN_ENTRIES, ran: dict[str, Any] | None = None) -> Iterator[RunDir]:
    """Hold the run directory `out` for `config` (a dictionary with its "stage") while the body runs.

    A new run needs a missing or empty directory; one that holds a run is continued only with
    `resume`, and only with the same options except those in `resumable_changes` (dotted paths such as
    "train.steps") and never with fewer `steps` than its last checkpoint. `--resume` on a directory
    with no run starts one, so a command with --resume can be repeated until its run is complete.
    `normalize` rewrites the saved config as the current code would write it (options added since
    the run started take their defaults). `entries` are the glob patterns of what the stage writes.
    `ran` (how this process takes the steps: `runs.history`) makes config.json record what ran: the
    resumable changes but the steps keep the value the run started with, and a resume that changes one
    is recorded with its step, as is each stretch of steps that ran another way.

    The directory is locked for the whole body. If the body fails before the new run wrote any
    metrics or checkpoint, what this function created is removed, so a plain retry is not blocked.
    A Ctrl-C (KeyboardInterrupt) in the body becomes `Interrupted` at the yielded handle's `step`.
    """
    out = Path(out)
    with claim_dir(out, lambda: _claim_run(out, config, resume, resumable_changes, steps, normalize, entries, ran),
                   _STARTED) as new:
        handle = RunDir(out, new)
        try:
            yield handle
        except KeyboardInterrupt:  # the trackers were closed first: they are entered inside this body
            raise Interrupted(out, handle.step) from None


def _claim_run(out: Path, config: dict[str, Any], resume: bool, resumable_changes: set[str], steps: int,
               normalize: Callable[[dict[str, Any]], dict[str, Any]] | None, entries: tuple[str, ...],
               ran: dict[str, Any] | None) -> bool:
    """Under the lock: write a new run's config, or check that resuming continues the same run."""
    if not (out / CONFIG).exists():
        if present := foreign_entries(out):
            raise RunDirError(f"{out} holds files that are not an rlntp run ({_listed(present)}); "
                              "choose a new or empty directory for --out")
        write_config(out, config if ran is None else history.started(config, ran))
        return True
    foreign = foreign_entries(out, entries)
    saved = _read_json(out / CONFIG)
    if not isinstance(saved, dict) or "stage" not in saved:
        raise RunDirError(f"{out / CONFIG} is not an rlntp run config; choose a new or empty directory for --out")
    if saved["stage"] in STAGES:
        saved = read_config(out)
    raw = saved
    if saved["stage"] != config["stage"]:
        raise RunDirError(f"{out} holds a {saved['stage']} run, not a {config['stage']} run; choose another --out")
    if foreign:
        raise RunDirError(f"{out} holds files that are not an rlntp run ({_listed(foreign)}); "
                          "move them away or choose another --out")
    if not resume:
        raise RunDirError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
    if normalize is not None:
        from rlntp.tasks.trust import reading

        try:
            with reading(str(out / CONFIG)):
                saved = normalize(saved)
        except (KeyError, TypeError, UserError) as e:
            raise RunDirError(f"{out / CONFIG} is not a valid run config ({e}); restore it or start a new run") from e
    diffs = [f"{k} (run: {a}, given: {b})" for k, (a, b) in sorted(flat_diff(saved, config).items())
             if k not in resumable_changes]
    if diffs:
        raise RunDirError(f"{out} holds a {saved['stage']} run with other options; to continue it, repeat them: "
                          f"{out / CONFIG} differs in " + "; ".join(diffs))
    done = checkpoint_steps(out)
    if done and steps < done[-1]:
        raise RunDirError(f"the run in {out} already reached step {done[-1]}; --steps {steps} would discard "
                          f"training; pass --steps {done[-1]} or more")
    if ran is not None:
        recorded = {field for field in resumable_changes if not field.endswith(".steps")}
        try:
            config = history.continued(saved | {k: raw[k] for k in (history.CHANGES, history.RAN) if k in raw},
                                       config, done[-1] if done else 0, recorded, ran)
        except RunDirError as e:
            raise RunDirError(f"{out / CONFIG}: {e}") from None
    write_config(out, config)
    return False


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / CONFIG, json.dumps(config, indent=2) + "\n")


def read_config(run_dir: Path) -> dict[str, Any]:
    """The config of a run directory (its stage, task and model sections checked); RunDirError if it is not one."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a run directory (no {CONFIG}); pass the --out of an rlntp run")
    config = _read_json(path)
    if not isinstance(config, dict) or config.get("stage") not in STAGES:
        raise RunDirError(f"{path} is not an rlntp run config (no stage {' or '.join(STAGES)}); restore it")
    for key, kind in (("task", dict), ("model", dict)) + (
            (("source", str), ("source_step", int), ("start_samples_seen", int)) if config["stage"] == "posttrain" else ()):
        if not isinstance(config.get(key), kind):
            raise RunDirError(f"{path} has no valid {key!r} entry; restore it or start a new run")
    return config


def read_task_and_model(run_dir: Path):
    """The task and model configs of any run directory (validated)."""
    from rlntp.models import ModelConfig
    from rlntp.tasks import TaskConfig
    from rlntp.tasks.trust import reading

    config = read_config(run_dir)
    try:
        with reading(str(Path(run_dir) / CONFIG)):  # its task code runs only if the user names it (`tasks.trust`)
            return TaskConfig(**config["task"]), ModelConfig(**config["model"])
    except (TypeError, UserError) as e:
        raise RunDirError(f"{Path(run_dir) / CONFIG} has no valid task and model sections ({e})") from e


def flat_diff(a: dict, b: dict, prefix: str = "") -> dict[str, tuple]:
    """{"section.field": (a's value, b's value)} for every dotted path where two nested dictionaries differ."""
    diffs = {}
    for key in a.keys() | b.keys():
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diffs |= flat_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            diffs[f"{prefix}{key}"] = (va, vb)
    return diffs


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as e:  # ValueError: invalid JSON or UTF-8
        raise RunDirError(f"{path} is not valid JSON ({e}); restore it, or move the directory away") from e


# --- sweeps and recipes --------------------------------------------------------------------------------


def read_status(out: Path) -> dict[str, Any] | None:
    """A sweep directory's status.json (pid, host, runs), or None if `out` holds none; RunDirError if it is damaged."""
    path = Path(out) / STATUS
    if not path.is_file():
        return None
    status = _read_json(path)
    if not (isinstance(status, dict) and isinstance(status.get("runs"), dict)
            and all(isinstance(state, dict) for state in status["runs"].values())):
        raise RunDirError(f"{path} is not an rlntp sweep status (an object with runs); restore it or choose another "
                          "directory")
    return status


def read_recipe_marker(out: Path) -> dict[str, Any] | None:
    """A recipe directory's report.json, or None if `out` holds none; RunDirError if it is not a recipe's."""
    path = Path(out) / REPORT
    if not path.is_file():
        return None
    record = _read_json(path)
    if not (isinstance(record, dict) and isinstance(record.get("recipe"), str)):
        raise RunDirError(f"{path} is not an rlntp recipe report (no recipe); restore it or choose another --out")
    return record


@contextmanager
def open_sweep_dir(out: Path, status: dict[str, Any]) -> Iterator[Path]:
    """Hold the directory of a sweep while the body runs: a new one (its status.json written now, the marker),
    or one that already holds a sweep. A recipe's directory or a folder of other files is refused.

    If the body fails before anything but the marker and sweep.json was written into a new directory
    (the executor could not start, say), the directory is left as it was found.
    """
    out = Path(out)

    def claim() -> bool:
        if (recipe := read_recipe_marker(out)) is not None:
            raise RunDirError(f"{out} is the directory of the {recipe['recipe']!r} recipe; `rlntp sweep` does not "
                              f"write into it: rerun `rlntp reproduce {recipe['recipe']} --out {out}`, or pass "
                              "another --out")
        if read_status(out) is not None:
            return False
        if foreign := foreign_entries(out):
            raise RunDirError(f"{out} holds files that rlntp did not write ({_listed(foreign)}); choose a new "
                              "or empty directory for --out")
        atomic_write_text(out / STATUS, json.dumps(status, indent=1) + "\n")
        return True

    with claim_dir(out, claim, (STATUS, "sweep.json")):
        yield out


@contextmanager
def open_recipe_dir(out: Path, marker: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Hold the directory of a recipe while the body runs; yields its report.json as found (or `marker` if new).

    The directory must be new, or hold this recipe with this preset and settings (report.json), so a
    rerun resumes it and a recipe never writes into a directory it did not create. A new directory
    whose recipe fails before writing anything but its markers is left as it was found.
    """
    out = Path(out)
    marker = json.loads(json.dumps(marker))
    identity = {key: marker[key] for key in ("recipe", "preset", "settings")}
    found: list[dict[str, Any]] = []

    def claim() -> bool:
        saved = read_recipe_marker(out)
        if saved is None:
            if read_status(out) is not None:
                raise RunDirError(f"{out} is the directory of a sweep (rlntp sweep); choose another --out for "
                                  f"the {marker['recipe']} recipe")
            if foreign := foreign_entries(out):
                raise RunDirError(f"{out} holds files that are not this recipe's ({_listed(foreign)}); "
                                  "choose a new or empty directory for --out")
            atomic_write_text(out / REPORT, json.dumps(marker, indent=2) + "\n")
            found.append(marker)
            return True
        if {key: saved.get(key) for key in identity} != identity:
            what = (f"the {saved['recipe']!r} recipe" if saved["recipe"] != marker["recipe"] else
                    f"the {saved['recipe']!r} recipe at preset {saved.get('preset')!r}"
                    + (" with other settings" if saved.get("preset") == marker["preset"] else ""))
            raise RunDirError(f"{out} holds {what}; choose another --out (or rerun the command that made it)")
        found.append(saved)
        return False

    with claim_dir(out, claim, (REPORT, STATUS, "sweep.json")):
        yield found[0]
