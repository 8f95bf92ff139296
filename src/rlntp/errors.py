"""Errors that reach the user as one line saying what to change.

They deliberately do not derive from ValueError: the CLI library treats a ValueError raised while
building a config as a parse error and wraps it in a box; ours propagate to `rlntp.cli.main`, which
prints them as `error: ...` and exits with the error's `exit_code` (2: bad input, before any work).
"""

from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user: a config value, a path, a checkpoint."""

    exit_code = 2
    """the status the command line exits with"""


class ConfigError(UserError):
    """A configuration value is invalid."""


class RunDirError(UserError):
    """A path is not a run directory, or does not hold what was asked for."""


class CheckpointError(UserError):
    """A checkpoint is missing, incomplete or corrupt."""


class Diverged(UserError):
    """The loss or the weights became NaN or infinite: the run stops, its earlier checkpoints kept."""

    exit_code = 1


class Interrupted(UserError):
    """The user stopped a run (Ctrl-C); `--resume` continues it from its last checkpoint."""

    exit_code = 130  # 128 + SIGINT, what a shell reports for a process ended by Ctrl-C

    def __init__(self, run_dir, step: int):
        self.run_dir, self.step = run_dir, step
        super().__init__(f"interrupted at step {step}; continue with --resume")


def check(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless condition holds."""
    if not condition:
        raise ConfigError(message)


def check_choice(what: str, value: str, choices: Iterable[str]) -> None:
    """Raise ConfigError naming the choices unless `value` is one of them."""
    check(value in choices, f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
