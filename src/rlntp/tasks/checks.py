"""A task's outputs checked at the boundary, so that a task of your own that breaks the `Task` contract
(tasks/base.py) stops in one line naming the task, the method and what was wrong, not in garbage metrics or a
traceback from deep inside a model.

- `guard` wraps the methods of one task object: every call checks what costs nothing on a device (the type,
  shape, dtype and device of the result: tensor metadata, no host sync) and turns an exception raised by the
  task's own code into one line with its file and line;
- `check_outputs` then calls each method once on a small batch on the CPU and checks the values too: token
  ids in the vocabulary, lengths, bools that are 0 or 1.

`rlntp.tasks.check_task` runs both when a task of your own is made; the built-in tasks are not wrapped.
"""

import functools
import importlib.util
import inspect
import numbers
import traceback
from pathlib import Path

import torch

from rlntp.errors import ConfigError, UserError
from rlntp.tasks.base import LONG, MEDIUM, SHORT, Sequences, Task, output_lengths

ROWS = 8
"""rows of the start-up check's batch"""

_PASS_THROUGH = (UserError, MemoryError, torch.cuda.OutOfMemoryError)
"""exceptions of a task's code that keep their own type: messages already written for the user, and memory
errors, which callers handle as such"""

_RLNTP = str(Path(__file__).resolve().parents[1])


def guard(task: Task, spec: str) -> None:
    """Wrap `task`'s methods (on the object) with the per-call checks of their results and exceptions."""
    files = source_files(type(task))
    overridden = {name: _no_check for name in _DEFAULTS if getattr(type(task), name) is not getattr(Task, name)}
    for name, check_result in (_CHECKS | overridden).items():
        method = getattr(task, name)
        if getattr(method, "_rlntp_guarded", False):
            continue
        try:
            object.__setattr__(task, name, _guarded(task, spec, name, method, check_result, files))
        except (AttributeError, TypeError):  # __slots__: no per-object methods; the start-up check still runs
            pass


def check_outputs(task: Task, spec: str) -> None:
    """Call each method of `task` once on `ROWS` prompts/samples on the CPU and check types, shapes and values."""
    vocab = len(task.vocab)
    generator = torch.Generator().manual_seed(0)
    prompts = _called(task, spec, "sample_prompts", ROWS, generator)
    _in_vocab(spec, "sample_prompts", prompts, vocab)
    batch = _called(task, spec, "sample", ROWS, generator)
    _in_vocab(spec, "sample", batch.tokens, vocab)
    _bools(spec, "sample", "loss_mask", batch.loss_mask)
    outputs = batch.tokens[:, task.prompt_len:]
    found = output_lengths(outputs, task.eos_id, task.max_new_tokens)
    _fail_unless(bool((found <= task.long_len).all()), spec, "sample",
                 f"a row has no EOS ({task.vocab[task.eos_id]!r}) within long_len + 1 = {task.max_new_tokens} "
                 "output tokens; every output ends with EOS")
    _fail_unless(torch.equal(batch.lengths.long(), found), spec, "sample",
                 f"lengths {batch.lengths.tolist()} are not the outputs' lengths before their first EOS "
                 f"{found.tolist()} (build Sequences with self.sequences(prompts, outputs, kinds))")
    kinds = set(batch.kinds.tolist())
    _fail_unless(kinds <= {LONG, MEDIUM, SHORT}, spec, "sample",
                 f"kinds must be LONG, MEDIUM or SHORT ({LONG}, {MEDIUM}, {SHORT}), got {sorted(kinds)}")
    for name in ("is_correct", "is_valid_cot"):
        result = _called(task, spec, name, batch.tokens[:, : task.prompt_len], outputs)
        values = set(result.tolist())
        _fail_unless(values <= {0, 1}, spec, name, f"returned values {sorted(values)}; it must return one bool "
                                                   "per row (True/False or 1/0)")
    end = task.prompt_len + int(found[0]) + 1
    _called(task, spec, "to_text", batch.tokens[0, :end].tolist())


def source_files(cls: type) -> set[str]:
    """The files of `cls` and of its base classes that are not rlntp's own: the task's code."""
    files = set()
    for base in cls.__mro__:
        try:
            file = str(Path(inspect.getsourcefile(base)).resolve())
        except (TypeError, OSError):
            continue
        if not file.startswith(_RLNTP):
            files.add(file)
    return files


def module_files(module: str) -> set[str]:
    """The file of an importable module, found without running it (empty when it cannot be found)."""
    try:
        origin = importlib.util.find_spec(module).origin
    except Exception:  # a parent package that does not import, a namespace package
        return set()
    return {str(Path(origin).resolve())} if origin else set()


def where(error: BaseException, files: set[str]) -> str:
    """`file:line` of an exception: the last frame of its traceback in one of `files` (the user's code), else the
    frame it was raised in; a SyntaxError's own location."""
    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.filename}:{error.lineno}"
    frames = traceback.extract_tb(error.__traceback__)
    mine = [f for f in frames if str(Path(f.filename).resolve()) in files] or frames[-1:]
    return f"{mine[-1].filename}:{mine[-1].lineno}" if mine else "unknown location"


def described(error: BaseException, files: set[str]) -> str:
    """An exception in one line: its type, the first line of its message, and where it was raised."""
    message = error.msg if isinstance(error, SyntaxError) else str(error)
    first = message.strip().splitlines()[0] if message.strip() else ""
    return f"{type(error).__name__}{': ' + first if first else ''} ({where(error, files)})"


