"""What ran, as it ran: a run's config.json records how its steps were taken, stretch by stretch.

A run's config.json holds its options as the run started. A resume may change a few of them (`--step-impl`,
`--decode`, `--precision`, `--device`: the same computation, taken another way); each such change is appended
to `changes` with the step from which it holds, and the value earlier steps ran with stays where it was:

    "changes": [{"step": 120, "field": "train.step_impl", "from": "grouped", "to": "static"}]

`ran` says how the steps actually ran, one entry per stretch, from the checkpoint where a process took the run
on: in a pack of how many runs (`rlntp sweep --pack`; 1: alone), with which training step (`auto` resolved, a
pack's own), decoder, precision and device:

    "ran": [{"step": 0, "packed": 4, "step_impl": "static", "decode": "shared", "precision": "fp32", "device": "cpu"},
            {"step": 30, "packed": 1, "step_impl": "grouped", "decode": "shared", "precision": "fp32", "device": "cpu"}]

A stretch runs from its step to the next one's (the last: to the run's last checkpoint); a resume that runs as
the stretch before it adds none. Steps past the checkpoint a process resumes from are run again, so the changes
and stretches recorded from that step on are replaced. The evaluation at step s belongs to the stretch that
trained up to it, the last one starting before s (at s = 0, the first).
"""

import copy
from typing import Any

from rlntp.errors import RunDirError

CHANGES, RAN = "changes", "ran"


def started(config: dict[str, Any], ran: dict[str, Any]) -> dict[str, Any]:
    """The config.json of a run that starts at step 0 with options `config`, running as `ran`."""
    return copy.deepcopy(config) | {RAN: [{"step": 0} | ran]}


def continued(saved: dict[str, Any], given: dict[str, Any], step: int, recorded: set[str],
              ran: dict[str, Any]) -> dict[str, Any]:
    """The config.json of the run `saved` (as the current code writes it, with its history) taken on at checkpoint
    `step` with the options `given`, running as `ran`: the `recorded` fields (dotted) keep the value the run
    started with, and each that `given` sets otherwise is appended to `changes` from `step` on."""
    if step == 0:  # nothing kept: the run starts over
        return started(given, ran)
    changes = [c for c in entries(saved, CHANGES) if c["step"] < step]
    stretches = [s for s in entries(saved, RAN) if s["step"] < step]
    config = copy.deepcopy(given)
    for field in sorted(recorded):
        section, key = field.split(".")
        first = saved[section][key]
        now = [first] + [c["to"] for c in changes if c["field"] == field]
        config[section][key] = first
        if given[section][key] != now[-1]:
            changes.append({"step": step, "field": field, "from": now[-1], "to": given[section][key]})
    if not stretches or {k: v for k, v in stretches[-1].items() if k != "step"} != ran:
        stretches.append({"step": step} | ran)
    return config | ({CHANGES: changes} if changes else {}) | {RAN: stretches}


def entries(config: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The `changes` or `ran` list of a config.json ([] where it records none); RunDirError if it is damaged."""
    found = config.get(key, [])
    if not (isinstance(found, list) and all(isinstance(e, dict) and type(e.get("step")) is int for e in found)):
        raise RunDirError(f"its {key!r} entry is not a list of objects with a whole-number step; restore it or "
                          "start a new run")
    return found


def as_of(config: dict[str, Any], step: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """What the steps up to `step` (and the evaluation at it) ran with: the changed fields' values
    ({"train.step_impl": "grouped"}: only fields that `changes` names) and the stretch (None where none is
    recorded)."""
    values: dict[str, Any] = {}
    for change in entries(config, CHANGES):
        values.setdefault(change["field"], change["from"])
        if change["step"] < step:
            values[change["field"]] = change["to"]
    stretches = entries(config, RAN)
    before = [s for s in stretches if s["step"] < step or s["step"] == step == 0]
    return values, (before[-1] if before else None)


def describe_changes(config: dict[str, Any]) -> str | None:
    """The changes in one line ("train.step_impl grouped→static@120"), None where there are none."""
    changes = entries(config, CHANGES)
    return "; ".join(f"{c['field']} {c['from']}→{c['to']}@{c['step']}" for c in changes) or None


def packing(config: dict[str, Any], last_step: int) -> dict[str, Any]:
    """{"packed": the largest pack, "packed_steps": [[from, to], ...]} for a run some of whose steps (up to
    `last_step`, its last checkpoint) trained packed; {} for one that trained alone or records nothing."""
    stretches = entries(config, RAN)
    ends = [s["step"] for s in stretches[1:]] + [last_step]
    packed = [(s, end) for s, end in zip(stretches, ends)
              if isinstance(s.get("packed"), int) and s["packed"] > 1 and end > s["step"]]
    if not packed:
        return {}
    return {"packed": max(s["packed"] for s, _ in packed), "packed_steps": [[s["step"], end] for s, end in packed]}
