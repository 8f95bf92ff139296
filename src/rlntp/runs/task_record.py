"""A run directory's record of its task (`task.json`, the `task` key of each checkpoint's trainer state): the
identity of `rlntp.tasks.trust` checked against what a run or checkpoint recorded, and written after a change the
user allowed (`--allow-task-change`)."""

import json
from pathlib import Path
from typing import Any

from rlntp.errors import CheckpointError
from rlntp.files import atomic_write_text
from rlntp.regime import BEYOND_FLOAT, recordable
from rlntp.runs.checkpoints import checkpoint_path, checkpoint_state, checkpoint_steps
from rlntp.runs.dirs import CONFIG, TASK
from rlntp.tasks.trust import task_change


def checkpoint_task_change(checkpoint: Path, now: dict[str, Any], allow: bool) -> dict[str, Any] | None:
    """`task_change` against what `checkpoint` records; the change as `record_task` takes it, or None."""
    state = checkpoint_state(checkpoint)
    change = task_change(state.get("task"), now, f"checkpoint {checkpoint}", allow)
    return None if change is None else {"step": state["step"]} | change


def resumed_task_change(out: Path, now: dict[str, Any], allow: bool) -> list[dict[str, Any]]:
    """The change from the task of the last checkpoint of the run in `out` (the one `--resume` continues) to `now`;
    read-only, before the directory is claimed."""
    steps = checkpoint_steps(out) if (Path(out) / CONFIG).is_file() else []
    if not steps:
        return []
    try:
        change = checkpoint_task_change(checkpoint_path(out, steps[-1]), now, allow)
    except CheckpointError:  # resuming reports it
        return []
    return [change] if change else []


def record_task(out: Path, now: dict[str, Any], changes: list[dict[str, Any]], step: int,
                distinct_inputs: int | None = None) -> None:
    """Write `out`/task.json: the task's identity, the allowed changes so far (`changes`, at `step`, added to
    those it recorded) and, for a pre-training run, the distinct inputs its data can draw (`distinct_inputs`: the
    task's, or a dataset's train prompts; null where the task cannot say), which its sweep's results table reads
    (`sweeps.engine.write_results`) without running the task's code."""
    path = Path(out) / TASK
    try:
        earlier = json.loads(path.read_bytes()).get("changes", []) if step > 0 else []
    except (OSError, ValueError, AttributeError):
        earlier = []
    # the steps from `step` on run again: their changes are the ones found now (as runs.history keeps `changes`)
    earlier = [c for c in earlier if isinstance(c, dict) and c.get("step", 0) < step]
    for change in changes:
        entry = {"step": step} | {k: v for k, v in change.items() if k != "step"}
        if not any(c.get("what") == entry["what"] and c.get("change") == entry["change"] for c in earlier):
            earlier.append(entry)
    distinct_inputs = recordable(distinct_inputs)
    record = {"identity": now, "changes": earlier} | ({} if distinct_inputs is None else
                                                      {"distinct_inputs": distinct_inputs})
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def recorded_distinct_inputs(run_dir: Path) -> int | None:
    """The distinct inputs a pre-training run recorded in its task.json (`record_task`); None where it recorded none
    (a task that cannot say, a run made before runs recorded it) or the file cannot be read."""
    try:
        value = json.loads((Path(run_dir) / TASK).read_bytes()).get("distinct_inputs")
    except (OSError, ValueError, AttributeError):
        return None
    if value == BEYOND_FLOAT:  # every ratio of samples to it is 0
        return 2**1024
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None

