"""rlntp as a Python library: the stages, sweeps and recipes as functions over the config dataclasses.

    import rlntp
    from rlntp import TaskConfig, ModelConfig, PretrainConfig, PosttrainConfig

    task = TaskConfig(task="parity", d=8, p_cot=0.25)
    rlntp.pretrain(task, ModelConfig(), PretrainConfig(steps=2000), "runs/pre")
    rlntp.posttrain(PosttrainConfig(algo="grpo", steps=100), "runs/pre", "runs/grpo")
    rlntp.metrics("runs/grpo")             # a DataFrame: step, samples_seen, eval/...
    rlntp.evaluate("runs/grpo")            # accuracy and length of the last checkpoint

Every function checks its arguments as the CLI checks its options, before any work (`_validated`), and keeps
the run-directory guarantees of the command line (a new or empty directory, one writer, atomic checkpoints,
`resume=True` to continue a killed run); the CLI (`rlntp.cli`) is a thin layer over these functions. Every
failure of the caller's input raises `rlntp.errors.UserError`, the class the CLI prints as one line: a
`ConfigError` for an argument, a `RunDirError` for a directory that does not hold what was asked for.
The page docs/api.md lists every public name and this contract.
"""

import dataclasses
import functools
import inspect
import types
import typing
from pathlib import Path, PurePath
from typing import Any

from rlntp.config import Config, check_value
from rlntp.errors import ConfigError, check, check_choice
from rlntp.models import ModelConfig
from rlntp.sweeps.executors import ExecutorConfig
from rlntp.sweeps.spec import MAX_RUNS
from rlntp.tasks import TaskConfig
from rlntp.training.posttrain import PosttrainConfig
from rlntp.training.pretrain import PretrainConfig

_NAMED = {TaskConfig: "task", ExecutorConfig: "executor"}
"""Configs a string may stand for, and the field it sets: `sample("mult")`, `sweep(..., executor="ray")`."""


def _validated(fn):
    """`fn` with its arguments checked as the CLI checks its options, before any work: every argument against its
    type (`rlntp.config.check_value`: whole numbers, finite floats, true or false, non-empty strings and paths),
    a missing or unknown one, and a config given as a dictionary of its fields (or a name, `_NAMED`) made into
    the config, which checks its own values. Each failure is one ConfigError."""
    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn)

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as e:  # a missing, unknown or repeated argument
            raise ConfigError(f"{fn.__name__}(): {e}") from None
        for name, value in bound.arguments.items():
            bound.arguments[name] = _argument(name, value, hints.get(name, Any))
        return fn(*bound.args, **bound.kwargs)

    return checked


