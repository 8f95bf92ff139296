"""A sweep file: a base config per stage, axes to vary, and post-training attached to named checkpoints.

A sweep is written in TOML (or JSON with the same structure); every key is a field of the stage's
config dataclass, so `rlntp pretrain --help` and `rlntp posttrain --help` list what can be set:

    [pretrain]                                  # one pre-training run per point of its axes
    task  = { d = 12 }
    model = { layers = 2, width = 64, heads = 4 }
    train = { steps = 1500, batch_size = 128, lr = 1e-3, save_every = 250 }

    [pretrain.axes]                             # the cartesian product of all axes
    "task.p_cot" = [0.1, 0.25, 0.5]
    "train.seed" = [0, 1, 2]
    "task.d, train.steps" = [[8, 2000], [12, 4000]]   # fields that vary together (zipped)

    [posttrain.grpo]                            # a named group: run from each checkpoint of each run
    from_steps = [500, 1000, "last"]
    post = { algo = "grpo", steps = 30, eval_every = 3 }

    [posttrain.grpo.axes]
    "post.temperature" = [0.5, 1.0]

    [posttrain.grpo.where]                      # optional: only from pre-training runs with these values
    "task.p_cot" = [0.1, 0.5]

An optional [slurm] table sets options of `--executor slurm` (`sweeps.slurm.SECTION_FIELDS`); the other
executors ignore it. A post-training run takes the seed of its pre-training run (`train.seed`) unless `post.seed` is set
or varied. The device is not a sweep field: it is the sweep command's `--device`. A relative
`task.data` is a path relative to the sweep file's directory. `expand` checks every field of every
run, that every `from_steps` entry is a checkpoint pre-training saves, and how many runs the sweep
makes (before expanding it), before anything runs.
"""

import dataclasses
import datetime
import itertools
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from rlntp.errors import ConfigError, UserError
from rlntp.models import ModelConfig
from rlntp.tasks import TaskConfig
from rlntp.training.posttrain import PosttrainConfig
from rlntp.training.pretrain import PretrainConfig, PretrainRun

PRETRAIN_SECTIONS = {"task": TaskConfig, "model": ModelConfig, "train": PretrainConfig}
POSTTRAIN_SECTIONS = {"post": PosttrainConfig}
LAST = "last"
MAX_RUNS = 10_000
"""Runs a sweep may expand to unless the command allows more (`--max-runs`)."""
NAME_BYTES = 255
"""The longest directory name most file systems take."""


@dataclass(frozen=True)
class Job:
    """One job of the engine (`sweeps.engine`): a stage (`sweeps.stages.STAGES`), its config, the jobs it needs.

    A sweep's jobs are pre-training runs and post-training runs from a checkpoint of one; a recipe with a plan of
    its own makes jobs of the other stages (LLM data, SFT, GRPO, evaluation; the theory's simulation), whose
    config is `config`.
    """

    name: str
    """its directory (or record file) relative to the engine's root (a sweep's runs/ directory)"""
    stage: str
    """pretrain, posttrain, or another stage of `sweeps.stages.STAGES`"""
    pretrain: PretrainRun | None = None
    """the pre-training run (of a post-training job: the one it starts from)"""
    post: PosttrainConfig | None = None
    source: str | None = None
    """post-training: the name of the pre-training job it starts from"""
    source_step: int | None = None
    """post-training: the checkpoint of `source` it starts from"""
    group: str | None = None
    """post-training: the name of its group in the sweep file"""
    settings: tuple[tuple[str, Any], ...] = ()
    """the axis values that made this run (the pre-training's, then the group's own)"""
    report_to: tuple[str, ...] = ()
    """trackers that also log the run (`--report-to`, set by the sweep; not part of the run's config)"""
    tracker_group: str | None = None
    """the name its trackers group the sweep's runs under (the sweep's directory)"""
    config: Any = None
    """the config of a job of another stage (`sweeps.stages`)"""
    after: tuple[str, ...] = ()
    """the jobs it needs besides `source`: it runs once they are done, and is skipped if one fails"""

    @property
    def steps(self) -> int:
        return self.pretrain.train.steps if self.post is None else self.post.steps

    @property
    def needs(self) -> tuple[str, ...]:
        """The jobs that must be done before this one runs."""
        return ((self.source,) if self.source else ()) + self.after


