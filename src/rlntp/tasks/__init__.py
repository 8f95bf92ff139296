"""Tasks: mixtures of long (chain-of-thought) and short sequences encoding one task.

Every stage uses the `Task` interface of `tasks/base.py`. The built-in tasks are listed in TASKS; a task of
your own is a `Task` subclass in your own file or package, named by `--task`:

    --task path/to/file.py:ClassName        a Python file (made absolute, so sweep workers find it)
    --task package.module:ClassName         an importable module
    --task NAME                             an installed package's entry point in the group `rlntp.tasks`

It is built as `ClassName(d=..., p_cot=...)` (its size from `--d`) and checked before any work: a class that
lacks a member of the interface is refused in one line naming what is missing (docs/tasks.md). Task code named
only in a file rlntp reads is not imported unless the user names it too (`tasks.trust`).
"""

import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path

from rlntp.config import Config
from rlntp.errors import ConfigError, UserError, check
from rlntp.tasks import checks
from rlntp.tasks.base import Task
from rlntp.tasks.multiplication import MultiplicationTask
from rlntp.tasks.parity import ParityTask
from rlntp.tasks.trust import absolute, check_trusted, note_origin, trusted

TASKS = ("parity", "mult")
"""The built-in tasks."""

ENTRY_POINTS = "rlntp.tasks"
"""The entry-point group where installed packages declare their tasks (`NAME = "package.module:ClassName"`)."""

REQUIRED = ("name", "vocab", "eos_id", "guess_acc", "prompt_len", "long_len", "title", "params", "sample_prompts",
            "sample", "is_correct", "is_valid_cot", "to_text")
"""What a task provides (`tasks/base.py`); the rest of the interface has defaults."""


@dataclass(frozen=True)
class TaskConfig(Config):
    """Which mixture distribution to learn from."""

    task: str = "parity"
    """the task: parity, mult (n x n multiplication), or your own: FILE.py:CLASS, MODULE:CLASS or an entry point
    of the group rlntp.tasks (docs/tasks.md)"""
    d: int = 20
    """parity: number of input bits; your own task: its size (passed as d)"""
    digits: int = 4
    """mult: digits n of each operand"""
    p_cot: float = 0.25
    """probability of a long (full chain-of-thought) sequence"""
    p_medium: float = 0.0
    """parity: probability of a medium (partial chain-of-thought) sequence (paper App. C.2)"""
    data: str | None = None
    """a dataset directory made by `rlntp data` (its train split for pre-training and RL prompts, its test
    split for evaluation); default: fresh samples of the task"""

    def __post_init__(self):
        if isinstance(self.task, str) and self.task not in TASKS:  # a file: absolute, names the same file anywhere
            object.__setattr__(self, "task", absolute(self.task))
        note_origin(self)  # named by the user, or read from a file (`tasks.trust`)
        super().__post_init__()

    def check(self) -> None:
        check(self.task == "parity" or self.p_medium == 0,
              f"p_medium (a partial chain of thought) exists for parity only, got {self.p_medium} with task {self.task}")
        if trusted(self):  # code named only in a file read is not imported: its first use says so (`tasks.trust`)
            make_task(self)  # validates the task's own fields before any work starts
        # and the size option of the other built-in task: a bad --digits is refused even where --task parity ignores it
        if self.task in TASKS:
            ParityTask(d=self.d, p_cot=self.p_cot)
            MultiplicationTask(digits=self.digits, p_cot=self.p_cot)


def make_task(config: TaskConfig) -> Task:
    """The task object that samples sequences and checks answers for `config`."""
    if config.task == "mult":
        return MultiplicationTask(digits=config.digits, p_cot=config.p_cot)
    if config.task == "parity":
        return ParityTask(d=config.d, p_cot=config.p_cot, p_medium=config.p_medium)
    check_trusted(config)
    cls = task_class(config.task)
    try:
        task = cls(d=config.d, p_cot=config.p_cot)
    except ConfigError:
        raise
    except Exception as e:  # the user's constructor: its own message, in one line
        raise checks.raised(config.task, f"{cls.__name__}(d={config.d}, p_cot={config.p_cot})", e,
                            checks.source_files(cls)) from e
    check_task(task, config.task)
    return task


def builtin_distinct_inputs(task: dict) -> int | None:
    """The distinct inputs of a built-in task (parity, mult) sampled fresh, from its config as config.json records it
    (`TaskConfig` fields); None for a dataset (`task.data`: its train split's prompts, which a run records), a task of
    your own (its code is not run here) or a config that is not one."""
    try:
        if task.get("data"):
            return None
        if task.get("task") == "parity":
            return ParityTask(d=task["d"], p_cot=task.get("p_cot", 0.0)).distinct_inputs
        if task.get("task") == "mult":
            return MultiplicationTask(digits=task["digits"], p_cot=task.get("p_cot", 0.0)).distinct_inputs
    except (UserError, KeyError, TypeError, AttributeError):
        return None
    return None