def _argument(name: str, value: Any, hint: Any) -> Any:
    """`value` as an argument of type `hint` (a config from a dictionary or a name); ConfigError if it is not one."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
    if value is None:
        check(len(options) < len(typing.get_args(hint)), f"{name} must be given, got none")
        return None
    if Path in options:  # a path may be given as a string: the path's check says so
        options = [o for o in options if o is not str]
    for option in options:
        if isinstance(option, type) and issubclass(option, Config) and not isinstance(value, option):
            if isinstance(value, dict):
                return _config_from(option, value, name)
            if option in _NAMED and isinstance(value, str):
                return option(**{_NAMED[option]: value})
            alternatives = f" or a string (its {_NAMED[option]})" if option in _NAMED else ""
            raise ConfigError(f"{name} must be {option.__name__}(...), a dictionary of its fields{alternatives}, "
                              f"got {value!r}")
    if Any in options:
        return value
    errors = []
    for option in options:
        base = typing.get_origin(option) or option
        try:
            if base is dict:
                check(isinstance(value, dict), f"{name} must be a dictionary, got {value!r}")
            else:
                check_value(name, value, option)
            return value
        except ConfigError:
            if isinstance(value, _accepted(base)) or len(options) == 1:
                raise
            errors.append(_described(base))
    raise ConfigError(f"{name} must be {' or '.join(errors)}, got {value!r}")


def _accepted(base: type) -> tuple[type, ...]:
    """The Python types a value of the argument type `base` comes as (a path also as a string)."""
    return (str, PurePath) if issubclass(base, PurePath) else (base,)


def _described(base: type) -> str:
    return {dict: "a dictionary", Path: "a path", str: "a string"}.get(base, f"a {base.__name__}")


def _config_from(cls: type, fields: dict[str, Any], name: str | None = None) -> Config:
    """`cls(**fields)`, or one ConfigError naming a key that is not a field of `cls`."""
    known = [f.name for f in dataclasses.fields(cls)]
    for key in fields:
        check(key in known, f"{name or cls.__name__}: {cls.__name__} has no field {key!r}; its fields are: "
              + ", ".join(known))
    return cls(**fields)


@_validated
def sample(task: TaskConfig | None = None, n: int = 10, seed: int = 0) -> list[str]:
    """`n` sequences of the task's mixture in its text format (prompt, output, EOS), as `rlntp sample` prints."""
    import torch

    from rlntp.memory import check_fits
    from rlntp.tasks import make_task

    t = make_task(task or TaskConfig())
    check(n >= 1, f"n must be >= 1, got {n}")
    check_fits(n * t.context_len * 8 * 4, "cpu", f"sampling {n:,} sequences", "reduce n")
    seqs = t.sample(n, torch.Generator().manual_seed(seed))
    return [t.to_text(row[: t.prompt_len + length + 1]) for row, length in zip(seqs.tokens.tolist(),
                                                                               seqs.lengths.tolist())]


@_validated
def pretrain(task: TaskConfig, model: ModelConfig, train: PretrainConfig, out: str | Path, resume: bool = False,
             progress: bool = True, allow_unverified: bool = False, report_to: tuple[str, ...] = (),
             allow_task_change: bool = False) -> Path:
    """Next-token pre-training on the task's mixture into the run directory `out` (new or empty; `resume` continues
    a killed run with the same configs); `report_to`: trackers (tensorboard, wandb, mlflow) that also log it;
    `allow_task_change`: resume, or train on a dataset, made with another version of the task (recorded in
    OUT/task.json); returns `out`."""
    from rlntp.training.pretrain import PretrainRun
    from rlntp.training.pretrain import pretrain as run_pretrain

    run_pretrain(PretrainRun(task, model, train), Path(out), resume=resume, progress=progress,
                 allow_unverified=allow_unverified, report_to=tuple(report_to), allow_task_change=allow_task_change)
    return Path(out)


@_validated
def posttrain(post: PosttrainConfig, from_run: str | Path, out: str | Path, step: int | None = None,
              resume: bool = False, progress: bool = True, allow_unverified: bool = False,
              report_to: tuple[str, ...] = (), trust_task: str | tuple[str, ...] | None = (),
              allow_task_change: bool = False) -> Path:
    """RL post-training (STaR, REINFORCE, GRPO: `post.algo`) from checkpoint `step` (default: the last) of the run
    directory `from_run` into `out`; `report_to`: trackers that also log it; `trust_task`: the task code (FILE.py:CLASS
    or MODULE:CLASS) that `from_run` names and may run; `allow_task_change`: start from (or resume) checkpoints made
    with another version of the task (recorded in OUT/task.json); returns `out`."""
    from rlntp.training.posttrain import PosttrainRun
    from rlntp.training.posttrain import posttrain as run_posttrain

    _trust(trust_task)
    run_posttrain(PosttrainRun.starting_from(Path(from_run), step, post), Path(out), resume=resume,
                  progress=progress, allow_unverified=allow_unverified, report_to=tuple(report_to),
                  allow_task_change=allow_task_change)
    return Path(out)