def load_sweep(path: Path) -> dict[str, Any]:
    """The sweep of a .toml or .json file, as a dictionary (`expand` checks it)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {path} does not exist" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        if path.suffix == ".json":
            spec = json.loads(path.read_bytes())
        elif path.suffix == ".toml":
            spec = tomllib.loads(path.read_bytes().decode("utf-8"))
        else:
            raise ConfigError(f"sweep file {path}: write it as .toml (or .json)")
    except (ValueError, UnicodeDecodeError) as e:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ConfigError(f"sweep file {path} is not valid {path.suffix[1:].upper()}: {e}") from e
    except OSError as e:
        raise ConfigError(f"cannot read sweep file {path}: {e.strerror}") from e
    if not isinstance(spec, dict):
        raise ConfigError(f"sweep file {path} must hold a table with [pretrain] and [posttrain.NAME] sections")
    _check_no_dates(spec, str(path))
    return spec


def _check_no_dates(value: Any, where: str) -> None:
    """TOML dates and times are not values of any config field: refuse them by name."""
    if isinstance(value, (datetime.date, datetime.time)):
        raise ConfigError(f"{where}: {value} is a TOML date or time, which no field takes; quote it if you mean text")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_no_dates(item, f"{where}: {key}" if ": " not in where else f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            _check_no_dates(item, where)


def count_runs(spec: dict[str, Any]) -> int:
    """How many runs `spec` expands to at most (every post-training group from every pre-training run),
    computed without expanding it; malformed axes count as one value (`expand` names them)."""
    def points(body: Any) -> int:
        axes = body.get("axes", {}) if isinstance(body, dict) else {}
        if not isinstance(axes, dict):
            return 1
        return math.prod(len(v) if isinstance(v, list) and v else 1 for v in axes.values())

    pre = points(spec.get("pretrain"))
    groups = spec.get("posttrain", {})
    post = 0
    for body in groups.values() if isinstance(groups, dict) else []:
        steps = body.get("from_steps") if isinstance(body, dict) else None
        post += points(body) * (len(steps) if isinstance(steps, list) and steps else 1)
    return pre * (1 + post)


def expand(spec: dict[str, Any], device: str = "auto", where: str = "sweep", base: Path | None = None,
           max_runs: int = MAX_RUNS) -> list[Job]:
    """Every run of the sweep `spec`, pre-training runs first; ConfigError naming the field if any is invalid.

    `where` (the file name) starts every error message; a relative `task.data`, and the file of a task of your
    own (`task.task = "tasks/mine.py:Mine"`), are resolved against `base` (the sweep file's directory); more than
    `max_runs` runs are refused before expanding.
    """
    def fail(path: str, message: str) -> typing.NoReturn:
        raise ConfigError(f"{where}: {path}: {message}")

    _check_keys(spec, {"pretrain", "posttrain", "description", "slurm"}, "", fail)
    pre = spec.get("pretrain")
    if not isinstance(pre, dict):
        fail("pretrain", "missing: a sweep needs a [pretrain] table (task, model, train, axes)")
    total = count_runs(spec)
    if total > max_runs:
        raise ConfigError(f"{where}: the sweep expands to {total:,} runs, more than the {max_runs:,} allowed; shrink "
                          f"its axes, or pass --max-runs {total} to run them all")
    _check_keys(pre, {*PRETRAIN_SECTIONS, "axes"}, "pretrain.", fail)
    jobs = []
    for settings in _points(pre.get("axes", {}), PRETRAIN_SECTIONS, "pretrain", fail):
        fields = _merge(pre, PRETRAIN_SECTIONS, settings, "pretrain", fail)
        fields["train"]["device"] = device
        data, task = fields["task"].get("data"), fields["task"].get("task")
        if base is not None and isinstance(data, str) and data and not Path(data).is_absolute():
            fields["task"]["data"] = str(Path(base) / data)
        if base is not None and isinstance(task, str) and ".py:" in task and not Path(task).is_absolute():
            fields["task"]["task"] = str(Path(base) / task)  # a task's file, like a dataset, beside the sweep file
        configs = {name: _build(cls, fields[name], f"pretrain.{name}", settings, fail)
                   for name, cls in PRETRAIN_SECTIONS.items()}
        jobs.append(Job(f"{_label(settings, 'base')}/pretrain", "pretrain", PretrainRun(**configs),
                        settings=tuple(settings.items())))

    groups = spec.get("posttrain", {})
    if not isinstance(groups, dict):
        fail("posttrain", "must be a table of named groups: [posttrain.NAME]")
    posts = []
    for group, body in groups.items():
        where_group = f"posttrain.{group}"
        if not isinstance(body, dict):
            fail(where_group, "must be a table (from_steps, post, axes, where)")
        if group == "pretrain" or not group.replace("_", "").replace("-", "").isalnum():
            fail(where_group, "a group name is letters, digits, '-' and '_', and not 'pretrain'")
        _check_keys(body, {"from_steps", "post", "axes", "where"}, f"{where_group}.", fail)
        from_steps = body.get("from_steps")
        if not (isinstance(from_steps, list) and from_steps
                and all(s == LAST or isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in from_steps)):
            fail(f"{where_group}.from_steps", f"must be a non-empty list of checkpoint steps (or \"last\"), "
                 f"got {from_steps!r}")
        sources = _sources(jobs, body.get("where", {}), f"{where_group}.where", fail)
        for key in ("post", "axes"):
            if not isinstance(body.get(key, {}), dict):
                fail(f"{where_group}.{key}", "must be a table")
        seeded = "seed" in body.get("post", {}) or any("post.seed" in key for key in body.get("axes", {}))
        for own in _points(body.get("axes", {}), POSTTRAIN_SECTIONS, where_group, fail):
            for source in sources:
                fields = _merge(body, POSTTRAIN_SECTIONS, own, where_group, fail)
                fields["post"]["device"] = device
                if not seeded:
                    fields["post"]["seed"] = source.pretrain.train.seed
                post = _build(PosttrainConfig, fields["post"], f"{where_group}.post", own, fail)
                for step in dict.fromkeys(source.pretrain.train.steps if s == LAST else s for s in from_steps):
                    _check_checkpoint(step, source, f"{where_group}.from_steps", fail)
                    name = f"{source.name.rsplit('/', 1)[0]}/{_label({'': group} | own, '')},from={step}"
                    posts.append(Job(name, "posttrain", source.pretrain, post, source.name, step, group,
                                     source.settings + tuple(own.items())))
    seen: dict[str, Job] = {}
    for job in jobs + posts:
        if job.name in seen:  # e.g. 0.1 and 0.1000001: one directory name for two configs
            fail("axes", f"two runs would share the directory {job.name} (settings {dict(seen[job.name].settings)} "
                 f"and {dict(job.settings)}); make the values differ in their first 6 significant digits")
        seen[job.name] = job
        for part in job.name.split("/"):
            if len(part.encode()) > NAME_BYTES:
                fail("axes", f"the directory name {part[:60]}... of a run is {len(part.encode())} bytes, more than "
                     f"the {NAME_BYTES} a file system takes; shorten the group name or move one-value axes into the "
                     "base config")
    return jobs + posts


def _check_keys(table: dict, allowed: set[str], prefix: str, fail) -> None:
    if not isinstance(table, dict):
        fail(prefix.rstrip("."), "must be a table")
    for key in table:
        if key not in allowed:
            fail(f"{prefix}{key}", f"unknown entry; expected one of: {', '.join(sorted(allowed))}")


def _sources(jobs: list[Job], where_table: Any, where: str, fail) -> list[Job]:
    """The pre-training runs whose settings take the values `where_table` lists ({"section.field": [values]})."""
    if not isinstance(where_table, dict):
        fail(where, "must be a table of \"section.field\" = [values]")
    for path, values in where_table.items():
        _field_of(path, PRETRAIN_SECTIONS, where, fail)
        if not isinstance(values, list) or not values:
            fail(f"{where}.{path}", f"must be a non-empty list of values, got {values!r}")

    def value(job: Job, path: str) -> Any:
        section, _, name = path.partition(".")
        return getattr(getattr(job.pretrain, section), name)

    chosen = [job for job in jobs if all(value(job, p) in vs for p, vs in where_table.items())]
    if not chosen:
        fail(where, f"no pre-training run has these values ({where_table})")
    return chosen


def _points(axes: Any, sections: dict[str, type], where: str, fail) -> list[dict[str, Any]]:
    """The points of the cartesian product of `axes`, each a {"section.field": value} dictionary."""
    if not isinstance(axes, dict):
        fail(f"{where}.axes", "must be a table of \"section.field\" = [values]")
    factors = []
    varied: dict[str, str] = {}
    for key, values in axes.items():
        paths = [p.strip() for p in key.split(",")]
        for path in paths:
            _field_of(path, sections, f"{where}.axes", fail)
            if path in varied:
                fail(f"{where}.axes.{key}", f"{path} is varied by the axis {varied[path]!r} already; a field takes "
                     "its values from one axis")
            varied[path] = key
        if not isinstance(values, list) or not values:
            fail(f"{where}.axes.{key}", f"must be a non-empty list of values, got {values!r}")
        if len(paths) > 1 and not all(isinstance(v, list) and len(v) == len(paths) for v in values):
            fail(f"{where}.axes.{key}", f"each value must be a list of {len(paths)} values, one per field")
        points = [dict(zip(paths, v if len(paths) > 1 else [v])) for v in values]
        if len({json.dumps(p, sort_keys=True) for p in points}) < len(points):
            fail(f"{where}.axes.{key}", "lists a value twice")
        factors.append(points)
    return [{k: v for point in combo for k, v in point.items()} for combo in itertools.product(*factors)]


def _field_of(path: str, sections: dict[str, type], where: str, fail) -> None:
    """Fail unless `path` is "section.field" of one of `sections` (the device excepted)."""
    section, _, name = path.partition(".")
    if section not in sections:
        fail(f"{where}.{path}", f"unknown section {section!r}; an axis is one of "
             + ", ".join(f"{s}.FIELD" for s in sections))
    _check_field(sections[section], name, f"{where}.{path}", fail)


def _check_field(cls: type, name: str, path: str, fail) -> None:
    names = [f.name for f in dataclasses.fields(cls) if f.name != "device"]
    if name == "device":
        fail(path, "the device is not a sweep field; pass --device to the sweep command")
    if name not in names:
        fail(path, f"{cls.__name__} has no field {name!r}; its fields are: {', '.join(names)}")


def _merge(body: dict, sections: dict[str, type], settings: dict[str, Any], where: str, fail) -> dict[str, dict]:
    """Each section's base fields from `body`, overridden by the axis `settings`."""
    fields = {}
    for section, cls in sections.items():
        base = body.get(section, {})
        if not isinstance(base, dict):
            fail(f"{where}.{section}", f"must be a table of {cls.__name__} fields")
        for name in base:
            _check_field(cls, name, f"{where}.{section}.{name}", fail)
        fields[section] = dict(base)
    for path, value in settings.items():
        section, _, name = path.partition(".")
        fields[section][name] = value
    return fields


def _build(cls: type, fields: dict[str, Any], where: str, settings: dict[str, Any], fail):
    """`cls(**fields)`, with whole numbers given to float fields made floats (as the CLI does)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in fields.items():
        floats = hints[name] is float or float in typing.get_args(hints[name])
        values[name] = float(value) if floats and type(value) is int else value
    try:
        return cls(**values)
    except UserError as e:
        at = f" (with {', '.join(f'{k} = {v!r}' for k, v in settings.items())})" if settings else ""
        fail(where, f"{e}{at}")


def _check_checkpoint(step: int, source: Job, where: str, fail) -> None:
    train = source.pretrain.train
    if step > train.steps or (step % train.save_every and step != train.steps):
        fail(where, f"step {step} is not a checkpoint of pre-training run {source.name} ({train.steps} steps, "
             f"saved every {train.save_every} and at the last step)")


def _label(settings: dict[str, Any], empty: str) -> str:
    """A directory name for axis values: `p_cot=0.25,seed=0` (a field's full path where names collide)."""
    names = [path.rpartition(".")[2] for path in settings]
    parts = []
    for path, name in zip(settings, names):
        value = settings[path]
        text = f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)
        if not path:  # the group name itself
            parts.append(text)
            continue
        if isinstance(value, str) and "/" in value:  # a path (task.data): its last part names it
            text = Path(value).name or value.replace("/", "_")
        text = "".join(c if c.isprintable() and c not in "/\\" else "_" for c in text)
        parts.append(f"{path if names.count(name) > 1 else name}={text}")
    return ",".join(parts) or empty
