"""metrics.jsonl: one JSON object per evaluation (`step`, `samples_seen`, `eval/...`), appended and flushed."""

import json
import os
from pathlib import Path
from typing import Any

from rlntp.errors import RunDirError
from rlntp.files import atomic_write_text

METRICS = "metrics.jsonl"


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