@_validated
def evaluate(run_dir: str | Path, step: int | None = None, samples: int = 2560, seed: int = 0, threads: int = 1,
             device: str = "auto", allow_unverified: bool = False, trust_task: str | tuple[str, ...] | None = (),
             allow_task_change: bool = False) -> dict[str, Any]:
    """Greedy and sampled accuracy and length of a checkpoint (default: the last) on fresh inputs, or its dataset's
    test split: {"checkpoint", "samples", "eval/greedy_acc", "eval/sampled_len_hist", ...}. `trust_task`: the task
    code the run names and may run; `allow_task_change`: evaluate a checkpoint made with another version of the task
    (the change is then under "task_change")."""
    from rlntp.data import make_data
    from rlntp.devices import check_threads, pinned_threads, resolve_device, seeded_generator
    from rlntp.evaluation import evaluate as run_evaluate
    from rlntp.memory import check_fits
    from rlntp.models import memory_estimate
    from rlntp.runs.checkpoints import load_checkpoint_model, resolve_checkpoint
    from rlntp.runs.dirs import read_task_and_model
    from rlntp.runs.task_record import checkpoint_task_change
    from rlntp.tasks import make_task
    from rlntp.tasks.trust import task_identity

    run_dir = Path(run_dir)
    check(samples >= 1, f"samples must be >= 1, got {samples}")
    check_threads(threads)
    dev = resolve_device(device)
    _trust(trust_task)
    task_config, model_config = read_task_and_model(run_dir)
    checkpoint = resolve_checkpoint(run_dir, step)
    task = make_task(task_config)
    identity = task_identity(task)
    changes = [checkpoint_task_change(checkpoint, identity, allow_task_change)]
    data = make_data(task, task_config.data, seed, dev, allow_task_change)
    changes.append(data.task_change)
    if data.test_prompts is not None:
        samples = min(samples, len(data.test_prompts))
    check_fits(memory_estimate(model_config, task.vocab_size, task.context_len, 0, samples), dev,
               f"evaluating {samples:,} inputs", "reduce samples")
    model = load_checkpoint_model(checkpoint, model_config, dev, allow_unverified)
    metrics = {"checkpoint": str(checkpoint), "samples": samples, "source": "fresh inputs" if data.test_prompts is None
               else f"test pairs of {task_config.data}", "task": task.title, "long_len": task.long_len}
    if changes := [f"{c['what']}: {c['change']}" for c in changes if c]:
        metrics["task_change"] = "; ".join(changes)
    with pinned_threads(threads):
        metrics |= run_evaluate(model, task, samples, seeded_generator(dev, seed), test_prompts=data.test_prompts)
    return metrics


METRIC_COLUMNS = {
    "pretrain": ["step", "samples_seen", "eval/greedy_acc", "eval/sampled_acc", "eval/greedy_long_frac",
                 "eval/sampled_long_frac"],
    "posttrain": ["step", "samples_seen", "rl_samples", "eval/greedy_acc", "eval/sampled_acc",
                  "eval/greedy_long_frac", "eval/sampled_long_frac"]}
"""The columns of `metrics` for a run with no evaluation yet: those every evaluation record of the stage holds."""


@_validated
def metrics(run_dir: str | Path):
    """A run's metrics.jsonl as a pandas DataFrame, one row per evaluation (`step`, `samples_seen`, `eval/...`).

    A run with no evaluation yet gives an empty frame with the columns every evaluation of its stage holds
    (`METRIC_COLUMNS`); a directory that holds no run is a RunDirError, as `evaluate` and `plot` say."""
    import pandas as pd

    from rlntp.runs.dirs import read_config
    from rlntp.runs.metrics import read_metrics

    stage = read_config(Path(run_dir))["stage"]
    records = read_metrics(Path(run_dir))
    return pd.DataFrame(records) if records else pd.DataFrame(columns=METRIC_COLUMNS[stage])


