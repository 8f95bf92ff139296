"""The `rlntp` command line. One module per group of commands; each command's options are generated from its
signature and config dataclasses (`parsing.run_commands`).

    stages.py     sample, pretrain, posttrain, eval, plot, sweep, report
    reproduce.py  rlntp reproduce NAME|all: the paper's figures as recipes (from the recipe registry)
    data.py       rlntp data mult|sample: datasets on disk
    llm.py        rlntp llm data|sft|grpo|eval: pretrained LLMs on GSM8K/MATH mixtures
    theory.py     rlntp theory pretrain|star|figure: the linear autoregressive model
    parsing.py    argv -> call, and every failure of the input as one line
"""

import importlib
import sys

from rlntp.cli.parsing import exit_with, run_commands

DESCRIPTION = ("rlntp: how reinforcement learning after next-token prediction facilitates learning "
               "(Tsilivis et al., 2025) -- tasks, models, training stages and the paper's experiments.")
GROUPS = ("reproduce", "data", "llm", "theory")
"""Commands with subcommands of their own, each a module of this package (`COMMANDS`, `DESCRIPTION`)."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `rlntp` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in GROUPS:
        group = importlib.import_module(f"rlntp.cli.{argv[0]}")
        return run_commands(group.commands(), argv[1:], prog=f"rlntp {argv[0]}", description=group.DESCRIPTION,
                            rerun_hint=getattr(group, "RERUN_HINT", None))
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return None if argv else sys.exit(2)
    from rlntp.cli import stages

    if argv[0] not in stages.COMMANDS:
        exit_with(f"unknown command {argv[0]!r}; choose one of: {', '.join([*stages.COMMANDS, *GROUPS])} "
                  "(rlntp --help says what each does)", 2)
    run_commands(stages.COMMANDS, argv, prog="rlntp", description=DESCRIPTION)


def usage() -> str:
    """`rlntp --help`: every command with the first line of its help."""
    from rlntp.cli import stages

    lines = {name: _first_line(fn.__doc__) for name, fn in stages.COMMANDS.items()}
    for name in GROUPS:
        group = importlib.import_module(f"rlntp.cli.{name}")
        lines[name] = f"{group.DESCRIPTION} (rlntp {name} --help)"
    width = max(map(len, lines))
    return "\n".join(["usage: rlntp COMMAND [OPTIONS]    (rlntp COMMAND --help: its options)", "", DESCRIPTION, "",
                      "commands:", *(f"  {name:{width}s}  {line}" for name, line in lines.items())])


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""
