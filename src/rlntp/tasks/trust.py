"""Which task code runs, and which task a run, a checkpoint or a dataset was made with.

A task of your own is code: `FILE.py:CLASS` or `MODULE:CLASS`. It runs only when the user names it in this
process: `--task SPEC` on the command line, `--trust-task SPEC` on a command that reads runs or sweeps, a
`TaskConfig(task=SPEC)` or `trust_task=SPEC` in Python. Named only in a file rlntp reads (a run's config.json,
a sweep file under `--status`/`--plan`), it is not imported: a `TaskConfig` built while `reading(where)` keeps
where it came from, its checks that need no code still run, and the first use of its class
(`tasks.make_task`) stops with one line naming the code and how to allow it. A task of an installed package's
entry point (`--task NAME`) is the user's own installation and always loads. Running a sweep file
(`rlntp sweep FILE`) is naming its tasks, as `python FILE` would be (docs/tasks.md).

A task's identity (`task_identity`) is what its code was: the class's qualified name, the SHA-256 of its
source file (the module's, for a package's task, with its name and the distribution's name and version), rlntp's
version for a built-in one (informative: upgrading rlntp changes no identity), and its vocabulary and context
length. Checkpoints (trainer_state.json), dataset manifests
and run directories (task.json) record it; continuing from one with another identity is refused in one line
naming what changed, unless the user allows it (`--allow-task-change`), and then the change is recorded in the
run's task.json. What records no identity (made before rlntp recorded one) is taken as it is.
"""

import inspect
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from rlntp.errors import ConfigError

_TRUSTED: set[str] = set()
_READING: ContextVar[str | None] = ContextVar("rlntp_task_read_from", default=None)
_FROM = "_read_from"  # the attribute of a TaskConfig built from a file: that file


def is_code(spec: str) -> bool:
    """A task named as code to import (FILE.py:CLASS or MODULE:CLASS), not a built-in or an entry point."""
    return ":" in spec


def absolute(spec: str) -> str:
    """`spec` with the path of a FILE.py:CLASS made absolute, so that it names the same file from anywhere."""
    if ".py:" not in spec:
        return spec
    path, _, name = spec.rpartition(":")
    return f"{Path(path).expanduser().resolve()}:{name}"


def trust_task(*specs: str) -> None:
    """Let this process run the task code `specs` (FILE.py:CLASS or MODULE:CLASS) wherever a file names it."""
    for spec in specs:
        if not (isinstance(spec, str) and spec):
            raise ConfigError(f"trust_task takes task names (FILE.py:CLASS or MODULE:CLASS), got {spec!r}")
    _TRUSTED.update(absolute(spec) for spec in specs)


@contextmanager
def reading(where: str | None = None) -> Iterator[None]:
    """Task configs built in the body come from the file `where` (a run's config.json, a sweep file): their code
    is not imported unless the user named it. Nested, the outermost `where` is kept (it names the file)."""
    token = _READING.set(_READING.get() or where or "a file rlntp read")
    try:
        yield
    finally:
        _READING.reset(token)


def note_origin(config: Any) -> None:
    """Called as a TaskConfig is built: outside `reading`, the user names its task (trusted in this process);
    inside, it remembers the file it came from."""
    where = _READING.get()
    if not isinstance(config.task, str) or not is_code(config.task):  # a wrong type: refused by the type checks
        return
    if where is None:
        trust_task(config.task)
    else:
        object.__setattr__(config, _FROM, where)


def trusted(config: Any) -> bool:
    """Whether the task of `config` may be imported: not code, named by the user, or built from a file and named by
    the user in this process."""
    return not is_code(config.task) or getattr(config, _FROM, None) is None or config.task in _TRUSTED


def check_trusted(config: Any) -> None:
    """ConfigError in one line, importing nothing, unless the task of `config` may be imported (`trusted`)."""
    if trusted(config):
        return
    spec = config.task
    where, _, _ = spec.rpartition(":")
    if where.endswith(".py"):
        path = Path(where)
        what = f"sha256 {_sha256(path)[:12]}…" if path.is_file() else "no such file here"
    else:
        what = f"module {where}"
    raise ConfigError(f"{getattr(config, _FROM)} names task code {spec} ({what}); rlntp runs no code named in a file "
                      f"it reads: pass --trust-task {shlex.quote(spec)} to run it (trust_task= in Python)")