@_validated
def sweep(spec: dict[str, Any] | str | Path, out: str | Path, executor: ExecutorConfig | None = None,
          device: str = "auto", progress: bool = True, max_runs: int = MAX_RUNS):
    """Run a sweep (a sweep file's path, or its contents as a dictionary: docs/sweeps.md) into `out`; returns its
    results table (OUT/results.parquet) as a DataFrame. Rerunning resumes, like `rlntp sweep`."""
    import pandas as pd

    from rlntp.devices import resolve_device
    from rlntp.runs.dirs import open_sweep_dir
    from rlntp.sweeps.engine import new_status, run_sweep
    from rlntp.sweeps.executors import check_executor
    from rlntp.sweeps.slurm import with_sweep_section

    spec, where, base = _sweep_spec(spec)
    jobs = _expand(spec, device, where, base, max_runs)
    executor = with_sweep_section(executor or ExecutorConfig(), spec, where)
    resolve_device(device)
    check_executor(executor, jobs)
    with open_sweep_dir(Path(out), new_status(spec, where)):
        results = run_sweep(jobs, Path(out), executor, spec, where, progress=progress)
    return pd.read_parquet(results)


@_validated
def plan_sweep(spec: dict[str, Any] | str | Path, device: str = "auto", max_runs: int = MAX_RUNS,
               trust_task: str | tuple[str, ...] | None = ()) -> dict[str, Any]:
    """What `sweep(spec)` would run and cost, writing nothing (`rlntp sweep FILE --plan --json`). The timing probe runs
    the task code (FILE.py:CLASS, MODULE:CLASS) a sweep file names only if `trust_task` names it too; a dictionary's
    tasks are the caller's own."""
    from contextlib import nullcontext

    from rlntp.sweeps.plan import plan_jobs
    from rlntp.tasks.trust import reading

    _trust(trust_task)
    spec, where, base = _sweep_spec(spec)
    with reading(where) if where != _GIVEN else nullcontext():
        jobs = _expand(spec, device, where, base, max_runs)
    return {"sweep": where} | plan_jobs(jobs, device)


def _sweep_spec(spec: dict[str, Any] | str | Path) -> tuple[dict[str, Any], str, Path]:
    """(the sweep as a dictionary, where it came from, the directory its relative paths are relative to)."""
    from rlntp.sweeps.spec import load_sweep

    if isinstance(spec, dict):
        return spec, _GIVEN, Path.cwd()
    path = Path(spec)
    return load_sweep(path), str(path), path.resolve().parent


_GIVEN = "a sweep given in Python"


def _trust(specs: str | tuple[str, ...] | None) -> None:
    """Let the task code `specs` run in this process (`tasks.trust`): the caller names it (None: none)."""
    from rlntp.tasks.trust import trust_task

    trust_task(*([specs] if isinstance(specs, str) else specs or ()))


def _expand(spec: dict[str, Any], device: str, where: str, base: Path, max_runs: int) -> list:
    from rlntp.sweeps.spec import expand

    return expand(spec, device, where=where, base=base, max_runs=max_runs)


@_validated
def recipes() -> dict[str, str]:
    """The recipes `reproduce` runs (the paper's figures), by name, with their titles."""
    from rlntp.experiments import recipes as found

    return {name: recipe.title for name, recipe in found().items()}


@_validated
def reproduce(name: str, preset: str | None = None, out: str | Path | None = None, device: str = "auto",
              executor: ExecutorConfig | None = None, progress: bool = True, inputs: Any = None) -> dict[str, Any]:
    """Run recipe `name` (see `recipes()`) at `preset` (default: its first) into `out` (default: runs/NAME) and
    return its report: {"summary", "claims" (each with its verdict and evidence), "provenance", ...}, as
    OUT/report.json holds it. `inputs`: the recipe's inputs (`OwnPlan.inputs`: the LLM recipes' records), or a
    dictionary of their fields. Rerunning resumes. `name` "all": every recipe of `rlntp reproduce all` (preset
    default: cpu) into OUT/NAME (default: runs/all), and OUT/report.html; {"summary", "recipes": each one's
    report}."""
    import json

    from rlntp.experiments import REPORT
    from rlntp.experiments import reproduce as run

    recipe, preset, inputs = _recipe(name, preset, inputs)
    out = Path(out) if out is not None else Path("runs") / name
    if recipe is None:
        from rlntp.devices import resolve_device
        from rlntp.experiments import recipes_of_all, reproduce_all
        from rlntp.sweeps.executors import check_executor

        resolve_device(device)
        check_executor(executor or ExecutorConfig(), [])  # each recipe checks its own runs' threads too
        summary = reproduce_all(preset, out, device, executor, progress)
        return {"summary": summary, "recipes": {recipe: json.loads((out / recipe / REPORT).read_text())
                                                for recipe in recipes_of_all(preset)}}
    summary = run(name, preset, out, device, executor, progress, inputs=inputs)
    return json.loads((out / REPORT).read_text()) | {"summary": summary}


