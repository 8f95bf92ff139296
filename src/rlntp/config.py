"""Checks that every option gets from its type alone, before the config's own range checks.

Every config dataclass derives from `Config`, and every command's plain options go through
`check_arguments`, so an option added later is covered without a new line of checking code:

- an int is a whole number in [0, 2**63 - 1] (seeds, sizes, steps: nothing rlntp takes is negative,
  and 2**63 - 1 is what a torch generator and an int64 tensor hold);
- a float is finite and >= 0;
- a bool is true or false, a string is not empty, a tuple holds values of its element type.

A config read back from a hand-edited JSON file is checked the same way, so a wrong type there is
one clear line too.
"""

import dataclasses
import inspect
import math
import types
import typing
from pathlib import PurePath
from typing import Any

from rlntp.errors import check

MAX_INT = 2**63 - 1


class Config:
    """Base of the frozen config dataclasses: the type checks of every field, then the class's `check`."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        fields = [(f.name, getattr(self, f.name), hints[f.name]) for f in dataclasses.fields(self)]  # type: ignore
        for name, value, hint in fields:
            check_value(name, value, hint, signed=True)
        self.check()  # its messages name the valid range, so they come before the generic sign check
        for name, value, hint in fields:
            check_value(name, value, hint)

    def check(self) -> None:
        """Ranges and combinations of this config's fields (subclasses override it)."""


def check_value(name: str, value: Any, hint: Any, signed: bool = False) -> None:
    """ConfigError unless `value` is a valid value of type `hint` for the option `name` (`signed`: may be < 0)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return check_value(name, value, args[0], signed)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            check(type(None) in args, f"{name} must be given, got none")
            return
        options = [a for a in args if a is not type(None)]
        return check_value(name, value, options[0], signed)  # rlntp's unions are all `X | None`
    if origin is tuple:
        check(isinstance(value, (tuple, list)), f"{name} must be a list of values, got {value!r}")
        for item in value:
            check_value(name, item, args[0], signed)
        return
    if hint is bool:
        check(isinstance(value, bool), f"{name} must be true or false, got {value!r}")
    elif hint is int:
        check(isinstance(value, int) and not isinstance(value, bool), f"{name} must be a whole number, got {value!r}")
        check(signed or value >= 0, f"{name} must be >= 0, got {value}")
        check(abs(value) <= MAX_INT, f"{name} must be at most 2**63 - 1, got {value}")
    elif hint is float:
        check(isinstance(value, (int, float)) and not isinstance(value, bool), f"{name} must be a number, got {value!r}")
        check(math.isfinite(value), f"{name} must be a finite number, got {value}")
        check(signed or value >= 0, f"{name} must be >= 0, got {value}")
    elif hint is str:
        check(isinstance(value, str) and value != "", f"{name} must be a non-empty string, got {value!r}")
    elif isinstance(hint, type) and issubclass(hint, PurePath):
        check(isinstance(value, (str, PurePath)) and str(value) != "", f"{name} must be a path, got {value!r}")
    elif dataclasses.is_dataclass(hint):
        check(isinstance(value, hint), f"{name} must be a {hint.__name__}, got {value!r}")


def check_arguments(fn: Any, args: tuple, kwargs: dict[str, Any]) -> None:
    """Type-check the plain (non-config) arguments of a command function, as `Config` does its fields."""
    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    for name, value in signature.bind(*args, **kwargs).arguments.items():
        if name in hints and not isinstance(value, Config):
            check_value(name.rstrip("_"), value, hints[name])


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as one level of dotted keys: {"task": {"d": 4}} -> {"task.d": 4} (results columns, tracker
    hyper-parameters)."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