# --- identity ----------------------------------------------------------------------------------------------------

_COMPARED = ("class", "sha256", "module", "distribution", "version", "vocab", "context_len")
"""What must agree for two identities to be one task (the file's path and rlntp's version are informative)."""


def task_identity(task: Any) -> dict[str, Any]:
    """The identity of a task object (module docstring), as JSON data."""
    cls = type(task)
    identity: dict[str, Any] = {"class": cls.__qualname__}
    if cls.__module__.startswith("rlntp."):
        identity["rlntp"] = _rlntp_version()
    else:
        try:
            file = Path(inspect.getfile(cls)).resolve()
            identity |= {"file": str(file), "sha256": _sha256(file)}
        except (TypeError, OSError):
            pass
        if not cls.__module__.startswith("rlntp_user_task_"):  # an importable module: its package, if installed
            identity["module"] = cls.__module__
            identity |= _distribution(cls.__module__)
    return identity | {"vocab": list(task.vocab), "context_len": task.context_len}


def _distribution(module: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    names = packages_distributions().get(module.partition(".")[0], [])
    if not names:
        return {}
    try:
        return {"distribution": names[0], "version": version(names[0])}
    except PackageNotFoundError:
        return {"distribution": names[0]}


def identity_change(recorded: Any, now: dict[str, Any]) -> str | None:
    """What differs between a recorded identity and `now`, in words; None if nothing does or nothing was recorded."""
    if not isinstance(recorded, dict):
        return None
    parts = []
    for key in _COMPARED:
        was, new = recorded.get(key), now.get(key)
        if was == new:
            continue
        if key == "vocab" and isinstance(was, list) and isinstance(new, list):
            if len(was) != len(new):
                parts.append(f"its vocabulary {'grew' if len(new) > len(was) else 'shrank'} from {len(was)} to "
                             f"{len(new)} tokens")
            else:
                parts.append(f"its vocabulary changed ({' '.join(map(str, was))} -> {' '.join(map(str, new))})")
        elif key == "sha256" and was and new:
            parts.append(f"its source changed ({recorded.get('file', 'file')}: sha256 {was[:12]}… -> {new[:12]}…)")
        elif key == "class":
            parts.append(f"another class ({was} -> {new})")
        elif key == "context_len":
            parts.append(f"its context changed from {was} to {new} tokens")
        else:
            parts.append(f"{key} {was if was is not None else 'none'} -> {new if new is not None else 'none'}")
    return "; ".join(parts) or None


def check_task_change(recorded: Any, now: dict[str, Any], what: str, allow: bool) -> str | None:
    """The change from the identity `what` recorded to `now` (None: none, or nothing recorded); ConfigError in one
    line if there is one and not `allow`, or if it changes the model's shape (vocabulary size, context)."""
    change = identity_change(recorded, now)
    if change is None:
        return None
    if len(recorded.get("vocab") or now["vocab"]) != len(now["vocab"]) or \
            recorded.get("context_len", now["context_len"]) != now["context_len"]:
        raise ConfigError(f"{what} was made with another task: {change}; a model's vocabulary size and context are "
                          "its shape, which no option changes: use the task it was made with")
    if not allow:
        raise ConfigError(f"{what} was made with another task: {change}; use the task it was made with, or pass "
                          "--allow-task-change to go on with the task as it is now (the change is recorded)")
    return change


def task_change(recorded: Any, now: dict[str, Any], what: str, allow: bool) -> dict[str, Any] | None:
    """`check_task_change` as the record a run keeps of it ({"what", "change", "was"}: `runs.task_record`), or
    None where nothing changed."""
    change = check_task_change(recorded, now, what, allow)
    return None if change is None else {"what": what, "change": change, "was": recorded}


def _sha256(path: Path) -> str:
    from rlntp.files import sha256_file

    return sha256_file(path)


def _rlntp_version() -> str:
    """rlntp's installed version (read from its metadata: importing the package from here would be a cycle)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rlntp")
    except PackageNotFoundError:
        return "unknown"
