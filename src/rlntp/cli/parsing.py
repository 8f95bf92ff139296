"""How a command line becomes a call: options generated from the command's signature and config dataclasses
(tyro), and every failure of the user's input as one line on stderr.

tyro reports a parse failure as a structured event before printing its own error box; the one-line
message is built from that event (its kind, the argument, the value). The event API is private to
tyro, which is why pyproject.toml pins tyro to one release.
"""

import functools
import sys
from collections.abc import Callable
from contextvars import ContextVar

import tyro
from tyro import _errors as tyro_errors

from rlntp.config import check_arguments
from rlntp.errors import Interrupted, UserError

Flat = tyro.conf.arg(name="")
"""Marks a config dataclass whose fields become top-level --options."""

PARSE_ONLY: ContextVar[bool] = ContextVar("rlntp_parse_only", default=False)
"""While set, a command line is parsed and its configs validated, and the command is not run (docs tests)."""


class _ParseError(Exception):
    """A parse failure of tyro's, as the one line rlntp prints."""


def run_commands(commands: dict[str, Callable], argv: list[str], prog: str, description: str,
                 rerun_hint: str | None = None) -> None:
    """Parse `argv` into one of `commands` and run it; every failure of the user's input is one line.

    - tyro's parse errors (an unknown option, a value of the wrong type, a missing one) become one line
      built from tyro's error event; an empty value is refused before parsing (no option takes one);
    - the plain options of a command are type-checked like config fields (`rlntp.config`);
    - a UserError prints `error: ...` and exits with its `exit_code` (2: bad input; 1: a run failed;
      130: Ctrl-C). `rerun_hint` replaces "continue with --resume" for commands that resume by rerunning.
    """
    for i, arg in enumerate(argv):
        if arg.startswith("--") and arg.endswith("="):
            exit_with(f"{arg[:-1]} must not be empty", 2)
        if arg == "":
            exit_with(f"{argv[i - 1] if i and argv[i - 1].startswith('--') else 'an argument'} must not be empty", 2)

    def checked(fn):
        @functools.wraps(fn)
        def command(*args, **kwargs):
            check_arguments(fn, args, kwargs)
            if not PARSE_ONLY.get():
                return fn(*args, **kwargs)
        return command

    def fail(event: tyro_errors.ParseErrorEvent) -> None:
        raise _ParseError(_message(event))

    try:
        with tyro_errors.on_parse_error(fail):
            tyro.extras.subcommand_cli_from_dict({name: checked(fn) for name, fn in commands.items()},
                                                 prog=prog, args=argv, description=description)
    except _ParseError as e:
        exit_with(str(e), 2)
    except Interrupted as e:
        exit_with(str(e) if rerun_hint is None else f"interrupted at step {e.step} of {e.run_dir}; {rerun_hint}",
                  e.exit_code)
    except UserError as e:
        exit_with(str(e), e.exit_code)
    except KeyboardInterrupt:  # outside a run: a recipe that resumes by rerunning says so
        exit_with(f"interrupted; {rerun_hint}" if rerun_hint is not None else
                  "interrupted (no run was in progress, so there is nothing to resume)", 130)


def exit_with(message: str, code: int) -> None:
    """Print `error: message` on stderr and exit with `code`."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _flag(argument) -> str:
    """An argument as the user writes it (`--steps`, or a positional's name)."""
    return "/".join(argument.lowered.name_or_flags) or argument.field.intern_name


def _message(event: tyro_errors.ParseErrorEvent) -> str:
    """The one line for a tyro parse-error event; an event of a kind this does not know is named generically."""
    if isinstance(event, tyro_errors.UnrecognizedArgs):
        return f"unrecognized argument{'s' * (len(event.tokens) > 1)}: {' '.join(event.tokens)} (see --help)"
    if isinstance(event, tyro_errors.MissingArgs):
        missing = ", ".join(dict.fromkeys(_flag(a.arg) for a in event.missing_arguments))
        extra = f"; unrecognized: {' '.join(event.unrecognized_tokens)}" if event.unrecognized_tokens else ""
        return f"missing {missing}{extra} (see --help)"
    if isinstance(event, tyro_errors.MissingSubcommand):
        choices = ", ".join(event.subcommand_spec.parser_from_name)
        found = f"unknown command {event.found_token!r}" if event.found_token else "missing a command"
        return f"{found}; choose one of: {choices}"
    if isinstance(event, tyro_errors.InvalidChoice):
        return f"{_flag(event.argument)}: {event.value!r} is not one of: {', '.join(event.choices)}"
    if isinstance(event, tyro_errors.InstantiationFailure):
        where = f"{_flag(event.argument)}: " if event.argument is not None else ""
        return where + (event.message.strip().splitlines() or ["invalid value"])[0]
    if isinstance(event, tyro_errors.BadValue):
        problem = "needs a value" if event.offending_value is None else f"does not take {event.offending_value!r}"
        return f"{_flag(event.argument)} {problem}"
    return f"invalid command line ({type(event).__name__}); see --help"