def task_class(spec: str) -> type[Task]:
    """The `Task` subclass named by `spec` (FILE.py:CLASS, MODULE:CLASS or an entry-point name); ConfigError naming
    what is wrong (no such file, module, class or entry point; not a Task; a member of the interface missing)."""
    if ":" in spec:
        where, _, name = spec.rpartition(":")
        module = _load_file(where) if where.endswith(".py") else _import(where, spec)
        cls = getattr(module, name, None)
        check(cls is not None, f"task {spec}: {where} has no {name!r}")
    else:
        from importlib.metadata import entry_points

        found = [ep for ep in entry_points(group=ENTRY_POINTS) if ep.name == spec]
        check(bool(found), f"unknown task {spec!r}; choose one of: {', '.join(TASKS)}, FILE.py:CLASS, MODULE:CLASS "
                           f"or an entry point of the group {ENTRY_POINTS!r} (installed: "
                           f"{', '.join(ep.name for ep in entry_points(group=ENTRY_POINTS)) or 'none'})")
        try:
            cls = found[0].load()
        except Exception as e:
            raise ConfigError(f"task {spec}: its entry point {found[0].value} does not load: "
                              f"{checks.described(e, checks.module_files(found[0].module))}") from e
    check(inspect.isclass(cls) and issubclass(cls, Task),
          f"task {spec}: {getattr(cls, '__name__', cls)!r} is not a subclass of rlntp.tasks.base.Task")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    check(not missing, f"task {spec}: {cls.__name__} does not implement {', '.join(missing)} (docs/tasks.md)")
    return cls


def check_task(task: Task, spec: str) -> None:
    """ConfigError in one line unless `task` has every member of the interface with a usable value and its methods
    keep the contract on a small batch (`tasks/checks.py`); from then on each call of a method checks its result's
    shape and dtype, and an exception from the task's code is one line with its file and line."""
    try:
        _check_members(task, spec)
    except (UserError, MemoryError):
        raise
    except Exception as e:  # a property of the task's own raised
        raise checks.raised(spec, "a member", e, checks.source_files(type(task))) from e
    checks.guard(task, spec)
    checks.check_outputs(task, spec)


def _check_members(task: Task, spec: str) -> None:
    missing = [name for name in REQUIRED if not hasattr(task, name)]
    check(not missing, f"task {spec}: {type(task).__name__} has no {', '.join(missing)} (docs/tasks.md)")
    vocab = task.vocab
    names = isinstance(vocab, (tuple, list)) and all(isinstance(t, str) and t for t in vocab)
    check(names and len(vocab) >= 2 and len(set(vocab)) == len(vocab),
          f"task {spec}: vocab must be distinct non-empty token names, got {vocab!r}")
    check(len(vocab) <= 256, f"task {spec}: at most 256 tokens (datasets store ids as bytes), got {len(vocab)}")
    check(isinstance(task.name, str) and task.name != "",
          f"task {spec}: name must be a non-empty str, got {task.name!r}")
    check(isinstance(task.eos_id, int) and not isinstance(task.eos_id, bool) and 0 <= task.eos_id < len(vocab),
          f"task {spec}: eos_id must be the index of a token of vocab, got {task.eos_id!r}")
    for name in ("prompt_len", "long_len"):
        value = getattr(task, name)
        check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
              f"task {spec}: {name} must be an integer >= 1, got {value!r}")
    check(checks.real_in_unit_interval(task.guess_acc),
          f"task {spec}: guess_acc must be a number in [0, 1] (the accuracy of a guess), got {task.guess_acc!r}")
    check(isinstance(task.title, str), f"task {spec}: title must be a str, got {task.title!r}")
    check(isinstance(task.params, dict) and task.params.get("task") is not None,
          f"task {spec}: params must be a dict with at least 'task' (what a dataset manifest records)")
    inputs = task.distinct_inputs
    check(inputs is None or isinstance(inputs, int) and not isinstance(inputs, bool) and inputs >= 1,
          f"task {spec}: distinct_inputs must be None (unknown) or an integer >= 1 (how many distinct prompts "
          f"sample_prompts draws), got {inputs!r}")


def _load_file(path: str):
    """The module of a Python file, imported once under a name of its own."""
    file = Path(path)
    check(file.is_file(), f"task file {path} does not exist")
    name = f"rlntp_user_task_{abs(hash(str(file.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the file's own error, in one line with its file and line
        del sys.modules[name]
        raise ConfigError(f"task file {path} does not import: "
                          f"{checks.described(e, {str(file.resolve())})}") from e
    return module


def _import(module: str, spec: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if module == e.name or module.startswith(f"{e.name}."):  # not found: no code of the user's ran
            raise ConfigError(f"task {spec}: cannot import {module} ({e})") from None
        raise ConfigError(f"task {spec}: {module} does not import: "
                          f"{checks.described(e, checks.module_files(module))}") from e
    except Exception as e:  # the module's own error, in one line with its file and line
        raise ConfigError(f"task {spec}: {module} does not import: "
                          f"{checks.described(e, checks.module_files(module))}") from e