@_validated
def plan(name: str, preset: str | None = None, device: str = "auto", inputs: Any = None,
         executor: ExecutorConfig | None = None) -> dict[str, Any]:
    """What `reproduce(name, preset)` would run and cost, with every setting's provenance (and with `executor`
    Slurm's, what it would submit); writes nothing. `name` "all": {"recipes": the plan of each recipe of `reproduce
    all`, "cost": their total}, as `rlntp reproduce all --plan --json` prints it."""
    from rlntp.experiments import plan as make_plan
    from rlntp.experiments import plan_all

    recipe, preset, inputs = _recipe(name, preset, inputs)
    if recipe is None:
        check(executor is None, "the plan of all recipes takes no executor: plan one recipe with it")
        return plan_all(preset, device)
    return make_plan(name, preset, device, inputs=inputs, executor=executor)


@_validated
def status(name: str, preset: str | None = None, out: str | Path | None = None, inputs: Any = None) -> str:
    """Each job of recipe `name` at `preset` (default: its first) and its state in `out` (default: runs/NAME), as
    `rlntp reproduce NAME --status` prints it; runs and writes nothing."""
    from rlntp.experiments import status as job_states

    recipe, preset, inputs = _recipe(name, preset, inputs)
    check(recipe is not None, "status is one recipe's: name one (`rlntp reproduce all` writes one directory each)")
    return job_states(name, preset, Path(out) if out is not None else Path("runs") / name, inputs)


def _recipe(name: str, preset: str | None, inputs: Any) -> tuple[Any, str, Any]:
    """(the recipe `name`, or None for "all"; the preset, its default if None, checked; the recipe's inputs
    (`OwnPlan.inputs`) made from `inputs`); ConfigError naming the choices for an unknown recipe or preset."""
    from rlntp.experiments import recipes as found

    recipes = found()
    check_choice("recipe", name, [*recipes, "all"])
    if name == "all":
        from rlntp.experiments import recipes_of_all

        check(inputs is None, "inputs are for one recipe of the LLM path, not for all")
        recipes_of_all(preset or "cpu")  # each has the preset
        return None, preset or "cpu", None
    recipe = recipes[name]
    preset = preset or next(iter(recipe.presets))
    check_choice("preset", preset, recipe.presets)
    if inputs is not None:
        takes = recipe.own_plan.inputs if recipe.own_plan is not None else None
        check(takes is not None, f"recipe {name} takes no inputs")
        inputs = _argument("inputs", inputs, takes)
    return recipe, preset, inputs


@_validated
def plot(run_dir: str | Path, out: str | Path | None = None, trust_task: str | tuple[str, ...] | None = ()) -> Path:
    """Accuracy and long-answer fraction of a run against samples seen (Fig. 2 style) as a PNG; returns its path.
    `trust_task`: the task code the run names and may run (its chance level is drawn)."""
    from rlntp.plots import plot_run

    _trust(trust_task)
    return Path(plot_run(Path(run_dir), None if out is None else Path(out)))


@_validated
def write_report(root: str | Path, out: str | Path | None = None) -> Path:
    """One static HTML page of the reproductions under `root` (claims, figures, tables); returns its path."""
    from rlntp.report import write_report as write

    return Path(write(Path(root), None if out is None else Path(out)))


__all__ = ["TaskConfig", "ModelConfig", "PretrainConfig", "PosttrainConfig", "ExecutorConfig", "sample", "pretrain",
           "posttrain", "evaluate", "metrics", "sweep", "plan_sweep", "recipes", "reproduce", "plan", "plot",
           "write_report"]