def raised(spec: str, what: str, error: Exception, files: set[str]) -> ConfigError:
    """The one-line error for an exception that escaped the task's code `what` (a method, its constructor)."""
    return ConfigError(f"task {spec}: {what} raised {described(error, files)}")


def _guarded(task: Task, spec: str, name: str, method, check_result, files: set[str]):
    """`method` whose exceptions become one line (`raised`) and whose results pass `check_result`."""
    @functools.wraps(method)
    def call(*args, **kwargs):
        try:
            result = method(*args, **kwargs)
        except _PASS_THROUGH:
            raise
        except Exception as e:
            raise raised(spec, name, e, files) from e
        check_result(task, spec, name, result, *args, **kwargs)
        return result

    call._rlntp_guarded = True
    return call


def _called(task: Task, spec: str, name: str, *args):
    """`task.name(*args)` with the per-call checks, also on an object that `guard` could not wrap."""
    method = getattr(task, name)
    if getattr(method, "_rlntp_guarded", False):
        return method(*args)
    return _guarded(task, spec, name, method, _CHECKS[name], source_files(type(task)))(*args)


def _check_prompts(task: Task, spec: str, name: str, prompts, n: int, generator: torch.Generator) -> None:
    _ids(spec, name, "", prompts, (n, task.prompt_len), f"(n, prompt_len) = {(n, task.prompt_len)}",
         generator.device)


def _check_sample(task: Task, spec: str, name: str, batch, n: int, generator: torch.Generator) -> None:
    _fail_unless(isinstance(batch, Sequences), spec, name, f"returned type {type(batch).__name__}; it must return "
                                                           "Sequences (self.sequences(prompts, outputs, kinds))")
    width = (n, task.context_len)
    full = f"(n, prompt_len + long_len + 1) = {width}"
    _ids(spec, name, "tokens", batch.tokens, width, full, generator.device)
    for field, shape, expected in (("loss_mask", width, full), ("lengths", (n,), f"(n,) = {(n,)}"),
                                   ("kinds", (n,), f"(n,) = {(n,)}")):
        value = getattr(batch, field)
        _tensor(spec, name, field, value, shape, expected, generator.device)
        kind = "bool" if field == "loss_mask" else "integer"
        _fail_unless(not value.is_floating_point() and not value.is_complex(), spec, name,
                     f"returned {field} of dtype {value.dtype}; it must be {kind}")


def _check_bools(task: Task, spec: str, name: str, result, prompts, outputs) -> None:
    _tensor(spec, name, "", result, (len(prompts),), "one bool per row", prompts.device)
    _fail_unless(not result.is_complex(), spec, name, f"returned dtype {result.dtype}; it must return bools")


def _check_text(task: Task, spec: str, name: str, text, tokens) -> None:
    _fail_unless(isinstance(text, str), spec, name, f"returned type {type(text).__name__}; it must return a str")


_CHECKS = {"sample_prompts": _check_prompts, "sample": _check_sample, "is_correct": _check_bools,
           "is_valid_cot": _check_bools, "to_text": _check_text}
"""the methods `guard` wraps, each with the check of its result on every call"""

_DEFAULTS = ("output_lengths", "sequences", "same_output", "tokenizer")
"""methods with a default in `Task`: wrapped (their exceptions in one line) where the task overrides them"""


def _no_check(*args, **kwargs) -> None:
    pass


def _tensor(spec: str, method: str, what: str, value, shape: tuple, expected: str, device: torch.device) -> None:
    """The type, shape and device of a result `what` (a field of it, or "" for the result itself): metadata only,
    no host sync."""
    returned, must = (f"returned {what} of ", "it must be") if what else ("returned ", "it must return")
    _fail_unless(isinstance(value, torch.Tensor), spec, method,
                 f"{returned}type {type(value).__name__}; {must} a torch.Tensor")
    _fail_unless(tuple(value.shape) == shape, spec, method,
                 f"{returned}shape {tuple(value.shape)} for {shape[0]} rows; {must} {expected}")
    _fail_unless(value.device.type == device.type, spec, method,
                 f"{returned}device {value.device}; {must} on {device.type} (the device of its input)")


def _ids(spec: str, method: str, what: str, value, shape: tuple, expected: str, device: torch.device) -> None:
    """A tensor of token ids: type, shape, device and an integer dtype (metadata only)."""
    _tensor(spec, method, what, value, shape, expected, device)
    returned = f"returned {what} of " if what else "returned "
    _fail_unless(not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool), spec, method,
                 f"{returned}dtype {value.dtype}; token ids must be integers (torch.long)")


def _in_vocab(spec: str, method: str, ids: torch.Tensor, vocab: int) -> None:
    low, high = int(ids.min()), int(ids.max())
    _fail_unless(0 <= low and high < vocab, spec, method,
                 f"returned token id {low if low < 0 else high}; ids must be in [0, {vocab}) (indices of vocab)")


def _bools(spec: str, method: str, field: str, value: torch.Tensor) -> None:
    values = set(value.int().unique().tolist())
    _fail_unless(values <= {0, 1}, spec, method, f"{field} holds {sorted(values)}; it must be bool")


def _fail_unless(condition: bool, spec: str, method: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"task {spec}: {method} {message}")


def real_in_unit_interval(value) -> bool:
    """A real number (not a bool) in [0, 1]."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value <= 1
