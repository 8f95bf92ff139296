"""How a command line becomes a call: options generated from the command's signature and config dataclasses
(tyro), and every failure of the user's input as one line on stderr.

tyro has no public hook for its parse errors: it prints a box on stderr and exits with status 2. The box is
caught while tyro parses and condensed into one line (`one_line`): its first paragraph (what was wrong) and
where tyro points for help. Only what tyro prints is read, so another tyro release can change the wording of
a line but not make it more than one (pyproject.toml allows the tyro releases tests/test_cli.py passed with).
"""

import contextlib
import functools
import io
import re
import sys
from collections.abc import Callable
from contextvars import ContextVar

import tyro

from rlntp.config import check_arguments
from rlntp.errors import Interrupted, UserError

Flat = tyro.conf.arg(name="")
"""Marks a config dataclass whose fields become top-level --options."""

PARSE_ONLY: ContextVar[bool] = ContextVar("rlntp_parse_only", default=False)
"""While set, a command line is parsed and its configs validated, and the command is not run (docs tests)."""


def run_commands(commands: dict[str, Callable], argv: list[str], prog: str, description: str,
                 rerun_hint: str | None = None) -> None:
    """Parse `argv` into one of `commands` and run it; every failure of the user's input is one line.

    - an unknown or missing command, and an empty value (no option takes one), are refused before parsing;
    - tyro's parse errors (an unknown option, a value of the wrong type, a missing one) become the one line
      `one_line` makes of what tyro prints;
    - the plain options of a command are type-checked like config fields (`rlntp.config`);
    - a UserError prints `error: ...` and exits with its `exit_code` (2: bad input; 1: a run failed;
      130: Ctrl-C). `rerun_hint` replaces "continue with --resume" for commands that resume by rerunning.
    """
    if not argv or argv[0] not in commands and not argv[0].startswith("-"):
        found = f"unknown command {argv[0]!r}" if argv else "missing a command"
        exit_with(f"{found}; choose one of: {', '.join(commands)} ({prog} --help says what each does)", 2)
    for i, arg in enumerate(argv):
        if arg.startswith("--") and arg.endswith("="):
            exit_with(f"{arg[:-1]} must not be empty", 2)
        if arg == "":
            exit_with(f"{argv[i - 1] if i and argv[i - 1].startswith('--') else 'an argument'} must not be empty", 2)

    stderr, printed_by_tyro = sys.stderr, io.StringIO()
    parsed = False

    def checked(fn):
        @functools.wraps(fn)
        def command(*args, **kwargs):
            nonlocal parsed
            parsed = True  # tyro is done: from here on stderr is the command's again
            sys.stderr = stderr
            stderr.write(printed_by_tyro.getvalue())  # tyro's warnings, if it printed any
            check_arguments(fn, args, kwargs)
            if not PARSE_ONLY.get():
                return fn(*args, **kwargs)
        return command

    try:
        with contextlib.redirect_stderr(printed_by_tyro):
            tyro.extras.subcommand_cli_from_dict({name: checked(fn) for name, fn in commands.items()},
                                                 prog=prog, args=argv, description=description)
    except SystemExit as e:
        if parsed:  # the command's own exit
            raise
        if e.code in (0, None):  # --help
            stderr.write(printed_by_tyro.getvalue())
            raise
        exit_with(one_line(printed_by_tyro.getvalue()), 2)
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


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_BOX = re.compile(r"[\u2500-\u257f]")
_HELP_HINT = re.compile(r"For full helptext, (?:run|see):? (.+)", re.IGNORECASE)
_HELP_TEXT_INDENT = 8
"""how much deeper than its paragraph tyro indents an option's help text (dropped from the line)"""


def one_line(printed: str) -> str:
    """tyro's error box as one line: the first paragraph of the box (what was wrong) and where it points for help.

    The box's title is its first line (the top border, or the first line where tyro draws no box); its paragraphs
    are separated by rules of box-drawing characters or dashes. Colours, the box's own characters and an option's
    help text are dropped, and the rest of a paragraph's lines (tyro wraps at 80 columns) joined.
    """
    lines = _ANSI.sub("", printed).splitlines()
    top = next((i for i, line in enumerate(lines) if "\u256d" in line),
               next((i for i, line in enumerate(lines) if line.strip()), len(lines)))
    paragraphs: list[list[tuple[int, str]]] = [[]]
    for line in lines[top + 1:]:
        plain = _BOX.sub(" ", line).rstrip()
        text = " ".join(plain.split())
        if not line.strip():
            continue
        if set(text) <= {"-", " "}:  # a rule (or the bottom border)
            paragraphs.append([])
        else:
            paragraphs[-1].append((len(plain) - len(plain.lstrip()), text))
    texts = [" ".join(text for indent, text in paragraph if indent < paragraph[0][0] + _HELP_TEXT_INDENT)
             for paragraph in paragraphs if paragraph]
    hint = next((m.group(1) for text in texts if (m := _HELP_HINT.match(text))), "--help")
    what = next((text for text in texts if not _HELP_HINT.match(text)), "invalid command line")
    return f"{what} (see {hint})"
